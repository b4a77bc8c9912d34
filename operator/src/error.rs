//! The operator's error type, with a short label per variant for metrics and Events.

/// What can go wrong while the operator runs or reconciles.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the Kubernetes API failed.
    #[error("Kubernetes API call failed: {0}")]
    Kube(#[from] kube::Error),
    /// The fabbrica CRDs are not served by the API server.
    #[error(
        "the fabbrica CRDs are not served by this cluster ({0}); install them with `fabbrica crds | kubectl apply --server-side -f -`"
    )]
    CrdsMissing(String),
    /// An object could not be serialized or read back.
    #[error("serialization failed: {0}")]
    Serialize(#[from] serde_json::Error),
    /// A Node changed between reading and writing it; the next reconcile retries with fresh data.
    #[error("node {0} changed while it was being updated; retrying")]
    NodeConflict(String),
    /// Adding or removing the Factory's finalizer failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// The object lacks a field the API server always sets (name, uid).
    #[error("object is missing {0}")]
    MissingField(&'static str),
    /// Leader election failed.
    #[error("leader election: {0}")]
    Lease(String),
    /// The HTTP server for metrics and probes failed.
    #[error("metrics server: {0}")]
    Server(#[from] std::io::Error),
}

impl Error {
    /// A short, stable label for the `reason` of failure metrics and Events.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube(kube::Error::Api(status)) if status.code == 409 => "conflict",
            Self::Kube(kube::Error::Api(status)) if status.code == 403 => "forbidden",
            Self::Kube(kube::Error::Api(status)) if status.code == 404 => "not_found",
            Self::Kube(_) => "kube_api",
            Self::CrdsMissing(_) => "crds_missing",
            Self::Serialize(_) => "serialize",
            Self::NodeConflict(_) => "node_conflict",
            Self::Finalizer(_) => "finalizer",
            Self::MissingField(_) => "missing_field",
            Self::Lease(_) => "lease",
            Self::Server(_) => "server",
        }
    }
}

/// Results of the operator library.
pub type Result<T, E = Error> = std::result::Result<T, E>;
