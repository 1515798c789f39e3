//! Which zones the VMAuth routes to (docs/rollout.md "Definitions"), derived from the cluster
//! (the live VMAuth's target refs and the children's readiness), never from memory, so any
//! replica computes the same membership after a restart; and which zones serve a target now,
//! which decides whether the zone under update may leave it (the serving guard).

use std::collections::BTreeSet;

use serde_json::Value;

use crate::api::{TrafficMode, VMDistributed, Zone, ZonePhase};
use crate::children::ChildObject;
use crate::model::{Membership, Observed, Target, contains};
use crate::names::{ChildKind, backend_kind, child_name, vmauth_name};
use crate::render::remote_write_url;
use crate::render::url::addresses_backend;
use crate::render::{backend_url, render_zone};

/// `crd.kind` of the VMAuth target ref that routes writes to the agents. Target refs are told
/// apart by kind rather than by their `name` (`write`, `read`): VMAuths written before the
/// names were added carry none, and the kinds of the two refs always differ.
pub(crate) const WRITE_KIND: &str = "VMAgent";
/// `crd.kind` values of the VMAuth target ref that routes reads to the backends.
pub(crate) const READ_KINDS: [&str; 2] = ["VMCluster/vmselect", "VMSingle"];

/// Object names listed by the live VMAuth's `write` and `read` target refs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LiveRefs {
    /// Agent names in the `write` ref.
    pub write: BTreeSet<String>,
    /// Backend names in the `read` ref.
    pub read: BTreeSet<String>,
}

impl LiveRefs {
    /// Read the refs from a VMAuth spec; anything malformed counts as absent.
    #[must_use]
    pub fn from_vmauth_spec(spec: &Value) -> Self {
        let mut refs = Self::default();
        let Some(list) = spec.get("defaultTargetRefs").and_then(Value::as_array) else {
            return refs;
        };
        for target in list {
            let names: BTreeSet<String> = target
                .pointer("/crd/objects")
                .and_then(Value::as_array)
                .map(|objects| {
                    objects
                        .iter()
                        .filter_map(|o| o.get("name").and_then(Value::as_str))
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            match target.pointer("/crd/kind").and_then(Value::as_str) {
                Some(WRITE_KIND) => refs.write.extend(names),
                Some(kind) if READ_KINDS.contains(&kind) => refs.read.extend(names),
                _ => {}
            }
        }
        refs
    }

    /// The refs of the CR's live VMAuth. While it does not exist (deleted by someone, or not
    /// created yet under a new `vmauth.name`), the members the CR's status last recorded
    /// (`status.zones[].inWrite`, `inRead`): the VMAuth comes back with the routing it had,
    /// rather than with only the zones that could join from scratch.
    #[must_use]
    pub fn of(cr: &VMDistributed, observed: &Observed) -> Self {
        if let Some(auth) = observed.find(ChildKind::VMAuth, &vmauth_name(cr)) {
            return Self::from_vmauth_spec(&auth.spec);
        }
        let mut refs = Self::default();
        let recorded = cr
            .status
            .as_ref()
            .map(|s| s.zones.as_slice())
            .unwrap_or_default();
        for zone in &cr.spec.zones {
            let Some(status) = recorded.iter().find(|z| z.name == zone.name) else {
                continue;
            };
            if status.in_write {
                refs.write.insert(child_name(cr, zone, ChildKind::VMAgent));
            }
            if status.in_read {
                refs.read.insert(child_name(cr, zone, backend_kind(cr)));
            }
        }
        refs
    }
}

impl LiveRefs {
    /// The object names of one target.
    #[must_use]
    pub fn target(&self, target: Target) -> &BTreeSet<String> {
        match target {
            Target::Write => &self.write,
            Target::Read => &self.read,
        }
    }
}

/// The kind of the child that represents a zone in `target`: its agent for `write`, its backend
/// for `read`.
#[must_use]
pub(crate) fn member_kind(cr: &VMDistributed, target: Target) -> ChildKind {
    match target {
        Target::Write => ChildKind::VMAgent,
        Target::Read => backend_kind(cr),
    }
}

/// The name of the child that represents `zone` in `target`.
#[must_use]
pub(crate) fn member_name(cr: &VMDistributed, zone: &Zone, target: Target) -> String {
    child_name(cr, zone, member_kind(cr, target))
}

/// Whether `zone` serves `target` (docs/rollout.md "Serving guard"): it is in the target's live
/// refs, its `trafficMode` allows the target, and its backend (for `write` also its agent) is
/// ready.
#[must_use]
pub fn serves(
    cr: &VMDistributed,
    observed: &Observed,
    live: &LiveRefs,
    zone: &Zone,
    target: Target,
) -> bool {
    target.allowed_by(zone.traffic_mode.unwrap_or_default())
        && live.target(target).contains(&member_name(cr, zone, target))
        && ready_for(cr, observed, zone, target)
}

/// Whether `zone` could carry `target`'s traffic now: its backend (for `write` also its agent)
/// is ready.
fn ready_for(cr: &VMDistributed, observed: &Observed, zone: &Zone, target: Target) -> bool {
    let ready = |kind: ChildKind| {
        observed
            .find(kind, &child_name(cr, zone, kind))
            .is_some_and(ChildObject::is_ready)
    };
    ready(backend_kind(cr)) && (target == Target::Read || ready(ChildKind::VMAgent))
}

/// The zone under update: `status.rollout.zone` in phase `Excluding` or `Applying`. It leaves
/// only the targets another zone serves ([`kept_in_place`] are the others).
#[must_use]
pub(crate) fn zone_under_update(cr: &VMDistributed) -> Option<&str> {
    let rollout = cr.status.as_ref()?.rollout.as_ref()?;
    match rollout.phase? {
        ZonePhase::Excluding | ZonePhase::Applying => rollout.zone.as_deref(),
        ZonePhase::Restoring => None,
    }
}

/// The targets `zone` stays in while it is under update (the serving guard): those no other
/// zone serves, so taking it out would leave them without a serving zone. In `Applying` these
/// are the ones it is still in; in `Excluding`, before anything of it changed, also one it left
/// if the zone that served it since has failed (it goes back in). A single-zone CR is the
/// simplest case: its zone stays everywhere.
#[must_use]
pub(crate) fn kept_in_place(cr: &VMDistributed, observed: &Observed, zone: &Zone) -> Vec<Target> {
    let live = LiveRefs::of(cr, observed);
    let excluding = cr
        .status
        .as_ref()
        .and_then(|s| s.rollout.as_ref())
        .is_some_and(|r| {
            r.phase == Some(ZonePhase::Excluding) && r.zone.as_deref() == Some(zone.name.as_str())
        });
    Target::ALL
        .into_iter()
        .filter(|target| {
            let routed = live
                .target(*target)
                .contains(&member_name(cr, zone, *target));
            let could_serve = excluding && ready_for(cr, observed, zone, *target);
            let exists = observed
                .find(member_kind(cr, *target), &member_name(cr, zone, *target))
                .is_some();
            target.allowed_by(zone.traffic_mode.unwrap_or_default())
                && exists
                && (routed || could_serve)
                && !cr
                    .spec
                    .zones
                    .iter()
                    .filter(|other| other.name != zone.name)
                    .any(|other| serves(cr, observed, &live, other, *target))
        })
        .collect()
}

/// Whether the zone under update keeps serving reads because its update leaves its backend
/// alone (docs/rollout.md "Serving guard"): it is in the live `read` refs, its mode allows
/// reads, and its backend is ready and already carries its intent, so only its agent changes.
/// Such a zone leaves `write` only. This is what keeps `read` whole while a change moves
/// through the agents alone (a new zone or a renamed cluster in every `remoteWrite` list):
/// taking each zone out of `read` for its agent's update would leave a renamed zone's new
/// cluster, which joins `read` only once every agent writes to it, and the zone under update
/// both out.
fn serves_reads_unchanged(
    cr: &VMDistributed,
    observed: &Observed,
    live: &LiveRefs,
    zone: &Zone,
) -> bool {
    let kind = backend_kind(cr);
    let name = child_name(cr, zone, kind);
    if !Target::Read.allowed_by(zone.traffic_mode.unwrap_or_default()) || !live.read.contains(&name)
    {
        return false;
    }
    let Some(backend) = observed.find(kind, &name).filter(|b| b.is_ready()) else {
        return false;
    };
    let intent = render_zone(cr, zone, observed).backend;
    backend.spec_hash() == Some(intent.spec_hash.as_str()) && contains(&backend.spec, &intent.spec)
}

/// Whether every existing agent of the CR writes to `zone`'s backend where it listens now (the
/// URL of its live spec; of its intent while it does not exist): the condition for a ready zone
/// to join reads, so reads never reach a zone that misses what was written after it joined.
/// Where it listens, not where its intent says: while a URL change moves through the zones, a
/// zone not updated yet still gets everything at its old URL.
#[must_use]
pub(crate) fn all_agents_write_to(cr: &VMDistributed, observed: &Observed, zone: &Zone) -> bool {
    let kind = backend_kind(cr);
    let name = child_name(cr, zone, kind);
    let namespace = cr.metadata.namespace.as_deref().unwrap_or("default");
    let url = observed
        .find(kind, &name)
        .filter(|live| live.spec.is_object())
        .map_or_else(
            || backend_url(cr, zone, observed),
            |live| remote_write_url(kind, &name, namespace, &live.spec),
        );
    existing_agents(cr, observed).all(|agent| agent_writes_to(&agent.spec, &url))
}

/// Whether every existing agent of the CR writes to `zone`'s backend, at its current URL or at
/// an earlier URL of the same backend (a port, TLS or path change on its way through the
/// zones). The zone that was just updated rejoins reads on this condition: it has been written
/// to all along, and keeping it out until every other agent moved would take every zone out of
/// `read` in turn, the last one leaving it empty.
#[must_use]
pub(crate) fn all_agents_know(cr: &VMDistributed, observed: &Observed, zone: &Zone) -> bool {
    let url = backend_url(cr, zone, observed);
    let kind = backend_kind(cr);
    let name = child_name(cr, zone, kind);
    let namespace = cr.metadata.namespace.as_deref().unwrap_or("default");
    existing_agents(cr, observed).all(|agent| {
        remote_write_urls(&agent.spec)
            .any(|entry| entry == url || addresses_backend(entry, kind, &name, namespace))
    })
}

fn existing_agents<'a>(
    cr: &'a VMDistributed,
    observed: &'a Observed,
) -> impl Iterator<Item = &'a ChildObject> {
    cr.spec
        .zones
        .iter()
        .filter_map(|z| observed.find(ChildKind::VMAgent, &child_name(cr, z, ChildKind::VMAgent)))
}

/// The zone in phase `Restoring`, if any.
fn restoring_zone(cr: &VMDistributed) -> Option<&str> {
    let rollout = cr.status.as_ref()?.rollout.as_ref()?;
    (rollout.phase? == ZonePhase::Restoring)
        .then_some(rollout.zone.as_deref())
        .flatten()
}

/// Whether an agent spec lists `url` in its `remoteWrite`.
#[must_use]
pub(crate) fn agent_writes_to(agent_spec: &Value, url: &str) -> bool {
    remote_write_urls(agent_spec).any(|entry| entry == url)
}

/// The `url` of each entry of an agent spec's `remoteWrite`, in order.
pub(crate) fn remote_write_urls(agent_spec: &Value) -> impl Iterator<Item = &str> {
    agent_spec
        .get("remoteWrite")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.get("url").and_then(Value::as_str))
}

/// The membership docs/rollout.md defines. `under_update` (the zone under update) keeps only
/// the targets `kept_in_place` names.
#[must_use]
pub fn derive(cr: &VMDistributed, observed: &Observed, under_update: Option<&str>) -> Membership {
    let live = LiveRefs::of(cr, observed);
    let backend = backend_kind(cr);
    let restoring = restoring_zone(cr);
    let mut membership = Membership::default();
    for zone in &cr.spec.zones {
        if under_update == Some(zone.name.as_str()) {
            for target in kept_in_place(cr, observed, zone) {
                membership.of_mut(target).insert(zone.name.clone());
            }
            if serves_reads_unchanged(cr, observed, &live, zone) {
                membership.read.insert(zone.name.clone());
            }
            continue;
        }
        let mode = zone.traffic_mode.unwrap_or(TrafficMode::ReadWrite);
        let agent_name = child_name(cr, zone, ChildKind::VMAgent);
        if mode.writes()
            && let Some(agent) = observed.find(ChildKind::VMAgent, &agent_name)
            && (live.write.contains(&agent_name) || agent.is_ready())
        {
            membership.write.insert(zone.name.clone());
        }
        let backend_name = child_name(cr, zone, backend);
        if mode.reads()
            && let Some(child) = observed.find(backend, &backend_name)
            && (live.read.contains(&backend_name)
                || (child.is_ready()
                    && (all_agents_write_to(cr, observed, zone)
                        || (restoring == Some(zone.name.as_str())
                            && all_agents_know(cr, observed, zone)))))
        {
            membership.read.insert(zone.name.clone());
        }
    }
    hand_over(cr, observed, &live, &mut membership);
    membership
}

/// Traffic moved from one zone to another in one edit (docs/rollout.md "Traffic-mode changes"):
/// a zone whose `trafficMode` no longer allows a target stays in it until a member of the target
/// is ready for it, while another zone is meant to take it. The zone that gains the traffic may
/// not join at once (it is under update, or not every agent writes to it yet), and the target
/// must not pass through empty meanwhile.
fn hand_over(
    cr: &VMDistributed,
    observed: &Observed,
    live: &LiveRefs,
    membership: &mut Membership,
) {
    let mode = |zone: &Zone| zone.traffic_mode.unwrap_or_default();
    let exists = |zone: &Zone| {
        [backend_kind(cr), ChildKind::VMAgent]
            .into_iter()
            .all(|kind| observed.find(kind, &child_name(cr, zone, kind)).is_some())
    };
    for target in Target::ALL {
        let meant = cr
            .spec
            .zones
            .iter()
            .any(|zone| target.allowed_by(mode(zone)) && exists(zone));
        let served = cr
            .spec
            .zones
            .iter()
            .filter(|zone| membership.of(target).contains(&zone.name))
            .any(|zone| ready_for(cr, observed, zone, target));
        if !meant || served {
            continue;
        }
        for zone in &cr.spec.zones {
            if !target.allowed_by(mode(zone))
                && live.target(target).contains(&member_name(cr, zone, target))
            {
                membership.of_mut(target).insert(zone.name.clone());
            }
        }
    }
}

/// What a VMAuth that this CR stops managing routes to when it is handed back (it keeps working
/// as a plain VMAuth): what it routes to now, every zone the membership rules admit, and the
/// zone the rollout is updating, which it may still exclude (vmauth retries that zone while it
/// is briefly unready).
#[must_use]
pub(crate) fn handback(cr: &VMDistributed, observed: &Observed, auth: &ChildObject) -> Membership {
    let mut membership = derive(cr, observed, None);
    let own = LiveRefs::from_vmauth_spec(&auth.spec);
    let rollout_zone = cr
        .status
        .as_ref()
        .and_then(|s| s.rollout.as_ref())
        .and_then(|r| r.zone.as_deref());
    for zone in &cr.spec.zones {
        for target in Target::ALL {
            let name = member_name(cr, zone, target);
            let updating = rollout_zone == Some(zone.name.as_str())
                && target.allowed_by(zone.traffic_mode.unwrap_or_default())
                && observed.find(member_kind(cr, target), &name).is_some();
            if updating || own.target(target).contains(&name) {
                membership.of_mut(target).insert(zone.name.clone());
            }
        }
    }
    membership
}
