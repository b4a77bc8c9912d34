//! `fabbrica fleet status` against a real control plane: a site whose context reaches it is
//! read (its Factory's expected GPUs and its tenants), and a site whose context reaches nothing
//! is shown as unreachable beside it.

use std::time::Duration;

use fabbrica::commands::fleet::status::{fleet_status, text};
use fabbrica_tests::{client, install_crds, kubeconfig_path, kubectl, scratch_dir, unique_name};
use kube::config::{Kubeconfig, NamedContext};

#[test]
fn a_reachable_site_is_read_and_an_unreachable_one_says_so() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async { install_crds(&client().await?).await })?;
    let site = unique_name("fleet");
    let dir = scratch_dir("fleet-status")?;

    // The control plane's kubeconfig with one more context, on a port where nothing listens.
    let mut kubeconfig = Kubeconfig::read_from(kubeconfig_path())?;
    let reachable = kubeconfig
        .current_context
        .clone()
        .expect("the control plane's kubeconfig has a current context");
    let mut down = kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == reachable)
        .expect("its current context")
        .clone();
    let mut cluster = kubeconfig.clusters[0].clone();
    cluster.name = "down".into();
    if let Some(c) = cluster.cluster.as_mut() {
        c.server = Some("https://127.0.0.1:1".into());
    }
    kubeconfig.clusters.push(cluster);
    down.name = "down".into();
    if let Some(c) = down.context.as_mut() {
        c.cluster = "down".into();
    }
    kubeconfig.contexts.push(NamedContext { ..down });
    let kubeconfig_file = dir.join("kubeconfig");
    std::fs::write(&kubeconfig_file, serde_saphyr::to_string(&kubeconfig)?)?;

    // The reachable site's Factory (4 DGX H100 nodes: 32 GPUs) and one tenant.
    let objects = dir.join("objects.yaml");
    std::fs::write(
        &objects,
        format!(
            "apiVersion: fabbrica.io/v1alpha1\nkind: Factory\nmetadata: {{name: {site}}}\nspec:\n  site: {{name: {site}, country: IT, tier: aiFactory}}\n  gpuPools: [{{name: gpu, system: dgx-h100, expectedNodes: 4, nodeSelector: {{fleet-test: {site}}}}}]\n  fabric: {{type: infiniband, railsPerNode: 8, linkSpeed: 400G, topology: {{source: nodeOrder}}}}\n---\napiVersion: fabbrica.io/v1alpha1\nkind: Workspace\nmetadata: {{name: {site}-t}}\nspec:\n  factory: {site}\n  tenant: {{name: Tenant, kind: startup}}\n  namespace: {site}-t\n  gpuQuota: [{{pool: gpu, gpus: 8}}]\n"
        ),
    )?;
    kubectl(&["apply", "--server-side", "-f", objects.to_str().unwrap()])?;

    let fleet = dir.join("fleet.yaml");
    let blueprint = |name: &str, context: &str| {
        format!(
            "    - context: {context}\n      blueprint:\n        site: {{name: {name}, country: IT, tier: aiFactory}}\n        compute: {{system: dgx-h100, gpus: 32}}\n        storage:\n          tiers: [{{name: project, role: project, provisioner: csi.example.com, capacity: 1Pi}}]\n"
        )
    };
    std::fs::write(
        &fleet,
        format!(
            "apiVersion: fabbrica.io/v1alpha1\nkind: Fleet\nspec:\n  name: test\n  sites:\n{}{}",
            blueprint(&site, &reachable),
            blueprint("offline", "down")
        ),
    )?;
    let status = fleet_status(&fleet, Some(&kubeconfig_file), Duration::from_secs(10))?
        .expect("the fleet file is valid");
    let result = (|| {
        let [up, down] = status.clusters.as_slice() else {
            anyhow::bail!("two clusters expected: {status:?}");
        };
        assert!(up.reachable, "{up:?}");
        assert_eq!((up.factories, up.gpus_expected, up.tenants), (1, 32, 1));
        assert!(!down.reachable);
        let shown = text(&status);
        assert!(shown.contains("1 of 2 clusters answered"), "{shown}");
        assert!(
            shown.contains("offline: cannot reach context \"down\":"),
            "{shown}"
        );
        Ok(())
    })();
    kubectl(&["delete", "-f", objects.to_str().unwrap(), "--wait=false"])?;
    std::fs::remove_dir_all(&dir)?;
    result
}
