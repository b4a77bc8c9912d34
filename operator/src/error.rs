//! The operator's error type, with a short label per variant for metrics and Events.

/// What can go wrong while the operator runs or reconciles.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the Kubernetes API failed.
    #[error("a Kubernetes API call failed: {}", api_message(.0))]
    Kube(#[from] kube::Error),
    /// A request about named objects failed: what was asked, of what, and the API server's answer
    /// (`writing ConfigMap gpu-operator/x failed: namespaces "gpu-operator" not found`).
    #[error("{action} {object} failed: {}", api_message(.source))]
    Request {
        /// What was asked: `writing`, `listing`, `deleting`, `reading`.
        action: &'static str,
        /// The object or objects, as a person names them.
        object: String,
        /// The API's error.
        #[source]
        source: kube::Error,
    },
    /// Some parts of a reconcile failed and the others were done; the status names the failed
    /// parts. `first` is the first failure, which decides the retry and the metric label.
    #[error("{message}")]
    Incomplete {
        /// Every failed part, as a sentence.
        message: String,
        /// The first failure.
        first: Box<Error>,
    },
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
    /// A namespace a child goes in does not exist, and it is not the operator's to create.
    #[error("namespace {0} does not exist")]
    NamespaceMissing(String),
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
    /// `err` as a request about `object` that did `action` (`writing`, `listing`, `deleting`).
    pub fn request(action: &'static str, object: impl Into<String>, err: kube::Error) -> Self {
        Self::Request {
            action,
            object: object.into(),
            source: err,
        }
    }

    /// The API server's status when the error is its answer.
    pub fn api_status(&self) -> Option<&kube::core::Status> {
        match self {
            Self::Kube(kube::Error::Api(status))
            | Self::Request {
                source: kube::Error::Api(status),
                ..
            } => Some(status),
            Self::Incomplete { first, .. } => first.api_status(),
            _ => None,
        }
    }

    /// A short, stable label for the `reason` of failure metrics and Events.
    pub fn metric_label(&self) -> &'static str {
        if let Some(status) = self.api_status() {
            match status.code {
                409 => return "conflict",
                403 => return "forbidden",
                404 => return "not_found",
                _ => {}
            }
        }
        match self {
            Self::Kube(_) | Self::Request { .. } => "kube_api",
            Self::Incomplete { first, .. } => first.metric_label(),
            Self::CrdsMissing(_) => "crds_missing",
            Self::Serialize(_) => "serialize",
            Self::NodeConflict(_) => "node_conflict",
            Self::NamespaceMissing(_) => "namespace_missing",
            Self::Finalizer(_) => "finalizer",
            Self::MissingField(_) => "missing_field",
            Self::Lease(_) => "lease",
            Self::Server(_) => "server",
        }
    }
}

/// What the API server said, as a sentence: its status message (`namespaces "gpu-operator" not
/// found`), not the debug form of the whole response.
pub fn api_message(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) if !status.message.is_empty() => status.message.clone(),
        kube::Error::Api(status) if !status.reason.is_empty() => {
            format!("{} (HTTP {})", status.reason, status.code)
        }
        kube::Error::Api(status) => format!("HTTP {}", status.code),
        other => other.to_string(),
    }
}

/// Results of the operator library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::reconcile::run::{Failure, failed_ready};

    fn not_found(namespace: &str) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status {
            code: 404,
            reason: "NotFound".to_owned(),
            message: format!("namespaces \"{namespace}\" not found"),
            ..kube::core::Status::default()
        }))
    }

    #[test]
    fn api_errors_read_as_sentences_not_debug_dumps() {
        let err = Error::request(
            "writing",
            "ConfigMap gpu-operator/bench-device-plugin",
            not_found("gpu-operator"),
        );
        assert_eq!(
            err.to_string(),
            "writing ConfigMap gpu-operator/bench-device-plugin failed: namespaces \"gpu-operator\" not found"
        );
        assert_eq!(err.metric_label(), "not_found");
        let bare = Error::from(not_found("x"));
        assert_eq!(
            bare.to_string(),
            "a Kubernetes API call failed: namespaces \"x\" not found"
        );
        for text in [err.to_string(), bare.to_string()] {
            assert!(!text.contains("Status {"), "{text}");
        }
        let silent = kube::Error::Api(Box::new(kube::core::Status {
            code: 503,
            reason: "ServiceUnavailable".to_owned(),
            ..kube::core::Status::default()
        }));
        assert_eq!(api_message(&silent), "ServiceUnavailable (HTTP 503)");
    }

    #[test]
    fn a_failed_part_keeps_the_first_failure_for_retry_and_metrics_and_is_already_in_status() {
        let incomplete = Error::Incomplete {
            message: "DevicePluginConfig: namespace gpu-operator does not exist".to_owned(),
            first: Box::new(Error::NodeConflict("n1".to_owned())),
        };
        assert_eq!(incomplete.retry(), Duration::from_secs(1));
        assert_eq!(incomplete.metric_label(), "node_conflict");
        assert!(incomplete.in_status());
        assert_eq!(
            incomplete.to_string(),
            "DevicePluginConfig: namespace gpu-operator does not exist"
        );
        let plain = Error::request("listing", "configmaps in namespace x", not_found("x"));
        assert!(!plain.in_status(), "the kit writes Ready=False for it");
    }

    #[test]
    fn a_failed_reconcile_leaves_ready_false_with_the_sentence_and_the_retry() {
        let err = Error::request(
            "writing",
            "ConfigMap fabbrica-system/bench-topology",
            not_found("fabbrica-system"),
        );
        let now = crate::clock::Clock::now(&crate::clock::FixedClock(
            k8s_openapi::jiff::Timestamp::from_second(1_000).unwrap(),
        ));
        let ready = failed_ready(&err, Some(3), &now);
        assert_eq!(
            (
                ready.type_.as_str(),
                ready.status.as_str(),
                ready.reason.as_str()
            ),
            ("Ready", "False", "ReconcileFailed")
        );
        assert_eq!(
            ready.message,
            "the last reconcile failed and is retried in 10 s: writing ConfigMap fabbrica-system/bench-topology failed: namespaces \"fabbrica-system\" not found"
        );
        assert_eq!(ready.observed_generation, Some(3));
    }
}
