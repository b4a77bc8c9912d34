use fabbrica_crds::v1alpha1::JupyterEnvironment;
use k8s_openapi::api::core::v1::Toleration;
use serde_json::json;

use super::*;
use crate::tenancy::fixtures::{self, validated_environment, validated_environment_from};
use crate::tenancy::jupyter::validate::validate;

#[test]
fn stateful_set_runs_the_catalog_image_on_the_pool_with_its_gpus_and_tolerations() {
    let env = validated_environment();
    let sts = build_stateful_set(&env);
    let spec = sts.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(spec.service_name.as_deref(), Some("giulia"));
    let pod = spec.template.spec.as_ref().unwrap();
    let container = &pod.containers[0];
    assert_eq!(
        container.image.as_deref(),
        Some("nvcr.io/nvidia/pytorch:24.10-py3")
    );
    let resources = serde_json::to_value(&container.resources).unwrap();
    let expected = json!({"cpu": "4", "memory": "32Gi", "nvidia.com/gpu": "1"});
    assert_eq!(resources["requests"], expected);
    assert_eq!(resources["limits"], expected);
    assert_eq!(
        pod.node_selector.as_ref().unwrap(),
        &BTreeMap::from([
            ("fabbrica.io/factory".to_owned(), "lab".to_owned()),
            ("fabbrica.io/pool".to_owned(), "interactive".to_owned())
        ])
    );
    assert_eq!(
        pod.tolerations.as_deref().unwrap(),
        [
            Toleration {
                key: Some("nvidia.com/gpu".into()),
                operator: Some("Equal".into()),
                value: Some("present".into()),
                effect: Some("NoSchedule".into()),
                toleration_seconds: None
            },
            Toleration {
                key: Some("fabbrica.io/interactive".into()),
                operator: Some("Exists".into()),
                value: None,
                effect: Some("NoExecute".into()),
                toleration_seconds: None
            },
        ]
    );
    let owner = &sts.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("JupyterEnvironment", Some(true))
    );
    let selector = spec.selector.match_labels.as_ref().unwrap();
    let template_labels = spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .as_ref()
        .unwrap();
    assert!(
        selector
            .iter()
            .all(|(k, v)| template_labels.get(k) == Some(v))
    );
}

#[test]
fn notebook_runs_restricted_with_the_token_from_its_secret() {
    let pod = build_stateful_set(&validated_environment())
        .spec
        .unwrap()
        .template
        .spec
        .unwrap();
    let security = serde_json::to_value(&pod.security_context).unwrap();
    assert_eq!(
        security,
        json!({"runAsNonRoot": true, "runAsUser": 1000, "runAsGroup": 100, "fsGroup": 100, "seccompProfile": {"type": "RuntimeDefault"}})
    );
    assert_eq!(pod.automount_service_account_token, Some(false));
    let container = &pod.containers[0];
    let security = serde_json::to_value(&container.security_context).unwrap();
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"], json!({"drop": ["ALL"]}));
    let env = serde_json::to_value(&container.env).unwrap();
    assert_eq!(
        env[0],
        json!({"name": "JUPYTER_TOKEN", "valueFrom": {"secretKeyRef": {"name": "giulia-token", "key": "token"}}})
    );
    assert_eq!(
        container.command.as_deref(),
        Some(&["jupyter".to_owned()][..])
    );
    let args = container.args.as_ref().unwrap();
    assert_eq!(args[0], "lab");
    assert!(
        args.contains(&"--MappingKernelManager.cull_idle_timeout=7200".to_owned()),
        "{args:?}"
    );
    assert!(
        args.contains(&"--ServerApp.shutdown_no_activity_timeout=7200".to_owned()),
        "{args:?}"
    );
    assert!(
        !args.iter().any(|a| a.contains("token")),
        "the token never appears in the Pod spec: {args:?}"
    );
}

#[test]
fn volumes_mount_home_and_datasets_read_only() {
    let env = validated_environment();
    let pod = build_stateful_set(&env)
        .spec
        .unwrap()
        .template
        .spec
        .unwrap();
    let mounts = serde_json::to_value(&pod.containers[0].volume_mounts).unwrap();
    assert_eq!(
        mounts[0],
        json!({"name": "home", "mountPath": "/home/jovyan"})
    );
    assert_eq!(
        mounts[2],
        json!({"name": "data-datasets", "mountPath": "/datasets", "readOnly": true})
    );
    let volumes = serde_json::to_value(&pod.volumes).unwrap();
    assert_eq!(
        volumes[2]["persistentVolumeClaim"],
        json!({"claimName": "giulia-data-datasets", "readOnly": true})
    );
    let claims = build_mount_claims(&env);
    let claim = serde_json::to_value(&claims[0]).unwrap();
    assert_eq!(claim["spec"]["accessModes"], json!(["ReadOnlyMany"]));
    assert_eq!(claim["spec"]["storageClassName"], "lab-datasets");
}

#[test]
fn home_claim_is_owned_only_when_it_goes_with_the_environment() {
    let kept = build_home_claim(&validated_environment());
    assert_eq!(kept.metadata.name.as_deref(), Some("giulia-home"));
    assert!(kept.metadata.owner_references.is_none(), "kept by default");
    assert_eq!(
        kept.metadata.labels.as_ref().unwrap()[labels::ENVIRONMENT],
        "giulia"
    );
    let spec = serde_json::to_value(&kept.spec).unwrap();
    assert_eq!(spec["storageClassName"], "lab-project");
    assert_eq!(spec["resources"]["requests"]["storage"], "100Gi");
    let mut env: JupyterEnvironment = fixtures::parse(fixtures::ENVIRONMENT);
    env.spec.home.keep_on_delete = false;
    let owned = build_home_claim(&validated_environment_from(env));
    assert_eq!(
        owned.metadata.owner_references.unwrap()[0].uid,
        "environment-uid"
    );
}

#[test]
fn service_and_policy_expose_8888_inside_the_namespace_only() {
    let env = validated_environment();
    let service = serde_json::to_value(build_service(&env).spec).unwrap();
    assert_eq!(service["type"], "ClusterIP");
    assert_eq!(service["ports"][0]["port"], 8888);
    assert_eq!(service["selector"]["fabbrica.io/environment"], "giulia");
    let policy = serde_json::to_value(build_network_policy(&env).spec).unwrap();
    assert_eq!(policy["policyTypes"], json!(["Ingress"]));
    assert_eq!(
        policy["ingress"],
        json!([{"from": [{"podSelector": {}}], "ports": [{"port": 8888, "protocol": "TCP"}]}])
    );
    assert_eq!(
        url("giulia", "ws-aurora"),
        "http://giulia.ws-aurora.svc:8888"
    );
}

#[test]
fn token_secret_holds_the_given_token_and_tokens_are_random() {
    let secret = build_token_secret(&validated_environment(), "abc");
    assert_eq!(secret.metadata.name.as_deref(), Some("giulia-token"));
    assert_eq!(secret.string_data.unwrap()["token"], "abc");
    let (a, b) = (
        crate::tenancy::jupyter::random_token().unwrap(),
        crate::tenancy::jupyter::random_token().unwrap(),
    );
    assert_eq!(a.len(), 64);
    assert_ne!(a, b);
}

#[test]
fn profiles_beyond_the_catalog_or_the_quota_are_refused_with_the_field() {
    let refused = |yaml: String| {
        let env: JupyterEnvironment = fixtures::parse(&yaml);
        let problems = validate(&env, &fixtures::workspace(), &fixtures::factory()).unwrap_err();
        problems.0.into_iter().map(|p| p.path).collect::<Vec<_>>()
    };
    // The workspace's quota on interactive is 4, the catalog's profile allows 2.
    assert_eq!(
        refused(fixtures::ENVIRONMENT.replace("gpus: 1", "gpus: 3")),
        ["spec.profile.gpus"]
    );
    assert_eq!(
        refused(fixtures::ENVIRONMENT.replace("image: pytorch", "image: tensorflow")),
        ["spec.image"]
    );
    assert_eq!(
        refused(fixtures::ENVIRONMENT.replace("tier: project", "tier: scratch")),
        ["spec.home.tier"]
    );
}

#[test]
fn no_gpu_means_no_gpu_request_and_no_culling_means_no_culling_flags() {
    let mut env: JupyterEnvironment = fixtures::parse(fixtures::ENVIRONMENT);
    env.spec.profile.gpus = 0;
    env.spec.idle_culling.timeout_minutes = 0;
    let env = validated_environment_from(env);
    let resources = build_resources(&env);
    assert!(!resources.requests.unwrap().contains_key("nvidia.com/gpu"));
    assert!(
        !jupyter_args(&env)
            .iter()
            .any(|a| a.contains("cull") || a.contains("shutdown"))
    );
}
