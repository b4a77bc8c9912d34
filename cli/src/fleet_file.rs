//! Fleet files as `fleet` and `validate` read them: one document of kind `Fleet` (a field no
//! part of it reads refused by name), the blueprint files its sites name read relative to it,
//! then every site checked with the site rules; each problem is named by its path in the fleet
//! file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fabbrica_crds::validation::Problem;
use fabbrica_site::fleet::{self, FLEET_KIND, Fleet, FleetSiteBlueprint};

use crate::documents::{self, Loaded, Object};

/// Reads a fleet file: one document of kind `Fleet`, every problem named with its field path.
pub fn load(path: &Path) -> anyhow::Result<Fleet> {
    let source = path.display().to_string();
    let Loaded {
        mut documents,
        problems,
    } = documents::load_file(path);
    if documents.len() > 1 {
        anyhow::bail!(
            "{source} holds {} documents; valid: one {FLEET_KIND}",
            documents.len()
        );
    }
    if let Some(document) = documents.first()
        && !document.label.starts_with(&format!("{FLEET_KIND}/"))
        && !document.label.starts_with("<no kind>/")
    {
        anyhow::bail!(
            "{source}[0] {}: kind: not a fleet; valid: {FLEET_KIND}",
            document.label
        );
    }
    if !problems.is_empty() {
        let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
        anyhow::bail!("{}", lines.join("\n"));
    }
    match documents.pop().and_then(|d| d.object) {
        Some(Object::Fleet(fleet)) => Ok(*fleet),
        _ => anyhow::bail!("{source}: not a fleet; valid: {FLEET_KIND}"),
    }
}

/// The folder a fleet file's site paths are relative to.
pub fn base_dir(path: &Path) -> PathBuf {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Reads the blueprint files the fleet names (relative to `dir`) and puts every site together;
/// every problem, of the fleet and of the files, with its path in the fleet file.
pub fn assemble(fleet: &Fleet, dir: &Path) -> Result<Vec<FleetSiteBlueprint>, Vec<Problem>> {
    let mut files = BTreeMap::new();
    let mut problems = Vec::new();
    for (i, site) in fleet.spec.sites.iter().enumerate() {
        if let (Some(path), None) = (&site.path, &site.blueprint) {
            match crate::blueprint_file::load(&dir.join(path)) {
                Ok(blueprint) => {
                    files.insert(i, blueprint);
                }
                Err(e) => problems.push(Problem {
                    path: format!("spec.sites[{i}].path"),
                    message: e.to_string().replace('\n', "; "),
                }),
            }
        }
    }
    match fleet::assemble(fleet, &files) {
        Ok(sites) if problems.is_empty() => Ok(sites),
        Ok(_) => Err(problems),
        Err(found) => {
            problems.extend(found.0);
            Err(problems)
        }
    }
}

/// Every problem of a fleet: its own, its files', and every site's under the site rules and
/// its cells' limit.
pub fn problems(fleet: &Fleet, dir: &Path) -> Vec<Problem> {
    let sites = match assemble(fleet, dir) {
        Ok(sites) => sites,
        Err(problems) => return problems,
    };
    match fleet::validate_sites(&sites) {
        Ok(_) => Vec::new(),
        Err(found) => found.0,
    }
}

/// Prints every problem on stderr, located in `source`, and how many there were.
pub fn report(source: &str, problems: &[Problem]) {
    for problem in problems {
        eprintln!("{source}: {problem}");
    }
    eprintln!(
        "{source}: {}; nothing done",
        crate::output::count(problems.len(), "problem")
    );
}

/// `result`'s value, or `None` once its problems are printed on stderr, located in the fleet
/// file at `path` (see [`report`]).
pub fn or_report<T>(path: &Path, result: Result<T, Vec<Problem>>) -> Option<T> {
    result
        .map_err(|problems| report(&path.display().to_string(), &problems))
        .ok()
}

/// A site of a fleet checked and sized, with its cells.
#[derive(Debug)]
pub struct PlannedSite<'a> {
    /// The site as the fleet put it together.
    pub site: &'a FleetSiteBlueprint,
    /// Its blueprint, checked.
    pub valid: fabbrica_site::ValidBlueprint<'a>,
    /// Its sizing.
    pub plan: fabbrica_site::Plan,
    /// Its cluster cells.
    pub cells: Vec<fabbrica_site::Cell>,
    /// The most nodes per cell it was split with.
    pub max_nodes: u32,
}

/// Checks and sizes every site, splitting each into cells of at most `max_nodes` (the site's
/// own limit when `None`); every problem of every site at once.
pub fn plan<'a>(
    sites: &'a [FleetSiteBlueprint],
    max_nodes: Option<u32>,
) -> Result<Vec<PlannedSite<'a>>, Vec<Problem>> {
    let valid = fleet::validate_sites(sites).map_err(|p| p.0)?;
    let mut problems = Vec::new();
    let mut planned = Vec::new();
    for (site, valid) in sites.iter().zip(valid) {
        let max_nodes = max_nodes.unwrap_or(valid.max_nodes());
        match valid.cells(max_nodes) {
            Ok(cells) => planned.push(PlannedSite {
                site,
                plan: fabbrica_site::plan(&valid),
                valid,
                cells,
                max_nodes,
            }),
            Err(e) => problems.push(Problem {
                path: format!("spec.sites[{}]", site.index),
                message: format!("--max-nodes-per-cluster: {e}"),
            }),
        }
    }
    if problems.is_empty() {
        Ok(planned)
    } else {
        Err(problems)
    }
}
