//! Errors of one reconcile step.

/// Why a reconcile step stopped early.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// This replica does not (or no longer) hold the Lease.
    #[error("not the leader: refusing to write")]
    NotLeader,
    /// The object changed since it was read (a resourceVersion precondition failed).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The API server refused or failed a request.
    #[error("{action}: {source}")]
    Api {
        /// What was being done.
        action: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// A value could not be encoded or decoded.
    #[error("{0}")]
    Encode(String),
}

impl Error {
    /// Wrap a client error with what was being done; 409 becomes [`Error::Conflict`].
    pub fn api(action: impl Into<String>, source: kube::Error) -> Self {
        let action = action.into();
        if is_status(&source, 409) {
            return Self::Conflict(format!("{action}: {source}"));
        }
        Self::Api { action, source }
    }

    /// Label of the `vmdistributed_reconcile_errors_total` metric.
    #[must_use]
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::NotLeader => "not_leader",
            Self::Conflict(_) => "conflict",
            Self::Api { source, .. } => match source {
                kube::Error::Api(status) if status.code == 403 => "forbidden",
                kube::Error::Api(status) if status.code == 404 => "not_found",
                kube::Error::Api(status) if status.code >= 500 => "server_error",
                kube::Error::Api(_) => "rejected",
                _ => "transport",
            },
            Self::Encode(_) => "encode",
        }
    }
}

/// Whether a client error is an API status with this HTTP code.
#[must_use]
pub fn is_status(err: &kube::Error, code: u16) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == code)
}
