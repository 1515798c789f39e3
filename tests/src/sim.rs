//! Simulated VictoriaMetrics operator: plays the part of the real operator for the four kinds the
//! controller manages (`VMCluster`, `VMAgent`, `VMAuth`, `VMSingle`), without running anything.
//!
//! For every object it sets, through the status subresource, `status.updateStatus: expanding`
//! with `status.observedGeneration = metadata.generation`, and after the ready delay
//! `operational`. A spec change (new generation) goes through `expanding` again. Annotations on an
//! object change that (every change is re-evaluated, so removing an annotation heals the object):
//!
//! | annotation | effect |
//! |---|---|
//! | `sim.vmdistributed.io/fail: "true"` | `failed` (with a `reason`) |
//! | `sim.vmdistributed.io/stuck: "true"` | stays `expanding` |
//! | `sim.vmdistributed.io/ready-after: "<seconds>"` | `operational` only N seconds (decimals allowed) after the generation or annotation change, instead of the ready delay |
//!
//! An object already `operational` for its current generation when the simulator starts is left
//! as it is (a restarted simulator does not flap objects).
//!
//! The `vm-operator-sim` process also stands in for the VMAgents' pods: an EndpointSlice per
//! VMAgent (always ready while the VMAgent exists and is not being deleted) and a proxy answering
//! their `/metrics` with remote-write queue sizes the `sim.vmdistributed.io/pending-*`
//! annotations control; see [`crate::vmagent_standin`]. [`sim_operator_spec`] starts it with
//! the proxy on a known port.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use futures::{StreamExt, stream::select_all};
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use shared::names::ChildKind;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use vmdistributed_runtime::resources;

/// Annotation: `"true"` makes the simulator report `failed`.
pub const FAIL_ANNOTATION: &str = "sim.vmdistributed.io/fail";
/// Annotation: `"true"` keeps the object `expanding` forever.
pub const STUCK_ANNOTATION: &str = "sim.vmdistributed.io/stuck";
/// Annotation: seconds until `operational`, overriding the ready delay.
pub const READY_AFTER_ANNOTATION: &str = "sim.vmdistributed.io/ready-after";
/// Reason written with `failed`.
pub const FAIL_REASON: &str = "simulated failure (annotation sim.vmdistributed.io/fail)";

/// The kinds the simulator drives.
pub const KINDS: [ChildKind; 4] = [
    ChildKind::VMCluster,
    ChildKind::VMAgent,
    ChildKind::VMAuth,
    ChildKind::VMSingle,
];

/// Simulator settings.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Time from a new generation (or healed annotation) to `operational`.
    pub ready_delay: Duration,
    /// Watch only this namespace (default: all namespaces).
    pub namespace: Option<String>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            ready_delay: Duration::from_secs(1),
            namespace: None,
        }
    }
}

/// A `vm-operator-sim` process logging to `log`, with its agent metrics proxy on a free port of
/// 127.0.0.1 (`--metrics-proxy-port`): the spec (add your flags) and the proxy's URL, to give the
/// controller as `HTTP_PROXY` ([`crate::ProcessSpec::agent_metrics_proxy`]).
pub fn sim_operator_spec(
    log: impl Into<std::path::PathBuf>,
) -> Result<(crate::ProcessSpec, String)> {
    let port = crate::free_port()?;
    let spec = crate::ProcessSpec::new(crate::paths::sim_operator_binary()?, log)
        .arg(format!("--metrics-proxy-port={port}"));
    Ok((spec, format!("http://127.0.0.1:{port}")))
}

/// Parses `1s`, `500ms`, `2m`, `1.5s` or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| anyhow!("invalid duration {text:?}: expected e.g. 1s, 500ms, 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => bail!("invalid duration {text:?}: unit must be ms, s or m"),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| anyhow!("invalid duration {text:?}: {e}"))
}

/// What the object should be doing, from its annotations.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Normal(Duration),
    Fail,
    Stuck,
}

fn mode(object: &DynamicObject, default_delay: Duration) -> Mode {
    let annotations = object.annotations();
    let is_true = |key: &str| {
        annotations
            .get(key)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    };
    if is_true(FAIL_ANNOTATION) {
        return Mode::Fail;
    }
    if is_true(STUCK_ANNOTATION) {
        return Mode::Stuck;
    }
    match annotations
        .get(READY_AFTER_ANNOTATION)
        .map(|v| v.trim().parse::<f64>())
    {
        Some(Ok(seconds)) => {
            Mode::Normal(Duration::try_from_secs_f64(seconds).unwrap_or(default_delay))
        }
        _ => Mode::Normal(default_delay),
    }
}

/// Per-object progress: which generation and mode the current "reconcile" started for.
struct Track {
    generation: i64,
    mode: Mode,
    since: Instant,
    expanding_written: bool,
    /// `operational` is written for this generation: nothing is due until the next change
    /// (otherwise the past due time would wake the loop over and over, spinning a CPU).
    operational: bool,
}

type Key = (usize, String, String); // (kind index, namespace, name)

/// Status writes in flight at once. The real operator reconciles many objects concurrently;
/// writing one status at a time made the simulator, not the controller, the bottleneck when
/// dozens of CRs roll out together.
const MAX_WRITES_IN_FLIGHT: usize = 32;

/// A status write that finished: its key, the status it wrote, and whether it succeeded.
/// A finished status write: the object, the status written and, on success, the
/// resourceVersion the write replaced.
type Written = (Key, Value, Result<String>);

/// Runs until the watches end (they do not, normally) or a status write fails persistently.
///
/// Objects are handled concurrently, but each object has at most one status write in flight:
/// an `operational` overtaking its own `expanding` would leave the object `expanding` forever.
pub async fn run(client: Client, config: SimConfig) -> Result<()> {
    let watched: Vec<ApiResource> = KINDS.into_iter().map(resources::child).collect();
    let streams = watched.iter().enumerate().map(|(index, resource)| {
        let api: Api<DynamicObject> = match &config.namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, resource),
            None => Api::all_with(client.clone(), resource),
        };
        watcher::watcher(api, watcher::Config::default())
            .map(move |event| (index, event))
            .boxed()
    });
    let mut events = select_all(streams);
    let mut objects: HashMap<Key, DynamicObject> = HashMap::new();
    let mut tracks: HashMap<Key, Track> = HashMap::new();
    // When tracked objects are due, earliest first. Entries are not removed when a track
    // changes: one is acted on only if it still matches its track's due time. (Scanning every
    // track after each event made the simulator's CPU grow with the square of the objects.)
    let mut timers: BinaryHeap<Reverse<(Instant, Key)>> = BinaryHeap::new();
    let mut in_flight: HashSet<Key> = HashSet::new();
    let mut look_again: HashSet<Key> = HashSet::new();
    // Objects whose status we wrote while the cache still holds the version our write replaced
    // (its resourceVersion): planning on that copy would write the same status again.
    let mut unseen: HashMap<Key, String> = HashMap::new();
    let (written_tx, mut written_rx) = tokio::sync::mpsc::unbounded_channel::<Written>();
    let permits = Arc::new(Semaphore::new(MAX_WRITES_IN_FLIGHT));

    loop {
        let wake_at = timers.peek().map(|Reverse((at, _))| *at);
        let sleep = async {
            match wake_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let mut changed: Vec<Key> = Vec::new();
        tokio::select! {
            event = events.next() => {
                let Some((index, event)) = event else { return Ok(()) };
                match event {
                    Ok(Event::Apply(object) | Event::InitApply(object)) => {
                        let key = (index, object.namespace().unwrap_or_default(), object.name_any());
                        objects.insert(key.clone(), object);
                        changed.push(key);
                    }
                    Ok(Event::Delete(object)) => {
                        let key = (index, object.namespace().unwrap_or_default(), object.name_any());
                        objects.remove(&key);
                        tracks.remove(&key);
                        unseen.remove(&key);
                    }
                    Ok(Event::Init | Event::InitDone) => {}
                    // The watcher retries by itself (e.g. the CRD is not installed yet).
                    Err(e) => {
                        tracing::debug!(kind = KINDS[index].kind(), error = %e, "watch error");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
            Some((key, desired, result)) = written_rx.recv() => {
                in_flight.remove(&key);
                match result {
                    Ok(replaced) => {
                        unseen.insert(key.clone(), replaced);
                        if let Some(track) = tracks.get_mut(&key) {
                            record_written(track, &desired);
                        }
                        tracing::info!(kind = KINDS[key.0].kind(), namespace = %key.1, name = %key.2,
                            generation = %desired["observedGeneration"],
                            status = %desired["updateStatus"], "status updated");
                    }
                    Err(e) => tracing::warn!(kind = KINDS[key.0].kind(), namespace = %key.1,
                        name = %key.2, error = %format!("{e:#}"), "status update failed"),
                }
                // Look again if an event arrived meanwhile, or if the wait it was written for
                // (`expanding` → `operational` after the delay) is due.
                let due_at = tracks.get(&key).and_then(due);
                if look_again.remove(&key) || due_at.is_some_and(|at| at <= Instant::now()) {
                    changed.push(key);
                } else if let Some(at) = due_at {
                    timers.push(Reverse((at, key)));
                }
            }
            () = sleep => {
                let now = Instant::now();
                while timers.peek().is_some_and(|Reverse((at, _))| *at <= now) {
                    let Some(Reverse((at, key))) = timers.pop() else { break };
                    // An object with a write in flight is looked at when the write finishes, one
                    // whose write is not seen yet when its watch event comes.
                    let current = tracks.get(&key).and_then(due) == Some(at);
                    if current && !in_flight.contains(&key) && !unseen.contains_key(&key) {
                        changed.push(key);
                    }
                }
            }
        }
        for key in changed {
            let Some(object) = objects.get(&key) else {
                continue;
            };
            if in_flight.contains(&key) {
                look_again.insert(key);
                continue;
            }
            let version = object.resource_version().unwrap_or_default();
            if unseen.get(&key) == Some(&version) {
                continue; // its watch event follows
            }
            unseen.remove(&key);
            let Some(desired) = plan(object, &mut tracks, &key, &config) else {
                if let Some(at) = tracks.get(&key).and_then(due) {
                    timers.push(Reverse((at, key)));
                }
                continue;
            };
            in_flight.insert(key.clone());
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), &key.1, &watched[key.0]);
            let (permits, written_tx) = (Arc::clone(&permits), written_tx.clone());
            tokio::spawn(async move {
                let _permit = permits.acquire_owned().await;
                let result = api
                    .patch_status(
                        &key.2,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"status": desired})),
                    )
                    .await
                    .map(|_| version)
                    .map_err(anyhow::Error::from);
                let _ = written_tx.send((key, desired, result));
            });
        }
    }
}

/// When a tracked object should next be looked at (it is waiting for its delay).
fn due(track: &Track) -> Option<Instant> {
    match track.mode {
        Mode::Normal(delay) if track.expanding_written && !track.operational => {
            Some(track.since + delay)
        }
        _ => None,
    }
}

/// The status `object` should have now, or `None` when it already has it. Updates the
/// object's track for a new generation or mode.
fn plan(
    object: &DynamicObject,
    tracks: &mut HashMap<Key, Track>,
    key: &Key,
    config: &SimConfig,
) -> Option<Value> {
    let generation = object.metadata.generation.unwrap_or(0);
    let mode = mode(object, config.ready_delay);
    let status = object.data.get("status").cloned().unwrap_or(Value::Null);
    let current = (
        status["updateStatus"].as_str().unwrap_or(""),
        status["observedGeneration"].as_i64(),
    );
    let now = Instant::now();
    let track = tracks.entry(key.clone()).or_insert_with(|| {
        // Already operational for this generation when first seen: leave it (no flapping on restart).
        let done = matches!(mode, Mode::Normal(_)) && current == ("operational", Some(generation));
        Track {
            generation,
            mode,
            since: now,
            expanding_written: done,
            operational: done,
        }
    });
    if track.generation != generation || track.mode != mode {
        *track = Track {
            generation,
            mode,
            since: now,
            expanding_written: false,
            operational: false,
        };
    }
    let desired = match mode {
        Mode::Fail => {
            json!({"updateStatus": "failed", "reason": FAIL_REASON, "observedGeneration": generation})
        }
        Mode::Stuck => {
            json!({"updateStatus": "expanding", "reason": "", "observedGeneration": generation})
        }
        Mode::Normal(delay) => {
            if track.expanding_written && now >= track.since + delay {
                json!({"updateStatus": "operational", "reason": "", "observedGeneration": generation})
            } else {
                json!({"updateStatus": "expanding", "reason": "", "observedGeneration": generation})
            }
        }
    };
    let up_to_date = status["updateStatus"] == desired["updateStatus"]
        && status["observedGeneration"] == desired["observedGeneration"]
        && status["reason"].as_str().unwrap_or("") == desired["reason"].as_str().unwrap_or("");
    if up_to_date {
        record_written(track, &desired);
        return None;
    }
    Some(desired)
}

/// `desired` is stored: an `operational` ends the object's wait, and the ready delay counts from
/// when the object was first stored `expanding` for its generation.
fn record_written(track: &mut Track, desired: &Value) {
    if desired["observedGeneration"].as_i64() != Some(track.generation) {
        return; // written for a generation the object has since left
    }
    if desired["updateStatus"] == "operational" {
        track.operational = true;
    }
    if desired["updateStatus"] == "expanding" && !track.expanding_written {
        track.expanding_written = true;
        track.since = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_due_once_operational() {
        let track = |expanding_written, operational| Track {
            generation: 1,
            mode: Mode::Normal(Duration::from_secs(1)),
            since: Instant::now(),
            expanding_written,
            operational,
        };
        assert!(due(&track(true, false)).is_some());
        assert_eq!(due(&track(true, true)), None);
        assert_eq!(due(&track(false, false)), None);
    }

    #[test]
    fn a_write_for_a_generation_the_object_has_left_is_not_recorded() {
        let mut track = Track {
            generation: 2,
            mode: Mode::Normal(Duration::from_secs(1)),
            since: Instant::now(),
            expanding_written: false,
            operational: false,
        };
        record_written(
            &mut track,
            &json!({"updateStatus": "operational", "observedGeneration": 1}),
        );
        assert!(!track.operational);
        record_written(
            &mut track,
            &json!({"updateStatus": "expanding", "observedGeneration": 2}),
        );
        assert!(track.expanding_written && !track.operational);
        record_written(
            &mut track,
            &json!({"updateStatus": "operational", "observedGeneration": 2}),
        );
        assert!(track.operational);
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("1s").ok(), Some(Duration::from_secs(1)));
        assert_eq!(
            parse_duration("250ms").ok(),
            Some(Duration::from_millis(250))
        );
        assert_eq!(parse_duration("2m").ok(), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_duration("1.5").ok(),
            Some(Duration::from_millis(1500))
        );
        assert!(parse_duration("1h").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
