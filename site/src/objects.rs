//! The fabbrica objects a site blueprint declares: one Factory, one Workspace
//! per tenant and each tenant's starter JupyterEnvironment. Pure: the renderer
//! serializes them into the GitOps repository.

use std::collections::BTreeMap;

use fabbrica_crds::v1alpha1::{
    Fabric, FabricPartition, FabricType, Factory, FactorySpec, GpuPool, GpuQuota, HomeVolume,
    IdleCulling, JupyterEnvironment, JupyterEnvironmentSpec, LinkSpeed, MaintenancePolicy,
    NotebookResources, PartitionKeyRange, PoolTaint, StorageMount, StorageRole, TaintEffect,
    Tenant, Topology, TopologySource, Workspace, WorkspaceSpec,
};
use fabbrica_crds::validation::{Problems, validate_factory, validate_jupyter, validate_workspace};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::conventions::{
    BLUEPRINT_POOL, GPU_NODE_LABEL, TENANT_KEYS, partition_key, tenant_partition_key,
};
use crate::sizing::Plan;
use crate::spec::FabricGeneration;
use crate::validate::ValidBlueprint;

/// Everything a site declares to the operator.
#[derive(Clone, Debug)]
pub struct SiteObjects {
    /// The site's Factory.
    pub factory: Factory,
    /// One Workspace per tenant, in spec order.
    pub workspaces: Vec<Workspace>,
    /// Each tenant's starter notebook, for tenants that have one.
    pub notebooks: Vec<JupyterEnvironment>,
}

/// An object of the site that the operator would refuse.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// The Factory.
    #[error("the rendered Factory is not valid: {0}")]
    Factory(Problems),
    /// A Workspace.
    #[error("the rendered Workspace {name} is not valid: {problems}")]
    Workspace {
        /// The Workspace's name.
        name: String,
        /// Every problem.
        problems: Problems,
    },
    /// A notebook in a namespace no Workspace declares.
    #[error("no workspace for namespace {0}")]
    NoWorkspace(String),
    /// A starter notebook.
    #[error("the rendered JupyterEnvironment {namespace}/starter is not valid: {problems}")]
    Notebook {
        /// The notebook's namespace.
        namespace: String,
        /// Every problem.
        problems: Problems,
    },
}

impl SiteObjects {
    /// Checks the objects with the validation the operator runs, each against its peers.
    pub fn check(&self) -> Result<(), Refused> {
        let factory = &self.factory.spec;
        validate_factory(factory).map_err(Refused::Factory)?;
        let specs: Vec<_> = self
            .workspaces
            .iter()
            .map(|w| (w.metadata.name.as_deref().unwrap_or_default(), &w.spec))
            .collect();
        for (name, spec) in &specs {
            let others: Vec<_> = specs.iter().filter(|(n, _)| n != name).copied().collect();
            validate_workspace(spec, Some(factory), &others).map_err(|problems| {
                Refused::Workspace {
                    name: (*name).to_owned(),
                    problems,
                }
            })?;
        }
        for nb in &self.notebooks {
            let ns = nb.metadata.namespace.as_deref().unwrap_or_default();
            let workspace = specs
                .iter()
                .find(|(_, s)| s.namespace == ns)
                .map(|(_, s)| *s)
                .ok_or_else(|| Refused::NoWorkspace(ns.to_owned()))?;
            validate_jupyter(&nb.spec, factory, workspace).map_err(|problems| {
                Refused::Notebook {
                    namespace: ns.to_owned(),
                    problems,
                }
            })?;
        }
        Ok(())
    }
}

/// Builds the objects of a validated blueprint from its plan.
pub fn build(site: &ValidBlueprint<'_>, plan: &Plan) -> SiteObjects {
    let spec = site.spec();
    let site_name = &spec.site.name;
    let factory = Factory::new(
        site_name,
        FactorySpec {
            site: spec.site.clone(),
            gpu_pools: vec![GpuPool {
                name: BLUEPRINT_POOL.to_owned(),
                node_selector: BTreeMap::from([(GPU_NODE_LABEL.to_owned(), "true".to_owned())]),
                system: spec.compute.system,
                gpus_per_node: None,
                expected_nodes: plan.nodes,
                sharing: None,
                // Only workloads asking for GPUs land on GPU nodes.
                taints: vec![PoolTaint {
                    key: "nvidia.com/gpu".to_owned(),
                    value: None,
                    effect: TaintEffect::NoSchedule,
                }],
                // One rack's worth of nodes at a time, at least one.
                maintenance: Some(MaintenancePolicy {
                    max_unavailable: IntOrString::Int(plan.rack_layout.nodes_per_rack.max(1) as i32),
                }),
                validation: None,
            }],
            fabric: Fabric {
                type_: FabricType::Infiniband,
                rails_per_node: plan.compute_fabric.rails,
                link_speed: match spec.compute_fabric.generation {
                    FabricGeneration::Ndr => LinkSpeed::G400,
                    FabricGeneration::Xdr => LinkSpeed::G800,
                },
                topology: Topology {
                    source: TopologySource::NodeOrder,
                    nodes_per_scalable_unit: plan.nodes_per_scalable_unit,
                    scalable_units: Vec::new(),
                    scalable_unit_label: None,
                    discovery: None,
                },
                partition_keys: Some(PartitionKeyRange {
                    first: partition_key(TENANT_KEYS.0),
                    last: partition_key(TENANT_KEYS.1),
                }),
            },
            storage_tiers: spec.storage.tiers.clone(),
            notebooks: spec.notebooks.clone(),
            access_modes: Vec::new(),
        },
    );
    let mut workspaces = Vec::new();
    let mut notebooks = Vec::new();
    for (i, tenant) in spec.tenants.iter().enumerate() {
        workspaces.push(Workspace::new(
            &tenant.name,
            WorkspaceSpec {
                factory: site_name.clone(),
                tenant: Tenant {
                    name: tenant.display_name.clone(),
                    kind: tenant.kind,
                },
                members: tenant.members.clone(),
                namespace: tenant.name.clone(),
                gpu_quota: vec![GpuQuota {
                    pool: BLUEPRINT_POOL.to_owned(),
                    gpus: tenant.gpus,
                    borrowing_limit: 0,
                    lending_limit: None,
                }],
                storage_quota: tenant.storage.clone(),
                fabric_partition: Some(FabricPartition {
                    key: tenant_partition_key(i),
                }),
                queue: None,
                allocation: tenant.allocation.clone(),
            },
        ));
        if let Some(nb) = &tenant.notebook {
            let mounts = nb
                .mounts
                .iter()
                .map(|(tier, path)| StorageMount {
                    tier: tier.clone(),
                    mount_path: path.clone(),
                    read_only: spec
                        .storage
                        .tiers
                        .iter()
                        .any(|t| &t.name == tier && t.role == StorageRole::Datasets),
                })
                .collect();
            let mut jupyter = JupyterEnvironment::new(
                "starter",
                JupyterEnvironmentSpec {
                    image: nb.image.clone(),
                    profile: NotebookResources {
                        pool: BLUEPRINT_POOL.to_owned(),
                        gpus: nb.gpus,
                        cpu: nb.cpu.clone(),
                        memory: nb.memory.clone(),
                    },
                    home: HomeVolume {
                        tier: nb.home_tier.clone(),
                        size: nb.home_size.clone(),
                        keep_on_delete: true,
                    },
                    mounts,
                    idle_culling: IdleCulling::default(),
                },
            );
            jupyter.metadata.namespace = Some(tenant.name.clone());
            notebooks.push(jupyter);
        }
    }
    SiteObjects {
        factory,
        workspaces,
        notebooks,
    }
}
