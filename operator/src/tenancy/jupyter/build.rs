//! The desired children of a JupyterEnvironment. Pure: no client, no clock, no randomness (the
//! token is passed in).

use std::collections::BTreeMap;

use fabbrica_crds::labels;
use fabbrica_crds::names::storage_class_name;
use fabbrica_crds::v1alpha1::{StorageMount, StorageRole};
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    HTTPGetAction, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, Secret, SecretKeySelector, SecurityContext, Service,
    ServicePort, ServiceSpec, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::validate::ValidatedEnvironment;
use crate::reconcile::children;
use crate::tenancy::tolerations;

/// The notebook server's port.
pub const PORT: i32 = 8888;
/// The key of the token in the token Secret.
pub const TOKEN_KEY: &str = "token";
/// Where the home volume is mounted.
pub const HOME: &str = "/home/jovyan";
/// The user notebooks run as (the Jupyter Docker Stacks' `jovyan`).
pub const USER: i64 = 1000;
/// The group owning the volumes (`users`).
pub const GROUP: i64 = 100;
/// The size of the claim behind an extra mount: the mount API has no size, and shared-filesystem
/// tiers (Lustre, Weka, GPFS) do not enforce claim sizes, so the claim is nominal.
pub const MOUNT_CLAIM_SIZE: &str = "1Gi";
/// The standard name label.
const APP_NAME: &str = "app.kubernetes.io/name";
/// The standard instance label.
const APP_INSTANCE: &str = "app.kubernetes.io/instance";

/// The token Secret: `<name>-token`.
pub fn token_secret_name(environment: &str) -> String {
    format!("{environment}-token")
}

/// The home claim: `<name>-home`.
pub fn home_claim_name(environment: &str) -> String {
    format!("{environment}-home")
}

/// The claim behind an extra mount: `<name>-data-<tier>`.
pub fn mount_claim_name(environment: &str, tier: &str) -> String {
    format!("{environment}-data-{tier}")
}

/// The notebook's address inside the cluster.
pub fn url(environment: &str, namespace: &str) -> String {
    format!("http://{environment}.{namespace}.svc:{PORT}")
}

/// Every child of an admitted environment but its token Secret, built at once (the token is
/// random and created once, in [`super::apply`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    /// The home claim and one claim per extra mount.
    pub claims: Vec<PersistentVolumeClaim>,
    /// The notebook's Service.
    pub service: Service,
    /// The NetworkPolicy admitting the namespace only.
    pub network_policy: NetworkPolicy,
    /// The notebook server.
    pub stateful_set: StatefulSet,
}

/// Builds the children of an admitted environment.
pub fn build(env: &ValidatedEnvironment) -> Desired {
    let mut claims = vec![build_home_claim(env)];
    claims.extend(build_mount_claims(env));
    Desired {
        claims,
        service: build_service(env),
        network_policy: build_network_policy(env),
        stateful_set: build_stateful_set(env),
    }
}

/// Labels that select the environment's Pods.
pub fn selector_labels(env: &ValidatedEnvironment) -> BTreeMap<String, String> {
    BTreeMap::from([
        (APP_NAME.to_owned(), "jupyter".to_owned()),
        (labels::ENVIRONMENT.to_owned(), env.name.clone()),
    ])
}

/// Labels every child carries.
pub fn child_labels(env: &ValidatedEnvironment) -> BTreeMap<String, String> {
    let mut labels = selector_labels(env);
    labels.extend(children::child_labels([
        (APP_INSTANCE, env.name.as_str()),
        (labels::FACTORY, env.factory.as_str()),
    ]));
    labels
}

fn meta(env: &ValidatedEnvironment, name: String, owned: bool) -> ObjectMeta {
    let owner = owned.then_some(&env.owner);
    children::child_meta(name, Some(&env.namespace), child_labels(env), owner)
}

/// The Secret holding the notebook's access token; created once, never rewritten.
pub fn build_token_secret(env: &ValidatedEnvironment, token: &str) -> Secret {
    Secret {
        metadata: meta(env, token_secret_name(&env.name), true),
        string_data: Some(BTreeMap::from([(TOKEN_KEY.to_owned(), token.to_owned())])),
        type_: Some("Opaque".to_owned()),
        ..Secret::default()
    }
}

fn claim(
    env: &ValidatedEnvironment,
    name: String,
    owned: bool,
    tier: &str,
    mode: &str,
    size: Quantity,
) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: meta(env, name, owned),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec![mode.to_owned()]),
            storage_class_name: Some(storage_class_name(&env.factory, tier)),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_owned(), size)])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

/// The home claim on the chosen tier; owned by the environment (and so deleted with it) only when
/// `home.keepOnDelete` is false.
pub fn build_home_claim(env: &ValidatedEnvironment) -> PersistentVolumeClaim {
    let home = &env.spec.home;
    claim(
        env,
        home_claim_name(&env.name),
        !home.keep_on_delete,
        &home.tier,
        "ReadWriteOnce",
        home.size.clone(),
    )
}

/// Whether a mount is read-only: asked so, or on a datasets tier.
pub fn read_only(env: &ValidatedEnvironment, mount: &StorageMount) -> bool {
    mount.read_only
        || env
            .tiers
            .iter()
            .any(|t| t.name == mount.tier && t.role == StorageRole::Datasets)
}

/// One claim per extra mount, owned by the environment.
pub fn build_mount_claims(env: &ValidatedEnvironment) -> Vec<PersistentVolumeClaim> {
    env.spec
        .mounts
        .iter()
        .map(|mount| {
            let mode = if read_only(env, mount) {
                "ReadOnlyMany"
            } else {
                "ReadWriteMany"
            };
            let name = mount_claim_name(&env.name, &mount.tier);
            claim(
                env,
                name,
                true,
                &mount.tier,
                mode,
                Quantity(MOUNT_CLAIM_SIZE.to_owned()),
            )
        })
        .collect()
}

/// The `jupyter lab` arguments: listen on every address of the Pod, serve the home folder, cull
/// idle kernels and shut the server down after `idleCulling.timeoutMinutes` without activity.
pub fn jupyter_args(env: &ValidatedEnvironment) -> Vec<String> {
    let mut args = vec![
        "lab".to_owned(),
        "--ip=0.0.0.0".to_owned(),
        format!("--port={PORT}"),
        "--no-browser".to_owned(),
        format!("--ServerApp.root_dir={HOME}"),
    ];
    let minutes = env.spec.idle_culling.timeout_minutes;
    if minutes > 0 {
        let seconds = u64::from(minutes) * 60;
        args.extend([
            format!("--MappingKernelManager.cull_idle_timeout={seconds}"),
            "--MappingKernelManager.cull_interval=60".to_owned(),
            "--MappingKernelManager.cull_connected=True".to_owned(),
            format!("--ServerApp.shutdown_no_activity_timeout={seconds}"),
        ]);
    }
    args
}

/// Requests and limits of the notebook container: the profile's CPU, memory and GPUs. Limits equal
/// requests, so the notebook is Guaranteed and never takes more than its quota counted.
pub fn build_resources(env: &ValidatedEnvironment) -> ResourceRequirements {
    let profile = &env.spec.profile;
    let mut amounts = BTreeMap::from([
        ("cpu".to_owned(), profile.cpu.clone()),
        ("memory".to_owned(), profile.memory.clone()),
    ]);
    if profile.gpus > 0 {
        amounts.insert(
            labels::GPU_RESOURCE.to_owned(),
            Quantity(profile.gpus.to_string()),
        );
    }
    ResourceRequirements {
        requests: Some(amounts.clone()),
        limits: Some(amounts),
        ..ResourceRequirements::default()
    }
}

/// The notebook server: one replica of the catalog image on the profile's pool, with the pool's
/// tolerations, the token from its Secret, the home and extra volumes, and the `restricted` Pod
/// Security profile.
pub fn build_stateful_set(env: &ValidatedEnvironment) -> StatefulSet {
    let mut mounts = vec![
        VolumeMount {
            name: "home".to_owned(),
            mount_path: HOME.to_owned(),
            ..VolumeMount::default()
        },
        VolumeMount {
            name: "shm".to_owned(),
            mount_path: "/dev/shm".to_owned(),
            ..VolumeMount::default()
        },
    ];
    let claim_volume = |name: &str, claim: String, read_only: bool| Volume {
        name: name.to_owned(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: claim,
            read_only: read_only.then_some(true),
        }),
        ..Volume::default()
    };
    let mut volumes = vec![
        claim_volume("home", home_claim_name(&env.name), false),
        // PyTorch data loaders share tensors through /dev/shm; the container default is 64 MiB.
        Volume {
            name: "shm".to_owned(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".to_owned()),
                ..EmptyDirVolumeSource::default()
            }),
            ..Volume::default()
        },
    ];
    for mount in &env.spec.mounts {
        let name = format!("data-{}", mount.tier);
        let read_only = read_only(env, mount);
        mounts.push(VolumeMount {
            name: name.clone(),
            mount_path: mount.mount_path.clone(),
            read_only: read_only.then_some(true),
            ..VolumeMount::default()
        });
        volumes.push(claim_volume(
            &name,
            mount_claim_name(&env.name, &mount.tier),
            read_only,
        ));
    }
    let token = EnvVar {
        name: "JUPYTER_TOKEN".to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: token_secret_name(&env.name),
                key: TOKEN_KEY.to_owned(),
                optional: None,
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    };
    let home = EnvVar {
        name: "HOME".to_owned(),
        value: Some(HOME.to_owned()),
        ..EnvVar::default()
    };
    let container = Container {
        name: "notebook".to_owned(),
        image: Some(env.image.clone()),
        command: Some(vec!["jupyter".to_owned()]),
        args: Some(jupyter_args(env)),
        env: Some(vec![token, home]),
        ports: Some(vec![ContainerPort {
            name: Some("http".to_owned()),
            container_port: PORT,
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        resources: Some(build_resources(env)),
        volume_mounts: Some(mounts),
        working_dir: Some(HOME.to_owned()),
        readiness_probe: Some(Probe {
            // The server's version endpoint answers without the token.
            http_get: Some(HTTPGetAction {
                path: Some("/api".to_owned()),
                port: IntOrString::String("http".to_owned()),
                ..HTTPGetAction::default()
            }),
            period_seconds: Some(10),
            ..Probe::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Capabilities::default()
            }),
            run_as_non_root: Some(true),
            run_as_user: Some(USER),
            seccomp_profile: Some(runtime_default()),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };
    let node_selector = BTreeMap::from([
        (labels::FACTORY.to_owned(), env.factory.clone()),
        (labels::POOL.to_owned(), env.pool.name.clone()),
    ]);
    let tolerations = tolerations(&env.pool);
    let pod = PodSpec {
        containers: vec![container],
        volumes: Some(volumes),
        node_selector: Some(node_selector),
        tolerations: (!tolerations.is_empty()).then_some(tolerations),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(USER),
            run_as_group: Some(GROUP),
            fs_group: Some(GROUP),
            seccomp_profile: Some(runtime_default()),
            ..PodSecurityContext::default()
        }),
        ..PodSpec::default()
    };
    StatefulSet {
        metadata: meta(env, env.name.clone(), true),
        spec: Some(StatefulSetSpec {
            // Zero while the workspace's allocation is closed (used up or over).
            replicas: Some(if env.stopped { 0 } else { 1 }),
            service_name: Some(env.name.clone()),
            selector: LabelSelector {
                match_labels: Some(selector_labels(env)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(child_labels(env)),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".to_owned(),
        ..SeccompProfile::default()
    }
}

/// The ClusterIP Service on port 8888 that the URL names.
pub fn build_service(env: &ValidatedEnvironment) -> Service {
    Service {
        metadata: meta(env, env.name.clone(), true),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(selector_labels(env)),
            ports: Some(vec![ServicePort {
                name: Some("http".to_owned()),
                port: PORT,
                target_port: Some(IntOrString::String("http".to_owned())),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// Ingress to the notebook's port from the workspace's own namespace only.
pub fn build_network_policy(env: &ValidatedEnvironment) -> NetworkPolicy {
    NetworkPolicy {
        metadata: meta(env, env.name.clone(), true),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(env)),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".to_owned()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    pod_selector: Some(LabelSelector::default()),
                    ..NetworkPolicyPeer::default()
                }]),
                ports: Some(vec![NetworkPolicyPort {
                    protocol: Some("TCP".to_owned()),
                    port: Some(IntOrString::Int(PORT)),
                    ..NetworkPolicyPort::default()
                }]),
            }]),
            ..NetworkPolicySpec::default()
        }),
    }
}

#[cfg(test)]
mod tests;
