//! Which zones the VMAuth routes to (SPEC §5 "member of write/read"), derived from the cluster
//! (the live VMAuth's target refs and the children's readiness), never from memory, so any
//! replica computes the same membership after a restart.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::api::{TrafficMode, VMDistributed, Zone, ZonePhase};
use crate::names::{ChildKind, backend_kind, child_name, vmauth_name};
use crate::render::backend_url;
use crate::rollout::model::Observed;

/// `crd.kind` of the VMAuth target ref that routes writes to the agents. Target refs are told
/// apart by kind rather than by their `name` (`write`, `read`): VMAuths written before the
/// names were added carry none, and the kinds of the two refs always differ.
pub const WRITE_KIND: &str = "VMAgent";
/// `crd.kind` values of the VMAuth target ref that routes reads to the backends.
pub const READ_KINDS: [&str; 2] = ["VMCluster/vmselect", "VMSingle"];

/// The zones (by name) the VMAuth should route writes and reads to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    /// Zones whose agent receives writes.
    pub write: BTreeSet<String>,
    /// Zones whose backend receives reads.
    pub read: BTreeSet<String>,
}

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

    /// The refs of the CR's live VMAuth (empty when it does not exist).
    #[must_use]
    pub fn of(cr: &VMDistributed, observed: &Observed) -> Self {
        observed
            .find(ChildKind::VMAuth, &vmauth_name(cr))
            .map(|auth| Self::from_vmauth_spec(&auth.spec))
            .unwrap_or_default()
    }
}

/// The zone whose traffic is withdrawn because it is under update: `status.rollout.zone` in
/// phase `Excluding` or `Applying`. A single-zone CR is updated in place (excluding its only
/// zone would leave nothing to route to), so it never has one.
#[must_use]
pub fn excluded_zone(cr: &VMDistributed) -> Option<&str> {
    if cr.spec.zones.len() < 2 {
        return None;
    }
    let rollout = cr.status.as_ref()?.rollout.as_ref()?;
    match rollout.phase? {
        ZonePhase::Excluding | ZonePhase::Applying => rollout.zone.as_deref(),
        ZonePhase::Restoring => None,
    }
}

/// Whether every existing agent of the CR already writes to `zone`'s backend (the condition
/// for a ready zone to join reads: data written before it joined must be there).
#[must_use]
pub fn all_agents_write_to(cr: &VMDistributed, observed: &Observed, zone: &Zone) -> bool {
    let url = backend_url(cr, zone, observed);
    cr.spec.zones.iter().all(|z| {
        observed
            .find(ChildKind::VMAgent, &child_name(cr, z, ChildKind::VMAgent))
            .is_none_or(|agent| agent_writes_to(&agent.spec, &url))
    })
}

/// Whether an agent spec lists `url` in its `remoteWrite`.
#[must_use]
pub fn agent_writes_to(agent_spec: &Value, url: &str) -> bool {
    agent_spec
        .get("remoteWrite")
        .and_then(Value::as_array)
        .is_some_and(|list| {
            list.iter()
                .any(|entry| entry.get("url").and_then(Value::as_str) == Some(url))
        })
}

/// The membership SPEC §5 defines, with `excluded` (the zone under update) left out.
#[must_use]
pub fn derive(cr: &VMDistributed, observed: &Observed, excluded: Option<&str>) -> Membership {
    let live = LiveRefs::of(cr, observed);
    let backend = backend_kind(cr);
    let mut membership = Membership::default();
    for zone in &cr.spec.zones {
        if excluded == Some(zone.name.as_str()) {
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
                || (child.is_ready() && all_agents_write_to(cr, observed, zone)))
        {
            membership.read.insert(zone.name.clone());
        }
    }
    membership
}
