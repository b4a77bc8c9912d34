//! Rendering a site into the files of its GitOps repository: pure and deterministic (same
//! blueprint, same bytes). `blueprint render` writes one site, `fleet render` every site of a
//! fleet; both go through [`render`] and [`write`].

use std::io::IsTerminal;
use std::path::Path;

use anyhow::Context as _;
use fabbrica_site::exports::{cabling_csv, topology_conf, topology_json};
use fabbrica_site::{self as site, Cell, Plan, ValidBlueprint};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

pub mod bom;
pub mod gitops;
pub mod site_yaml;
pub mod svg;
pub mod templates;

use site_yaml::commented;

/// One rendered file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct File {
    /// Path relative to the output directory, `/`-separated.
    pub path: String,
    /// Contents.
    pub bytes: Vec<u8>,
}

/// A cell as the report shows it: which units, switches and racks it holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CellRow {
    /// The cell's cluster and Factory name.
    pub name: String,
    /// The site's scalable units in the cell: `su001-su054`.
    pub unit_range: String,
    /// GPU Nodes.
    pub nodes: u32,
    /// GPUs.
    pub gpus: u64,
    /// The spine groups: `g01-g03` (`all` in two tiers).
    pub spine_group_range: String,
    /// Leaf switches.
    pub leaf_switches: u32,
    /// Spine switches.
    pub spine_switches: u32,
    /// Compute racks, numbered from 1 in node order: `1-216`.
    pub rack_range: String,
    /// Leaf racks.
    pub leaf_racks: u32,
}

fn span(first: String, last: String) -> String {
    if first == last {
        first
    } else {
        format!("{first}-{last}")
    }
}

/// The report's rows of a site's cells.
pub fn cell_rows(plan: &Plan, cells: &[Cell]) -> Vec<CellRow> {
    let tree = &plan.compute_fabric.tree;
    let names = site::Names::new(tree);
    cells
        .iter()
        .map(|c| CellRow {
            name: c.name.clone(),
            unit_range: span(
                names.unit(c.first_unit),
                names.unit(c.first_unit + c.units - 1),
            ),
            nodes: c.nodes,
            gpus: c.gpus,
            spine_group_range: if tree.tiers == 3 {
                span(
                    names.group(c.first_spine_group),
                    names.group(c.first_spine_group + c.spine_groups - 1),
                )
            } else {
                "all".to_owned()
            },
            leaf_switches: c.leaf_switches,
            spine_switches: c.spine_switches,
            rack_range: span(
                (c.first_rack + 1).to_string(),
                (c.first_rack + c.compute_racks).to_string(),
            ),
            leaf_racks: c.leaf_racks,
        })
        .collect()
}

/// Renders every file of a site, split into cells of at most `max_nodes` GPU Nodes (one cell:
/// the site as one cluster), sorted by path; `step` is told what is being rendered.
pub fn render(
    blueprint: &ValidBlueprint<'_>,
    plan: &Plan,
    max_nodes: u32,
    repo_url: &str,
    mut step: impl FnMut(&str),
) -> anyhow::Result<Vec<File>> {
    let cells = &blueprint.cells(max_nodes)?;
    let objects = site::build(blueprint, plan);
    let cell_objects = site::cells::cell_objects(&objects, cells);
    // The operator's own validation, so a render never commits what the cluster would refuse.
    for (cell, objects) in cells.iter().zip(&cell_objects) {
        objects
            .check()
            .with_context(|| format!("cell {}", cell.name))?;
    }
    let entries: Vec<(Cell, site::SiteObjects)> = cells.iter().cloned().zip(cell_objects).collect();
    let mut files = Vec::new();
    let mut add = |path: &str, bytes: Vec<u8>| {
        files.push(File {
            path: path.to_owned(),
            bytes,
        })
    };
    step("site.yaml");
    add(
        "site.yaml",
        commented(blueprint, plan, "site.yaml")?.into_bytes(),
    );
    step("cabling.csv");
    add("cabling.csv", cabling_csv(&plan.compute_fabric.tree)?);
    step("topology");
    add(
        "topology.conf",
        topology_conf(&plan.site, &plan.compute_fabric.tree).into_bytes(),
    );
    add("topology.json", topology_json(plan)?);
    step("bill of materials");
    add("bom.csv", bom::csv(plan)?);
    step("diagrams");
    add("fabric.svg", svg::fabric(plan).into_bytes());
    add("racks.svg", svg::racks(plan).into_bytes());
    step("gitops");
    for (path, text) in gitops::files(plan, &entries, repo_url)? {
        add(&path, text.into_bytes());
    }
    step("README.md");
    let mut context = tera::Context::new();
    context.insert("plan", plan);
    context.insert("bom", &bom::lines(plan));
    context.insert("tenants", &blueprint.spec().tenants);
    context.insert("cells", &cell_rows(plan, cells));
    context.insert("max_nodes", &max_nodes);
    context.insert("version", env!("CARGO_PKG_VERSION"));
    add(
        "README.md",
        templates::render("README.md", &context)?.into_bytes(),
    );
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// Whether a directory is empty or absent: the only place a render writes without `--force`.
pub fn is_empty_dir(dir: &Path) -> anyhow::Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e).with_context(|| format!("reading {}", dir.display())),
    }
}

/// A progress bar on stderr when it is a terminal, hidden otherwise.
pub fn progress(len: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar
}

/// Writes rendered files under `out`, creating folders, one tick of `bar` per file.
pub fn write(out: &Path, files: &[File], bar: &ProgressBar) -> anyhow::Result<()> {
    for file in files {
        bar.set_message(format!("writing {}", file.path));
        let path = out.join(&file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, &file.bytes)
            .with_context(|| format!("writing {}", path.display()))?;
        bar.inc(1);
    }
    Ok(())
}
