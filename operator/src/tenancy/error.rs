//! Errors of the tenancy controllers: the operator's, and the few that only tenancy meets.

/// What can go wrong while reconciling a Workspace or a JupyterEnvironment.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An error the whole operator shares (API calls, serialization, finalizers).
    #[error(transparent)]
    Operator(#[from] crate::Error),
    /// The operating system's random source failed while generating an access token.
    #[error("generating an access token failed: {0}")]
    Token(String),
}

impl Error {
    /// A short, stable label for the `reason` of failure metrics and Events.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Operator(err) => err.metric_label(),
            Self::Token(_) => "token",
        }
    }
}

impl From<kube::Error> for Error {
    fn from(err: kube::Error) -> Self {
        Self::Operator(err.into())
    }
}

impl From<serde_json::Error> for Error {
    fn from(err: serde_json::Error) -> Self {
        Self::Operator(err.into())
    }
}

impl crate::reconcile::run::Failure for Error {
    fn metric_label(&self) -> &'static str {
        Error::metric_label(self)
    }

    fn retry(&self) -> std::time::Duration {
        match self {
            Self::Operator(err) => err.retry(),
            Self::Token(_) => std::time::Duration::from_secs(10),
        }
    }

    fn in_status(&self) -> bool {
        matches!(self, Self::Operator(err) if err.in_status())
    }
}

/// Results of the tenancy controllers.
pub type Result<T, E = Error> = std::result::Result<T, E>;
