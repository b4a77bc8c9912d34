//! `fabbrica fleet` as a person and a pipeline meet it: the example fleet planned, rendered and
//! validated, bad fleet files refused with the field path, and a site whose cluster cannot be
//! reached shown as such.

use std::path::Path;
use std::process::Command;

const EXAMPLE: &str = "blueprints/examples/fleet-europe.yaml";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn fabbrica_with(args: &[&str], env: &[(&str, &str)]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_fabbrica"))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("fabbrica runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8(output.stdout).expect("utf-8 output"),
        stderr: String::from_utf8(output.stderr).expect("utf-8 output"),
    }
}

fn fabbrica(args: &[&str]) -> Run {
    fabbrica_with(args, &[])
}

#[test]
fn the_example_fleet_rolls_up_by_site_and_country_in_every_format() {
    let json = fabbrica(&["fleet", "plan", EXAMPLE, "-o", "json"]);
    assert_eq!(json.code, 0, "{}", json.stderr);
    let plan: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let sites = plan["sites"].as_array().unwrap();
    assert_eq!(sites.len(), 6);
    for key in ["gpus", "nodes", "switches", "racks", "clusters"] {
        let by_site: u64 = sites.iter().map(|s| s[key].as_u64().unwrap()).sum();
        let by_country: u64 = plan["countries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c[key].as_u64().unwrap())
            .sum();
        assert_eq!(by_site, plan["total"][key].as_u64().unwrap(), "{key}");
        assert_eq!(by_country, plan["total"][key].as_u64().unwrap(), "{key}");
    }
    let giga = sites.iter().find(|s| s["site"] == "giga-eu").unwrap();
    assert_eq!(giga["clusters"], 7);
    assert_eq!(giga["role"], "gigafactory");

    let csv = fabbrica(&["fleet", "plan", EXAMPLE, "-o", "csv"]);
    assert_eq!(csv.code, 0);
    let lines: Vec<&str> = csv.stdout.lines().collect();
    // A header, six sites, five countries, the total.
    assert_eq!(lines.len(), 1 + 6 + 5 + 1, "{}", csv.stdout);
    assert!(lines[0].starts_with("scope,name,country,role"));
    assert!(lines.last().unwrap().starts_with("total,eu,"));

    let text = fabbrica(&["fleet", "plan", EXAMPLE]);
    assert!(text.stdout.contains("By country"), "{}", text.stdout);
}

#[test]
fn validate_checks_a_fleet_file_with_its_sites() {
    let run = fabbrica(&["validate", EXAMPLE]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.starts_with("valid: "), "{}", run.stdout);
}

fn fleet_file(dir: &Path, body: &str) -> String {
    let path = dir.join("fleet.yaml");
    std::fs::write(
        &path,
        format!("apiVersion: fabbrica.io/v1alpha1\nkind: Fleet\nspec:\n  name: eu\n{body}"),
    )
    .unwrap();
    path.display().to_string()
}

const SITE: &str = "  sites:\n    - blueprint:\n        site: {name: kajaani, country: FI, tier: aiFactory}\n        compute: {system: dgx-h200, gpus: GPUS}\n        storage:\n          tiers: [{name: project, role: project, provisioner: csi.weka.io, capacity: 1Pi}]\n";

#[test]
fn bad_fleet_files_are_refused_with_the_field_path_and_what_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            format!("{}  sitess: []\n", SITE.replace("GPUS", "64")),
            "spec.sitess: unknown field",
        ),
        (
            SITE.replace("GPUS", "0"),
            "spec.sites[0].blueprint.compute.gpus: 0 GPUs; valid: at least 1",
        ),
        (
            SITE.replace("GPUS", "64")
                .replace("tier: aiFactory", "tier: aiFactory, contry: FI"),
            "spec.sites[0].blueprint.site.contry: unknown field; valid: country, name, tier",
        ),
        (
            format!(
                "{}  tenants:\n    - {{name: aurora, displayName: Aurora, kind: startup, workspaces: [{{site: milano, gpus: 8}}]}}\n",
                SITE.replace("GPUS", "64")
            ),
            "spec.tenants[0].workspaces[0].site: no site \"milano\" in spec.sites; valid: kajaani",
        ),
        (
            format!(
                "{}  tenants:\n    - {{name: aurora, displayName: Aurora, kind: startup, workspaces: [{{site: kajaani, gpus: 128}}]}}\n",
                SITE.replace("GPUS", "64")
            ),
            "spec.sites[0].blueprint.tenants: tenants are granted 128 GPUs in total but the site has 64",
        ),
        (
            "  sites:\n    - path: missing.yaml\n".to_owned(),
            "spec.sites[0].path: ",
        ),
    ];
    for (body, expected) in cases {
        let path = fleet_file(dir.path(), &body);
        let plan = fabbrica(&["fleet", "plan", &path]);
        assert_ne!(plan.code, 0, "{body}");
        assert!(
            plan.stderr.contains(expected),
            "fleet plan: {expected:?} not in:\n{}",
            plan.stderr
        );
        let validate = fabbrica(&["validate", &path]);
        assert_eq!(validate.code, 1, "{body}");
        assert!(
            validate.stdout.contains(expected),
            "validate: {expected:?} not in:\n{}",
            validate.stdout
        );
    }
}

#[test]
fn render_writes_a_folder_per_site_and_never_clobbers() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();
    let run = fabbrica(&["fleet", "render", EXAMPLE, "--out", out]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for site in ["bologna", "julich", "kajaani", "barcelona", "ljubljana"] {
        assert!(
            Path::new(out)
                .join(site)
                .join("gitops/overlays/production/kustomization.yaml")
                .exists(),
            "{site}"
        );
    }
    let giga = Path::new(out).join("giga-eu/gitops");
    assert!(
        giga.join("cells/giga-eu-c07/base/site/factory.yaml")
            .exists()
    );
    assert!(giga.join("manager/multikueue.yaml").exists());
    // A fleet tenant's workspace is in the site's objects.
    let workspaces =
        std::fs::read_to_string(Path::new(out).join("julich/gitops/base/site/workspaces.yaml"))
            .unwrap();
    assert!(workspaces.contains("name: helix"), "{workspaces}");

    let again = fabbrica(&["fleet", "render", EXAMPLE, "--out", out]);
    assert_ne!(again.code, 0);
    assert!(again.stderr.contains("is not empty"), "{}", again.stderr);
}

#[test]
fn status_shows_a_site_it_cannot_reach_and_still_reads_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: down\n  cluster: {server: 'https://127.0.0.1:1', insecure-skip-tls-verify: true}\nusers:\n- name: u\n  user: {token: t}\ncontexts:\n- name: kajaani-prod\n  context: {cluster: down, user: u}\ncurrent-context: kajaani-prod\n",
    )
    .unwrap();
    let body = format!(
        "{}      context: kajaani-prod\n    - blueprint:\n        site: {{name: oulu, country: FI, tier: aiFactory}}\n        compute: {{system: dgx-h200, gpus: 64}}\n        storage:\n          tiers: [{{name: project, role: project, provisioner: csi.weka.io, capacity: 1Pi}}]\n",
        SITE.replace("GPUS", "64")
    );
    let path = fleet_file(dir.path(), &body);
    let run = fabbrica_with(
        &["fleet", "status", &path, "--timeout", "5"],
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    );
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("Fleet eu: 0 of 2 clusters answered"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("kajaani: cannot reach context \"kajaani-prod\":"),
        "{}",
        run.stdout
    );
    // A site whose context the kubeconfig lacks says so.
    assert!(
        run.stdout
            .contains("oulu: cannot reach context \"oulu\": no usable context"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_cell_limit_below_a_spine_group_is_refused_with_the_smallest_valid() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let run = fabbrica(&[
        "blueprint",
        "render",
        "--example",
        "gigafactory",
        "--max-nodes-per-cluster",
        "1000",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains(
            "--max-nodes-per-cluster: 1000 nodes per cluster is less than one spine group of this fabric (1296 nodes), which a cell never splits; valid: at least 1296"
        ),
        "{}",
        run.stderr
    );
    assert!(!out.exists(), "nothing is written");

    // The same limit in a blueprint file, as `validate` reads it.
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../blueprints/sites/gigafactory.yaml"),
    )
    .unwrap()
    .replace("  facility:\n", "  cells: {maxNodes: 1000}\n  facility:\n");
    let file = dir.path().join("giga.yaml");
    std::fs::write(&file, text).unwrap();
    let run = fabbrica(&["validate", file.to_str().unwrap()]);
    assert_eq!(run.code, 1);
    assert!(
        run.stdout
            .contains("spec.cells.maxNodes: 1000 nodes per cluster"),
        "{}",
        run.stdout
    );
}
