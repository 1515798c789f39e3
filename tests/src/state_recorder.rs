//! A recorder of every state of the VMDistributed CRs and their children in a namespace, seen
//! through watches, and the replay of those states through the shared rollout invariant checker
//! (`shared::rollout::invariants`). The end-to-end tests, the demo and the controller benchmark
//! all judge rollouts with it.
//!
//! The invariants are checked by replaying the recorded watch events in `resourceVersion` order
//! (etcd's global revision), so the replay sees the states in the order the API server stored
//! them, whichever watch delivered them first.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use futures::StreamExt;
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use serde_json::Value;
use shared::names::ChildKind;
use shared::rollout::invariants::{Change, InvariantChecker};
use vmdistributed_runtime::resources;

/// One watch event.
#[derive(Clone, Debug)]
pub struct Record {
    /// etcd revision of the write; `None` when the object's resourceVersion is not a number
    /// (the checker reports it: such a record cannot be ordered).
    pub rv: Option<u64>,
    /// Kind (`VMDistributed` or a child kind).
    pub kind: String,
    /// Object name.
    pub name: String,
    /// Whether this is the deletion.
    pub deleted: bool,
    /// The object.
    pub object: Value,
}

/// Records every event of the CRs and children of a namespace.
pub struct StateRecorder {
    records: Arc<Mutex<Vec<Record>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl StateRecorder {
    /// Start watching; returns once every watch has listed.
    pub async fn start(client: &Client, ns: &str) -> Result<Self> {
        let records = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        let mut watched: Vec<ApiResource> = ChildKind::ALL
            .iter()
            .map(|k| resources::child(*k))
            .collect();
        watched.push(resources::vmdistributed());
        let mut ready = Vec::new();
        for resource in watched {
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
            let records = records.clone();
            let kind = resource.kind.clone();
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            ready.push(rx);
            tasks.push(tokio::spawn(async move {
                let mut tx = Some(tx);
                let mut stream = watcher(api, watcher::Config::default()).boxed();
                while let Some(event) = stream.next().await {
                    let (obj, deleted) = match event {
                        Ok(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj)) => {
                            (obj, false)
                        }
                        Ok(watcher::Event::Delete(obj)) => (obj, true),
                        Ok(watcher::Event::InitDone) => {
                            if let Some(tx) = tx.take() {
                                let _ = tx.send(());
                            }
                            continue;
                        }
                        _ => continue,
                    };
                    let rv = obj
                        .metadata
                        .resource_version
                        .as_deref()
                        .and_then(|v| v.parse().ok());
                    let name = obj.name_any();
                    let object = serde_json::to_value(&obj).unwrap_or(Value::Null);
                    if let Ok(mut records) = records.lock() {
                        records.push(Record {
                            rv,
                            kind: kind.clone(),
                            name,
                            deleted,
                            object,
                        });
                    }
                }
            }));
        }
        for rx in ready {
            tokio::time::timeout(Duration::from_secs(20), rx)
                .await
                .context("recorder watch did not list")?
                .ok();
        }
        Ok(Self { records, tasks })
    }

    /// Every record so far, in revision order.
    pub fn records(&self) -> Vec<Record> {
        let mut records = self.records.lock().map(|r| r.clone()).unwrap_or_default();
        records.sort_by_key(|r| r.rv);
        records.dedup_by(|a, b| {
            a.rv == b.rv && a.kind == b.kind && a.name == b.name && a.deleted == b.deleted
        });
        records
    }

    /// Replay the records and check the rollout invariants on every state for CR `cr_name`.
    /// Returns what was learned (for scenario-specific assertions).
    pub fn check(&self, cr_name: &str) -> Result<Replay> {
        replay(&self.records(), cr_name)
    }
}

impl Drop for StateRecorder {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

pub use shared::rollout::invariants::Replay;

/// Replay `records` (sorted by revision) through the shared invariant checker
/// (`shared::rollout::invariants`, the one the unit world uses) for CR `cr_name`; any violation,
/// including a record it cannot decode, fails.
pub fn replay(records: &[Record], cr_name: &str) -> Result<Replay> {
    let changes: Vec<Change> = records
        .iter()
        .map(|record| Change {
            at: record.rv,
            kind: record.kind.clone(),
            name: record.name.clone(),
            deleted: record.deleted,
            object: record.object.clone(),
        })
        .collect();
    let replay = InvariantChecker::run(cr_name, &changes);
    if !replay.violations.is_empty() {
        bail!(
            "invariants broken ({} states checked):\n{}",
            replay.states,
            replay
                .violations
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    Ok(replay)
}

/// Checks that a change of `cr_name`'s zones (named `<cr_name>-<zone>`) went zone by zone: each
/// zone left the VMAuth once, in `zones` order, `read` never lacked more than one zone, and both
/// targets route every zone at the end.
///
/// # Errors
/// Naming the first rule the replay breaks.
pub fn rolled_zone_by_zone(replay: &Replay, cr_name: &str, zones: &[&str]) -> Result<()> {
    let members: Vec<String> = zones.iter().map(|z| format!("{cr_name}-{z}")).collect();
    for read in &replay.read_refs {
        anyhow::ensure!(
            read.len() + 1 >= zones.len(),
            "more than one zone out of read: {:?}",
            replay.read_refs
        );
    }
    anyhow::ensure!(
        replay.read_refs.last() == Some(&members) && replay.write_refs.last() == Some(&members),
        "not every zone routed at the end: read {:?}, write {:?}",
        replay.read_refs.last(),
        replay.write_refs.last()
    );
    anyhow::ensure!(
        replay.exclusions == zones,
        "zones left the VMAuth in the order {:?}, not {zones:?}: {replay:?}",
        replay.exclusions
    );
    Ok(())
}
