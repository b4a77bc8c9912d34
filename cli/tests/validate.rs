//! `fabbrica validate` as a pipeline and a person meet it.

use std::process::Command;

fn fabbrica(args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_fabbrica"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("fabbrica runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).expect("utf-8 output"),
    )
}

#[test]
fn the_examples_are_valid() {
    for example in [
        &["blueprints/examples/ai-factory.yaml"][..],
        // The notebooks, checked against the workspaces and the Factory they belong to.
        &[
            "blueprints/examples/ai-factory.yaml",
            "blueprints/examples/ai-factory-notebooks.yaml",
        ],
        &["blueprints/examples/gigafactory.yaml"],
        &["blueprints/sites/ai-factory.yaml"],
        &["blueprints/sites/gigafactory.yaml"],
    ] {
        let args: Vec<&str> = std::iter::once("validate")
            .chain(example.iter().copied())
            .collect();
        let (code, out) = fabbrica(&args);
        assert_eq!(code, 0, "{example:?}: {out}");
        assert!(out.starts_with("valid: "), "{out}");
    }
}

#[test]
fn every_problem_is_listed_with_file_document_and_field() {
    let (code, out) = fabbrica(&["validate", "cli/tests/fixtures/invalid.yaml"]);
    assert_eq!(code, 1);
    insta::assert_snapshot!(out);
}

#[test]
fn json_output_is_one_parseable_report() {
    let (code, out) = fabbrica(&["validate", "-o", "json", "cli/tests/fixtures/invalid.yaml"]);
    assert_eq!(code, 1);
    let report: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
    assert_eq!(report["valid"], false);
    let problems = report["problems"].as_array().expect("a problem list");
    assert!(problems.len() >= 10, "{problems:?}");
    assert!(
        problems
            .iter()
            .any(|p| p["path"] == "spec.gpuPools[0].sharing.mig.profile" && p["document"] == 0)
    );
}

#[test]
fn a_site_blueprint_is_checked_like_the_cluster_kinds() {
    let site = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../blueprints/sites/ai-factory.yaml"
    ))
    .expect("the example site");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let problems = |text: String| {
        assert_ne!(
            text, site,
            "the example still has the field this test breaks"
        );
        let file = dir.path().join("site.yaml");
        std::fs::write(&file, text).expect("written");
        let (code, out) = fabbrica(&["validate", "-o", "json", file.to_str().expect("utf-8")]);
        assert_eq!(code, 1, "{out}");
        let report: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
        report["problems"]
            .as_array()
            .expect("a problem list")
            .clone()
    };
    let bad_pue = problems(site.replace("pue: 1.3", "pue: 0.5"));
    assert_eq!(bad_pue.len(), 1, "{bad_pue:?}");
    assert_eq!(bad_pue[0]["path"], "spec.facility.pue");
    assert_eq!(bad_pue[0]["object"], "SiteBlueprint/bologna");
    let unknown = problems(site.replace("pue: 1.3", "pue: 1.3\n    cooling: liquid"));
    assert_eq!(unknown[0]["path"], "spec.facility.cooling", "{unknown:?}");
    assert!(
        unknown[0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("cooling"),
        "{unknown:?}"
    );
    // The parts shared with the custom resources name a misspelt field and the valid ones too,
    // and `plan` refuses the file as `validate` does.
    let misspelt = site
        .replace("country: IT", "country: IT\n    regoin: emilia")
        .replacen("reclaimPolicy: Delete", "reclaimPolcy: Delete", 1);
    let shared = problems(misspelt.clone());
    let paths: Vec<&str> = shared.iter().filter_map(|p| p["path"].as_str()).collect();
    assert_eq!(
        paths,
        ["spec.site.regoin", "spec.storage.tiers[0].reclaimPolcy"],
        "{shared:?}"
    );
    assert_eq!(
        shared[0]["message"], "unknown field; valid: country, name, tier",
        "{shared:?}"
    );
    let file = dir.path().join("misspelt.yaml");
    std::fs::write(&file, misspelt).expect("written");
    let output = Command::new(env!("CARGO_BIN_EXE_fabbrica"))
        .args(["plan", file.to_str().expect("utf-8")])
        .output()
        .expect("fabbrica runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("spec.storage.tiers[0].reclaimPolcy: unknown field; valid:"),
        "{stderr}"
    );
}

#[test]
fn unreadable_files_are_problems_too() {
    let (code, out) = fabbrica(&["validate", "no/such/file.yaml"]);
    assert_eq!(code, 1);
    assert!(out.contains("no/such/file.yaml: cannot read"), "{out}");
}
