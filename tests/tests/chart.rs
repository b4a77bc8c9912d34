//! The Helm chart as a platform team meets it: lint-clean, renders with default and
//! non-default values, refuses bad values naming the field, carries the CRDs and
//! passes a misconfiguration scan.

use anyhow::Context;
use fabbrica_tests::{assert_no_high_or_critical_misconfiguration, repo_root, run, tool};

const CHART: &str = "charts/fabbrica-operator";

fn helm(args: &[&str]) -> anyhow::Result<(bool, String, String)> {
    run(&tool("helm")?, args)
}

#[test]
fn chart_lints_strictly() -> anyhow::Result<()> {
    let (ok, out, err) = helm(&["lint", "--strict", CHART])?;
    assert!(ok, "helm lint --strict failed:\n{out}\n{err}");
    assert!(out.contains("0 chart(s) failed"), "{out}");
    Ok(())
}

#[test]
fn chart_renders_one_replica_by_default_and_leader_election_with_more() -> anyhow::Result<()> {
    let (ok, single, err) = helm(&[
        "template",
        "fabbrica",
        CHART,
        "--namespace",
        "fabbrica-system",
    ])?;
    assert!(ok, "{err}");
    assert!(single.contains("replicas: 1"), "{single}");
    assert!(
        !single.contains("kind: PodDisruptionBudget"),
        "one replica needs no PDB"
    );
    assert!(
        single.contains("name: FABBRICA_LEADER_ELECT\n              value: \"false\""),
        "{single}"
    );

    let (ok, double, err) = helm(&[
        "template",
        "fabbrica",
        CHART,
        "--namespace",
        "fabbrica-system",
        "--set",
        "replicaCount=2",
    ])?;
    assert!(ok, "{err}");
    assert!(double.contains("replicas: 2"));
    assert!(
        double.contains("kind: PodDisruptionBudget"),
        "two replicas get a PDB"
    );
    assert!(
        double.contains("name: FABBRICA_LEADER_ELECT\n              value: \"true\""),
        "{double}"
    );
    Ok(())
}

#[test]
fn bad_values_fail_with_the_field_named() -> anyhow::Result<()> {
    for (set, field) in [
        ("replicaCount=two", "/replicaCount"),
        ("logFormat=xml", "/logFormat"),
        ("metrics.port=80", "/metrics/port"),
    ] {
        let (ok, _, err) = helm(&["template", "fabbrica", CHART, "--set", set])?;
        assert!(!ok, "--set {set} must be refused");
        assert!(
            err.contains(field),
            "--set {set}: {field} not named in {err}"
        );
    }
    Ok(())
}

#[test]
fn chart_crds_and_version_match_the_workspace() -> anyhow::Result<()> {
    for crd in fabbrica_crds::crd::all() {
        let name = fabbrica_crds::crd::file_name(&crd);
        let in_chart = std::fs::read_to_string(repo_root().join(CHART).join("crds").join(&name))?;
        assert!(
            in_chart == fabbrica_crds::crd::to_yaml(&crd),
            "{CHART}/crds/{name} differs from the types; copy crds/yaml/{name} into the chart"
        );
    }
    let chart = std::fs::read_to_string(repo_root().join(CHART).join("Chart.yaml"))?;
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        chart.contains(&format!("\nversion: {version}\n")),
        "Chart.yaml version is not {version}"
    );
    assert!(
        chart.contains(&format!("\nappVersion: \"{version}\"\n")),
        "Chart.yaml appVersion is not {version}"
    );
    // The oldest Kubernetes the chart accepts is the API the operator is compiled against.
    let manifest = std::fs::read_to_string(repo_root().join("Cargo.toml"))?;
    let feature = manifest
        .split('"')
        .find_map(|word| word.strip_prefix("v1_"))
        .expect("the workspace names a k8s-openapi version feature");
    assert!(
        chart.contains(&format!("\nkubeVersion: \">=1.{feature}.0-0\"\n")),
        "Chart.yaml kubeVersion is not >=1.{feature}.0-0, the k8s-openapi feature v1_{feature}"
    );
    Ok(())
}

/// The oldest Kubernetes the chart accepts (its `kubeVersion: ">=X-0"`): trivy renders the chart
/// for it, since trivy's own default (1.20) is refused by the chart and then nothing is scanned.
fn oldest_kubernetes() -> anyhow::Result<String> {
    let chart = std::fs::read_to_string(repo_root().join(CHART).join("Chart.yaml"))?;
    let version = chart
        .lines()
        .find_map(|line| line.strip_prefix("kubeVersion: \">="))
        .and_then(|rest| rest.split(['-', '"']).next())
        .context("Chart.yaml has kubeVersion: \">=X.Y.Z-0\"")?;
    Ok(version.to_owned())
}

#[test]
fn chart_has_no_high_or_critical_misconfiguration() -> anyhow::Result<()> {
    // The operator's job needs two findings on its ClusterRole; each is explained there.
    let kube_version = oldest_kubernetes()?;
    assert_no_high_or_critical_misconfiguration(
        CHART,
        &[
            "--helm-kube-version",
            &kube_version,
            "--ignorefile",
            "charts/fabbrica-operator/.trivyignore.yaml",
        ],
    )
}

#[test]
fn the_scan_reads_the_chart_and_accepts_no_finding_about_secrets() -> anyhow::Result<()> {
    let kube_version = oldest_kubernetes()?;
    let (ok, out, err) = run(
        &tool("trivy")?,
        &[
            "config",
            "--skip-check-update",
            "--quiet",
            "--severity",
            "HIGH,CRITICAL",
            "--format",
            "json",
            "--helm-kube-version",
            &kube_version,
            CHART,
        ],
    )?;
    anyhow::ensure!(ok, "trivy config failed: {err}");
    let report: serde_json::Value = serde_json::from_str(&out)?;
    let mut found: Vec<String> = report["Results"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|result| result["Misconfigurations"].as_array().into_iter().flatten())
        .filter_map(|m| m["AVDID"].as_str().map(str::to_owned))
        .collect();
    found.sort();
    found.dedup();
    let ignore_file = std::fs::read_to_string(repo_root().join(CHART).join(".trivyignore.yaml"))?;
    let mut accepted: Vec<String> = ignore_file
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- id: "))
        .map(str::to_owned)
        .collect();
    accepted.sort();
    // Unscanned, the chart would show no finding at all; every accepted one must be real.
    assert_eq!(
        found, accepted,
        "the findings of trivy on the rendered chart are not exactly the accepted ones"
    );
    // KSV-0041: management of Secrets. The operator holds no Secret permission in its role.
    assert!(
        !found.iter().any(|id| id == "AVD-KSV-0041"),
        "the chart grants Secret permissions: {found:?}"
    );
    Ok(())
}
