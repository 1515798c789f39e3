//! Rendering of the children (docs/api.md "Merge rules", docs/rollout.md "Routing"): for a
//! defaulted CR and the observed live children, the complete desired state of every child, with
//! no I/O.
//!
//! Live state is an input on purpose: the remote-write URL of a `ref` or adopted backend comes
//! from the live object (its owner decides its port and TLS), the order of an agent's
//! `remoteWrite` list follows the live agent (vmagent names its on-disk queues by position, so
//! reordering would lose buffered data), and the VMAuth's targets follow the membership it is
//! given. Deriving that membership (from the live VMAuth and readiness) is the rollout's
//! (`rollout::render_intents`): it needs the URLs rendered here, so `render` imports only
//! `crate::model` and the modules below it, never `rollout`.

pub(crate) mod hash;
pub(crate) mod read_order;
pub mod routes;
pub(crate) mod traffic;
pub(crate) mod url;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Map, Value, json};

use crate::api::{self, VMDistributed, Zone};
use crate::children::{
    ANNOTATION_CREATED_BY, ANNOTATION_SPEC_HASH, ChildObject, LABEL_CLAIM, LABEL_MANAGED_BY,
    LABEL_ZONE, MANAGED_BY_VALUE, OwnerRef,
};
use crate::model::{ChildIntent, Intents, Membership, Observed, ZoneIntents};
use crate::names::{ChildKind, backend_kind, child_name, is_ref, is_referenced, vmauth_name};
use crate::spec::{adopts_by_name, zone_child_spec, zone_remote_write};
use crate::versions;

pub use hash::spec_hash;
pub use url::remote_write_url;

/// Where vmauth sends a target whose member list is empty: vmauth rejects a target ref with no
/// backends, and a closed local port fails fast instead of hanging.
pub const EMPTY_TARGET_URL: &str = "http://127.0.0.1:9999";

/// Every intent of `cr` given the observed children and the VMAuth `membership`: zones in spec
/// order, then the VMAuth, with the zones a rollout in progress has updated listed last in
/// `read` ([`read_order`]). `rollout::render_intents` passes the membership docs/rollout.md
/// "Definitions" derives from the live VMAuth, readiness and `status.rollout`.
#[must_use]
pub(crate) fn render_all(
    cr: &VMDistributed,
    observed: &Observed,
    membership: &Membership,
) -> Intents {
    let zones: Vec<ZoneIntents> = cr
        .spec
        .zones
        .iter()
        .map(|zone| render_zone(cr, zone, observed))
        .collect();
    let read_last = read_order::updated_in_rollout(observed, &zones);
    Intents {
        vmauth: vmauth_enabled(cr)
            .then(|| render_vmauth_ordered(cr, observed, membership, &vmauth_name(cr), &read_last)),
        zones,
    }
}

/// The backend and agent intents of one zone.
#[must_use]
pub fn render_zone(cr: &VMDistributed, zone: &Zone, observed: &Observed) -> ZoneIntents {
    let backend = backend_kind(cr);
    let mut backend_spec = with_license(cr, zone_child_spec(cr, zone, backend));
    if backend == ChildKind::VMCluster {
        let live = observed.find(backend, &child_name(cr, zone, backend));
        traffic::shape_vminsert(
            &mut backend_spec,
            zone.traffic_mode.unwrap_or_default(),
            live,
        );
    }
    if versions::pins_child(cr, zone, backend, &backend_spec) {
        versions::pin(backend, &mut backend_spec, &observed.pinned_versions);
    }
    let mut agent_spec = render_agent_spec(cr, zone, observed);
    if versions::pins_child(cr, zone, ChildKind::VMAgent, &agent_spec) {
        versions::pin(
            ChildKind::VMAgent,
            &mut agent_spec,
            &observed.pinned_versions,
        );
    }
    ZoneIntents {
        zone: zone.name.clone(),
        backend: finish(cr, Some(zone), backend, backend_spec, observed),
        agent: finish(cr, Some(zone), ChildKind::VMAgent, agent_spec, observed),
    }
}

/// The VMAgent spec of `zone`: merged spec + license, `ingestOnlyMode: true`,
/// `remoteWriteSettings.useMultiTenantMode: true`, and one `remoteWrite` entry per zone (its
/// own included), live entries first in their live order, new targets appended in spec order.
#[must_use]
pub fn render_agent_spec(cr: &VMDistributed, zone: &Zone, observed: &Observed) -> Value {
    let mut spec = with_license(cr, zone_child_spec(cr, zone, ChildKind::VMAgent));
    let entries: Vec<(String, Value)> = cr
        .spec
        .zones
        .iter()
        .map(|target| {
            let url = backend_url(cr, target, observed);
            let mut entry = match zone_remote_write(cr, target) {
                Value::Object(map) => map,
                _ => Map::new(),
            };
            entry.insert("url".into(), Value::String(url.clone()));
            (url, Value::Object(entry))
        })
        .collect();
    let live_order: Vec<String> = observed
        .find(
            ChildKind::VMAgent,
            &child_name(cr, zone, ChildKind::VMAgent),
        )
        .and_then(|agent| agent.spec.get("remoteWrite").and_then(Value::as_array))
        .map(|list| {
            list.iter()
                .filter_map(|e| e.get("url").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let remote_write = stable_order(entries, &live_order);
    if let Value::Object(map) = &mut spec {
        map.insert("ingestOnlyMode".into(), Value::Bool(true));
        let settings = map
            .entry("remoteWriteSettings")
            .or_insert_with(|| Value::Object(Map::new()));
        if !settings.is_object() {
            *settings = Value::Object(Map::new());
        }
        if let Value::Object(settings) = settings {
            settings.insert("useMultiTenantMode".into(), Value::Bool(true));
        }
        map.insert("remoteWrite".into(), Value::Array(remote_write));
    }
    spec
}

/// `entries` (url, entry) reordered so that urls present in `live_order` keep their relative
/// live order, followed by the rest in their given order. Duplicate urls keep the first.
fn stable_order(entries: Vec<(String, Value)>, live_order: &[String]) -> Vec<Value> {
    let position: HashMap<&str, usize> = live_order
        .iter()
        .enumerate()
        .rev()
        .map(|(i, url)| (url.as_str(), i))
        .collect();
    let mut known: Vec<(usize, Value)> = Vec::new();
    let mut new: Vec<Value> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (url, entry) in entries {
        if !seen.insert(url.clone()) {
            continue;
        }
        match position.get(url.as_str()) {
            Some(&i) => known.push((i, entry)),
            None => new.push(entry),
        }
    }
    known.sort_by_key(|(i, _)| *i);
    known.into_iter().map(|(_, e)| e).chain(new).collect()
}

/// The remote-write URL of `zone`'s backend. For a `ref` backend, and for an existing backend
/// this CR did not create (adopted), the inputs come from the live object; otherwise (and when
/// the object does not exist yet) from the merged spec.
#[must_use]
pub fn backend_url(cr: &VMDistributed, zone: &Zone, observed: &Observed) -> String {
    let kind = backend_kind(cr);
    let name = child_name(cr, zone, kind);
    let namespace = cr.metadata.namespace.as_deref().unwrap_or("default");
    let uid = cr.metadata.uid.as_deref().unwrap_or_default();
    let live = observed
        .find(kind, &name)
        .filter(|child| is_ref(cr, zone, kind) || !child.created_by(uid))
        .filter(|child| child.spec.is_object());
    match live {
        Some(child) => remote_write_url(kind, &name, namespace, &child.spec),
        None => remote_write_url(kind, &name, namespace, &zone_child_spec(cr, zone, kind)),
    }
}

/// The VMAuth intent for a membership: `vmauth.spec` + license, `waitForConfigReload: true`
/// and `defaultTargetRefs` = `write` then `read`, members in spec order. `None` with
/// `vmauth.enabled: false`.
#[must_use]
pub fn render_vmauth(
    cr: &VMDistributed,
    observed: &Observed,
    membership: &Membership,
) -> Option<ChildIntent> {
    if !vmauth_enabled(cr) {
        return None;
    }
    Some(render_vmauth_named(
        cr,
        observed,
        membership,
        &vmauth_name(cr),
    ))
}

/// The VMAuth intent for a membership under an explicit name (also used to restore every zone
/// to a VMAuth that is being released, docs/rollout.md "Zone removal"), `read` in spec order.
#[must_use]
pub(crate) fn render_vmauth_named(
    cr: &VMDistributed,
    observed: &Observed,
    membership: &Membership,
    name: &str,
) -> ChildIntent {
    render_vmauth_ordered(cr, observed, membership, name, &BTreeSet::new())
}

/// [`render_vmauth_named`] with the zones in `read_last` listed after the others in `read`
/// ([`read_order`]); membership is `membership` either way.
#[must_use]
pub(crate) fn render_vmauth_ordered(
    cr: &VMDistributed,
    observed: &Observed,
    membership: &Membership,
    name: &str,
    read_last: &BTreeSet<String>,
) -> ChildIntent {
    let user_spec = cr
        .spec
        .vmauth
        .as_ref()
        .map(|_| zone_child_spec(cr, &Zone::default(), ChildKind::VMAuth))
        .unwrap_or_else(|| Value::Object(Map::new()));
    let mut spec = with_license(cr, user_spec);
    let backend = backend_kind(cr);
    let namespace = cr.metadata.namespace.clone().unwrap_or_default();
    let members = |selected: &BTreeSet<String>, kind: ChildKind, last: &BTreeSet<String>| {
        read_order::in_read_order(&cr.spec.zones, last)
            .into_iter()
            .filter(|z| selected.contains(&z.name))
            .map(|z| json!({"name": child_name(cr, z, kind), "namespace": namespace}))
            .collect::<Vec<Value>>()
    };
    let write = target_ref(
        "write",
        "VMAgent",
        members(&membership.write, ChildKind::VMAgent, &BTreeSet::new()),
        routes::WRITE_PATHS,
        "least_loaded",
    );
    let read = match backend {
        ChildKind::VMSingle => target_ref(
            "read",
            "VMSingle",
            members(&membership.read, backend, read_last),
            routes::VMSINGLE_READ_PATHS,
            "first_available",
        ),
        _ => target_ref(
            "read",
            "VMCluster/vmselect",
            members(&membership.read, backend, read_last),
            routes::VMCLUSTER_READ_PATHS,
            "first_available",
        ),
    };
    if let Value::Object(map) = &mut spec {
        map.insert("waitForConfigReload".into(), Value::Bool(true));
        map.insert("defaultTargetRefs".into(), Value::Array(vec![write, read]));
    }
    finish_named(cr, None, ChildKind::VMAuth, name, spec, observed)
}

/// One named entry of `defaultTargetRefs`. The VictoriaMetrics operator requires a unique `name`
/// on every default target ref (they are "predefined backends" that a VMUser or
/// `unauthorizedUserAccessSpec.targetRefs` route to by name), and rejects the VMAuth otherwise.
///
/// Its CRD schema also requires `crd.name` and `crd.namespace` (its `CRDRef` inlines one
/// name/namespace pair beside `objects`, and its own Go client always sends both, empty when
/// `objects` is used): without them the API server refuses the VMAuth with 422.
fn target_ref(name: &str, kind: &str, objects: Vec<Value>, paths: &[&str], policy: &str) -> Value {
    let mut target = json!({
        "name": name,
        "paths": paths,
        "load_balancing_policy": policy,
        "retry_status_codes": [500, 502, 503],
    });
    if let Value::Object(map) = &mut target {
        if objects.is_empty() {
            map.insert("static".into(), json!({"url": EMPTY_TARGET_URL}));
        } else {
            map.insert(
                "crd".into(),
                json!({"kind": kind, "name": "", "namespace": "", "objects": objects}),
            );
        }
    }
    target
}

pub use crate::defaults::vmauth_enabled;

/// `spec` with the CR's license copied in when the spec has no `license` of its own.
#[must_use]
pub(crate) fn with_license(cr: &VMDistributed, mut spec: Value) -> Value {
    if let (Some(license), Value::Object(map)) = (&cr.spec.license, &mut spec)
        && !map.contains_key("license")
        && let Ok(license) = serde_json::to_value(license)
    {
        map.insert("license".into(), license);
    }
    spec
}

/// Whether the child named for `zone` and `kind` may be created by this CR: not a `ref`, and
/// for a backend not an adoption by name (a merged spec that cannot describe a new backend,
/// [`crate::spec::adopts_by_name`]; docs/api.md "Adoption and `ref`").
#[must_use]
pub(crate) fn may_create(cr: &VMDistributed, zone: Option<&Zone>, kind: ChildKind) -> bool {
    let zone_or_default = zone.cloned().unwrap_or_default();
    if is_ref(cr, &zone_or_default, kind) {
        return false;
    }
    match (kind, zone) {
        (ChildKind::VMCluster | ChildKind::VMSingle, Some(zone)) => {
            !adopts_by_name(kind, &zone_child_spec(cr, zone, kind))
        }
        _ => true,
    }
}

/// Whether the observed child counts as created by this CR (docs/rollout.md "Ownership"): the
/// created-by annotation or a controller owner reference with the CR's UID.
fn counts_as_created(cr: &VMDistributed, child: &ChildObject) -> bool {
    child.created_by(cr.metadata.uid.as_deref().unwrap_or_default())
}

fn finish(
    cr: &VMDistributed,
    zone: Option<&Zone>,
    kind: ChildKind,
    spec: Value,
    observed: &Observed,
) -> ChildIntent {
    let name = match zone {
        Some(zone) => child_name(cr, zone, kind),
        None => vmauth_name(cr),
    };
    finish_named(cr, zone, kind, &name, spec, observed)
}

/// Labels, annotations and owner references around a spec.
///
/// created-by and the owner reference go on children this CR created, and on children that
/// do not exist yet and that it may create (the intent is then what is POSTed). An existing
/// child that was not created by this CR (adopted) never gets created-by; `ref`s never get
/// either, also when this CR once created them (the marks are then removed, see
/// `rollout::patch::forget_creation`).
fn finish_named(
    cr: &VMDistributed,
    zone: Option<&Zone>,
    kind: ChildKind,
    name: &str,
    spec: Value,
    observed: &Observed,
) -> ChildIntent {
    let cr_name = cr.metadata.name.clone().unwrap_or_default();
    let uid = cr.metadata.uid.clone().unwrap_or_default();
    let mut labels = BTreeMap::new();
    labels.insert(LABEL_MANAGED_BY.to_owned(), MANAGED_BY_VALUE.to_owned());
    labels.insert(LABEL_CLAIM.to_owned(), cr_name.clone());
    if let Some(zone) = zone {
        labels.insert(LABEL_ZONE.to_owned(), zone.name.clone());
    }
    let spec_hash = hash::spec_hash(&spec);
    let mut annotations = BTreeMap::new();
    annotations.insert(ANNOTATION_SPEC_HASH.to_owned(), spec_hash.clone());
    let created = !is_referenced(cr, kind, name)
        && match observed.find(kind, name) {
            Some(child) => counts_as_created(cr, child),
            None => may_create(cr, zone, kind),
        };
    let mut owner_references = Vec::new();
    if created && !uid.is_empty() {
        annotations.insert(ANNOTATION_CREATED_BY.to_owned(), uid.clone());
        if !cr.spec.retain.unwrap_or(false) {
            owner_references.push(owner_reference(cr));
        }
    }
    ChildIntent {
        kind,
        name: name.to_owned(),
        namespace: cr.metadata.namespace.clone().unwrap_or_default(),
        zone: zone.map(|z| z.name.clone()),
        labels,
        annotations,
        owner_references,
        spec,
        spec_hash,
    }
}

/// The controller owner reference to the CR (`controller: true`, `blockOwnerDeletion: true`).
#[must_use]
pub(crate) fn owner_reference(cr: &VMDistributed) -> OwnerRef {
    OwnerRef {
        api_version: format!("{}/{}", api::GROUP, api::VERSION),
        kind: api::KIND.to_owned(),
        name: cr.metadata.name.clone().unwrap_or_default(),
        uid: cr.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}
