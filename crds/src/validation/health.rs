//! The rules of a pool's validation and of the fabric's discovery labels.

use super::Problem;
use super::metadata::{LABEL_RULES, is_label_key, is_label_value};
use crate::v1alpha1::{NodeValidation, TopologyDiscovery};

/// Checks `spec.gpuPools[i].validation`.
pub(crate) fn validate_node_validation(i: usize, v: &NodeValidation, p: &mut Vec<Problem>) {
    let path = format!("spec.gpuPools[{i}].validation");
    if v.image.is_empty() || v.image.chars().any(char::is_whitespace) || v.image.len() > 512 {
        p.push(Problem::new(
            format!("{path}.image"),
            format!(
                "{:?} is not an image reference; valid: a reference without spaces, at most 512 characters (`{}`)",
                v.image,
                crate::v1alpha1::DEFAULT_VALIDATION_IMAGE
            ),
        ));
    }
    match v.command.first() {
        None => p.push(Problem::new(
            format!("{path}.command"),
            "empty; valid: the program to run, then its arguments (leave it out for DCGM's `dcgmi diag -r 2`)",
        )),
        Some(program) if program.is_empty() => p.push(Problem::new(
            format!("{path}.command[0]"),
            "empty; valid: the program to run",
        )),
        Some(_) if v.command.len() > 64 => p.push(Problem::new(
            format!("{path}.command"),
            format!("{} elements; valid: 1 to 64", v.command.len()),
        )),
        Some(_) => {}
    }
    if !(60..=86_400).contains(&v.timeout_seconds) {
        p.push(Problem::new(
            format!("{path}.timeoutSeconds"),
            format!("{}; valid: 60 to 86400", v.timeout_seconds),
        ));
    }
    for (key, value) in v.pod_labels.iter().flatten() {
        if !is_label_key(key) || !is_label_value(value) {
            p.push(Problem::new(
                format!("{path}.podLabels"),
                format!("{key:?}: {value:?} is not a label; {LABEL_RULES}"),
            ));
        } else if key.starts_with("fabbrica.io/") {
            p.push(Problem::new(
                format!("{path}.podLabels"),
                format!("{key:?} is the operator's; valid: a key outside fabbrica.io/"),
            ));
        }
    }
}

/// Checks `spec.fabric.topology.discovery`.
pub(crate) fn validate_discovery(d: &TopologyDiscovery, p: &mut Vec<Problem>) {
    for (field, key) in [("leafLabel", &d.leaf_label), ("unitLabel", &d.unit_label)] {
        if let Some(key) = key
            && !is_label_key(key)
        {
            p.push(Problem::new(
                format!("spec.fabric.topology.discovery.{field}"),
                format!("{key:?} is not a label key; valid: [prefix/]name, the name at most 63 letters, digits, '-', '_' and '.'"),
            ));
        }
    }
}
