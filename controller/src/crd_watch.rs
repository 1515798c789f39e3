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

/// What the served CRDs allow, kept current while the process runs.
pub struct CrdState {
    /// True while the served `VMDistributed` CRD is this project's: nothing is reconciled
    /// otherwise.
    pub usable: watch::Receiver<bool>,
    /// The child kinds whose CRDs are served: the controller watches these and leaves alone
    /// the objects that need another kind (their deletion still finishes).
    pub served: watch::Receiver<Vec<ChildKind>>,
    /// Increases after every change of a watched CRD, once it has been checked: the
    /// controller restarts, forgetting what it judged under the old definitions (preflight
    /// verdicts in particular) and watching the kinds now served.
    pub restarts: watch::Receiver<u64>,
}

/// What one check of the CRDs found.
enum Checked {
    /// Reconciling is refused (another project's `VMDistributed` CRD, or none).
    Refused(StartupProblem),
    /// This project's CRD is served, and these child kinds.
    Served(Vec<ChildKind>),
    /// The API server did not answer.
    Unknown(String),
}

async fn check(client: &Client) -> Checked {
    match startup::check_crd(client).await {
        Ok(()) => {}
        Err(StartupProblem::Api(reason)) => return Checked::Unknown(reason),
        Err(problem) => return Checked::Refused(problem),
    }
    match startup::served_child_kinds(client).await {
        Ok(kinds) => Checked::Served(kinds),
        Err(problem) => Checked::Unknown(problem.to_string()),
    }
}

/// Check the CRDs now, then watch them, keeping `readiness` and [`CrdState`] current.
///
/// A `VMDistributed` CRD that forbids reconciling (another project's) makes `/readyz` fail with
/// what to change and stops reconciling. Missing child CRDs (the VictoriaMetrics operator
/// uninstalled first) make `/readyz` fail naming them, but the controller goes on without
/// those kinds: a missing kind has no objects to delete or release, so deletions finish.
/// Either is logged as an error and, by the replica that acts, recorded as a Warning event on
/// the `VMDistributed` CRD; the CRDs being usable again makes it ready again, without a
/// restart. This project's CRD passed the start-up check when this is called.
pub async fn guard(
    client: &Client,
    readiness: Arc<Readiness>,
    reporter: Reporter,
    acting: watch::Receiver<bool>,
) -> CrdState {
    // Watch first, so that a change made while the first check runs is not missed.
    let mut changes = spawn(client);
    let mut state = Guard {
        client: client.clone(),
        readiness,
        reporter,
        acting,
        usable: None,
        served: None,
    };
    // Until the first check answers, assume every kind: a check that cannot be made is
    // repeated, and a kind found missing then restarts the controller without it.
    let recheck = state.apply(check(client).await).await;
    let (usable_tx, usable) = watch::channel(state.usable.unwrap_or(true));
    let (served_tx, served) = watch::channel(
        state
            .served
            .clone()
            .unwrap_or_else(|| ChildKind::ALL.to_vec()),
    );
    let (restarts_tx, restarts) = watch::channel(0u64);
    tokio::spawn(async move {
        let mut recheck = recheck;
        loop {
            // Something wrong is looked at again regularly, in case a change went unseen.
            let degraded = !*usable_tx.borrow() || served_tx.borrow().len() < ChildKind::ALL.len();
            let changed = tokio::select! {
                result = changes.changed() => {
                    if result.is_err() {
                        return;
                    }
                    true
                }
                () = tokio::time::sleep(RECHECK), if recheck || degraded => false,
            };
            if changed {
                tokio::time::sleep(SETTLE).await;
                changes.borrow_and_update();
            }
            recheck = state.apply(check(&state.client).await).await;
            if let Some(usable) = state.usable {
                usable_tx.send_if_modified(|u| std::mem::replace(u, usable) != usable);
            }
            // Compared with what the controller was started with, not with the last check:
            // the first check may not have answered.
            let kinds_changed = state.served.as_ref().is_some_and(|kinds| {
                served_tx.send_if_modified(|s| {
                    let modified = s != kinds;
                    s.clone_from(kinds);
                    modified
                })
            });
            if changed || kinds_changed {
                restarts_tx.send_modify(|n| *n += 1);
            }
        }
    });
    CrdState {
        usable,
        served,
        restarts,
    }
}

/// The guard's view of the CRDs and what it reports them through.
struct Guard {
    client: Client,
    readiness: Arc<Readiness>,
    reporter: Reporter,
    acting: watch::Receiver<bool>,
    /// Whether this project's CRD allows reconciling; `None` before a check answered.
    usable: Option<bool>,
    /// The child kinds served; `None` before a check answered.
    served: Option<Vec<ChildKind>>,
}

impl Guard {
    /// Take in a check; whether to check again soon.
    async fn apply(&mut self, checked: Checked) -> bool {
        match checked {
            Checked::Unknown(reason) => {
                tracing::warn!(%reason, "cannot check the CustomResourceDefinitions; trying again");
                true
            }
            Checked::Refused(problem) => {
                if self.usable != Some(false) {
                    tracing::error!("refusing to reconcile: {problem}");
                    self.readiness.set_not_ready(problem.to_string());
                    self.usable = Some(false);
                    self.report(&problem).await;
                }
                false
            }
            Checked::Served(kinds) => {
                if self.usable == Some(false) {
                    tracing::info!(
                        "the served CustomResourceDefinitions are usable again: resuming"
                    );
                }
                let was_usable = self.usable == Some(true);
                self.usable = Some(true);
                let news = !was_usable || self.served.as_ref() != Some(&kinds);
                match startup::missing_vm_crds(&kinds) {
                    Some(problem) => {
                        self.readiness.set_not_ready(problem.to_string());
                        if news {
                            tracing::error!("{problem}");
                            self.report(&problem).await;
                        }
                    }
                    None => {
                        if news && self.served.is_some() && was_usable {
                            tracing::info!(
                                "every VictoriaMetrics CustomResourceDefinition is served again: resuming"
                            );
                        }
                        self.readiness.set_ready();
                    }
                }
                self.served = Some(kinds);
                false
            }
        }
    }

    async fn report(&self, problem: &StartupProblem) {
        if *self.acting.borrow() {
            publish_event(&self.client, &self.reporter, problem).await;
        }
    }
}

/// One Warning event on the `VMDistributed` CRD saying what is not reconciled, and why.
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
        note: Some(crate::reconcile::truncate_note(&match problem {
            StartupProblem::VmCrdsMissing(_) => problem.to_string(),
            _ => format!("refusing to reconcile: {problem}"),
        })),
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
