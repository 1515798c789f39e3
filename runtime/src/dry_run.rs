//! What the API server's answer to a server-side dry-run means, for the webhook's preflight and
//! the controller's alike (docs/operations.md "Preflight"): an answer is judged by
//! `shared::preflight`, a request that got none is inconclusive.

use shared::preflight::{Finding, classify_status};

/// The finding of a dry-run that returned `answer`.
#[must_use]
pub fn finding(answer: Result<(), &kube::Error>) -> Finding {
    match answer {
        Ok(()) => Finding::Accepted,
        Err(kube::Error::Api(status)) => classify_status(status),
        Err(other) => Finding::Inconclusive(format!("the API server is unreachable: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table of API server answers `shared::preflight` is tested against.
    const OUTCOMES: &str = include_str!("../../shared/tests/fixtures/preflight_outcomes.json");

    #[test]
    fn the_shared_table_of_answers_gets_the_documented_verdict() {
        let table: Vec<serde_json::Value> = serde_json::from_str(OUTCOMES).expect("table");
        assert!(table.len() >= 10);
        for row in table {
            let message = row["message"].as_str().expect("message");
            let mut status = kube::core::Status::failure(message, "");
            status.code = u16::try_from(row["code"].as_u64().expect("code")).expect("code");
            let err = kube::Error::Api(Box::new(status));
            let verdict = match finding(Err(&err)) {
                Finding::Accepted => "accepted",
                Finding::Rejected { .. } => "rejected",
                Finding::Inconclusive(_) => "inconclusive",
            };
            assert_eq!(verdict, row["verdict"], "{}", row["what"]);
        }
        assert_eq!(finding(Ok(())), Finding::Accepted);
        assert!(matches!(
            finding(Err(&kube::Error::LinesCodecMaxLineLengthExceeded)),
            Finding::Inconclusive(m) if m.contains("unreachable")
        ));
    }
}
