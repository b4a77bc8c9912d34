//! The CRDs as a user meets them: `kubectl apply`, `kubectl explain`, `kubectl get`,
//! and admission errors that name the field.

use std::time::Duration;

use fabbrica_tests::{client, eventually, install_crds, kubectl, repo_root, unique_name};
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;

#[tokio::test]
async fn examples_apply_and_kubectl_teaches_the_api() -> anyhow::Result<()> {
    let client = client().await?;
    install_crds(&client).await?;
    let crds = repo_root().join("crds/yaml");
    kubectl(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=fabbrica-tests",
        "-f",
        crds.to_str().unwrap(),
    ])?;

    for example in [
        "ai-factory.yaml",
        "ai-factory-notebooks.yaml",
        "gigafactory.yaml",
    ] {
        let path = repo_root().join("blueprints/examples").join(example);
        let text = std::fs::read_to_string(&path)?;
        // Environments live in their workspace's namespace, which the operator creates; here we make them.
        for namespace in text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("namespace: "))
        {
            let _ = kubectl(&["create", "namespace", namespace]);
        }
        let out = kubectl(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=fabbrica-tests",
            "-f",
            path.to_str().unwrap(),
        ])?;
        assert!(out.contains("serverside-applied"), "{out}");
    }

    // The API server republishes its OpenAPI document a moment after a CRD changes, and
    // `explain` reads that document: wait for the Factory to appear in it, fail on anything else.
    let explain = eventually(
        "kubectl explain knows Factory",
        Duration::from_secs(30),
        || async {
            match kubectl(&["explain", "factory.spec.gpuPools"]) {
                Ok(out) => Ok(Some(out)),
                Err(err) if err.to_string().contains("couldn't find resource") => Ok(None),
                Err(err) => Err(err),
            }
        },
    )
    .await?;
    assert!(explain.contains("GPU node pools"), "{explain}");
    assert!(explain.contains("expectedNodes"), "{explain}");

    let table = kubectl(&["get", "fab", "it4lia"])?;
    let header = table.lines().next().unwrap_or_default();
    for column in [
        "SITE",
        "TIER",
        "POOLS",
        "GPUS-READY",
        "GPUS-EXPECTED",
        "READY",
        "AGE",
    ] {
        assert!(
            header.contains(column),
            "column {column} missing from {header:?}"
        );
    }
    assert!(table.contains("aiFactory"), "{table}");

    let all = kubectl(&["get", "fabbrica", "--all-namespaces"])?;
    for example in [
        "ai-factory.yaml",
        "ai-factory-notebooks.yaml",
        "gigafactory.yaml",
    ] {
        let path = repo_root().join("blueprints/examples").join(example);
        kubectl(&["delete", "--wait=false", "-f", path.to_str().unwrap()])?;
    }
    for kind in [
        "factory.fabbrica.io/it4lia",
        "workspace.fabbrica.io/aurora-robotics",
        "jupyterenvironment.fabbrica.io/giulia-pytorch",
    ] {
        assert!(
            all.contains(kind),
            "{kind} missing from `kubectl get fabbrica`:\n{all}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn the_api_server_rejects_bad_fields_and_names_them() -> anyhow::Result<()> {
    let client = client().await?;
    install_crds(&client).await?;
    let gvk = GroupVersionKind::gvk("fabbrica.io", "v1alpha1", "Factory");
    let factories: Api<DynamicObject> = Api::all_with(client, &ApiResource::from_gvk(&gvk));
    let name = unique_name("bad");
    let bad: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "fabbrica.io/v1alpha1",
        "kind": "Factory",
        "metadata": {"name": name},
        "spec": {
            "site": {"name": "x", "country": "Italy", "tier": "megafactory"},
            "gpuPools": [{"name": "a", "nodeSelector": {"a": "b"}, "system": "dgx-h100", "expectedNodes": 0}],
            "fabric": {"type": "infiniband", "railsPerNode": "eight", "linkSpeed": "400G", "topology": {"source": "nodeOrder"}}
        }
    }))?;
    // A create reports every bad field; server-side apply stops at the first type error.
    let err = factories
        .create(&PostParams::default(), &bad)
        .await
        .expect_err("the API server must refuse this Factory");
    let message = err.to_string();
    for field in [
        "spec.site.country",
        "spec.site.tier",
        "spec.gpuPools[0].expectedNodes",
        "spec.fabric.railsPerNode",
    ] {
        assert!(message.contains(field), "{field} not named in: {message}");
    }
    Ok(())
}

/// A Factory the API server accepts, to break one rule at a time.
fn valid_factory(name: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "fabbrica.io/v1alpha1",
        "kind": "Factory",
        "metadata": {"name": name},
        "spec": {
            "site": {"name": "x", "country": "IT", "tier": "aiFactory"},
            "gpuPools": [{"name": "a", "nodeSelector": {"a": "b"}, "system": "dgx-h100", "expectedNodes": 2}],
            "fabric": {"type": "infiniband", "railsPerNode": 8, "linkSpeed": "400G",
                       "topology": {"source": "nodeOrder"},
                       "partitionKeys": {"first": "0x0100", "last": "0x01FF"}},
        }
    })
}

/// Every rule the CRD schema states about one object: the API server refuses the object at
/// admission (before any controller sees it) and names the field and what is valid.
#[tokio::test]
async fn the_api_server_enforces_the_crds_cross_field_rules() -> anyhow::Result<()> {
    let client = client().await?;
    install_crds(&client).await?;
    let gvk = GroupVersionKind::gvk("fabbrica.io", "v1alpha1", "Factory");
    let factories: Api<DynamicObject> = Api::all_with(client, &ApiResource::from_gvk(&gvk));
    let accepted = unique_name("rules");
    let object: DynamicObject = serde_json::from_value(valid_factory(&accepted))?;
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    factories.create(&params, &object).await?;
    type Breaker = fn(&mut serde_json::Value);
    let cases: [(&str, Breaker, &str, &str); 8] = [
        (
            "duplicate pool names",
            |f| {
                let pool = f["spec"]["gpuPools"][0].clone();
                f["spec"]["gpuPools"].as_array_mut().unwrap().push(pool);
            },
            "spec.gpuPools[1]",
            "Duplicate value",
        ),
        (
            "MIG and time-slicing together",
            |f| {
                f["spec"]["gpuPools"][0]["sharing"] = serde_json::json!({"mig": {"profile": "1g.10gb"}, "timeSlicing": {"replicas": 4}})
            },
            "spec.gpuPools[0].sharing",
            "a pool shares its GPUs one way",
        ),
        (
            "a maxUnavailable that is no percentage",
            |f| {
                f["spec"]["gpuPools"][0]["maintenance"] =
                    serde_json::json!({"maxUnavailable": "half"})
            },
            "spec.gpuPools[0].maintenance.maxUnavailable",
            "valid: an integer or",
        ),
        (
            "a partition range whose first is above its last",
            |f| f["spec"]["fabric"]["partitionKeys"]["first"] = "0x0200".into(),
            "spec.fabric.partitionKeys",
            "first is above last",
        ),
        (
            "the default partition key",
            |f| f["spec"]["fabric"]["partitionKeys"]["last"] = "0x7FFF".into(),
            "spec.fabric.partitionKeys.last",
            "valid: 0x0001 to 0x7FFE",
        ),
        (
            "a declared topology without units",
            |f| f["spec"]["fabric"]["topology"]["source"] = "declared".into(),
            "spec.fabric.topology.scalableUnits",
            "no scalable units are listed",
        ),
        (
            "a label topology without a label",
            |f| f["spec"]["fabric"]["topology"]["source"] = "nodeLabels".into(),
            "spec.fabric.topology.scalableUnitLabel",
            "no label is named",
        ),
        (
            "a pool that selects every Node",
            |f| f["spec"]["gpuPools"][0]["nodeSelector"] = serde_json::json!({}),
            "spec.gpuPools[0].nodeSelector",
            "should have at least 1 properties",
        ),
    ];
    for (what, breaker, field, says) in cases {
        let name = unique_name("rules");
        let mut bad = valid_factory(&name);
        breaker(&mut bad);
        let object: DynamicObject = serde_json::from_value(bad)?;
        let err = factories.create(&params, &object).await.expect_err(what);
        let message = err.to_string();
        assert!(
            message.contains(field) && message.contains(says),
            "{what}: expected {field} and {says:?} in: {message}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn the_api_server_refuses_queue_settings_kueue_would_refuse() -> anyhow::Result<()> {
    let client = client().await?;
    install_crds(&client).await?;
    let gvk = GroupVersionKind::gvk("fabbrica.io", "v1alpha1", "Workspace");
    let workspaces: Api<DynamicObject> = Api::all_with(client, &ApiResource::from_gvk(&gvk));
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let workspace = |name: &str| {
        serde_json::json!({
            "apiVersion": "fabbrica.io/v1alpha1",
            "kind": "Workspace",
            "metadata": {"name": name},
            "spec": {
                "factory": "site",
                "tenant": {"name": "Aurora", "kind": "startup"},
                "namespace": name,
                "gpuQuota": [{"pool": "train", "gpus": 16, "borrowingLimit": 8, "lendingLimit": 16}],
                "queue": {"fairSharingWeight": 2, "reclaimWithinCohort": "LowerPriority"},
            },
        })
    };
    let object: DynamicObject = serde_json::from_value(workspace(&unique_name("queue")))?;
    workspaces.create(&params, &object).await?;
    type Breaker = fn(&mut serde_json::Value);
    let cases: [(&str, Breaker, &str, &str); 3] = [
        (
            "lending more than granted",
            |w| w["spec"]["gpuQuota"][0]["lendingLimit"] = 17.into(),
            "spec.gpuQuota[0].lendingLimit",
            "valid: 0 to gpus",
        ),
        (
            "a fair-sharing weight out of range",
            |w| w["spec"]["queue"]["fairSharingWeight"] = 1001.into(),
            "spec.queue.fairSharingWeight",
            "1000",
        ),
        (
            "a reclaim policy Kueue does not know",
            |w| w["spec"]["queue"]["reclaimWithinCohort"] = "Always".into(),
            "spec.queue.reclaimWithinCohort",
            "Unsupported value",
        ),
    ];
    for (what, breaker, field, says) in cases {
        let mut bad = workspace(&unique_name("queue"));
        breaker(&mut bad);
        let object: DynamicObject = serde_json::from_value(bad)?;
        let err = workspaces.create(&params, &object).await.expect_err(what);
        let message = err.to_string();
        assert!(
            message.contains(field) && message.contains(says),
            "{what}: expected {field} and {says:?} in: {message}"
        );
    }
    Ok(())
}
