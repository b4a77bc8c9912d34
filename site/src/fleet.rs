//! A fleet: many sites (AI Factories, their antennas, Gigafactories split into cells) under one
//! file, with a notebook catalog they share and tenants that hold workspaces at several of them.
//! Pure, like the rest of this crate: the CLI reads the blueprint files a fleet names and hands
//! them in.
//!
//! The pipeline: [`assemble`] a fleet (its own checks, then each site's blueprint with the
//! shared catalog and the fleet's tenants merged in), [`validate_sites`] every blueprint with the
//! site rules (problems named by their path in the fleet file), [`roll_up`] the plans by site and
//! by country.

use std::collections::{BTreeMap, BTreeSet};

use fabbrica_crds::v1alpha1::{
    Allocation, Member, NotebookCatalog, SiteTier, StorageQuota, TenantKind,
};
use fabbrica_crds::validation::{Problem, Problems};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::sizing::Plan;
use crate::spec::{API_VERSION, SiteBlueprint, SiteBlueprintSpec, TenantSpec};
use crate::validate::{ValidBlueprint, validate};

/// The `kind` of a fleet file.
pub const FLEET_KIND: &str = "Fleet";

/// A fleet of sites: `fabbrica fleet plan` rolls them up, `fleet render` renders each,
/// `fleet status` reads each site's cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fleet {
    /// `fabbrica.io/v1alpha1`.
    pub api_version: String,
    /// `Fleet`.
    pub kind: String,
    /// The fleet.
    pub spec: FleetSpec,
}

/// The sites of a fleet, what they share and who uses them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FleetSpec {
    /// The fleet's name, a DNS label (`eurohpc`).
    pub name: String,
    /// Notebook images and profiles every site offers; a site that declares its own keeps them.
    #[serde(default)]
    pub notebooks: NotebookCatalog,
    /// The sites, each an inline blueprint or a blueprint file.
    pub sites: Vec<FleetSite>,
    /// Tenants with workspaces at one or more sites.
    #[serde(default)]
    pub tenants: Vec<FleetTenant>,
}

/// A site's role in the network.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum SiteRole {
    /// An AI Factory.
    AiFactory,
    /// An AI Factory antenna: a smaller site giving access to a factory's services.
    Antenna,
    /// An AI Gigafactory (often several cluster cells).
    Gigafactory,
}

impl SiteRole {
    /// The spelling in files and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AiFactory => "aiFactory",
            Self::Antenna => "antenna",
            Self::Gigafactory => "gigafactory",
        }
    }
}

/// One site of a fleet: exactly one of `blueprint` and `path`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FleetSite {
    /// `aiFactory`, `antenna` or `gigafactory`; by default the blueprint's tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<SiteRole>,
    /// The kubeconfig context of the site's cluster (`fleet status`); by default the site's name.
    /// A site of several cells names the context of its first cell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// The site's blueprint inline: what a SiteBlueprint file holds under `spec`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blueprint: Option<Box<SiteBlueprintSpec>>,
    /// A SiteBlueprint file, relative to the fleet file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// A tenant of the fleet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FleetTenant {
    /// Workspace name and namespace at every site, a DNS label (`aurora`).
    pub name: String,
    /// The tenant's name as people write it.
    pub display_name: String,
    /// `startup`, `sme`, `research` or `publicBody`.
    pub kind: TenantKind,
    /// People and groups given access at every site.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<Member>,
    /// The tenant's workspace at each site it uses.
    pub workspaces: Vec<FleetWorkspace>,
}

/// A tenant's workspace at one site.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FleetWorkspace {
    /// The site's name.
    pub site: String,
    /// GPUs the tenant may use at once there.
    pub gpus: u32,
    /// Storage the tenant may claim there, per tier.
    #[serde(default)]
    pub storage: Vec<StorageQuota>,
    /// GPU-hours granted there for a period; none: metered, not limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation: Option<Allocation>,
}

/// Where a site's blueprint came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Inline, under `spec.sites[i].blueprint`.
    Inline,
    /// From a file named by `spec.sites[i].path`.
    File(String),
}

/// A site of a fleet, ready to validate: its blueprint with the fleet's catalog and tenants in.
#[derive(Clone, Debug)]
pub struct FleetSiteBlueprint {
    /// Its index in `spec.sites`.
    pub index: usize,
    /// Its role.
    pub role: SiteRole,
    /// Its kubeconfig context.
    pub context: String,
    /// The blueprint as it is planned and rendered.
    pub blueprint: SiteBlueprint,
    /// Where it came from.
    pub origin: Origin,
    own_tenants: usize,
    /// Fleet tenant and workspace index of each tenant merged in, after the site's own.
    merged: Vec<(usize, usize)>,
    catalog_from_fleet: bool,
}

fn push(p: &mut Vec<Problem>, path: impl Into<String>, message: impl Into<String>) {
    p.push(Problem {
        path: path.into(),
        message: message.into(),
    });
}

fn dns_label(text: &str) -> bool {
    let b = text.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Checks a fleet and puts each site's blueprint together: inline ones from the file, the
/// others from `files` (by site index; the caller read them, and reports its own problems for
/// those it could not, so a missing entry here is only skipped). The shared catalog goes to
/// every site that declares none; each fleet tenant's workspace becomes a tenant of its site.
pub fn assemble(
    fleet: &Fleet,
    files: &BTreeMap<usize, SiteBlueprint>,
) -> Result<Vec<FleetSiteBlueprint>, Problems> {
    let mut p = Vec::new();
    if fleet.api_version != API_VERSION {
        push(
            &mut p,
            "apiVersion",
            format!(
                "{:?} is not supported; valid: {API_VERSION}",
                fleet.api_version
            ),
        );
    }
    if fleet.kind != FLEET_KIND {
        push(
            &mut p,
            "kind",
            format!("{:?} is not a fleet; valid: {FLEET_KIND}", fleet.kind),
        );
    }
    let spec = &fleet.spec;
    if !dns_label(&spec.name) {
        push(
            &mut p,
            "spec.name",
            format!(
                "{:?} is not a DNS label; valid: 1 to 63 of a-z, 0-9 and '-', not starting or ending with '-'",
                spec.name
            ),
        );
    }
    if spec.sites.is_empty() {
        push(
            &mut p,
            "spec.sites",
            "no sites; valid: at least one, each with a blueprint or a path",
        );
    }
    let mut sites = Vec::new();
    let mut by_name: BTreeMap<String, usize> = BTreeMap::new();
    for (i, site) in spec.sites.iter().enumerate() {
        let at = format!("spec.sites[{i}]");
        let (blueprint, origin) = match (&site.blueprint, &site.path) {
            (Some(_), Some(_)) => {
                push(&mut p, &at, "both blueprint and path; valid: one of them");
                continue;
            }
            (None, None) => {
                push(
                    &mut p,
                    &at,
                    "neither blueprint nor path; valid: an inline blueprint (the spec of a SiteBlueprint) or path: a SiteBlueprint file",
                );
                continue;
            }
            (Some(inline), None) => (SiteBlueprint::new((**inline).clone()), Origin::Inline),
            (None, Some(path)) => match files.get(&i) {
                Some(b) => (b.clone(), Origin::File(path.clone())),
                None => continue,
            },
        };
        let name = blueprint.spec.site.name.clone();
        if let Some(first) = by_name.get(&name) {
            push(
                &mut p,
                format!("{at}.{}", name_field(&origin)),
                format!(
                    "site {name:?} is also spec.sites[{first}]; valid: a name of its own for every site"
                ),
            );
        } else {
            by_name.insert(name.clone(), sites.len());
        }
        let catalog_from_fleet = blueprint.spec.notebooks.images.is_empty()
            && blueprint.spec.notebooks.profiles.is_empty();
        let mut blueprint = blueprint;
        if catalog_from_fleet {
            blueprint.spec.notebooks = spec.notebooks.clone();
        }
        let own_tenants = blueprint.spec.tenants.len();
        sites.push(FleetSiteBlueprint {
            index: i,
            role: site.role.unwrap_or(match blueprint.spec.site.tier {
                SiteTier::AiFactory => SiteRole::AiFactory,
                SiteTier::Gigafactory => SiteRole::Gigafactory,
            }),
            context: site.context.clone().unwrap_or_else(|| name.clone()),
            blueprint,
            origin,
            own_tenants,
            merged: Vec::new(),
            catalog_from_fleet,
        });
    }
    let valid_sites = || by_name.keys().cloned().collect::<Vec<_>>().join(", ");
    let mut tenant_names = BTreeSet::new();
    for (t, tenant) in spec.tenants.iter().enumerate() {
        let at = format!("spec.tenants[{t}]");
        if !dns_label(&tenant.name) {
            push(
                &mut p,
                format!("{at}.name"),
                format!(
                    "{:?} is not a DNS label; valid: 1 to 63 of a-z, 0-9 and '-', not starting or ending with '-'",
                    tenant.name
                ),
            );
        }
        if !tenant_names.insert(tenant.name.as_str()) {
            push(
                &mut p,
                format!("{at}.name"),
                format!(
                    "duplicate tenant {:?}; valid: one entry per tenant, with a workspace per site",
                    tenant.name
                ),
            );
        }
        if tenant.workspaces.is_empty() {
            push(
                &mut p,
                format!("{at}.workspaces"),
                "no workspaces; valid: at least one, naming a site of spec.sites",
            );
        }
        let mut at_sites = BTreeSet::new();
        for (w, ws) in tenant.workspaces.iter().enumerate() {
            let path = format!("{at}.workspaces[{w}].site");
            let Some(&s) = by_name.get(&ws.site) else {
                push(
                    &mut p,
                    path,
                    format!(
                        "no site {:?} in spec.sites; valid: {}",
                        ws.site,
                        valid_sites()
                    ),
                );
                continue;
            };
            if !at_sites.insert(ws.site.as_str()) {
                push(
                    &mut p,
                    path,
                    format!(
                        "a second workspace at {:?}; valid: one per site (raise its gpus instead)",
                        ws.site
                    ),
                );
                continue;
            }
            let site = &mut sites[s];
            if site.blueprint.spec.tenants[..site.own_tenants]
                .iter()
                .any(|own| own.name == tenant.name)
            {
                push(
                    &mut p,
                    format!("{at}.name"),
                    format!(
                        "site {:?} declares a tenant {:?} of its own; valid: a name no site's blueprint uses",
                        ws.site, tenant.name
                    ),
                );
                continue;
            }
            site.blueprint.spec.tenants.push(TenantSpec {
                name: tenant.name.clone(),
                display_name: tenant.display_name.clone(),
                kind: tenant.kind,
                gpus: ws.gpus,
                storage: ws.storage.clone(),
                members: tenant.members.clone(),
                notebook: None,
                allocation: ws.allocation.clone(),
            });
            site.merged.push((t, w));
        }
    }
    if p.is_empty() {
        Ok(sites)
    } else {
        Err(Problems(p))
    }
}

fn name_field(origin: &Origin) -> &'static str {
    match origin {
        Origin::Inline => "blueprint.site.name",
        Origin::File(_) => "path",
    }
}

impl FleetSiteBlueprint {
    /// The site's name.
    pub fn name(&self) -> &str {
        &self.blueprint.spec.site.name
    }

    /// A problem the site rules found, placed where the fleet file says it.
    pub fn locate(&self, problem: Problem) -> Problem {
        let at = format!("spec.sites[{}]", self.index);
        let rest = problem.path.strip_prefix("spec.").unwrap_or(&problem.path);
        // A tenant merged from the fleet is the fleet's tenant's workspace.
        if let Some(after) = rest.strip_prefix("tenants[")
            && let Some((index, field)) = after.split_once(']')
            && let Ok(k) = index.parse::<usize>()
            && k >= self.own_tenants
            && let Some(&(t, w)) = self.merged.get(k - self.own_tenants)
        {
            let field = field.strip_prefix('.').unwrap_or(field);
            let path = match field.split(['.', '[']).next() {
                Some("name" | "displayName" | "members" | "kind") => {
                    format!("spec.tenants[{t}].{field}")
                }
                _ if field.is_empty() => format!("spec.tenants[{t}].workspaces[{w}]"),
                _ => format!("spec.tenants[{t}].workspaces[{w}].{field}"),
            };
            return Problem {
                path,
                message: format!("at site {}: {}", self.name(), problem.message),
            };
        }
        if self.catalog_from_fleet && rest.starts_with("notebooks") {
            return Problem {
                path: format!("spec.{rest}"),
                message: format!("at site {}: {}", self.name(), problem.message),
            };
        }
        match &self.origin {
            Origin::Inline => Problem {
                path: format!("{at}.blueprint.{rest}"),
                message: problem.message,
            },
            Origin::File(file) => Problem {
                path: format!("{at}.path"),
                message: format!("{file}: {}: {}", problem.path, problem.message),
            },
        }
    }
}

/// Validates every site's blueprint with the site rules; every problem of every site at once,
/// each at its path in the fleet file.
pub fn validate_sites(sites: &[FleetSiteBlueprint]) -> Result<Vec<ValidBlueprint<'_>>, Problems> {
    let mut valid = Vec::new();
    let mut p = Vec::new();
    for site in sites {
        match validate(&site.blueprint) {
            Ok(v) => valid.push(v),
            Err(Problems(found)) => p.extend(found.into_iter().map(|f| site.locate(f))),
        }
    }
    if p.is_empty() {
        Ok(valid)
    } else {
        Err(Problems(p))
    }
}

/// Sums of a group of sites.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    /// Sites.
    pub sites: u32,
    /// Kubernetes clusters: one per cell.
    pub clusters: u32,
    /// GPUs built.
    pub gpus: u64,
    /// GPU nodes.
    pub nodes: u64,
    /// Switches of every fabric: compute, storage, in-band and out-of-band.
    pub switches: u64,
    /// Racks.
    pub racks: u64,
    /// IT power, kW.
    pub it_kw: f64,
    /// Facility power, kW.
    pub facility_kw: f64,
}

impl Totals {
    fn add(&mut self, other: &Totals) {
        self.sites += other.sites;
        self.clusters += other.clusters;
        self.gpus += other.gpus;
        self.nodes += other.nodes;
        self.switches += other.switches;
        self.racks += other.racks;
        self.it_kw += other.it_kw;
        self.facility_kw += other.facility_kw;
    }

    fn round(&mut self) {
        self.it_kw = (self.it_kw * 10.0).round() / 10.0;
        self.facility_kw = (self.facility_kw * 10.0).round() / 10.0;
    }
}

/// One site of the roll-up.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SiteSummary {
    /// Site name.
    pub site: String,
    /// ISO 3166-1 alpha-2 country code.
    pub country: String,
    /// Its role.
    pub role: SiteRole,
    /// GPU system model.
    pub system: String,
    /// Tenants with a workspace there.
    pub tenants: u32,
    /// Its figures (`sites` is 1, `clusters` its cells).
    #[serde(flatten)]
    pub totals: Totals,
}

/// One country of the roll-up.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CountrySummary {
    /// ISO 3166-1 alpha-2 country code.
    pub country: String,
    /// Its sites' figures summed.
    #[serde(flatten)]
    pub totals: Totals,
}

/// A fleet sized: by site (in file order), by country (alphabetical), and in all.
/// `fabbrica fleet plan -o json`'s stable interface.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FleetPlan {
    /// The fleet's name.
    pub fleet: String,
    /// One entry per site.
    pub sites: Vec<SiteSummary>,
    /// One entry per country.
    pub countries: Vec<CountrySummary>,
    /// The whole fleet.
    pub total: Totals,
}

/// Every switch of a site's plan.
pub fn switches(plan: &Plan) -> u64 {
    let f = &plan.compute_fabric;
    let tree = |t: &crate::sizing::TreeFabricPlan| {
        u64::from(t.leaf_switches) + u64::from(t.spine_switches) + u64::from(t.core_switches)
    };
    u64::from(f.leaf_switches)
        + u64::from(f.spine_switches)
        + u64::from(f.core_switches)
        + tree(&plan.storage_fabric)
        + tree(&plan.management_fabric.in_band)
        + u64::from(plan.management_fabric.out_of_band.switches)
}

/// The roll-up of sized sites: each site with its plan and its number of cells.
pub fn roll_up(fleet: &str, sites: &[(&FleetSiteBlueprint, &Plan, u32)]) -> FleetPlan {
    let mut countries: BTreeMap<String, Totals> = BTreeMap::new();
    let mut total = Totals::default();
    let summaries = sites
        .iter()
        .map(|(site, plan, cells)| {
            let mut totals = Totals {
                sites: 1,
                clusters: *cells,
                gpus: plan.gpus,
                nodes: u64::from(plan.nodes),
                switches: switches(plan),
                racks: u64::from(plan.racks),
                it_kw: plan.power.it_kw,
                facility_kw: plan.power.facility_kw,
            };
            let country = site.blueprint.spec.site.country.clone();
            countries.entry(country.clone()).or_default().add(&totals);
            total.add(&totals);
            totals.round();
            SiteSummary {
                site: site.name().to_owned(),
                country,
                role: site.role,
                system: plan.system.clone(),
                tenants: site.blueprint.spec.tenants.len() as u32,
                totals,
            }
        })
        .collect();
    total.round();
    FleetPlan {
        fleet: fleet.to_owned(),
        sites: summaries,
        countries: countries
            .into_iter()
            .map(|(country, mut totals)| {
                totals.round();
                CountrySummary { country, totals }
            })
            .collect(),
        total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sizing::plan;

    fn site(name: &str, country: &str, tier: &str, system: &str, gpus: u32) -> String {
        format!(
            "    - blueprint:\n        site: {{name: {name}, country: {country}, tier: {tier}}}\n        compute: {{system: {system}, gpus: {gpus}}}\n        computeFabric: {{generation: {}}}\n        storage:\n          tiers:\n            - {{name: project, role: project, provisioner: csi.example.com, capacity: 10Pi}}\n",
            if system == "gb200-nvl72" {
                "xdr"
            } else {
                "ndr"
            }
        )
    }

    fn fleet(tenants: &str) -> Fleet {
        let text = format!(
            "apiVersion: fabbrica.io/v1alpha1\nkind: Fleet\nspec:\n  name: eu\n  notebooks:\n    images: [{{name: pytorch, image: nvcr.io/nvidia/pytorch:24.10-py3}}]\n    profiles: [{{name: one, pool: gpu, gpus: 1, cpu: '8', memory: 64Gi}}]\n  sites:\n{}{}{}  tenants:\n{tenants}",
            site("it4lia", "IT", "aiFactory", "dgx-h200", 4096),
            site("bologna-antenna", "IT", "aiFactory", "dgx-h100", 256),
            site("giga-de", "DE", "gigafactory", "gb200-nvl72", 100_000),
        );
        serde_saphyr::from_str(&text).unwrap()
    }

    const AURORA: &str = "    - name: aurora\n      displayName: Aurora\n      kind: startup\n      workspaces:\n        - {site: it4lia, gpus: 512, storage: [{tier: project, capacity: 100Ti}]}\n        - {site: giga-de, gpus: 20000}\n";

    #[test]
    fn roll_up_sums_sites_into_countries_and_the_fleet() {
        let fleet = fleet(AURORA);
        let sites = assemble(&fleet, &BTreeMap::new()).unwrap();
        let valid = validate_sites(&sites).unwrap();
        let plans: Vec<Plan> = valid.iter().map(plan).collect();
        let cells: Vec<u32> = valid
            .iter()
            .map(|v| v.cells(v.max_nodes()).unwrap().len() as u32)
            .collect();
        let rows: Vec<_> = sites
            .iter()
            .zip(&plans)
            .zip(&cells)
            .map(|((s, p), c)| (s, p, *c))
            .collect();
        let rolled = roll_up("eu", &rows);
        assert_eq!(rolled.total.sites, 3);
        assert_eq!(rolled.total.gpus, plans.iter().map(|p| p.gpus).sum::<u64>());
        assert_eq!(
            rolled.total.nodes,
            plans.iter().map(|p| u64::from(p.nodes)).sum::<u64>()
        );
        assert_eq!(
            rolled.total.racks,
            plans.iter().map(|p| u64::from(p.racks)).sum::<u64>()
        );
        assert_eq!(
            rolled.total.switches,
            plans.iter().map(switches).sum::<u64>()
        );
        // The gigafactory is 7 clusters, the others one each.
        assert_eq!(rolled.total.clusters, 9);
        let countries: Vec<_> = rolled
            .countries
            .iter()
            .map(|c| c.country.as_str())
            .collect();
        assert_eq!(countries, ["DE", "IT"]);
        let it = &rolled.countries[1].totals;
        assert_eq!(it.sites, 2);
        assert_eq!(it.gpus, plans[0].gpus + plans[1].gpus);
        let by_country: f64 = rolled.countries.iter().map(|c| c.totals.it_kw).sum();
        assert!((by_country - rolled.total.it_kw).abs() < 0.2);
        // Shared catalog and fleet tenants reached the sites.
        assert_eq!(sites[0].blueprint.spec.notebooks.images[0].name, "pytorch");
        assert_eq!(rolled.sites[0].tenants, 1);
        assert_eq!(rolled.sites[1].tenants, 0);
        assert_eq!(sites[2].blueprint.spec.tenants[0].gpus, 20_000);
    }

    #[test]
    fn a_workspace_at_an_unknown_site_is_named_with_the_valid_sites() {
        let tenants = "    - name: aurora\n      displayName: Aurora\n      kind: startup\n      workspaces:\n        - {site: it4lia, gpus: 8}\n        - {site: milano, gpus: 8}\n        - {site: it4lia, gpus: 8}\n";
        let Problems(p) = assemble(&fleet(tenants), &BTreeMap::new()).unwrap_err();
        assert_eq!(p[0].path, "spec.tenants[0].workspaces[1].site");
        assert!(
            p[0].message
                .ends_with("valid: bologna-antenna, giga-de, it4lia"),
            "{}",
            p[0].message
        );
        assert_eq!(p[1].path, "spec.tenants[0].workspaces[2].site");
    }

    #[test]
    fn a_site_problem_of_a_fleet_tenant_is_named_at_the_tenants_workspace() {
        // 5,000 GPUs at a 256-GPU antenna, and a quota on a tier the site lacks.
        let tenants = "    - name: aurora\n      displayName: Aurora\n      kind: startup\n      workspaces:\n        - {site: bologna-antenna, gpus: 5000, storage: [{tier: scratch, capacity: 1Ti}]}\n";
        let sites = assemble(&fleet(tenants), &BTreeMap::new()).unwrap();
        let Problems(p) = validate_sites(&sites).unwrap_err();
        let paths: Vec<&str> = p.iter().map(|p| p.path.as_str()).collect();
        assert!(
            paths.contains(&"spec.tenants[0].workspaces[0].storage[0].tier"),
            "{p:?}"
        );
        assert!(paths.contains(&"spec.sites[1].blueprint.tenants"), "{p:?}");
        assert!(p.iter().all(|p| !p.message.is_empty()));
    }

    #[test]
    fn a_site_with_both_or_neither_source_and_duplicate_names_are_refused() {
        let mut f = fleet("    []\n");
        f.spec.sites[1].path = Some("x.yaml".into());
        f.spec.sites[2].blueprint = None;
        f.spec.sites.push(f.spec.sites[0].clone());
        let Problems(p) = assemble(&f, &BTreeMap::new()).unwrap_err();
        let paths: Vec<&str> = p.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.sites[1]",
                "spec.sites[2]",
                "spec.sites[3].blueprint.site.name"
            ]
        );
    }
}
