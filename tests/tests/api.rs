//! The CRDs as a user meets them: `kubectl apply`, `kubectl explain`, `kubectl get`,
//! and admission errors that name the field.

use std::time::Duration;

use fabbrica_tests::{client, eventually, install_crds, kubectl, repo_root, unique_name};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
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

    for example in ["ai-factory.yaml", "gigafactory.yaml"] {
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
    for example in ["ai-factory.yaml", "gigafactory.yaml"] {
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
    let err = factories
        .patch(
            &name,
            &PatchParams::apply("fabbrica-tests"),
            &Patch::Apply(&bad),
        )
        .await
        .expect_err("the API server must refuse this Factory");
    // Kubernetes 1.20 names list items without their index (`spec.gpuPools.expectedNodes`).
    let message = err.to_string();
    for field in [
        "spec.site.country",
        "spec.site.tier",
        "spec.gpuPools.expectedNodes",
        "spec.fabric.railsPerNode",
    ] {
        assert!(message.contains(field), "{field} not named in: {message}");
    }
    Ok(())
}
