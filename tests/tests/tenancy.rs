//! Tenancy on the real control plane: Workspaces become isolated namespaces with quotas and
//! bindings, JupyterEnvironments become notebook servers, refused profiles create nothing, and a
//! deleted Workspace leaves nothing behind. The operator runs in-process through its library.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use fabbrica_crds::v1alpha1::{Factory, JupyterEnvironment, Workspace, condition};
use fabbrica_operator::Settings;
use fabbrica_tests::{
    InProcessOperator, client, eventually, install_crds, kubeconfig_path, unique_name,
};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    LimitRange, Namespace, PersistentVolumeClaim, Pod, ResourceQuota, Secret, Service,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, ResourceExt};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);
/// The label on this file's Factories; each test's operator reconciles only its own Factory and
/// that Factory's tenants (`--factory-selector`), so concurrent tests do not act on each other.
const TEST_LABEL: &str = "fabbrica.io/test-tenancy";

/// This file's operator, in this process until stopped.
fn start_operator(client: &Client, factory: &str) -> InProcessOperator {
    InProcessOperator::start(
        client,
        Settings {
            namespace: "default".into(),
            gpu_operator_namespace: "default".into(),
            factory_selector: Some(format!("{TEST_LABEL}={factory}")),
            debounce: Duration::from_millis(100),
            reporter: "tenancy-tests".into(),
            ..Settings::default()
        },
    )
}

/// A Factory with a tainted interactive pool, a training pool, three tiers and a small catalog.
fn factory(name: &str) -> anyhow::Result<Factory> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "fabbrica.io/v1alpha1",
        "kind": "Factory",
        "metadata": {"name": name, "labels": {TEST_LABEL: name}},
        "spec": {
            "site": {"name": name, "country": "IT", "tier": "aiFactory"},
            "gpuPools": [
                {
                    "name": "interactive",
                    "nodeSelector": {"tenancy.test/pool": format!("{name}-interactive")},
                    "system": "dgx-h100",
                    "expectedNodes": 2,
                    "taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}],
                },
                {
                    "name": "training",
                    "nodeSelector": {"tenancy.test/pool": format!("{name}-training")},
                    "system": "dgx-h100",
                    "expectedNodes": 4,
                },
            ],
            "fabric": {"type": "infiniband", "railsPerNode": 8, "linkSpeed": "400G", "topology": {"source": "nodeOrder"}},
            "storageTiers": [
                {"name": "project", "role": "project", "provisioner": "lustre.csi.hpe.com", "capacity": "2Pi"},
                {"name": "scratch", "role": "scratch", "provisioner": "csi.weka.io", "capacity": "1Pi"},
                {"name": "datasets", "role": "datasets", "provisioner": "lustre.csi.hpe.com", "capacity": "1Pi"},
            ],
            "notebooks": {
                "images": [{"name": "pytorch", "image": "nvcr.io/nvidia/pytorch:24.10-py3"}],
                "profiles": [{"name": "big", "pool": "interactive", "gpus": 8, "cpu": "16", "memory": "128Gi"}],
            },
        },
    }))?)
}

/// A Workspace of `factory` with one member, 2 interactive GPUs and a project grant.
fn workspace(
    name: &str,
    factory: &str,
    namespace: &str,
    member: &str,
) -> anyhow::Result<Workspace> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "fabbrica.io/v1alpha1",
        "kind": "Workspace",
        "metadata": {"name": name},
        "spec": {
            "factory": factory,
            "tenant": {"name": format!("Tenant {name}"), "kind": "startup"},
            "members": [{"name": member}],
            "namespace": namespace,
            "gpuQuota": [{"pool": "interactive", "gpus": 2}, {"pool": "training", "gpus": 8}],
            "storageQuota": [{"tier": "project", "capacity": "10Ti"}],
        },
    }))?)
}

/// A notebook on the interactive pool.
fn environment(
    name: &str,
    namespace: &str,
    image: &str,
    gpus: u32,
) -> anyhow::Result<JupyterEnvironment> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "fabbrica.io/v1alpha1",
        "kind": "JupyterEnvironment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "image": image,
            "profile": {"pool": "interactive", "gpus": gpus, "cpu": "4", "memory": "32Gi"},
            "home": {"tier": "project", "size": "20Gi"},
            "mounts": [{"tier": "datasets", "mountPath": "/datasets"}],
            "idleCulling": {"timeoutMinutes": 30},
        },
    }))?)
}

async fn apply<K>(api: &Api<K>, object: &K) -> anyhow::Result<K>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let params = PatchParams::apply("fabbrica-tests").force();
    Ok(api
        .patch(&object.name_any(), &params, &Patch::Apply(object))
        .await?)
}

fn condition_of<'a>(
    conditions: &'a [k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: &str,
) -> Option<(&'a str, &'a str, &'a str)> {
    condition(conditions, type_).map(|c| (c.status.as_str(), c.reason.as_str(), c.message.as_str()))
}

async fn ready_workspace(api: &Api<Workspace>, name: &str) -> anyhow::Result<Workspace> {
    eventually(&format!("workspace {name} is Ready"), WAIT, || async {
        let ws = api.get(name).await?;
        let ready = ws
            .status
            .as_ref()
            .and_then(|s| condition_of(&s.conditions, "Ready"))
            .is_some_and(|(status, _, _)| status == "True");
        Ok(ready.then_some(ws))
    })
    .await
}

/// A client that acts as `user`, through impersonation by the admin.
async fn client_as(user: &str) -> anyhow::Result<Client> {
    let kubeconfig = Kubeconfig::read_from(kubeconfig_path())?;
    let mut config =
        Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    config.auth_info.impersonate = Some(user.to_owned());
    Ok(Client::try_from(config)?)
}

/// Waits until the controller manager's clusterrole-aggregation controller has given the
/// built-in `edit` ClusterRole the rules of the roles aggregated into it, as on every cluster.
async fn edit_role_aggregated(client: &Client) -> anyhow::Result<()> {
    let api = Api::<ClusterRole>::all(client.clone());
    eventually("the edit ClusterRole is aggregated", WAIT, || async {
        let rules = api.get("edit").await?.rules.unwrap_or_default();
        Ok((!rules.is_empty()).then_some(()))
    })
    .await
}

/// What the API server answers `client` asking to list `K` in `namespace`: `Ok(None)` when it
/// lists them, `Ok(Some(message))` when RBAC refuses (403 Forbidden), with the server's message.
async fn list_refusal<K>(client: &Client, namespace: &str) -> anyhow::Result<Option<String>>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    refusal(
        Api::<K>::namespaced(client.clone(), namespace)
            .list(&ListParams::default())
            .await,
    )
}

/// Asserts that `member` lists `K` in their own workspace's namespace and that the API server
/// refuses them in the other's, saying who was refused what where.
async fn lists_own_and_is_refused_other<K>(
    client: &Client,
    member: &str,
    own: &str,
    other: &str,
) -> anyhow::Result<()>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let resource = K::plural(&K::DynamicType::default()).into_owned();
    let answer = list_refusal::<K>(client, own).await?;
    assert_eq!(
        answer, None,
        "{member} lists the {resource} of their own workspace"
    );
    let refused = list_refusal::<K>(client, other).await?;
    let expected = format!(
        "User \"{member}\" cannot list resource \"{resource}\" in API group \"\" in the namespace \"{other}\""
    );
    assert!(
        refused.as_ref().is_some_and(|m| m.contains(&expected)),
        "{member} must be refused the {resource} of the other workspace; the API server answered {refused:?}"
    );
    Ok(())
}

/// `Ok(None)` for an answer, `Ok(Some(message))` for a 403 Forbidden, the error otherwise.
fn refusal<T>(result: Result<T, kube::Error>) -> anyhow::Result<Option<String>> {
    match result {
        Ok(_) => Ok(None),
        Err(kube::Error::Api(status)) if status.code == 403 => Ok(Some(status.message)),
        Err(err) => Err(err.into()),
    }
}

fn names<K: kube::Resource>(items: &[K]) -> Vec<String> {
    let mut names: Vec<String> = items.iter().map(ResourceExt::name_any).collect();
    names.sort();
    names
}

/// One Factory with one Ready Workspace (single member), and the operator running for it:
/// where the notebook tests start.
struct OneWorkspace {
    client: Client,
    factory_name: String,
    ws_name: String,
    namespace: String,
    workspaces: Api<Workspace>,
    environments: Api<JupyterEnvironment>,
    operator: InProcessOperator,
}

async fn one_workspace(prefix: &str, member: &str) -> anyhow::Result<OneWorkspace> {
    let client = client().await?;
    install_crds(&client).await?;
    let factory_name = unique_name(prefix);
    let ws_name = format!("{factory_name}-ws");
    let namespace = format!("ws-{ws_name}");
    apply(
        &Api::<Factory>::all(client.clone()),
        &factory(&factory_name)?,
    )
    .await?;
    let workspaces = Api::<Workspace>::all(client.clone());
    apply(
        &workspaces,
        &workspace(&ws_name, &factory_name, &namespace, member)?,
    )
    .await?;
    let operator = start_operator(&client, &factory_name);
    ready_workspace(&workspaces, &ws_name).await?;
    let environments = Api::<JupyterEnvironment>::namespaced(client.clone(), &namespace);
    Ok(OneWorkspace {
        client,
        factory_name,
        ws_name,
        namespace,
        workspaces,
        environments,
        operator,
    })
}

/// Deletes a Factory and waits until the operator, still running, has released it.
async fn delete_factory(client: &Client, name: &str) -> anyhow::Result<()> {
    let api = Api::<Factory>::all(client.clone());
    let _ = api.delete(name, &DeleteParams::default()).await;
    eventually(&format!("factory {name} is deleted"), WAIT, || async {
        Ok(api.get_opt(name).await?.is_none().then_some(()))
    })
    .await
}

/// Deletes the workspaces (while the operator still runs, so their finalizers are handled),
/// deletes the factory, stops the operator, and waits until the namespaces are gone.
async fn teardown(
    client: &Client,
    operator: InProcessOperator,
    factory: &str,
    workspaces: &[(&str, &str)],
) -> anyhow::Result<()> {
    let api = Api::<Workspace>::all(client.clone());
    for (name, _) in workspaces {
        let _ = api.delete(name, &DeleteParams::default()).await;
    }
    for (name, _) in workspaces {
        eventually(&format!("workspace {name} is deleted"), WAIT, || async {
            Ok(api.get_opt(name).await?.is_none().then_some(()))
        })
        .await?;
    }
    delete_factory(client, factory).await?;
    operator.stop().await?;
    let namespaces = Api::<Namespace>::all(client.clone());
    for (_, namespace) in workspaces {
        eventually(
            &format!("namespace {namespace} is deleted"),
            Duration::from_secs(120),
            || async { Ok(namespaces.get_opt(namespace).await?.is_none().then_some(())) },
        )
        .await?;
    }
    Ok(())
}

#[tokio::test]
async fn two_workspaces_are_isolated_namespaces_with_quota_policies_and_bindings()
-> anyhow::Result<()> {
    let client = client().await?;
    install_crds(&client).await?;
    let factory_name = unique_name("iso");
    let (a, b) = (format!("{factory_name}-a"), format!("{factory_name}-b"));
    let (ns_a, ns_b) = (format!("ws-{a}"), format!("ws-{b}"));
    let (alice, bob) = (
        format!("alice-{factory_name}@example.eu"),
        format!("bob-{factory_name}@example.eu"),
    );
    apply(
        &Api::<Factory>::all(client.clone()),
        &factory(&factory_name)?,
    )
    .await?;
    let workspaces = Api::<Workspace>::all(client.clone());
    apply(&workspaces, &workspace(&a, &factory_name, &ns_a, &alice)?).await?;
    apply(&workspaces, &workspace(&b, &factory_name, &ns_b, &bob)?).await?;
    let operator = start_operator(&client, &factory_name);

    for (name, namespace, member) in [(&a, &ns_a, &alice), (&b, &ns_b, &bob)] {
        let ws = ready_workspace(&workspaces, name).await?;
        let status = ws.status.unwrap_or_default();
        assert_eq!(status.gpus_granted, 10);
        assert_eq!(
            status.gpus_used, 0,
            "no quota controller counts here; nothing is used"
        );
        let (queue, reason, _) =
            condition_of(&status.conditions, "QueueReady").context("QueueReady")?;
        assert_eq!((queue, reason), ("False", "KueueAbsent"));
        let granted: BTreeMap<_, _> = status
            .quota
            .iter()
            .map(|q| (q.resource.as_str(), (q.used.as_str(), q.granted.as_str())))
            .collect();
        assert_eq!(granted.get("requests.nvidia.com/gpu"), Some(&("0", "10")));

        let ns = Api::<Namespace>::all(client.clone()).get(namespace).await?;
        let labels = ns.labels();
        assert_eq!(labels.get("fabbrica.io/workspace"), Some(name));
        assert_eq!(labels.get("fabbrica.io/factory"), Some(&factory_name));
        assert_eq!(
            labels
                .get("pod-security.kubernetes.io/enforce")
                .map(String::as_str),
            Some("restricted")
        );
        assert_eq!(ns.owner_references()[0].name, *name);

        let quotas = Api::<ResourceQuota>::namespaced(client.clone(), namespace)
            .list(&ListParams::default())
            .await?
            .items;
        assert_eq!(names(&quotas), ["fabbrica-quota"]);
        let hard: BTreeMap<String, String> = quotas[0]
            .spec
            .clone()
            .unwrap_or_default()
            .hard
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        let class = |tier: &str| {
            format!("{factory_name}-{tier}.storageclass.storage.k8s.io/requests.storage")
        };
        assert_eq!(
            hard,
            BTreeMap::from([
                ("requests.nvidia.com/gpu".to_owned(), "10".to_owned()),
                (class("project"), "10Ti".to_owned()),
                (class("scratch"), "0".to_owned()),
            ])
        );
        let limits = Api::<LimitRange>::namespaced(client.clone(), namespace)
            .list(&ListParams::default())
            .await?
            .items;
        assert_eq!(names(&limits), ["fabbrica-limits"]);
        let policies = Api::<NetworkPolicy>::namespaced(client.clone(), namespace)
            .list(&ListParams::default())
            .await?
            .items;
        assert_eq!(
            names(&policies),
            [
                "fabbrica-allow-dns",
                "fabbrica-allow-same-namespace",
                "fabbrica-default-deny"
            ]
        );
        let bindings = Api::<RoleBinding>::namespaced(client.clone(), namespace)
            .list(&ListParams::default())
            .await?
            .items;
        // The members', and the operator's own (it makes notebooks' token Secrets there).
        assert_eq!(names(&bindings), ["fabbrica-members", "fabbrica-operator"]);
        let subjects: Vec<String> = bindings[0]
            .subjects
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(subjects, std::slice::from_ref(member));
        assert_eq!(bindings[0].role_ref.name, "edit");
    }

    // A namespace someone else made is never taken over (deleting the workspace would delete it).
    let squatter = format!("{factory_name}-c");
    let foreign = format!("ws-{squatter}");
    let namespaces = Api::<Namespace>::all(client.clone());
    let plain: Namespace = serde_json::from_value(json!({"metadata": {"name": foreign}}))?;
    namespaces.create(&Default::default(), &plain).await?;
    apply(
        &workspaces,
        &workspace(&squatter, &factory_name, &foreign, &alice)?,
    )
    .await?;
    let refused = eventually(
        "the third workspace is refused its namespace",
        WAIT,
        || async {
            let ws = workspaces.get(&squatter).await?;
            let taken = ws
                .status
                .as_ref()
                .and_then(|s| condition_of(&s.conditions, "NamespaceReady"))
                .map(|c| c.1.to_owned());
            Ok((taken.as_deref() == Some("NamespaceTaken")).then_some(ws))
        },
    )
    .await?;
    assert!(refused.status.is_some_and(|s| s.quota.is_empty()));
    let untouched = namespaces.get(&foreign).await?;
    // Only the label the API server gives every namespace; nothing of fabbrica's.
    let foreign_labels: Vec<_> = untouched
        .labels()
        .keys()
        .filter(|k| *k != "kubernetes.io/metadata.name")
        .collect();
    assert!(
        untouched.owner_references().is_empty() && foreign_labels.is_empty(),
        "{untouched:?}"
    );
    let quotas = Api::<ResourceQuota>::namespaced(client.clone(), &foreign)
        .list(&ListParams::default())
        .await?;
    assert!(quotas.items.is_empty());
    workspaces
        .delete(&squatter, &DeleteParams::default())
        .await?;
    eventually("the third workspace is gone", WAIT, || async {
        Ok(workspaces.get_opt(&squatter).await?.is_none().then_some(()))
    })
    .await?;
    assert!(
        namespaces.get_opt(&foreign).await?.is_some(),
        "a namespace the workspace did not make survives it"
    );
    namespaces
        .delete(&foreign, &DeleteParams::default())
        .await?;

    edit_role_aggregated(&client).await?;
    // What each member could read of the other's workspace: its Pods, Secrets and volumes.
    let secret: Secret = serde_json::from_value(
        json!({"metadata": {"name": "alice-data"}, "stringData": {"key": "only for alice"}}),
    )?;
    Api::<Secret>::namespaced(client.clone(), &ns_a)
        .create(&Default::default(), &secret)
        .await?;
    let claim: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": "alice-home"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": format!("{factory_name}-project"),
            "resources": {"requests": {"storage": "1Gi"}}},
    }))?;
    Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns_a)
        .create(&Default::default(), &claim)
        .await?;
    for (member, own, other) in [(&alice, &ns_a, &ns_b), (&bob, &ns_b, &ns_a)] {
        let member_client = client_as(member).await?;
        lists_own_and_is_refused_other::<Pod>(&member_client, member, own, other).await?;
        lists_own_and_is_refused_other::<Secret>(&member_client, member, own, other).await?;
        lists_own_and_is_refused_other::<PersistentVolumeClaim>(&member_client, member, own, other)
            .await?;
    }
    // By name too: bob is refused alice's Secret and volume claim, which exist.
    let bob_client = client_as(&bob).await?;
    for (resource, answer) in [
        (
            "secrets",
            refusal(
                Api::<Secret>::namespaced(bob_client.clone(), &ns_a)
                    .get("alice-data")
                    .await,
            )?,
        ),
        (
            "persistentvolumeclaims",
            refusal(
                Api::<PersistentVolumeClaim>::namespaced(bob_client.clone(), &ns_a)
                    .get("alice-home")
                    .await,
            )?,
        ),
    ] {
        let expected = format!(
            "cannot get resource \"{resource}\" in API group \"\" in the namespace \"{ns_a}\""
        );
        assert!(
            answer.as_ref().is_some_and(|m| m.contains(&expected)),
            "bob must be refused alice's {resource}; the API server answered {answer:?}"
        );
    }
    let alice_client = client_as(&alice).await?;
    let alice_claims = Api::<PersistentVolumeClaim>::namespaced(alice_client, &ns_a)
        .list(&ListParams::default())
        .await?
        .items;
    assert_eq!(names(&alice_claims), ["alice-home"]);

    teardown(
        &client,
        operator,
        &factory_name,
        &[(&a, &ns_a), (&b, &ns_b)],
    )
    .await
}

#[tokio::test]
async fn a_jupyter_environment_gets_its_notebook_and_keeps_its_token_across_restarts()
-> anyhow::Result<()> {
    let OneWorkspace {
        client,
        factory_name,
        ws_name,
        namespace,
        workspaces: _,
        environments,
        operator,
    } = one_workspace("nb", "carla@example.eu").await?;
    apply(
        &environments,
        &environment("carla", &namespace, "pytorch", 2)?,
    )
    .await?;

    let env = eventually("the environment is Ready", WAIT, || async {
        let env = environments.get("carla").await?;
        let ready = env
            .status
            .as_ref()
            .and_then(|s| condition_of(&s.conditions, "Ready"))
            .is_some_and(|c| c.0 == "True");
        Ok(ready.then_some(env))
    })
    .await?;
    let status = env.status.unwrap_or_default();
    assert_eq!(
        status.phase.as_deref(),
        Some("Pending"),
        "no kubelet runs here, so the notebook never starts"
    );
    assert_eq!(
        status.url.as_deref(),
        Some(format!("http://carla.{namespace}.svc:8888").as_str())
    );
    assert_eq!(
        condition_of(&status.conditions, "Admitted").map(|c| c.0),
        Some("True")
    );
    assert_eq!(
        condition_of(&status.conditions, "Running").map(|c| (c.0, c.1)),
        Some(("False", "ReplicaNotReady"))
    );

    let sts = Api::<StatefulSet>::namespaced(client.clone(), &namespace)
        .get("carla")
        .await?;
    assert_eq!(sts.owner_references()[0].name, "carla");
    let spec = sts.spec.context("StatefulSet spec")?;
    assert_eq!(spec.replicas, Some(1));
    let pod = spec.template.spec.context("pod spec")?;
    let container = &pod.containers[0];
    assert_eq!(
        container.image.as_deref(),
        Some("nvcr.io/nvidia/pytorch:24.10-py3")
    );
    let resources = serde_json::to_value(&container.resources)?;
    assert_eq!(resources["requests"]["nvidia.com/gpu"], "2");
    assert_eq!(resources["limits"]["nvidia.com/gpu"], "2");
    assert_eq!(resources["requests"]["cpu"], "4");
    assert_eq!(resources["requests"]["memory"], "32Gi");
    let selector = pod.node_selector.clone().unwrap_or_default();
    assert_eq!(
        selector.get("fabbrica.io/pool").map(String::as_str),
        Some("interactive")
    );
    assert_eq!(selector.get("fabbrica.io/factory"), Some(&factory_name));
    let tolerations = serde_json::to_value(&pod.tolerations)?;
    assert_eq!(
        tolerations,
        json!([{"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}])
    );
    let security = serde_json::to_value(&pod.security_context)?;
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");

    let services = Api::<Service>::namespaced(client.clone(), &namespace);
    let service = services.get("carla").await?;
    let ports = serde_json::to_value(&service.spec.context("Service spec")?.ports)?;
    assert_eq!(ports[0]["port"], 8888);
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &namespace);
    let home = claims.get("carla-home").await?;
    assert!(
        home.owner_references().is_empty(),
        "the home volume is kept by default, so it is not owned"
    );
    let home_spec = home.spec.context("claim spec")?;
    assert_eq!(
        home_spec.storage_class_name,
        Some(format!("{factory_name}-project"))
    );
    let datasets = claims.get("carla-data-datasets").await?;
    assert_eq!(
        datasets.spec.context("claim spec")?.access_modes,
        Some(vec!["ReadOnlyMany".to_owned()])
    );
    let policy = Api::<NetworkPolicy>::namespaced(client.clone(), &namespace)
        .get("carla")
        .await?;
    assert_eq!(
        serde_json::to_value(&policy.spec)?["ingress"][0]["ports"][0]["port"],
        8888
    );

    let secrets = Api::<Secret>::namespaced(client.clone(), &namespace);
    let token = |secret: Secret| {
        secret
            .data
            .and_then(|d| d.get("token").cloned())
            .map(|t| t.0)
    };
    let before = token(secrets.get("carla-token").await?).context("a token")?;
    assert_eq!(before.len(), 64);

    // Stop the operator, take something away, and start a new one: it restores what is missing
    // and leaves the token alone.
    operator.stop().await?;
    services.delete("carla", &DeleteParams::default()).await?;
    let operator = start_operator(&client, &factory_name);
    eventually(
        "the restarted operator recreates the Service",
        WAIT,
        || async { Ok(services.get_opt("carla").await?.map(|_| ())) },
    )
    .await?;
    let after = token(secrets.get("carla-token").await?).context("a token")?;
    assert_eq!(before, after, "the token survives an operator restart");

    teardown(&client, operator, &factory_name, &[(&ws_name, &namespace)]).await
}

#[tokio::test]
async fn profiles_beyond_quota_or_outside_the_catalog_are_refused_and_create_nothing()
-> anyhow::Result<()> {
    let OneWorkspace {
        client,
        factory_name,
        ws_name,
        namespace,
        workspaces: _,
        environments,
        operator,
    } = one_workspace("ref", "dario@example.eu").await?;
    // The catalog allows 8 GPUs on the pool, the workspace's quota only 2.
    apply(
        &environments,
        &environment("greedy", &namespace, "pytorch", 4)?,
    )
    .await?;
    apply(
        &environments,
        &environment("exotic", &namespace, "tensorflow", 1)?,
    )
    .await?;

    for (name, path, words) in [
        ("greedy", "spec.profile.gpus", "quota of 2"),
        ("exotic", "spec.image", "no image \"tensorflow\""),
    ] {
        let env = eventually(&format!("{name} is refused"), WAIT, || async {
            let env = environments.get(name).await?;
            Ok(env
                .status
                .as_ref()
                .is_some_and(|s| s.phase.as_deref() == Some("Refused"))
                .then_some(env))
        })
        .await?;
        let status = env.status.unwrap_or_default();
        let (admitted, reason, message) =
            condition_of(&status.conditions, "Admitted").context("Admitted")?;
        assert_eq!((admitted, reason), ("False", "ProfileRefused"));
        assert!(
            message.contains(path) && message.contains(words),
            "{message}"
        );
    }

    // Nothing of either: no Secret, claim, StatefulSet, Service or NetworkPolicy beyond the workspace's.
    let params = ListParams::default();
    let statefulsets = Api::<StatefulSet>::namespaced(client.clone(), &namespace)
        .list(&params)
        .await?
        .items;
    let services = Api::<Service>::namespaced(client.clone(), &namespace)
        .list(&params)
        .await?
        .items;
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &namespace)
        .list(&params)
        .await?
        .items;
    let secrets = Api::<Secret>::namespaced(client.clone(), &namespace)
        .list(&params)
        .await?
        .items;
    let policies = Api::<NetworkPolicy>::namespaced(client.clone(), &namespace)
        .list(&params)
        .await?
        .items;
    assert!(
        statefulsets.is_empty() && services.is_empty() && claims.is_empty(),
        "nothing is created for a refused profile"
    );
    assert!(
        !names(&secrets).iter().any(|n| n.ends_with("-token")),
        "{:?}",
        names(&secrets)
    );
    assert_eq!(
        names(&policies),
        [
            "fabbrica-allow-dns",
            "fabbrica-allow-same-namespace",
            "fabbrica-default-deny"
        ]
    );

    teardown(&client, operator, &factory_name, &[(&ws_name, &namespace)]).await
}

#[tokio::test]
async fn deleting_a_workspace_leaves_nothing_of_it_behind() -> anyhow::Result<()> {
    let OneWorkspace {
        client,
        factory_name,
        ws_name,
        namespace,
        workspaces,
        environments,
        operator,
    } = one_workspace("del", "elena@example.eu").await?;
    apply(
        &environments,
        &environment("elena", &namespace, "pytorch", 1)?,
    )
    .await?;
    let statefulsets = Api::<StatefulSet>::namespaced(client.clone(), &namespace);
    eventually("the notebook's StatefulSet exists", WAIT, || async {
        Ok(statefulsets.get_opt("elena").await?.map(|_| ()))
    })
    .await?;
    let ws = workspaces.get(&ws_name).await?;
    assert!(
        ws.finalizers()
            .iter()
            .any(|f| f == "fabbrica.io/environments"),
        "{:?}",
        ws.finalizers()
    );

    workspaces
        .delete(&ws_name, &DeleteParams::default())
        .await?;
    eventually(
        "the environment is deleted before the workspace goes",
        WAIT,
        || async {
            Ok(environments
                .list(&ListParams::default())
                .await?
                .items
                .is_empty()
                .then_some(()))
        },
    )
    .await?;
    eventually("the workspace is gone", WAIT, || async {
        Ok(workspaces.get_opt(&ws_name).await?.is_none().then_some(()))
    })
    .await?;
    let namespaces = Api::<Namespace>::all(client.clone());
    eventually(
        &format!("namespace {namespace} is gone"),
        Duration::from_secs(120),
        || async {
            Ok(namespaces
                .get_opt(&namespace)
                .await?
                .is_none()
                .then_some(()))
        },
    )
    .await?;
    // Nothing of it outside the namespace either: no other namespace or Kueue queue carries its label.
    let selector = format!("fabbrica.io/workspace={ws_name}");
    let left: Vec<Value> = namespaces
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .iter()
        .map(|n| json!(n.name_any()))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    delete_factory(&client, &factory_name).await?;
    operator.stop().await
}
