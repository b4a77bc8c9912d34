//! Validation of a site blueprint: every problem at once, each with its field
//! path and what would be valid. What it accepts is a [`ValidBlueprint`], the
//! only input the sizing and the objects take.

use std::collections::{BTreeMap, BTreeSet};

use fabbrica_crds::catalog::{self, SystemSpec};
use fabbrica_crds::quantity;
use fabbrica_crds::validation::{Problem, Problems};

use crate::cells::{self, Cell, DEFAULT_MAX_NODES, LimitTooSmall};
use crate::conventions::{BLUEPRINT_POOL, MAX_TENANTS};
use crate::fat_tree::FatTree;
use crate::spec::{API_VERSION, KIND, SiteBlueprint, SiteBlueprintSpec};
use crate::switches::{self, SwitchSpec};

/// A blueprint [`validate`] accepted, with what checking it looked up: the GPU
/// system, the compute fabric's switch and its fat tree. Sizing and building
/// take only this, so a blueprint is checked and its fabric sized once.
#[derive(Clone, Debug)]
pub struct ValidBlueprint<'a> {
    blueprint: &'a SiteBlueprint,
    system: &'static SystemSpec,
    switch: &'static SwitchSpec,
    tree: FatTree,
}

impl<'a> ValidBlueprint<'a> {
    /// The blueprint as written.
    pub fn blueprint(&self) -> &'a SiteBlueprint {
        self.blueprint
    }

    /// The blueprint's inputs.
    pub fn spec(&self) -> &'a SiteBlueprintSpec {
        &self.blueprint.spec
    }

    /// The catalog entry of the site's GPU system.
    pub fn system(&self) -> &'static SystemSpec {
        self.system
    }

    /// The catalog entry of the compute fabric's switch.
    pub fn switch(&self) -> &'static SwitchSpec {
        self.switch
    }

    /// The compute fabric's fat tree.
    pub fn tree(&self) -> &FatTree {
        &self.tree
    }

    /// The most GPU Nodes one cluster cell holds: the blueprint's `spec.cells.maxNodes`, or
    /// [`DEFAULT_MAX_NODES`].
    pub fn max_nodes(&self) -> u32 {
        self.spec()
            .cells
            .as_ref()
            .map_or(DEFAULT_MAX_NODES, |c| c.max_nodes)
    }

    /// The site's cluster cells under `max_nodes` (see [`crate::cells`]).
    pub fn cells(&self, max_nodes: u32) -> Result<Vec<Cell>, LimitTooSmall> {
        cells::split(
            &self.spec().site.name,
            &self.tree,
            self.system.gpus_per_node,
            self.system.nodes_per_rack,
            max_nodes,
        )
    }
}

fn push(p: &mut Vec<Problem>, path: impl Into<String>, message: impl Into<String>) {
    p.push(Problem {
        path: path.into(),
        message: message.into(),
    });
}

fn dns_label(text: &str) -> bool {
    let bytes = text.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

fn check_label(text: &str, path: String, p: &mut Vec<Problem>) {
    if !dns_label(text) {
        push(
            p,
            path,
            format!(
                "{text:?} is not a DNS label; valid: 1 to 63 of a-z, 0-9 and '-', not starting or ending with '-'"
            ),
        );
    }
}

/// Bytes of a quantity, with a problem when it is none.
fn bytes(text: &str, path: String, p: &mut Vec<Problem>) -> Option<f64> {
    // Kubernetes counts bytes in a signed 64-bit integer: 8Ei is beyond any quota or volume.
    const MAX_BYTES: f64 = 9_223_372_036_854_775_807.0;
    match quantity::parse(text) {
        Some(v) if v > 0.0 && v <= MAX_BYTES => Some(v),
        Some(v) if v > MAX_BYTES => {
            push(
                p,
                path,
                format!("{text:?} is more bytes than Kubernetes counts; valid: at most 8Ei"),
            );
            None
        }
        _ => {
            push(
                p,
                path,
                format!("{text:?} is not a positive quantity; valid: e.g. 500Ti, 2Pi"),
            );
            None
        }
    }
}

/// Checks a blueprint; what it accepts, `plan` and the renderers can use as it is.
pub fn validate(blueprint: &SiteBlueprint) -> Result<ValidBlueprint<'_>, Problems> {
    let mut p = Vec::new();
    if blueprint.api_version != API_VERSION {
        push(
            &mut p,
            "apiVersion",
            format!(
                "{:?} is not supported; valid: {API_VERSION}",
                blueprint.api_version
            ),
        );
    }
    if blueprint.kind != KIND {
        push(
            &mut p,
            "kind",
            format!(
                "{:?} is not a site blueprint; valid: {KIND}",
                blueprint.kind
            ),
        );
    }
    let spec = &blueprint.spec;
    check_label(&spec.site.name, "spec.site.name".into(), &mut p);
    if !(spec.site.country.len() == 2 && spec.site.country.bytes().all(|b| b.is_ascii_uppercase()))
    {
        push(
            &mut p,
            "spec.site.country",
            format!(
                "{:?} is not an ISO 3166-1 alpha-2 code; valid: e.g. IT, DE, FI",
                spec.site.country
            ),
        );
    }

    let system = catalog::system(spec.compute.system);
    let fabric = &spec.compute_fabric;
    let switch_id = fabric
        .switch
        .as_deref()
        .unwrap_or(fabric.generation.default_switch());
    let switch = switches::switch(switch_id);
    match switch {
        None => push(
            &mut p,
            "spec.computeFabric.switch",
            format!(
                "no switch {switch_id:?} in blueprints/catalog/switches.yaml; valid: {}",
                switches::switches()
                    .iter()
                    .map(|s| s.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        Some(s) if s.port_gbps != fabric.generation.gbps() => push(
            &mut p,
            "spec.computeFabric.switch",
            format!(
                "{} has {} Gb/s ports but the fabric is {} ({} Gb/s); valid: {}",
                s.id,
                s.port_gbps,
                fabric.generation.as_str(),
                fabric.generation.gbps(),
                fabric.generation.default_switch()
            ),
        ),
        Some(_) => {}
    }
    if !(1..=4).contains(&fabric.blocking_factor) {
        push(
            &mut p,
            "spec.computeFabric.blockingFactor",
            format!(
                "{} is out of range; valid: 1 (non-blocking) to 4",
                fabric.blocking_factor
            ),
        );
    }
    if spec.compute.gpus == 0 {
        push(&mut p, "spec.compute.gpus", "0 GPUs; valid: at least 1");
    }
    let mut tree = None;
    if let Some(switch) = switch
        && (1..=4).contains(&fabric.blocking_factor)
        && spec.compute.gpus > 0
    {
        let n = spec
            .compute
            .nodes_per_scalable_unit
            .unwrap_or(switch.ports / 2);
        let max = switch.ports * fabric.blocking_factor / (fabric.blocking_factor + 1);
        if n == 0
            || u64::from(n) + u64::from(n.div_ceil(fabric.blocking_factor))
                > u64::from(switch.ports)
        {
            push(
                &mut p,
                "spec.compute.nodesPerScalableUnit",
                format!(
                    "{n} nodes per unit leave no room for uplinks on a {}-port {} with blocking factor {}; valid: 1 to {max}",
                    switch.ports, switch.id, fabric.blocking_factor
                ),
            );
        } else {
            let nodes = spec.compute.gpus.div_ceil(system.gpus_per_node);
            match FatTree::size(
                nodes,
                n,
                system.compute_rails,
                switch.ports,
                fabric.blocking_factor,
            ) {
                Ok(sized) => match crate::sizing::support_fabrics_fit(system, nodes) {
                    Ok(()) => tree = Some(sized),
                    Err(message) => push(&mut p, "spec.compute.gpus", message),
                },
                Err(too_large) => {
                    let max_gpus = too_large.max_nodes * u64::from(system.gpus_per_node);
                    push(
                        &mut p,
                        "spec.compute.gpus",
                        format!(
                            "{} GPUs ({nodes} nodes of {} rails) need more than three tiers of {}-port switches; valid: at most {max_gpus} GPUs on {}, or a larger switch (computeFabric.generation: xdr)",
                            spec.compute.gpus, system.compute_rails, switch.ports, switch.id
                        ),
                    );
                }
            }
        }
    }

    let mut tiers = BTreeMap::new();
    for (i, tier) in spec.storage.tiers.iter().enumerate() {
        check_label(&tier.name, format!("spec.storage.tiers[{i}].name"), &mut p);
        if tiers.contains_key(tier.name.as_str()) {
            push(
                &mut p,
                format!("spec.storage.tiers[{i}].name"),
                format!(
                    "duplicate tier name {:?}; tier names must be unique",
                    tier.name
                ),
            );
        }
        if tier.provisioner.is_empty() {
            push(
                &mut p,
                format!("spec.storage.tiers[{i}].provisioner"),
                "empty; valid: a CSI driver name such as csi.weka.io",
            );
        }
        let capacity = bytes(
            &tier.capacity.0,
            format!("spec.storage.tiers[{i}].capacity"),
            &mut p,
        );
        tiers.entry(tier.name.as_str()).or_insert(capacity);
    }
    if spec.storage.tiers.is_empty() {
        push(
            &mut p,
            "spec.storage.tiers",
            "no storage tiers; valid: at least one (scratch, project, datasets, archive)",
        );
    }
    let tier_names = || {
        spec.storage
            .tiers
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (i, profile) in spec.notebooks.profiles.iter().enumerate() {
        if profile.pool != BLUEPRINT_POOL {
            push(
                &mut p,
                format!("spec.notebooks.profiles[{i}].pool"),
                format!(
                    "no pool {:?}; a blueprint's Factory has one pool; valid: {BLUEPRINT_POOL}",
                    profile.pool
                ),
            );
        }
    }

    let images: BTreeSet<_> = spec
        .notebooks
        .images
        .iter()
        .map(|i| i.name.as_str())
        .collect();
    let gpus = u64::from(spec.compute.gpus.div_ceil(system.gpus_per_node))
        * u64::from(system.gpus_per_node);
    let mut granted_gpus = 0u64;
    let mut granted: BTreeMap<&str, f64> = BTreeMap::new();
    let mut names = BTreeSet::new();
    let keys = MAX_TENANTS;
    if spec.tenants.len() > keys {
        push(
            &mut p,
            "spec.tenants",
            format!(
                "{} tenants but {keys} partition keys; valid: at most {keys} tenants",
                spec.tenants.len()
            ),
        );
    }
    for (i, tenant) in spec.tenants.iter().enumerate() {
        let at = format!("spec.tenants[{i}]");
        check_label(&tenant.name, format!("{at}.name"), &mut p);
        if !names.insert(tenant.name.as_str()) {
            push(
                &mut p,
                format!("{at}.name"),
                format!(
                    "duplicate tenant name {:?}; each tenant gets its own workspace and namespace",
                    tenant.name
                ),
            );
        }
        if tenant.display_name.trim().is_empty() {
            push(
                &mut p,
                format!("{at}.displayName"),
                "empty; valid: the tenant's name as people write it",
            );
        }
        granted_gpus += u64::from(tenant.gpus);
        let mut quota_tiers = BTreeSet::new();
        for (j, q) in tenant.storage.iter().enumerate() {
            match tiers.get(q.tier.as_str()) {
                None => push(
                    &mut p,
                    format!("{at}.storage[{j}].tier"),
                    format!("no storage tier {:?}; valid: {}", q.tier, tier_names()),
                ),
                Some(_) => {
                    quota_tiers.insert(q.tier.as_str());
                }
            }
            if let Some(b) = bytes(&q.capacity.0, format!("{at}.storage[{j}].capacity"), &mut p) {
                *granted.entry(q.tier.as_str()).or_default() += b;
            }
        }
        if let Some(nb) = &tenant.notebook {
            if !images.contains(nb.image.as_str()) {
                push(
                    &mut p,
                    format!("{at}.notebook.image"),
                    format!(
                        "no image {:?} in spec.notebooks.images; valid: {}",
                        nb.image,
                        images.iter().copied().collect::<Vec<_>>().join(", ")
                    ),
                );
            }
            if nb.gpus > tenant.gpus {
                push(
                    &mut p,
                    format!("{at}.notebook.gpus"),
                    format!(
                        "{} GPUs exceed the tenant's {}; valid: 0 to {}",
                        nb.gpus, tenant.gpus, tenant.gpus
                    ),
                );
            }
            if !quota_tiers.contains(nb.home_tier.as_str()) {
                push(
                    &mut p,
                    format!("{at}.notebook.homeTier"),
                    format!(
                        "the tenant has no storage quota on tier {:?}; valid: {}",
                        nb.home_tier,
                        quota_tiers.iter().copied().collect::<Vec<_>>().join(", ")
                    ),
                );
            }
            bytes(&nb.home_size.0, format!("{at}.notebook.homeSize"), &mut p);
            for tier in nb.mounts.keys() {
                if !tiers.contains_key(tier.as_str()) {
                    push(
                        &mut p,
                        format!("{at}.notebook.mounts.{tier}"),
                        format!("no storage tier {tier:?}; valid: {}", tier_names()),
                    );
                }
            }
        }
    }
    if granted_gpus > gpus {
        push(
            &mut p,
            "spec.tenants",
            format!(
                "tenants are granted {granted_gpus} GPUs in total but the site has {gpus}; valid: at most {gpus}"
            ),
        );
    }
    for (i, tier) in spec.storage.tiers.iter().enumerate() {
        if let (Some(Some(capacity)), Some(total)) = (
            tiers.get(tier.name.as_str()),
            granted.get(tier.name.as_str()),
        ) && total > capacity
        {
            push(
                &mut p,
                format!("spec.storage.tiers[{i}].capacity"),
                format!(
                    "{} is less than the {:.0} TiB tenants are granted on tier {:?}; valid: at least that much",
                    tier.capacity.0,
                    total / 1024f64.powi(4),
                    tier.name
                ),
            );
        }
    }
    if let (Some(cells), Some(tree)) = (&spec.cells, &tree) {
        if cells.max_nodes == 0 {
            push(
                &mut p,
                "spec.cells.maxNodes",
                "0 nodes per cluster; valid: at least 1 (5000 by default)",
            );
        } else if let Err(e) = cells::split(
            &spec.site.name,
            tree,
            system.gpus_per_node,
            system.nodes_per_rack,
            cells.max_nodes,
        ) {
            push(&mut p, "spec.cells.maxNodes", e.to_string());
        }
    }
    let pue = spec.facility.pue;
    if !(1.0..=3.0).contains(&pue) {
        push(
            &mut p,
            "spec.facility.pue",
            format!("{pue:?} is out of range; valid: 1.0 to 3.0"),
        );
    }
    // Every path that leaves the switch or the tree unknown has reported why.
    match (switch, tree) {
        (Some(switch), Some(tree)) if p.is_empty() => Ok(ValidBlueprint {
            blueprint,
            system,
            switch,
            tree,
        }),
        _ => Err(Problems(p)),
    }
}
