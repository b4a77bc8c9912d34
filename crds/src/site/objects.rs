//! The fabbrica objects a site blueprint declares: one Factory, one Workspace
//! per tenant and each tenant's starter JupyterEnvironment. Pure: the renderer
//! serializes them into the GitOps repository.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::plan::Plan;
use super::spec::{FabricGeneration, SiteBlueprint};
use super::validate::{FIRST_TENANT_KEY, TENANT_KEYS};
use crate::v1alpha1::{
    Fabric, FabricPartition, FabricType, Factory, FactorySpec, GpuPool, GpuQuota, HomeVolume,
    IdleCulling, JupyterEnvironment, JupyterEnvironmentSpec, LinkSpeed, Maintenance,
    NotebookResources, PartitionKeyRange, PoolTaint, StorageMount, StorageRole, TaintEffect,
    Tenant, Topology, TopologySource, Workspace, WorkspaceSpec,
};

/// The one GPU pool a blueprint's Factory declares; notebook profiles name it.
pub const POOL: &str = "gpu";
/// The node label the GPU Operator's feature discovery puts on GPU nodes.
const GPU_NODE_LABEL: &str = "nvidia.com/gpu.present";

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

fn key(n: u16) -> String {
    format!("0x{n:04X}")
}

/// Builds the objects of a validated blueprint.
pub fn build(blueprint: &SiteBlueprint, plan: &Plan) -> SiteObjects {
    let spec = &blueprint.spec;
    let site = &spec.site.name;
    let factory = Factory::new(
        site,
        FactorySpec {
            site: spec.site.clone(),
            gpu_pools: vec![GpuPool {
                name: POOL.to_owned(),
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
                maintenance: Some(Maintenance {
                    max_unavailable: IntOrString::Int(plan.rack_layout.nodes_per_rack.max(1) as i32),
                }),
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
                },
                partition_keys: Some(PartitionKeyRange {
                    first: key(TENANT_KEYS.0),
                    last: key(TENANT_KEYS.1),
                }),
            },
            storage_tiers: spec.storage.tiers.clone(),
            notebooks: spec.notebooks.clone(),
        },
    );
    let mut workspaces = Vec::new();
    let mut notebooks = Vec::new();
    for (i, tenant) in spec.tenants.iter().enumerate() {
        workspaces.push(Workspace::new(
            &tenant.name,
            WorkspaceSpec {
                factory: site.clone(),
                tenant: Tenant {
                    name: tenant.display_name.clone(),
                    kind: tenant.kind,
                },
                members: tenant.members.clone(),
                namespace: tenant.name.clone(),
                gpu_quota: vec![GpuQuota {
                    pool: POOL.to_owned(),
                    gpus: tenant.gpus,
                }],
                storage_quota: tenant.storage.clone(),
                fabric_partition: Some(FabricPartition {
                    key: key(FIRST_TENANT_KEY + i as u16),
                }),
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
                        pool: POOL.to_owned(),
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
