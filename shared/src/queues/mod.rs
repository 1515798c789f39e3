//! The persistent-queue drain (docs/rollout.md "Persistent-queue drain"): what the decision asks
//! the controller to poll ([`QueueProbe`]), what a poll found ([`QueueReport`]) and when a queue
//! counts as drained.
//!
//! The controller polls; this module only reads the pages ([`exposition`]) and folds each poll
//! into the reports ([`record`]), so the rule is the same wherever it is tested.

pub mod exposition;

use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Time between two polls of the same queues. vmagent's gauge counts what waits in the queue;
/// a target that does not take data keeps it above zero, so two empty polls this far apart
/// show a queue that is drained, not one caught between two blocks.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Consecutive polls in which every ready pod reports the queue empty: one empty poll may be a
/// moment between two blocks.
pub(crate) const DRAINED_AFTER_POLLS: u32 = 2;
/// A report older than this is not evidence of anything: the queue may have filled since, and
/// a streak with a gap in it is no streak.
pub(crate) const REPORT_TTL: Duration = Duration::from_secs(5);
/// Budget of one request to one pod.
pub const POD_TIMEOUT: Duration = Duration::from_secs(2);

/// One remote-write target of an agent whose queue must be empty.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueTarget {
    /// 1-based position of the target in the agent's live `spec.remoteWrite`.
    pub index: u32,
    /// The target's URL.
    pub url: String,
    /// What the target is, for messages (`VMCluster demo-b`).
    pub describes: String,
}

/// The queues of one agent to poll, and where its pods are found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueProbe {
    /// The VMAgent.
    pub agent: String,
    /// The zone of the VMAgent.
    pub zone: String,
    /// Its Service: the EndpointSlices labelled `kubernetes.io/service-name=<service>` list its
    /// pods.
    pub service: String,
    /// `http` or `https` (`extraArgs.tls`).
    pub scheme: String,
    /// `<http.pathPrefix>/metrics`.
    pub path: String,
    /// The targets whose queues must be empty.
    pub targets: Vec<QueueTarget>,
}

/// The answer of one ready pod of an agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodPage {
    /// The pod (its name, or its address when the endpoint names none).
    pub pod: String,
    /// The `/metrics` page, or why there is none.
    pub page: Result<String, String>,
}

/// What one pod holds for one target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodQueue {
    /// The pod.
    pub pod: String,
    /// Bytes still to send; `None` when the pod did not answer or reports no such queue.
    pub pending_bytes: Option<f64>,
    /// Why the pod's page could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl PodQueue {
    fn empty(&self) -> bool {
        self.pending_bytes == Some(0.0)
    }
}

/// The last poll of one agent's queue for one target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueReport {
    /// The VMAgent.
    pub agent: String,
    /// 1-based position of the target in the agent's list when it was polled.
    pub index: u32,
    /// The target's URL.
    pub url: String,
    /// When it was polled.
    pub polled_at: Timestamp,
    /// Consecutive polls, up to this one, in which the agent had ready pods and each of them
    /// reported the queue empty.
    pub empty_polls: u32,
    /// What each ready pod reported in this poll; none: the agent has no ready pod.
    pub pods: Vec<PodQueue>,
}

impl QueueReport {
    /// Whether this report shows the queue drained at `now`.
    #[must_use]
    pub fn drained(&self, now: Timestamp) -> bool {
        self.fresh(now) && self.empty_polls >= DRAINED_AFTER_POLLS
    }

    /// Whether the report is recent enough to say anything at `now`.
    #[must_use]
    pub fn fresh(&self, now: Timestamp) -> bool {
        let age = self.polled_at.duration_until(now);
        age.is_negative() || age.unsigned_abs() <= REPORT_TTL
    }

    /// Whether it concerns `target` of `agent`.
    #[must_use]
    pub fn concerns(&self, agent: &str, target: &QueueTarget) -> bool {
        self.agent == agent && self.index == target.index && self.url == target.url
    }
}

/// `reports` after one poll of `probe`'s agent that found `pages`, at `now`: the probe's targets
/// get a new report each, the others are kept as they were.
#[must_use]
pub fn record(
    reports: &[QueueReport],
    probe: &QueueProbe,
    pages: &[PodPage],
    now: Timestamp,
) -> Vec<QueueReport> {
    let samples: Vec<(&str, Result<Vec<exposition::QueueSample>, &str>)> = pages
        .iter()
        .map(|p| {
            let parsed = p
                .page
                .as_ref()
                .map(|page| exposition::queue_samples(page))
                .map_err(String::as_str);
            (p.pod.as_str(), parsed)
        })
        .collect();
    let mut next: Vec<QueueReport> = reports
        .iter()
        .filter(|r| !probe.targets.iter().any(|t| r.concerns(&probe.agent, t)))
        .cloned()
        .collect();
    for target in &probe.targets {
        let pods: Vec<PodQueue> = samples
            .iter()
            .map(|(pod, parsed)| match parsed {
                Ok(samples) => PodQueue {
                    pod: (*pod).to_owned(),
                    pending_bytes: exposition::pending_for(samples, target.index, &target.url),
                    error: None,
                },
                Err(error) => PodQueue {
                    pod: (*pod).to_owned(),
                    pending_bytes: None,
                    error: Some((*error).to_owned()),
                },
            })
            .collect();
        let empty = !pods.is_empty() && pods.iter().all(PodQueue::empty);
        let before = reports
            .iter()
            .find(|r| r.concerns(&probe.agent, target) && r.fresh(now))
            .map_or(0, |r| r.empty_polls);
        next.push(QueueReport {
            agent: probe.agent.clone(),
            index: target.index,
            url: target.url.clone(),
            polled_at: now,
            empty_polls: if empty { before.saturating_add(1) } else { 0 },
            pods,
        });
    }
    next
}

/// `1.5 MiB`, `300 B`: a byte count for messages.
#[must_use]
pub(crate) fn human_bytes(bytes: f64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024.0 {
        return format!("{bytes:.0} B");
    }
    let mut value = bytes / 1024.0;
    let mut unit = UNITS[0];
    for next in &UNITS[1..] {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    format!("{value:.1} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe() -> QueueProbe {
        QueueProbe {
            agent: "demo-a".into(),
            zone: "a".into(),
            service: "vmagent-demo-a".into(),
            scheme: "http".into(),
            path: "/metrics".into(),
            targets: vec![QueueTarget {
                index: 2,
                url: "http://b/api/v1/write".into(),
                describes: "VMCluster demo-b".into(),
            }],
        }
    }

    fn page(pending: u64) -> String {
        format!(
            "vmagent_remotewrite_pending_data_bytes{{path=\"/q/persistent-queue/1_0000000000000000\",url=\"1:secret-url\"}} 7\n\
             vmagent_remotewrite_pending_data_bytes{{path=\"/q/persistent-queue/2_0000000000000000\",url=\"2:secret-url\"}} {pending}\n"
        )
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).expect("timestamp")
    }

    fn pods(pages: &[Result<String, String>]) -> Vec<PodPage> {
        pages
            .iter()
            .enumerate()
            .map(|(i, page)| PodPage {
                pod: format!("pod-{i}"),
                page: page.clone(),
            })
            .collect()
    }

    #[test]
    fn drained_takes_consecutive_empty_polls_of_every_pod() {
        let probe = probe();
        let empty = pods(&[Ok(page(0)), Ok(page(0))]);
        let one = record(&[], &probe, &empty, at(0));
        assert_eq!(one[0].empty_polls, 1);
        assert!(!one[0].drained(at(0)), "one empty poll is not enough");
        let two = record(&one, &probe, &empty, at(1));
        assert!(two[0].drained(at(1)));
        // One pod still sending resets the streak.
        let busy = pods(&[Ok(page(0)), Ok(page(512))]);
        let three = record(&two, &probe, &busy, at(2));
        assert_eq!(three[0].empty_polls, 0);
        assert_eq!(three[0].pods[1].pending_bytes, Some(512.0));
        assert!(!three[0].drained(at(2)));
    }

    #[test]
    fn a_missing_series_an_error_or_no_pod_is_not_drained() {
        let probe = probe();
        let missing = pods(&[Ok(
            "vmagent_remotewrite_pending_data_bytes{url=\"1:secret-url\"} 0\n".into(),
        )]);
        let failed = pods(&[Ok(page(0)), Err("connection refused".into())]);
        for pages in [missing, failed, Vec::new()] {
            let mut reports = Vec::new();
            for second in 0..3 {
                reports = record(&reports, &probe, &pages, at(second));
            }
            assert_eq!(reports[0].empty_polls, 0, "{pages:?}");
            assert!(!reports[0].drained(at(2)));
        }
    }

    #[test]
    fn an_old_report_proves_nothing() {
        let probe = probe();
        let empty = pods(&[Ok(page(0))]);
        let mut reports = record(&[], &probe, &empty, at(0));
        reports = record(&reports, &probe, &empty, at(1));
        assert!(reports[0].drained(at(1)));
        assert!(!reports[0].drained(at(60)), "stale");
        // A poll after a gap starts a new streak.
        let later = record(&reports, &probe, &empty, at(60));
        assert_eq!(later[0].empty_polls, 1);
    }

    #[test]
    fn a_moved_target_is_a_new_queue() {
        let probe = probe();
        let empty = pods(&[Ok(page(0))]);
        let mut reports = record(&[], &probe, &empty, at(0));
        reports = record(&reports, &probe, &empty, at(1));
        let mut moved = probe.clone();
        moved.targets[0].index = 1;
        assert!(
            !reports
                .iter()
                .any(|r| r.concerns(&moved.agent, &moved.targets[0]))
        );
        let after = record(&reports, &moved, &pods(&[Ok(page(0))]), at(2));
        assert_eq!(after.len(), 2, "the other report is kept");
        let report = after
            .iter()
            .find(|r| r.concerns(&moved.agent, &moved.targets[0]))
            .expect("report");
        // Position 1 holds 7 bytes in this page.
        assert_eq!(report.empty_polls, 0);
    }

    #[test]
    fn bytes_read_like_a_human_wrote_them() {
        assert_eq!(human_bytes(300.0), "300 B");
        assert_eq!(human_bytes(1_572_864.0), "1.5 MiB");
        assert_eq!(human_bytes(2048.0), "2.0 KiB");
    }
}
