//! fabbrica's Kubernetes API, group `fabbrica.io`, version `v1alpha1`: the
//! custom resource types, their generated CRDs, the GPU system catalog and the
//! validation shared by the operator and the CLI.

// kube's repeated `printcolumn(...)` attributes are not duplicates.
#![allow(clippy::duplicated_attributes)]

pub mod access_modes;
pub mod capacity;
pub mod catalog;
pub mod crd;
pub mod kueue;
pub mod labels;
pub mod names;
pub mod quantity;
pub mod v1alpha1;
pub mod validation;

pub use k8s_openapi;
pub use kube;
