//! The persistent-queue drain of the zone under update (docs/rollout.md "Persistent-queue
//! drain"). vmagent buffers what a target does not take yet in a queue on disk; the rollout
//! waits for those queues where moving on would lose what they hold or hide it from reads:
//! - `Excluding`, before the VMAuth stops sending writes to the zone: every agent's queue for
//!   the zone's backend;
//! - `Applying`, before the zone's agent is given a `remoteWrite` list that drops or moves an
//!   entry: that agent's queues at and after the first entry that changes (vmagent keys its
//!   queues by position);
//! - `Restoring`, before the zone rejoins `read`: every agent's queue for the zone's backend,
//!   which holds what was written while it was updated.
//!
//! Starting and ending a drain are transitions: `status.rollout.drain` is `Draining` with a new
//! `phaseSince` (its `drainTimeout` counts from there), then `Drained` with a new `phaseSince`,
//! so the phase's other waits keep their whole `readyTimeout`.

use serde_json::Value;

use super::{Outcome, Step, ZoneView, add, until};
use crate::api::{DrainState, RolloutStatus, TrafficMode, ZonePhase};
use crate::children::ChildObject;
use crate::duration::format_go_duration;
use crate::model::{Action, EventReason, Target};
use crate::names::{ChildKind, backend_kind, child_name};
use crate::queues::{POLL_INTERVAL, QueueProbe, QueueReport, QueueTarget, human_bytes};
use crate::render::remote_write_url;
use crate::render::url::addresses_backend;
use crate::rollout::membership::{self, LiveRefs, remote_write_urls};
use crate::validation::SKIP_DRAIN_ANNOTATION;

/// Progressing reason while the rollout waits for the agents' queues.
pub(crate) const REASON_DRAINING: &str = "DrainingQueues";

/// What the drain of a phase allows.
pub(super) enum Drain {
    /// Nothing to wait for: the phase goes on.
    Clear,
    /// The drain started or ended: a transition of its own, decided again once stored.
    Transitioned,
    /// Waiting for the queues (polling).
    Waiting,
}

impl Step<'_> {
    /// The drain of `view`'s phase: polls, waits, starts or ends it.
    pub(super) fn drain(
        &self,
        view: &ZoneView<'_>,
        phase: ZonePhase,
        outcome: &mut Outcome,
    ) -> Drain {
        if self.skip_drain() || outcome.rollout.drain == Some(DrainState::Drained) {
            return Drain::Clear;
        }
        let probes = self.drain_probes(view, phase);
        if probes.is_empty() {
            return Drain::Clear;
        }
        if outcome.rollout.drain.is_none() {
            let rollout = self.with_drain(&view.zone.name, phase, DrainState::Draining);
            self.transition(rollout, outcome);
            return Drain::Transitioned;
        }
        let pending: Vec<QueueProbe> = probes
            .into_iter()
            .filter_map(|mut probe| {
                probe.targets.retain(|target| {
                    !self
                        .report(&probe.agent, target)
                        .is_some_and(|r| r.drained(self.now))
                });
                (!probe.targets.is_empty()).then_some(probe)
            })
            .collect();
        if pending.is_empty() {
            let rollout = self.with_drain(&view.zone.name, phase, DrainState::Drained);
            self.transition(rollout, outcome);
            return Drain::Transitioned;
        }
        let holding = self.holding(&pending);
        for probe in &pending {
            let no_pod = probe.targets.iter().find(|target| {
                self.report(&probe.agent, target)
                    .is_some_and(|r| r.fresh(self.now) && r.pods.is_empty())
            });
            if let Some(target) = no_pod {
                outcome.zone_messages.insert(
                    probe.zone.clone(),
                    format!(
                        "VMAgent {} has no ready pod: the drain of its queue for {} waits for one",
                        probe.agent, target.describes
                    ),
                );
            }
        }
        let subject = format!("zone {}: {phase:?}", view.zone.name);
        outcome.progressing(
            REASON_DRAINING,
            format!("{subject}; waiting for the vmagent queues to drain: {holding}"),
        );
        // The next poll comes POLL_INTERVAL after the last one: the controller decides again
        // right after each poll, and a decision that soon after it asks for none.
        let last_poll = pending
            .iter()
            .flat_map(|probe| {
                probe
                    .targets
                    .iter()
                    .map(|target| self.report(&probe.agent, target).map(|r| r.polled_at))
            })
            .min()
            .flatten();
        let next_poll = last_poll.and_then(|at| until(self.now, add(at, POLL_INTERVAL)));
        match next_poll {
            Some(wait) => outcome.requeue_at_most(wait),
            None => {
                outcome
                    .actions
                    .push(Action::ProbeQueues { probes: pending });
                outcome.requeue_at_most(POLL_INTERVAL);
            }
        }
        outcome.draining = true;
        let deadline = add(
            self.phase_since(&outcome.rollout),
            self.settings.drain_timeout,
        );
        if self.now >= deadline {
            outcome.degraded = Some((
                EventReason::QueueNotDrained,
                format!(
                    "{subject}; the vmagent queues did not drain within drainTimeout ({}): {holding}; the rollout is halted until they drain or the spec changes (annotate the VMDistributed {SKIP_DRAIN_ANNOTATION}=true to go on without waiting: what the queues hold may then be lost)",
                    format_go_duration(self.settings.drain_timeout),
                ),
            ));
        }
        Drain::Waiting
    }

    fn skip_drain(&self) -> bool {
        self.cr
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(SKIP_DRAIN_ANNOTATION))
            .is_some_and(|v| v == "true")
    }

    fn with_drain(&self, zone: &str, phase: ZonePhase, state: DrainState) -> RolloutStatus {
        RolloutStatus {
            drain: Some(state),
            ..self.enter(zone, phase)
        }
    }

    fn report(&self, agent: &str, target: &QueueTarget) -> Option<&QueueReport> {
        self.observed
            .queues
            .iter()
            .find(|r| r.concerns(agent, target))
    }

    /// What the queues still hold, for the status: `VMAgent a pod a-0 holds 1.5 MiB for VMCluster
    /// b; VMAgent c has no ready pod`. While nothing is in the way it names only what is being
    /// checked, the same text from poll to poll: each change of it is a status write.
    fn holding(&self, pending: &[QueueProbe]) -> String {
        let mut problems = Vec::new();
        let mut checking = Vec::new();
        for probe in pending {
            for target in &probe.targets {
                let agent = &probe.agent;
                let describes = &target.describes;
                checking.push(format!("VMAgent {agent} for {describes}"));
                let Some(report) = self.report(agent, target).filter(|r| r.fresh(self.now)) else {
                    continue;
                };
                if report.pods.is_empty() {
                    problems.push(format!("VMAgent {agent} has no ready pod"));
                    continue;
                }
                for pod in &report.pods {
                    let state = match (pod.pending_bytes, &pod.error) {
                        (_, Some(error)) => format!("cannot be read ({error})"),
                        (None, None) => format!(
                            "reports no queue for remoteWrite entry {} ({describes})",
                            target.index
                        ),
                        (Some(bytes), None) if bytes > 0.0 => {
                            format!("holds {} for {describes}", human_bytes(bytes))
                        }
                        (Some(_), None) => continue,
                    };
                    problems.push(format!("VMAgent {agent} pod {} {state}", pod.pod));
                }
            }
        }
        if problems.is_empty() {
            format!("checking that they stay empty: {}", checking.join(", "))
        } else {
            problems.join("; ")
        }
    }

    /// The queues `view`'s phase waits for (see the module docs); none when it waits for none.
    fn drain_probes(&self, view: &ZoneView<'_>, phase: ZonePhase) -> Vec<QueueProbe> {
        let mode = view.zone.traffic_mode.unwrap_or(TrafficMode::ReadWrite);
        match phase {
            ZonePhase::Excluding if self.intents.vmauth.is_some() => {
                let live = LiveRefs::of(self.cr, self.observed);
                let membership = membership::derive(self.cr, self.observed, Some(&view.zone.name));
                let leaves_write = live.write.contains(&view.intents.agent.name)
                    && !membership.of(Target::Write).contains(&view.zone.name);
                if leaves_write {
                    self.backend_probes(view)
                } else {
                    Vec::new()
                }
            }
            ZonePhase::Applying if !view.current => self.reindex_probes(view),
            ZonePhase::Restoring if self.intents.vmauth.is_some() => {
                let live = LiveRefs::of(self.cr, self.observed);
                let rejoins_read = mode.reads() && !live.read.contains(&view.intents.backend.name);
                if rejoins_read {
                    self.backend_probes(view)
                } else {
                    Vec::new()
                }
            }
            _ => Vec::new(),
        }
    }

    /// Every live agent's queues for `view`'s backend, where it listens now or listened before.
    fn backend_probes(&self, view: &ZoneView<'_>) -> Vec<QueueProbe> {
        let Some(backend) = view.backend else {
            return Vec::new();
        };
        let kind = backend_kind(self.cr);
        let namespace = self.namespace();
        let url = remote_write_url(kind, &backend.name, namespace, &backend.spec);
        let describes = format!("{kind} {}", backend.name);
        self.agents()
            .filter_map(|(zone, agent)| {
                let targets: Vec<QueueTarget> = remote_write_urls(&agent.spec)
                    .zip(1u32..)
                    .filter(|(entry, _)| {
                        *entry == url || addresses_backend(entry, kind, &backend.name, namespace)
                    })
                    .map(|(entry, index)| QueueTarget {
                        index,
                        url: entry.to_owned(),
                        describes: describes.clone(),
                    })
                    .collect();
                (!targets.is_empty()).then(|| probe(zone, agent, targets))
            })
            .collect()
    }

    /// The zone's own agent's queues that its new `remoteWrite` list drops or moves: those at
    /// and after the first entry that changes.
    fn reindex_probes(&self, view: &ZoneView<'_>) -> Vec<QueueProbe> {
        let Some(agent) = view.agent else {
            return Vec::new();
        };
        let live: Vec<&str> = remote_write_urls(&agent.spec).collect();
        let next: Vec<&str> = remote_write_urls(&view.intents.agent.spec).collect();
        let Some(first) = live
            .iter()
            .zip(&next)
            .position(|(a, b)| a != b)
            .or_else(|| (live.len() > next.len()).then_some(next.len()))
        else {
            return Vec::new();
        };
        let targets: Vec<QueueTarget> = live
            .iter()
            .zip(1u32..)
            .skip(first)
            .map(|(url, index)| QueueTarget {
                index,
                url: (*url).to_owned(),
                describes: self.describe_url(url, index),
            })
            .collect();
        vec![probe(&view.zone.name, agent, targets)]
    }

    /// `VMCluster demo-b` for a URL one of the CR's backends listens at, else `remoteWrite
    /// entry 3`.
    fn describe_url(&self, url: &str, index: u32) -> String {
        let kind = backend_kind(self.cr);
        let namespace = self.namespace();
        self.cr
            .spec
            .zones
            .iter()
            .map(|zone| child_name(self.cr, zone, kind))
            .chain(
                self.observed
                    .children
                    .iter()
                    .filter(|c| c.kind == Some(kind))
                    .map(|c| c.name.clone()),
            )
            .find(|name| addresses_backend(url, kind, name, namespace))
            .map_or_else(
                || format!("remoteWrite entry {index}"),
                |name| format!("{kind} {name}"),
            )
    }

    fn namespace(&self) -> &str {
        self.cr.metadata.namespace.as_deref().unwrap_or("default")
    }

    /// Each zone's live agent, with its zone.
    fn agents(&self) -> impl Iterator<Item = (&str, &ChildObject)> {
        self.cr.spec.zones.iter().filter_map(|zone| {
            self.observed
                .find(
                    ChildKind::VMAgent,
                    &child_name(self.cr, zone, ChildKind::VMAgent),
                )
                .map(|agent| (zone.name.as_str(), agent))
        })
    }
}

/// Where `agent`'s pods answer (the VM operator's Service and the agent's own flags).
fn probe(zone: &str, agent: &ChildObject, targets: Vec<QueueTarget>) -> QueueProbe {
    let spec = &agent.spec;
    let legacy = spec.get("useLegacyNaming").and_then(Value::as_bool) == Some(true);
    let arg = |name: &str| {
        spec.pointer(&format!(
            "/extraArgs/{}",
            name.replace('~', "~0").replace('/', "~1")
        ))
        .and_then(Value::as_str)
    };
    let tls = arg("tls").is_some_and(|v| v == "true");
    let prefix = arg("http.pathPrefix").unwrap_or_default().trim_matches('/');
    QueueProbe {
        agent: agent.name.clone(),
        zone: zone.to_owned(),
        service: if legacy {
            agent.name.clone()
        } else {
            format!("vmagent-{}", agent.name)
        },
        scheme: if tls { "https" } else { "http" }.to_owned(),
        path: if prefix.is_empty() {
            "/metrics".to_owned()
        } else {
            format!("/{prefix}/metrics")
        },
        targets,
    }
}
