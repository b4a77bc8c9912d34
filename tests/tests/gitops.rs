//! The GitOps tree `blueprint render` writes, synced the way Flux syncs it: every Flux
//! Kustomization built with Flux's own kustomize library and applied with its server-side apply
//! engine (tests/gitops-check), in the order of its dependsOn, against the real control plane
//! with the operator running. What Flux would sync is what this test saw accepted.

use std::collections::BTreeSet;
use std::time::Duration;

use fabbrica_crds::v1alpha1::{Factory, JupyterEnvironment, Workspace};
use fabbrica_operator::Settings;
use fabbrica_tests::{InProcessOperator, client, eventually, fabbrica, scratch_dir, tool};
use kube::api::{Api, DeleteParams, ListParams};
use kube::{Client, ResourceExt};
use serde::Deserialize;

/// One object as the check reports it.
#[derive(Debug, Deserialize)]
struct Checked {
    kustomization: String,
    kind: String,
    #[serde(default)]
    namespace: String,
    name: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    error: String,
}

fn gitops_check(repo: &std::path::Path, extra: &[&str]) -> anyhow::Result<(bool, Vec<Checked>)> {
    let check = tool("gitops-check")?;
    let mut args = vec!["-repo", repo.to_str().expect("a UTF-8 path")];
    args.extend_from_slice(extra);
    let (ok, stdout, stderr) = fabbrica_tests::run(&check, &args)?;
    let checked = stdout
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<Vec<Checked>, _>>()
        .map_err(|e| {
            anyhow::anyhow!("gitops-check printed a line that is not JSON ({e}); stderr: {stderr}")
        })?;
    anyhow::ensure!(
        !checked.is_empty() || ok,
        "gitops-check checked nothing: {stderr}"
    );
    Ok((ok, checked))
}

/// Objects of the site's documents, as (kind, namespace, name), read from the rendered files.
fn rendered(
    repo: &std::path::Path,
    files: &[&str],
) -> anyhow::Result<BTreeSet<(String, String, String)>> {
    let mut out = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(repo.join(file))?;
        for doc in serde_saphyr::from_multiple::<serde_json::Value>(&text)? {
            out.insert((
                doc["kind"].as_str().unwrap_or_default().to_owned(),
                doc["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                doc["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            ));
        }
    }
    Ok(out)
}

async fn delete_site(client: &Client) -> anyhow::Result<()> {
    let params = ListParams::default().labels("fabbrica.io/environment");
    for n in Api::<JupyterEnvironment>::all(client.clone())
        .list(&params)
        .await?
    {
        let api: Api<JupyterEnvironment> =
            Api::namespaced(client.clone(), &n.namespace().unwrap_or_default());
        api.delete(&n.name_any(), &DeleteParams::default()).await?;
    }
    let workspaces: Api<Workspace> = Api::all(client.clone());
    workspaces
        .delete_collection(&DeleteParams::default(), &params)
        .await?;
    let factories: Api<Factory> = Api::all(client.clone());
    factories
        .delete_collection(&DeleteParams::default(), &params)
        .await?;
    eventually(
        "the site's Workspaces gone",
        Duration::from_secs(90),
        || {
            let workspaces = workspaces.clone();
            let params = params.clone();
            async move {
                Ok(workspaces
                    .list(&params)
                    .await?
                    .items
                    .is_empty()
                    .then_some(()))
            }
        },
    )
    .await
}

#[tokio::test]
async fn flux_builds_and_the_api_server_accepts_every_rendered_kustomization() -> anyhow::Result<()>
{
    let client = client().await?;
    let repo = scratch_dir("gitops")?.join("site");
    let code = fabbrica(&[
        "blueprint",
        "render",
        "--example",
        "ai-factory",
        "--out",
        repo.to_str().expect("a UTF-8 path"),
    ])?;
    anyhow::ensure!(
        code == std::process::ExitCode::SUCCESS,
        "blueprint render failed"
    );

    // Dry run on a cluster where the operator has made nothing yet: the CRDs are applied (the
    // check, like Flux, needs them for what follows), every site object is accepted, and the
    // notebooks are refused only because their Workspaces' namespaces do not exist yet, which
    // is why they are a Kustomization of their own that waits for the Workspaces.
    let (_, dry) = gitops_check(&repo, &[])?;
    for c in &dry {
        if c.kind == "JupyterEnvironment" {
            continue;
        }
        assert!(
            c.error.is_empty(),
            "{} {} {}/{} refused: {}",
            c.kustomization,
            c.kind,
            c.namespace,
            c.name,
            c.error
        );
    }

    let operator = InProcessOperator::start(
        &client,
        Settings {
            namespace: "default".into(),
            gpu_operator_namespace: "default".into(),
            factory_selector: Some("fabbrica.io/environment".into()),
            debounce: Duration::from_millis(100),
            reporter: "gitops-tests".into(),
            ..Settings::default()
        },
    );
    // Synced as Flux would: each Kustomization applied once accepted, its health checks (the
    // Workspaces) waited for before the next.
    // (On a thread of its own: the operator runs on this test's runtime meanwhile.)
    let result = tokio::task::spawn_blocking({
        let repo = repo.clone();
        move || gitops_check(&repo, &["-apply", "-retry", "60s"])
    })
    .await?;
    let cleanup = delete_site(&client).await;
    operator.stop().await?;
    let (ok, synced) = result?;
    cleanup?;

    let refused: Vec<String> = synced
        .iter()
        .filter(|c| !c.error.is_empty())
        .map(|c| format!("{} {}/{}: {}", c.kind, c.namespace, c.name, c.error))
        .collect();
    assert!(ok && refused.is_empty(), "refused: {refused:#?}");
    for env in ["production", "staging"] {
        let seen: BTreeSet<(String, String, String)> = synced
            .iter()
            .filter(|c| c.kustomization.starts_with(&format!("bologna-{env}-")))
            .map(|c| (c.kind.clone(), c.namespace.clone(), c.name.clone()))
            .collect();
        let expected = rendered(
            &repo,
            &[
                "gitops/base/crds/crds.yaml",
                "gitops/base/site/factory.yaml",
                "gitops/base/site/workspaces.yaml",
                "gitops/base/notebooks/notebooks.yaml",
            ],
        )?;
        assert_eq!(
            seen, expected,
            "{env}: every rendered object, each synced once"
        );
        assert!(
            synced
                .iter()
                .filter(|c| c.kind == "JupyterEnvironment")
                .all(|c| c.action != "skipped"),
            "no notebook was skipped"
        );
    }
    // Every overlay is synced by some Flux Kustomization.
    for env in ["production", "staging"] {
        for suffix in ["site", "notebooks"] {
            let name = format!("bologna-{env}-{suffix}");
            assert!(
                synced.iter().any(|c| c.kustomization == name),
                "no object came from the Flux Kustomization {name}"
            );
        }
    }
    Ok(())
}
