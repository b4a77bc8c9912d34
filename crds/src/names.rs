//! Naming contracts: the names and quota keys fabbrica derives from its objects, which the
//! operator writes and the CLI and tenants read.

/// The ResourceQuota key of GPU requests.
pub const GPU_REQUESTS: &str = "requests.nvidia.com/gpu";

/// The StorageClass of a Factory's tier: `<factory>-<tier>`.
pub fn storage_class_name(factory: &str, tier: &str) -> String {
    format!("{factory}-{tier}")
}

/// The ResourceQuota key of storage requested on one StorageClass.
pub fn storage_requests(class: &str) -> String {
    format!("{class}.storageclass.storage.k8s.io/requests.storage")
}
