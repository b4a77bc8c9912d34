//! Small Factory, Workspace and JupyterEnvironment fixtures for the unit tests.

use fabbrica_crds::v1alpha1::{Factory, JupyterEnvironment, Workspace};

use super::jupyter::validate::{ValidatedEnvironment, validate as validate_environment};
use super::workspace::validate::{ValidatedWorkspace, validate as validate_workspace};

/// A factory with a tainted, MIG-shared interactive pool and three tiers.
pub const FACTORY: &str = r#"
apiVersion: fabbrica.io/v1alpha1
kind: Factory
metadata: {name: lab, uid: factory-uid}
spec:
  site: {name: lab, country: IT, tier: aiFactory}
  gpuPools:
    - name: interactive
      nodeSelector: {node.fabbrica.io/role: interactive}
      system: dgx-h100
      expectedNodes: 2
      sharing: {mig: {profile: 1g.10gb}}
      taints:
        - {key: nvidia.com/gpu, value: present, effect: NoSchedule}
        - {key: fabbrica.io/interactive, effect: NoExecute}
    - name: training
      nodeSelector: {node.fabbrica.io/role: training}
      system: dgx-h100
      expectedNodes: 4
  fabric:
    type: infiniband
    railsPerNode: 8
    linkSpeed: 400G
    topology: {source: nodeOrder}
    partitionKeys: {first: "0x0100", last: "0x01FF"}
  storageTiers:
    - {name: scratch, role: scratch, provisioner: csi.weka.io, capacity: 1Pi}
    - {name: project, role: project, provisioner: lustre.csi.hpe.com, capacity: 2Pi}
    - {name: datasets, role: datasets, provisioner: lustre.csi.hpe.com, capacity: 1Pi}
  notebooks:
    images:
      - {name: pytorch, image: "nvcr.io/nvidia/pytorch:24.10-py3"}
    profiles:
      - {name: mig-small, pool: interactive, gpus: 2, cpu: "8", memory: 64Gi}
"#;

/// A workspace with two members, GPUs on both pools and two storage grants.
pub const WORKSPACE: &str = r#"
apiVersion: fabbrica.io/v1alpha1
kind: Workspace
metadata: {name: aurora, uid: workspace-uid, generation: 3}
spec:
  factory: lab
  tenant: {name: Aurora Robotics, kind: startup}
  members:
    - {name: giulia@aurora.example}
    - {kind: Group, name: "aurora:engineers"}
  namespace: ws-aurora
  gpuQuota:
    - {pool: interactive, gpus: 4}
    - {pool: training, gpus: 16}
  storageQuota:
    - {tier: project, capacity: 50Ti}
  fabricPartition: {key: "0x0101"}
"#;

/// A notebook with one MIG slice, a kept home and the datasets tier.
pub const ENVIRONMENT: &str = r#"
apiVersion: fabbrica.io/v1alpha1
kind: JupyterEnvironment
metadata: {name: giulia, namespace: ws-aurora, uid: environment-uid, generation: 1}
spec:
  image: pytorch
  profile: {pool: interactive, gpus: 1, cpu: "4", memory: 32Gi}
  home: {tier: project, size: 100Gi}
  mounts:
    - {tier: datasets, mountPath: /datasets}
  idleCulling: {timeoutMinutes: 120}
"#;

/// Parses a fixture.
pub fn parse<T: serde::de::DeserializeOwned>(yaml: &str) -> T {
    serde_saphyr::from_str(yaml).expect("fixture parses")
}

/// The fixture factory.
pub fn factory() -> Factory {
    parse(FACTORY)
}

/// The fixture workspace.
pub fn workspace() -> Workspace {
    parse(WORKSPACE)
}

/// The fixture workspace, validated.
pub fn validated_workspace() -> ValidatedWorkspace {
    validated_workspace_from(workspace())
}

/// A workspace, validated against the fixture factory.
pub fn validated_workspace_from(workspace: Workspace) -> ValidatedWorkspace {
    let none: [std::sync::Arc<Workspace>; 0] = [];
    validate_workspace(&workspace, Some(&factory()), &none).expect("fixture workspace is valid")
}

/// The fixture environment, validated.
pub fn validated_environment() -> ValidatedEnvironment {
    validated_environment_from(parse::<JupyterEnvironment>(ENVIRONMENT))
}

/// An environment, validated against the fixture workspace and factory.
pub fn validated_environment_from(env: JupyterEnvironment) -> ValidatedEnvironment {
    validate_environment(&env, &workspace(), &factory()).expect("fixture environment is valid")
}
