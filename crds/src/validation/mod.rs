//! Validation of specs: the rules across objects and against the catalog, which no CRD
//! schema can state, and again the one-object rules the schema enforces at admission, so
//! files are checked the same way without a cluster.
//! Pure: every problem is returned at once, each with its field path.
//!
//! One module per kind ([`factory`], [`workspace`], [`jupyter`], [`maintenance`]); the problem type and the
//! checks they share are here.

mod allocation;
mod factory;
mod health;
mod jupyter;
mod maintenance;
mod metadata;
mod workspace;

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::quantity;

pub use self::factory::validate_factory;
pub use self::jupyter::validate_jupyter;
pub use self::maintenance::{max_unavailable, validate_maintenance};
pub use self::metadata::{MAX_JUPYTER_NAME, validate_object_name};
pub use self::workspace::validate_workspace;
// The capacity contracts the rules use, under the paths they always had.
pub use crate::capacity::{gpus_per_node, pool_capacity, units_per_gpu};

/// Partition keys tenants may use: 0x0000 is invalid and 0x7FFF is the default partition.
pub const PARTITION_KEYS: std::ops::RangeInclusive<u16> = 0x0001..=0x7FFE;

/// One thing wrong with a spec.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Problem {
    /// Field path from the object's root (`spec.gpuPools[1].sharing.mig.profile`).
    pub path: String,
    /// What is wrong and what would be valid.
    pub message: String,
}

impl Problem {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem of one object, as an error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    pub(crate) fn into_result(self) -> Result<(), Problems> {
        if self.0.is_empty() { Ok(()) } else { Err(self) }
    }
}

/// Parses a partition key written as `0x` and four hex digits.
pub fn partition_key(text: &str) -> Option<u16> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))?;
    if digits.len() != 4 {
        return None;
    }
    u16::from_str_radix(digits, 16).ok()
}

pub(crate) fn duplicates<'a>(
    names: impl IntoIterator<Item = &'a str>,
    path: impl Fn(usize) -> String,
    what: &str,
    problems: &mut Vec<Problem>,
) {
    let mut seen = BTreeMap::new();
    for (i, name) in names.into_iter().enumerate() {
        if let Some(first) = seen.insert(name, i) {
            problems.push(Problem::new(
                path(i),
                format!(
                    "duplicate {what} {name:?} (first at index {first}); {what}s must be unique"
                ),
            ));
            seen.insert(name, first);
        }
    }
}

pub(crate) fn listing<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let names: Vec<_> = names.into_iter().collect();
    if names.is_empty() {
        "none are declared".to_owned()
    } else {
        format!("valid: {}", names.join(", "))
    }
}

pub(crate) fn check_key(text: &str, path: &str, p: &mut Vec<Problem>) -> Option<u16> {
    match partition_key(text) {
        Some(key) if PARTITION_KEYS.contains(&key) => Some(key),
        _ => {
            p.push(Problem::new(
                path,
                format!(
                    "partition key {text:?} is outside the valid range; valid: 0x0001 to 0x7FFE"
                ),
            ));
            None
        }
    }
}

pub(crate) fn check_quantity(text: &str, path: String, p: &mut Vec<Problem>) {
    match quantity::parse(text) {
        None => p.push(Problem::new(
            path,
            format!("{text:?} is not a quantity; valid: e.g. 8, 500m, 64Gi, 2Pi"),
        )),
        // Every quantity of the API is an amount: CPUs, memory, capacity.
        Some(v) if v < 0.0 => p.push(Problem::new(
            path,
            format!("{text:?} is negative; valid: 0 or more, e.g. 8, 500m, 64Gi, 2Pi"),
        )),
        Some(_) => {}
    }
}

#[cfg(test)]
mod tests;
