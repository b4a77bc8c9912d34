//! A new site's blueprint with sound defaults for its tier: storage tiers sized
//! per GPU, a first set of tenants with quotas, a notebook catalog and a PUE.

use std::collections::BTreeMap;

use fabbrica_crds::catalog;
use fabbrica_crds::v1alpha1::{
    GpuSystem, NotebookCatalog, NotebookImage, NotebookProfile, ReclaimPolicy, Site, SiteTier,
    StorageQuota, StorageRole, StorageTier, TenantKind,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::conventions::BLUEPRINT_POOL;
use crate::spec::{
    Compute, ComputeFabric, FabricGeneration, Facility, SiteBlueprint, SiteBlueprintSpec,
    StarterNotebook, Storage, TenantSpec,
};

/// What `fabbrica blueprint new` is asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct NewSite {
    /// Site name, a DNS label.
    pub name: String,
    /// ISO 3166-1 alpha-2 country code.
    pub country: String,
    /// AI Factory or Gigafactory.
    pub tier: SiteTier,
    /// Target GPUs.
    pub gpus: u32,
    /// GPU system.
    pub system: GpuSystem,
    /// Fabric generation; by default NDR for an AI Factory and XDR for a Gigafactory,
    /// whose 100,000 GPUs exceed what three tiers of 64-port NDR switches connect.
    pub generation: Option<FabricGeneration>,
}

/// Usable TiB per GPU of each tier: (name, role, CSI driver, TiB per GPU, reclaim policy).
/// Scratch is fast flash sized for checkpoints; project and datasets hold a few TiB of
/// data per GPU; archive is the capacity tier and keeps its volumes.
const TIERS: [(&str, StorageRole, &str, u64, ReclaimPolicy); 4] = [
    (
        "scratch",
        StorageRole::Scratch,
        "csi.weka.io",
        2,
        ReclaimPolicy::Delete,
    ),
    (
        "project",
        StorageRole::Project,
        "csi.weka.io",
        4,
        ReclaimPolicy::Retain,
    ),
    (
        "datasets",
        StorageRole::Datasets,
        "csi.weka.io",
        4,
        ReclaimPolicy::Retain,
    ),
    (
        "archive",
        StorageRole::Archive,
        "cephfs.csi.ceph.com",
        16,
        ReclaimPolicy::Retain,
    ),
];

/// Day-one tenants: (name, display name, kind, per mille of the site's GPUs).
/// EuroHPC AI Factories reserve capacity for research, start-ups, SMEs and the public sector.
const TENANTS: [(&str, &str, TenantKind, u64); 4] = [
    ("research", "Research consortium", TenantKind::Research, 400),
    ("startups", "Start-up programme", TenantKind::Startup, 200),
    ("smes", "SME programme", TenantKind::Sme, 100),
    (
        "public-sector",
        "Public administrations",
        TenantKind::PublicBody,
        50,
    ),
];

/// A capacity in the largest binary unit that keeps it whole: `512Ti`, `4Pi`.
pub fn tebibytes(tib: u64) -> Quantity {
    Quantity(if tib >= 1024 && tib.is_multiple_of(1024) {
        format!("{}Pi", tib / 1024)
    } else {
        format!("{tib}Ti")
    })
}

/// Rounds up to a whole PiB past 1 PiB, so capacities read as people order them.
fn round_tib(tib: u64) -> u64 {
    if tib > 1024 {
        tib.div_ceil(1024) * 1024
    } else {
        tib.max(1)
    }
}

/// The blueprint of a new site.
pub fn new_site(site: &NewSite) -> SiteBlueprint {
    let system = catalog::system(site.system);
    let generation = site.generation.unwrap_or(match site.tier {
        SiteTier::AiFactory => FabricGeneration::Ndr,
        SiteTier::Gigafactory => FabricGeneration::Xdr,
    });
    let gpus =
        u64::from(site.gpus.div_ceil(system.gpus_per_node)) * u64::from(system.gpus_per_node);
    let tiers: Vec<StorageTier> = TIERS
        .iter()
        .map(|(name, role, provisioner, per_gpu, reclaim)| StorageTier {
            name: (*name).to_owned(),
            role: *role,
            provisioner: (*provisioner).to_owned(),
            parameters: BTreeMap::from([("filesystemName".to_owned(), (*name).to_owned())]),
            reclaim_policy: *reclaim,
            capacity: tebibytes(round_tib(gpus * per_gpu)),
        })
        .collect();
    let tenants = TENANTS
        .iter()
        .map(|(name, display, kind, per_mille)| {
            let share = |tib: u64| tebibytes((tib * per_mille / 1000).max(1));
            TenantSpec {
                name: (*name).to_owned(),
                display_name: (*display).to_owned(),
                kind: *kind,
                // Every tenant gets at least one GPU, for its starter notebook.
                gpus: (gpus * per_mille / 1000).max(1) as u32,
                storage: ["scratch", "project"]
                    .iter()
                    .zip([2, 4])
                    .map(|(tier, per_gpu)| StorageQuota {
                        tier: (*tier).to_owned(),
                        capacity: share(round_tib(gpus * per_gpu)),
                    })
                    .collect(),
                members: Vec::new(),
                notebook: Some(StarterNotebook {
                    image: "pytorch".to_owned(),
                    gpus: 1,
                    cpu: Quantity("8".to_owned()),
                    memory: Quantity("64Gi".to_owned()),
                    home_tier: "project".to_owned(),
                    home_size: Quantity("100Gi".to_owned()),
                    mounts: BTreeMap::from([("datasets".to_owned(), "/datasets".to_owned())]),
                }),
                allocation: None,
            }
        })
        .collect();
    let notebooks = NotebookCatalog {
        images: vec![
            NotebookImage {
                name: "pytorch".to_owned(),
                image: "nvcr.io/nvidia/pytorch:24.10-py3".to_owned(),
                description: "NVIDIA PyTorch container with CUDA, NCCL and JupyterLab".to_owned(),
            },
            NotebookImage {
                name: "scipy".to_owned(),
                image: "quay.io/jupyter/scipy-notebook:2024-10-07".to_owned(),
                description: "Jupyter SciPy stack for data preparation, no GPU".to_owned(),
            },
        ],
        profiles: vec![
            NotebookProfile {
                name: "one-gpu".to_owned(),
                pool: BLUEPRINT_POOL.to_owned(),
                gpus: 1,
                cpu: Quantity("16".to_owned()),
                memory: Quantity("128Gi".to_owned()),
            },
            NotebookProfile {
                name: "full-node".to_owned(),
                pool: BLUEPRINT_POOL.to_owned(),
                gpus: system.gpus_per_node,
                cpu: Quantity("96".to_owned()),
                memory: Quantity("1Ti".to_owned()),
            },
        ],
    };
    SiteBlueprint::new(SiteBlueprintSpec {
        site: Site {
            name: site.name.clone(),
            country: site.country.clone(),
            tier: site.tier,
        },
        compute: Compute {
            system: site.system,
            gpus: site.gpus,
            nodes_per_scalable_unit: None,
        },
        compute_fabric: ComputeFabric {
            generation,
            switch: None,
            blocking_factor: 1,
        },
        storage: Storage { tiers },
        tenants,
        notebooks,
        // Gigafactories are built liquid-cooled from the start; AI Factories often reuse halls.
        facility: Facility {
            pue: match site.tier {
                SiteTier::AiFactory => 1.3,
                SiteTier::Gigafactory => 1.15,
            },
        },
        cells: None,
    })
}
