//! vmagent's `/metrics` page, read for what its persistent queues still hold (docs/rollout.md
//! "Persistent-queue drain").
//!
//! vmagent reports one gauge per remote-write target:
//! `vmagent_remotewrite_pending_data_bytes{path="<tmpDataPath>/persistent-queue/<N>_<XXH64>",url="<N>:secret-url"}`
//! where `N` is the 1-based position of the target in its `-remoteWrite.url` list and `XXH64`
//! the xxh64 of the URL without query and fragment, in 16 upper-case hex digits. With
//! `-remoteWrite.showURL` the label is `<N>:<url>`. Older vmagents report only the queue's own
//! `vm_persistentqueue_bytes_pending{path="…"}`.

use xxhash_rust::xxh64::xxh64;

/// The gauge vmagent reports per remote-write target.
pub(crate) const PENDING_METRIC: &str = "vmagent_remotewrite_pending_data_bytes";
/// The persistent queue's own gauge, the only one of older vmagents.
pub(crate) const LEGACY_PENDING_METRIC: &str = "vm_persistentqueue_bytes_pending";
/// The directory under `-remoteWrite.tmpDataPath` that holds one queue per target.
const QUEUE_DIR: &str = "persistent-queue";

/// One queue as a vmagent pod reports it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct QueueSample {
    /// 1-based position of the target in the pod's remote-write list.
    pub index: Option<u32>,
    /// The xxh64 of the target's URL, from the queue's directory name.
    pub url_hash: Option<u64>,
    /// Bytes still to send.
    pub pending_bytes: f64,
}

/// The queues a `/metrics` page reports: the per-target gauges, or, from a vmagent that has
/// none, the persistent queues' own gauges under `persistent-queue/`.
#[must_use]
pub(crate) fn queue_samples(text: &str) -> Vec<QueueSample> {
    let mut current = Vec::new();
    let mut legacy = Vec::new();
    for line in text.lines() {
        let Some((name, labels, value)) = parse_line(line) else {
            continue;
        };
        let label = |key: &str| {
            labels
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.as_str())
        };
        let queue = label("path").and_then(queue_dir);
        match name {
            PENDING_METRIC => current.push(QueueSample {
                index: label("url")
                    .and_then(url_label_index)
                    .or(queue.map(|(index, _)| index)),
                url_hash: queue.and_then(|(_, hash)| hash),
                pending_bytes: value,
            }),
            LEGACY_PENDING_METRIC => {
                if let Some((index, hash)) = queue {
                    legacy.push(QueueSample {
                        index: Some(index),
                        url_hash: hash,
                        pending_bytes: value,
                    });
                }
            }
            _ => {}
        }
    }
    if current.is_empty() { legacy } else { current }
}

/// What one pod still holds for the target at `index` (1-based) with `url`: the queue whose
/// directory carries the URL's hash wins, since it names the URL itself (a pod still running an
/// earlier list keeps it under another position); otherwise the queue at that position. `None`:
/// the pod reports no such queue.
#[must_use]
pub(crate) fn pending_for(samples: &[QueueSample], index: u32, url: &str) -> Option<f64> {
    let hash = url_hash(url);
    let by_hash: Vec<f64> = samples
        .iter()
        .filter(|s| s.url_hash == Some(hash))
        .map(|s| s.pending_bytes)
        .collect();
    if !by_hash.is_empty() {
        return Some(by_hash.iter().sum());
    }
    let by_index: Vec<f64> = samples
        .iter()
        .filter(|s| s.index == Some(index))
        .map(|s| s.pending_bytes)
        .collect();
    (!by_index.is_empty()).then(|| by_index.iter().sum())
}

/// The hash vmagent names a target's queue after: xxh64 of the URL without query and fragment
/// (query parameters may change without resetting the queue).
#[must_use]
pub fn url_hash(url: &str) -> u64 {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    xxh64(&url.as_bytes()[..end], 0)
}

/// `N` of a `url` label `N:secret-url` or `N:<url>`.
fn url_label_index(label: &str) -> Option<u32> {
    let (index, _) = label.split_once(':')?;
    index.parse().ok().filter(|n| *n > 0)
}

/// `(N, hash)` of a queue directory `…/persistent-queue/<N>_<16 hex digits>`; an all-zero or
/// malformed hash counts as none.
fn queue_dir(path: &str) -> Option<(u32, Option<u64>)> {
    let mut parts = path.trim_end_matches('/').rsplit('/');
    let dir = parts.next()?;
    if parts.next()? != QUEUE_DIR {
        return None;
    }
    let (index, hash) = dir.split_once('_')?;
    let index = index.parse().ok().filter(|n| *n > 0)?;
    let hash = (hash.len() == 16)
        .then(|| u64::from_str_radix(hash, 16).ok())
        .flatten()
        .filter(|h| *h != 0);
    Some((index, hash))
}

/// A sample's labels: names as written, values unescaped.
type Labels<'a> = Vec<(&'a str, String)>;

/// `name{label="value",…} value [timestamp]` → its parts; comments and malformed lines are
/// skipped.
fn parse_line(line: &str) -> Option<(&str, Labels<'_>, f64)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(['{', ' ', '\t'])?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(body) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(body)?;
        labels = parsed;
        rest = after;
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().ok()?,
    };
    Some((name, labels, value))
}

/// The labels after `{` up to the closing `}`, and what follows it.
fn parse_labels(mut body: &str) -> Option<(Labels<'_>, &str)> {
    let mut labels = Vec::new();
    loop {
        body = body.trim_start_matches([' ', ',']);
        if let Some(after) = body.strip_prefix('}') {
            return Some((labels, after));
        }
        let (key, after) = body.split_once('=')?;
        let after = after.trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '"' => break i,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                other => value.push(other),
            }
        };
        labels.push((key.trim(), value));
        body = &after[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLUSTER_URL: &str =
        "http://vminsert-demo-a.default.svc:8480/insert/0/prometheus/api/v1/write";

    #[test]
    fn the_hash_is_vmagents_queue_name() {
        // Computed with the xxhash module vmagent uses, for these URLs as vmagent names them.
        assert_eq!(
            format!("{:016X}", url_hash(CLUSTER_URL)),
            "9B8D85A226428329"
        );
        assert_eq!(
            format!(
                "{:016X}",
                url_hash("http://vmsingle-s.ns.svc:8428/api/v1/write?extra_label=a#x")
            ),
            "3089DDFA31D89B98"
        );
    }

    #[test]
    fn hidden_and_shown_urls_give_the_position() {
        let page = r#"# HELP vmagent_remotewrite_pending_data_bytes pending
# TYPE vmagent_remotewrite_pending_data_bytes gauge
vmagent_remotewrite_pending_data_bytes{path="/tmp/vmagent-remotewrite-data/persistent-queue/1_0000000000000000", url="1:secret-url"} 0
vmagent_remotewrite_pending_data_bytes{path="/tmp/vmagent-remotewrite-data/persistent-queue/2_0000000000000000",url="2:http://b/api/v1/write"} 1.048576e+06
vmagent_remotewrite_pending_inmemory_blocks{path="/x/persistent-queue/1_0000000000000000",url="1:secret-url"} 7
vm_persistentqueue_bytes_pending{path="/tmp/vmagent-remotewrite-data/persistent-queue/2_0000000000000000"} 99
"#;
        let samples = queue_samples(page);
        assert_eq!(samples.len(), 2, "{samples:?}");
        assert_eq!(pending_for(&samples, 1, CLUSTER_URL), Some(0.0));
        assert_eq!(pending_for(&samples, 2, CLUSTER_URL), Some(1_048_576.0));
        assert_eq!(
            pending_for(&samples, 3, CLUSTER_URL),
            None,
            "no series: unknown"
        );
    }

    #[test]
    fn older_vmagents_are_read_from_the_queue_gauge() {
        let page = "vm_persistentqueue_bytes_pending{path=\"/q/persistent-queue/1_0000000000000000\"} 0\n\
                    vm_persistentqueue_bytes_pending{path=\"/q/persistent-queue/2_0000000000000000\"} 12\n\
                    vm_persistentqueue_bytes_pending{path=\"/elsewhere/3_0000000000000000\"} 5\n";
        let samples = queue_samples(page);
        assert_eq!(pending_for(&samples, 1, CLUSTER_URL), Some(0.0));
        assert_eq!(pending_for(&samples, 2, CLUSTER_URL), Some(12.0));
        assert_eq!(
            pending_for(&samples, 3, CLUSTER_URL),
            None,
            "not a remote-write queue"
        );
    }

    #[test]
    fn the_queue_named_after_the_url_wins_over_the_position() {
        // A pod still running the previous list: the target is at position 1 there, and
        // position 2 is another URL's queue.
        let page = "vmagent_remotewrite_pending_data_bytes{path=\"/q/persistent-queue/1_9B8D85A226428329\",url=\"1:secret-url\"} 300\n\
                    vmagent_remotewrite_pending_data_bytes{path=\"/q/persistent-queue/2_1111111111111111\",url=\"2:secret-url\"} 0\n";
        let samples = queue_samples(page);
        assert_eq!(pending_for(&samples, 2, CLUSTER_URL), Some(300.0));
        // A URL no queue is named after falls back to its position.
        assert_eq!(
            pending_for(&samples, 2, "http://other/api/v1/write"),
            Some(0.0)
        );
    }

    #[test]
    fn malformed_lines_are_skipped_not_fatal() {
        let page = "vmagent_remotewrite_pending_data_bytes{path=\"/q/persistent-queue/1_0\",url=\"1:secret-url\"} nope\n\
                    vmagent_remotewrite_pending_data_bytes{url=\"unterminated} 3\n\
                    vmagent_remotewrite_pending_data_bytes{url=\"x:secret-url\"} 4\n\
                    vmagent_remotewrite_pending_data_bytes{url=\"2:secret-url\",path=\"a \\\"quoted\\\" path\"} 5 1700000000000\n";
        let samples = queue_samples(page);
        assert_eq!(pending_for(&samples, 2, CLUSTER_URL), Some(5.0));
        assert_eq!(pending_for(&samples, 1, CLUSTER_URL), None);
    }
}
