//! `fabbrica blueprint render`: a site blueprint into a directory laid out as a
//! Git repository. Rendering is pure and deterministic (same blueprint, same
//! bytes); only `run` touches the disk, and never overwrites a non-empty
//! directory unless told to.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use fabbrica_site as site;
use serde::Serialize;

use crate::blueprint_file::{load, parse, plan_or_report};
use crate::output::{Output, emit};
pub use crate::site_render::{CellRow, File, cell_rows, render};
use crate::site_render::{is_empty_dir, progress, write};

/// Render a site into a GitOps repository.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Site blueprint (YAML, kind SiteBlueprint).
    #[arg(
        value_name = "SPEC",
        required_unless_present = "example",
        conflicts_with = "example"
    )]
    pub spec: Option<PathBuf>,
    /// Render an embedded example instead of a file.
    #[arg(long, value_enum)]
    pub example: Option<Example>,
    /// Directory to write; must be empty or absent unless --force.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Write into a non-empty directory, overwriting the files the render produces.
    #[arg(long)]
    pub force: bool,
    /// The most GPU Nodes one cluster holds; a larger site is rendered as several clusters
    /// (cells) split along its fabric. Overrides the blueprint's `spec.cells.maxNodes`
    /// (default 5000).
    #[arg(long, value_name = "NODES", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_nodes_per_cluster: Option<u32>,
    /// Git URL the rendered repository will be pushed to; Argo CD and Flux sync from it.
    #[arg(long, value_name = "URL", env = "FABBRICA_REPO_URL")]
    pub repo_url: Option<String>,
    /// Output format of the summary: text, or json/yaml for pipelines.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
}

/// The embedded example sites.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Example {
    /// An AI Factory of 4,096 DGX H200 GPUs on NDR.
    AiFactory,
    /// A Gigafactory of 100,000 GB200 NVL72 GPUs on XDR.
    Gigafactory,
}

impl Example {
    /// The example's blueprint text.
    pub fn text(self) -> &'static str {
        match self {
            Self::AiFactory => include_str!("../../../../blueprints/sites/ai-factory.yaml"),
            Self::Gigafactory => include_str!("../../../../blueprints/sites/gigafactory.yaml"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::AiFactory => "ai-factory",
            Self::Gigafactory => "gigafactory",
        }
    }
}

#[derive(Debug, Serialize)]
struct FileSummary<'a> {
    path: &'a str,
    bytes: u64,
}

/// What `-o json` reports.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Summary<'a> {
    out: String,
    site: &'a str,
    gpus: u64,
    /// The cluster cells, when the site is more than one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    cells: Vec<CellRow>,
    files: Vec<FileSummary<'a>>,
    total_bytes: u64,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (blueprint, source) = match (&args.spec, args.example) {
        (Some(path), _) => (load(path)?, path.display().to_string()),
        (None, Some(example)) => (
            parse(example.text())?,
            format!("example {}", example.name()),
        ),
        (None, None) => anyhow::bail!("give a blueprint file or --example ai-factory|gigafactory"),
    };
    if !args.force && !is_empty_dir(&args.out)? {
        anyhow::bail!(
            "{} is not empty; render into a new or empty directory, or pass --force to overwrite the files the render writes",
            args.out.display()
        );
    }
    let Some((valid, plan)) = plan_or_report(&blueprint, &source) else {
        return Ok(ExitCode::from(1));
    };
    let max_nodes = args.max_nodes_per_cluster.unwrap_or(valid.max_nodes());
    let cells = match valid.cells(max_nodes) {
        Ok(cells) => cells,
        Err(e) => {
            let field = if args.max_nodes_per_cluster.is_some() {
                "--max-nodes-per-cluster".to_owned()
            } else {
                format!("{source}: spec.cells.maxNodes")
            };
            anyhow::bail!("{field}: {e}");
        }
    };
    let repo_url = args
        .repo_url
        .clone()
        .unwrap_or_else(|| format!("https://git.example.com/{}/site.git", plan.site));
    // Seven render steps, then one tick per file written.
    let bar = progress(7);
    let files = render(&valid, &plan, max_nodes, &repo_url, |what| {
        bar.set_message(format!("rendering {what}"));
        bar.inc(1);
    })?;
    bar.set_length(7 + files.len() as u64);
    write(&args.out, &files, &bar)?;
    bar.finish_and_clear();
    let summary = Summary {
        out: args.out.display().to_string(),
        site: &plan.site,
        gpus: plan.gpus,
        cells: if cells.len() > 1 {
            cell_rows(&plan, &cells)
        } else {
            Vec::new()
        },
        files: files
            .iter()
            .map(|f| FileSummary {
                path: &f.path,
                bytes: f.bytes.len() as u64,
            })
            .collect(),
        total_bytes: files.iter().map(|f| f.bytes.len() as u64).sum(),
    };
    emit(args.output, &summary, |summary| {
        let mut text = String::new();
        for f in &summary.files {
            let _ = writeln!(text, "{:>12}  {}", f.bytes, f.path);
        }
        if !summary.cells.is_empty() {
            let _ = writeln!(
                text,
                "site {} is {} clusters of at most {} nodes (cells, along spine groups; gitops/cells/, MultiKueue in gitops/manager/):",
                summary.site,
                summary.cells.len(),
                site::grouped(max_nodes.into())
            );
            for c in &summary.cells {
                let _ = writeln!(
                    text,
                    "  {}: units {}, {} nodes, {} GPUs, spine groups {}, {} leaf and {} spine switches, compute racks {}",
                    c.name,
                    c.unit_range,
                    site::grouped(c.nodes.into()),
                    site::grouped(c.gpus),
                    c.spine_group_range,
                    c.leaf_switches,
                    c.spine_switches,
                    c.rack_range
                );
            }
        }
        let _ = writeln!(
            text,
            "rendered site {} ({} GPUs): {} files, {} bytes in {}",
            summary.site,
            site::grouped(summary.gpus),
            summary.files.len(),
            site::grouped(summary.total_bytes),
            summary.out
        );
        text
    })?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use fabbrica_crds::crd;

    use super::*;
    use crate::site_render::svg::drawn_units;
    use fabbrica_site::Plan;

    fn rendered(example: Example) -> (Plan, Vec<File>) {
        let blueprint = parse(example.text()).unwrap();
        let valid = site::validate(&blueprint).unwrap();
        let plan = site::plan(&valid);
        let files = render(
            &valid,
            &plan,
            valid.max_nodes(),
            "https://git.example.com/site.git",
            |_| {},
        )
        .unwrap();
        (plan, files)
    }

    fn file<'a>(files: &'a [File], path: &str) -> &'a str {
        let f = files
            .iter()
            .find(|f| f.path == path)
            .unwrap_or_else(|| panic!("{path} not rendered"));
        std::str::from_utf8(&f.bytes).unwrap()
    }

    /// Every file in full, except the large ones (head and size) and the CRDs (their own test).
    fn golden(files: &[File]) -> String {
        let mut out = String::new();
        for f in files {
            let text = std::str::from_utf8(&f.bytes).unwrap();
            if f.path == "gitops/base/crds/crds.yaml" {
                assert_eq!(text, crd::all_yaml());
                out.push_str(&format!("=== {} (the CRDs from fabbrica crds)\n", f.path));
            } else if f.bytes.len() > 64 * 1024 {
                let head: Vec<_> = text.lines().take(12).collect();
                out.push_str(&format!(
                    "=== {} ({} bytes, {} lines; head)\n{}\n",
                    f.path,
                    f.bytes.len(),
                    text.lines().count(),
                    head.join("\n")
                ));
            } else {
                out.push_str(&format!("=== {}\n{text}", f.path));
            }
        }
        out
    }

    #[test]
    fn ai_factory_example_matches_its_golden_files() {
        insta::assert_snapshot!(golden(&rendered(Example::AiFactory).1));
    }

    #[test]
    fn gigafactory_example_matches_its_golden_files() {
        insta::assert_snapshot!(golden(&rendered(Example::Gigafactory).1));
    }

    #[test]
    fn kueue_gets_the_fabrics_topology_and_flavors_that_name_it() {
        let (plan, files) = rendered(Example::AiFactory);
        let text = file(&files, "gitops/base/kueue/kueue.yaml");
        let site = &plan.site;
        for expected in [
            "kind: Topology\n",
            "- nodeLabel: fabbrica.io/scalable-unit\n",
            "- nodeLabel: fabbrica.io/leaf-group\n",
            "- nodeLabel: kubernetes.io/hostname\n",
            "kind: ResourceFlavor\n",
            &format!("topologyName: {site}\n"),
        ] {
            assert!(text.contains(expected), "{expected:?} missing in:\n{text}");
        }
    }

    #[test]
    fn a_gigafactory_is_rendered_as_cells_that_hold_every_node_and_grant_once() {
        let (plan, files) = rendered(Example::Gigafactory);
        let cells: Vec<&File> = files
            .iter()
            .filter(|f| f.path.starts_with("gitops/cells/") && f.path.ends_with("/factory.yaml"))
            .collect();
        assert_eq!(cells.len(), 7);
        let mut nodes = 0;
        for f in &cells {
            let factory: fabbrica_crds::v1alpha1::Factory =
                serde_saphyr::from_str(std::str::from_utf8(&f.bytes).unwrap()).unwrap();
            let expected = factory.spec.gpu_pools[0].expected_nodes;
            assert!(expected <= site::DEFAULT_MAX_NODES, "{}", f.path);
            nodes += expected;
        }
        assert_eq!(nodes, plan.nodes);
        // Each tenant's GPUs over the cells add up to its grant; the manager queues the same.
        let blueprint = parse(Example::Gigafactory.text()).unwrap();
        let manager = file(&files, "gitops/manager/multikueue.yaml");
        for tenant in &blueprint.spec.tenants {
            let mut granted = 0;
            for f in files
                .iter()
                .filter(|f| f.path.ends_with("/base/site/workspaces.yaml"))
            {
                let text = std::str::from_utf8(&f.bytes).unwrap();
                for doc in text.split("\n---\n") {
                    let ws: fabbrica_crds::v1alpha1::Workspace =
                        serde_saphyr::from_str(doc).unwrap();
                    if ws.metadata.name.as_deref() == Some(tenant.name.as_str()) {
                        granted += ws.spec.gpu_quota[0].gpus;
                    }
                }
            }
            assert_eq!(granted, tenant.gpus, "{}", tenant.name);
            assert!(
                manager.contains(&format!("nominalQuota: '{}'", tenant.gpus))
                    || manager.contains(&format!("nominalQuota: \"{}\"", tenant.gpus)),
                "{}: {manager}",
                tenant.name
            );
        }
        let readme = file(&files, "README.md");
        assert!(readme.contains("| giga-eu-c07 | su325-su348 |"), "{readme}");
        assert!(!files.iter().any(|f| f.path.starts_with("gitops/overlays/")));
    }

    #[test]
    fn a_limit_above_the_site_renders_it_as_one_cluster() {
        let blueprint = parse(Example::Gigafactory.text()).unwrap();
        let valid = site::validate(&blueprint).unwrap();
        let plan = site::plan(&valid);
        let files = render(
            &valid,
            &plan,
            plan.nodes,
            "https://git.example.com/s.git",
            |_| {},
        )
        .unwrap();
        assert!(
            !files
                .iter()
                .any(|f| f.path.starts_with("gitops/cells/")
                    || f.path.starts_with("gitops/manager/"))
        );
        assert!(!file(&files, "README.md").contains("## Cells"));
        assert!(
            files
                .iter()
                .any(|f| f.path == "gitops/overlays/production/kustomization.yaml")
        );
    }

    #[test]
    fn rendering_is_deterministic() {
        assert_eq!(
            rendered(Example::AiFactory).1,
            rendered(Example::AiFactory).1
        );
    }

    #[test]
    fn topology_json_starts_with_the_plan() {
        let (plan, files) = rendered(Example::AiFactory);
        let value: serde_json::Value = serde_json::from_str(file(&files, "topology.json")).unwrap();
        assert_eq!(value["plan"], serde_json::to_value(&plan).unwrap());
        assert_eq!(
            value["units"].as_array().unwrap().len() as u32,
            plan.scalable_units
        );
    }

    #[test]
    fn cabling_lists_every_cable() {
        let (plan, files) = rendered(Example::Gigafactory);
        let f = &plan.compute_fabric;
        let rows = file(&files, "cabling.csv").lines().count() as u64 - 1;
        assert_eq!(
            rows,
            f.node_leaf_cables + f.leaf_spine_cables + f.spine_core_cables
        );
    }

    /// The diagrams parse as XML and show, per drawn unit, its rail leaves and its nodes.
    #[test]
    fn svgs_are_well_formed_and_show_units_leaves_and_spines() {
        for example in [Example::AiFactory, Example::Gigafactory] {
            let (plan, files) = rendered(example);
            let tree = &plan.compute_fabric.tree;
            let svg = file(&files, "fabric.svg");
            let doc = roxmltree::Document::parse(svg).unwrap();
            let units: Vec<_> = doc
                .descendants()
                .filter(|n| n.attribute("class") == Some("su"))
                .collect();
            let drawn = drawn_units(tree.units);
            assert_eq!(units.len(), drawn.len());
            for (node, unit) in units.iter().zip(drawn) {
                let leaves = node
                    .descendants()
                    .filter(|n| n.attribute("class") == Some("leaf"))
                    .count();
                assert_eq!(leaves as u32, tree.rails, "unit {unit}");
                let texts: Vec<_> = node.descendants().filter_map(|n| n.text()).collect();
                assert!(
                    texts.contains(&format!("{} nodes", tree.nodes_in_unit(unit)).as_str()),
                    "{texts:?}"
                );
            }
            let spine_text = format!("{} spine switches", plan.compute_fabric.spine_switches);
            assert!(
                doc.descendants()
                    .filter_map(|n| n.text())
                    .any(|t| t.starts_with(&spine_text)),
                "{spine_text}"
            );
            let racks = roxmltree::Document::parse(file(&files, "racks.svg")).unwrap();
            let nodes = racks
                .descendants()
                .filter(|n| n.attribute("class") == Some("node"))
                .count();
            assert_eq!(nodes as u32, tree.nodes_in_unit(0));
        }
    }

    #[test]
    fn refuses_a_non_empty_directory_without_force() {
        let dir = std::env::temp_dir().join(format!("fabbrica-render-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("keep.txt"), "mine").unwrap();
        let args = |force| Args {
            spec: None,
            example: Some(Example::AiFactory),
            out: dir.clone(),
            force,
            max_nodes_per_cluster: None,
            repo_url: None,
            output: Output::Json,
        };
        let err = run(args(false)).unwrap_err();
        assert!(err.to_string().contains("is not empty"), "{err}");
        assert_eq!(
            std::fs::read_to_string(dir.join("keep.txt")).unwrap(),
            "mine"
        );
        run(args(true)).unwrap();
        assert!(
            dir.join("gitops/overlays/production/kustomization.yaml")
                .exists()
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("keep.txt")).unwrap(),
            "mine"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
