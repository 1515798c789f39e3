//! The CustomResourceDefinitions the controller depends on, watched while it runs: its own
//! `VMDistributed` CRD and the four VictoriaMetrics child CRDs (docs/operations.md, "Failure
//! modes").
//!
//! The start-up checks ([`crate::startup`]) only see the cluster as it was at start. A CRD
//! replaced later (the VictoriaMetrics operator chart re-installing its own `VMDistributed` CRD on
//! upgrade, whose typed status prunes this controller's rollout state) must stop the controller
//! as surely as at start, and a child CRD updated later can change what the API server accepts,
//! which the controller's remembered preflight verdicts do not know. So every change of one of
//! these CRDs (a new `metadata.generation`, a new object, a deletion) is announced here; the run
//! loop then checks the CRDs again and restarts the controller with nothing remembered.
//!
//! Only metadata is watched, one object each (`metadata.name` field selector, which RBAC
//! authorizes by resource name): the VictoriaMetrics CRDs are megabytes of schema.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use shared::names::ChildKind;
use tokio::sync::watch;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};

use crate::http::Readiness;
use crate::startup::{self, CRD_NAME, StartupProblem};

/// Names of every CRD watched: this project's and the four child kinds'.
#[must_use]
pub fn watched_names() -> Vec<String> {
    let mut names = vec![CRD_NAME.to_owned()];
    names.extend(
        [
            ChildKind::VMCluster,
            ChildKind::VMSingle,
            ChildKind::VMAgent,
            ChildKind::VMAuth,
        ]
        .iter()
        .map(|kind| format!("{}.{}", kind.plural(), shared::api::GROUP)),
    );
    names
}

/// What identifies one version of a CRD's definition: a re-created CRD has a new uid, a changed
/// spec a new generation (status updates change neither).
type Fingerprint = (String, i64);

/// What is known about one watched CRD.
#[derive(Default)]
struct Known {
    /// The definition last seen; `None` when absent.
    current: Option<Fingerprint>,
    /// Collected during a (re-)list.
    listing: Option<Fingerprint>,
    /// Whether the first list is complete (what it finds is the baseline, not a change).
    listed: bool,
}

impl Known {
    /// Apply one watch event; whether the definition changed.
    fn observe(&mut self, event: watcher::Event<Option<Fingerprint>>) -> bool {
        let seen = match event {
            watcher::Event::Init => {
                self.listing = None;
                return false;
            }
            watcher::Event::InitApply(fingerprint) => {
                self.listing = fingerprint;
                return false;
            }
            watcher::Event::InitDone => {
                let listed = self.listing.take();
                let first = !self.listed;
                self.listed = true;
                if first {
                    self.current = listed;
                    return false;
                }
                listed
            }
            watcher::Event::Apply(fingerprint) => fingerprint,
            watcher::Event::Delete(_) => None,
        };
        let changed = seen != self.current;
        self.current = seen;
        changed
    }
}

/// Watch the CRDs; the returned counter increases whenever one of them changes.
pub fn spawn(client: &Client) -> watch::Receiver<u64> {
    let (changes, receiver) = watch::channel(0u64);
    // An `Api` of `PartialObjectMeta` sends metadata-only list and watch requests.
    let api: Api<PartialObjectMeta<CustomResourceDefinition>> = Api::all(client.clone());
    let streams = watched_names().into_iter().map(move |name| {
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        watcher(api.clone(), config)
            .default_backoff()
            .map(move |event| (name.clone(), event))
            .boxed()
    });
    let mut all = futures::stream::select_all(streams);
    tokio::spawn(async move {
        let mut known: HashMap<String, Known> = HashMap::new();
        while let Some((name, event)) = all.next().await {
            let fingerprint = |meta: PartialObjectMeta<CustomResourceDefinition>| {
                Some((
                    meta.metadata.uid.unwrap_or_default(),
                    meta.metadata.generation.unwrap_or_default(),
                ))
            };
            let event = match event {
                Ok(watcher::Event::Apply(meta)) => watcher::Event::Apply(fingerprint(meta)),
                Ok(watcher::Event::InitApply(meta)) => watcher::Event::InitApply(fingerprint(meta)),
                Ok(watcher::Event::Delete(meta)) => watcher::Event::Delete(fingerprint(meta)),
                Ok(watcher::Event::Init) => watcher::Event::Init,
                Ok(watcher::Event::InitDone) => watcher::Event::InitDone,
                Err(err) => {
                    // Retried with backoff; without the watch, a replaced CRD goes unnoticed.
                    tracing::warn!(crd = %name, error = %err, "cannot watch the CustomResourceDefinition");
                    continue;
                }
            };
            if known.entry(name.clone()).or_default().observe(event) {
                tracing::info!(crd = %name, "a CustomResourceDefinition changed");
                changes.send_modify(|n| *n += 1);
            }
        }
    });
    receiver
}

/// How long a burst of CRD changes (a chart upgrade applies them one after another) may take
/// before the CRDs are checked again.
const SETTLE: Duration = Duration::from_secs(2);

/// How often CRDs that forbid reconciling are checked again without a change being seen.
const RECHECK: Duration = Duration::from_secs(10);

/// Whether the served CRDs allow reconciling, kept current while the process runs.
pub struct CrdState {
    /// True while the served CRDs are this project's and the child CRDs are there.
    pub usable: watch::Receiver<bool>,
    /// Increases after every change of a watched CRD, once it has been checked: the
    /// controller restarts, forgetting what it judged under the old definitions (preflight
    /// verdicts in particular).
    pub restarts: watch::Receiver<u64>,
}

/// Watch the CRDs and keep `readiness` and [`CrdState`] current: a CRD that forbids
/// reconciling (another project's `VMDistributed` CRD, missing child CRDs) makes `/readyz` fail
/// with what to change, is logged as an error and, by the replica that acts, recorded as a
/// Warning event on the `VMDistributed` CRD; the CRDs being usable again makes it ready again.
/// The CRDs passed the start-up checks when this is called.
pub fn guard(
    client: &Client,
    readiness: Arc<Readiness>,
    reporter: Reporter,
    acting: watch::Receiver<bool>,
) -> CrdState {
    let mut changes = spawn(client);
    let (usable_tx, usable) = watch::channel(true);
    let (restarts_tx, restarts) = watch::channel(0u64);
    let client = client.clone();
    tokio::spawn(async move {
        // Checks that could not be made (the API server did not answer) are made again later.
        let mut recheck = false;
        loop {
            let changed = tokio::select! {
                result = changes.changed() => {
                    if result.is_err() {
                        return;
                    }
                    true
                }
                () = tokio::time::sleep(RECHECK), if recheck || !*usable_tx.borrow() => false,
            };
            if changed {
                tokio::time::sleep(SETTLE).await;
                changes.borrow_and_update();
            }
            let result = async {
                startup::check_crd(&client).await?;
                startup::check_vm_crds(&client).await
            }
            .await;
            recheck = false;
            match result {
                Ok(()) => {
                    if !*usable_tx.borrow() {
                        tracing::info!(
                            "the served CustomResourceDefinitions are usable again: resuming"
                        );
                        readiness.set_ready();
                        usable_tx.send_replace(true);
                    }
                }
                Err(StartupProblem::Api(reason)) => {
                    tracing::warn!(%reason, "cannot check the CustomResourceDefinitions; trying again");
                    recheck = true;
                }
                Err(problem) => {
                    if *usable_tx.borrow() {
                        tracing::error!("refusing to reconcile: {problem}");
                        readiness.set_not_ready(problem.to_string());
                        usable_tx.send_replace(false);
                        if *acting.borrow() {
                            publish_event(&client, &reporter, &problem).await;
                        }
                    }
                }
            }
            if changed {
                restarts_tx.send_modify(|n| *n += 1);
            }
        }
    });
    CrdState { usable, restarts }
}

/// One Warning event on the `VMDistributed` CRD saying why nothing is reconciled.
async fn publish_event(client: &Client, reporter: &Reporter, problem: &StartupProblem) {
    let reason = match problem {
        StartupProblem::ForeignCrd(_) => "ForeignCRD",
        _ => "CRDMissing",
    };
    let reference = ObjectReference {
        api_version: Some("apiextensions.k8s.io/v1".to_owned()),
        kind: Some("CustomResourceDefinition".to_owned()),
        name: Some(CRD_NAME.to_owned()),
        ..ObjectReference::default()
    };
    let event = KubeEvent {
        type_: EventType::Warning,
        reason: reason.to_owned(),
        note: Some(crate::reconcile::truncate_note(&format!(
            "refusing to reconcile: {problem}"
        ))),
        action: "CheckCRD".to_owned(),
        secondary: None,
    };
    if let Err(err) = Recorder::new(client.clone(), reporter.clone())
        .publish(&event, &reference)
        .await
    {
        tracing::warn!(error = %err, %reason, "cannot publish event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(uid: &str, generation: i64) -> Option<Fingerprint> {
        Some((uid.to_owned(), generation))
    }

    #[test]
    fn the_first_list_is_the_baseline_and_every_later_difference_a_change() {
        let mut known = Known::default();
        assert!(!known.observe(watcher::Event::Init));
        assert!(!known.observe(watcher::Event::InitApply(fp("u1", 1))));
        assert!(!known.observe(watcher::Event::InitDone));
        // The same definition again (a status update) is no change.
        assert!(!known.observe(watcher::Event::Apply(fp("u1", 1))));
        assert!(known.observe(watcher::Event::Apply(fp("u1", 2))));
        // Deleted and re-created.
        assert!(known.observe(watcher::Event::Delete(fp("u1", 2))));
        assert!(known.observe(watcher::Event::Apply(fp("u2", 1))));
        // A re-list that finds the same definition is no change; one that finds none is.
        assert!(!known.observe(watcher::Event::Init));
        assert!(!known.observe(watcher::Event::InitApply(fp("u2", 1))));
        assert!(!known.observe(watcher::Event::InitDone));
        assert!(!known.observe(watcher::Event::Init));
        assert!(known.observe(watcher::Event::InitDone));
    }

    #[test]
    fn every_crd_the_controller_uses_is_watched() {
        assert_eq!(
            watched_names(),
            [
                "vmdistributed.operator.victoriametrics.com",
                "vmclusters.operator.victoriametrics.com",
                "vmsingles.operator.victoriametrics.com",
                "vmagents.operator.victoriametrics.com",
                "vmauths.operator.victoriametrics.com",
            ]
        );
    }
}
