//! A rendered site is a GitOps tree that current tools and a real API server accept.

use std::path::Path;
use std::process::ExitCode;

use fabbrica_tests::{
    assert_no_high_or_critical_misconfiguration, client, fabbrica, install_crds, kubectl, run,
    scratch_dir, tool,
};

fn render(example: &str) -> anyhow::Result<std::path::PathBuf> {
    let out = scratch_dir(example)?.join("site");
    let code = fabbrica(&[
        "blueprint",
        "render",
        "--example",
        example,
        "--out",
        out.to_str().unwrap(),
    ])?;
    assert_eq!(code, ExitCode::SUCCESS);
    Ok(out)
}

/// Every overlay with a kustomization.yaml (an environment's site, and its notebooks beneath
/// it) under `gitops/overlays`, or, for a site of cells, the first and the last cell's (the
/// first holds the notebooks; every cell is written by the same code).
fn overlays(site: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut roots = vec![site.join("gitops")];
    if let Ok(cells) = std::fs::read_dir(site.join("gitops/cells")) {
        let mut cells = cells
            .map(|c| c.map(|c| c.path()))
            .collect::<Result<Vec<_>, _>>()?;
        cells.sort();
        if cells.len() > 2 {
            cells.drain(1..cells.len() - 1);
        }
        roots.extend(cells);
    }
    let mut dirs = Vec::new();
    let mut pending: Vec<_> = roots
        .iter()
        .map(|r| r.join("overlays"))
        .filter(|d| d.is_dir())
        .collect();
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                if path.join("kustomization.yaml").is_file() {
                    dirs.push(path.clone());
                }
                pending.push(path);
            }
        }
    }
    dirs.sort();
    assert!(!dirs.is_empty(), "no overlays under {}", site.display());
    Ok(dirs)
}

/// Namespaces made only for the dry run, deleted again (and waited for) so that the tests that
/// run the operator on the same control plane find them free.
struct CreatedNamespaces(Vec<String>);

impl Drop for CreatedNamespaces {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let mut args = vec!["delete", "namespace", "--wait=true", "--timeout=120s"];
        args.extend(self.0.iter().map(String::as_str));
        let _ = kubectl(&args);
    }
}

#[tokio::test]
async fn every_overlay_builds_and_applies_with_server_side_dry_run() -> anyhow::Result<()> {
    let client = client().await?;
    install_crds(&client).await?;
    let mut created = CreatedNamespaces(Vec::new());
    for example in ["ai-factory", "gigafactory"] {
        let site = render(example)?;
        for overlay in overlays(&site)? {
            let built = kubectl(&["kustomize", overlay.to_str().unwrap()])?;
            // The operator creates each workspace's namespace; a dry run needs them to exist already.
            for namespace in built
                .lines()
                .filter_map(|l| l.strip_prefix("  namespace: "))
            {
                let namespace = namespace.trim();
                if kubectl(&["create", "namespace", namespace]).is_ok() {
                    created.0.push(namespace.to_owned());
                }
            }
            let out = kubectl(&[
                "apply",
                "--dry-run=server",
                "--server-side",
                "-k",
                overlay.to_str().unwrap(),
            ])?;
            assert!(
                out.contains("factory.fabbrica.io/")
                    || out.contains("jupyterenvironment.fabbrica.io/"),
                "{example} {}: {out}",
                overlay.display()
            );

            // Every custom resource against its CRD's schema, and the shared validation across them.
            let file = overlay.with_extension("built.yaml");
            std::fs::write(&file, &built)?;
            let code = fabbrica(&["validate", file.to_str().unwrap()])?;
            assert_eq!(
                code,
                ExitCode::SUCCESS,
                "{example} {}: fabbrica validate failed",
                overlay.display()
            );
        }
    }
    Ok(())
}

#[test]
fn built_in_kinds_validate_against_kubernetes_1_33() -> anyhow::Result<()> {
    let validate = tool("kubernetes-validate")?;
    let site = render("ai-factory")?;
    let crds = site.join("gitops/base/crds/crds.yaml");
    let (ok, out, err) = run(
        &validate,
        &["--strict", "-k", "1.33.0", crds.to_str().unwrap()],
    )?;
    assert!(ok, "kubernetes-validate refused the CRDs:\n{out}\n{err}");
    assert!(
        !out.contains("ERROR") && !err.contains("ERROR"),
        "{out}\n{err}"
    );
    Ok(())
}

#[test]
fn a_rendered_site_has_no_high_or_critical_misconfiguration() -> anyhow::Result<()> {
    let site = render("ai-factory")?;
    assert_no_high_or_critical_misconfiguration(site.to_str().unwrap(), &[])
}
