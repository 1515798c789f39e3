//! The `VMDistributed` API (`operator.victoriametrics.com/v1alpha1`) (docs/api.md; the status in
//! docs/rollout.md).
//!
//! Field names follow the upstream VictoriaMetrics operator so upstream manifests deserialize
//! unchanged. Everything the user did not write stays `None`; defaults are filled in by
//! [`crate::defaults`] (the mutating webhook), never by serde, so a round trip never adds fields.
//! Typed structs refuse unknown fields: the CRD schema prunes nothing silently and strict decoding
//! (admission, `check`) reports a typo instead of ignoring it.

// kube-derive printcolumn(...) entries repeat `type_ = "string"`, which clippy mistakes for a
// duplicated attribute.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime};
use kube::CustomResource;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// API group of `VMDistributed` and of the VictoriaMetrics children.
pub const GROUP: &str = "operator.victoriametrics.com";
/// Version of `VMDistributed`.
pub const VERSION: &str = "v1alpha1";
/// Kind of the custom resource.
pub const KIND: &str = "VMDistributed";

/// The most zones one object may have (`spec.zones`, CRD `maxItems` and validation). Each
/// zone's agent writes to every zone and a rollout renders the VMAuth once per zone left out,
/// so the work an object causes grows with the square of its zones; it runs in the webhook,
/// whose workers every namespace shares, and on the controller's single thread, next to the
/// lease renewal. Sixteen is more zones than any region has.
pub const MAX_ZONES: usize = 16;
/// The literal replaced by a zone's name in `zoneCommon` names and specs.
pub(crate) const ZONE_PLACEHOLDER: &str = "%ZONE%";

/// Joins the lines of every paragraph of the descriptions in `schema` (its own and its
/// properties'). Doc comments are wrapped at 100 columns, and `kubectl explain` prints a
/// description's line breaks as they are, so a sentence would break wherever the source
/// wrapped. Blank lines still separate paragraphs.
fn unwrap_descriptions(schema: &mut Schema) {
    fn walk(value: &mut Value) {
        match value {
            Value::Object(map) => {
                for (key, child) in map.iter_mut() {
                    match child {
                        Value::String(text) if key == "description" => {
                            *text = unwrap_paragraphs(text);
                        }
                        _ => walk(child),
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    if let Some(map) = schema.as_object_mut() {
        for child in map.values_mut() {
            walk(child);
        }
        if let Some(Value::String(text)) = map.get_mut("description") {
            *text = unwrap_paragraphs(text);
        }
    }
}

/// `text` with the single line breaks inside each paragraph replaced by spaces.
fn unwrap_paragraphs(text: &str) -> String {
    text.split("\n\n")
        .map(|paragraph| paragraph.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|paragraph| !paragraph.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// A free-form object kept as written (`x-kubernetes-preserve-unknown-fields`).
fn free_form(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// Desired state of a set of VictoriaMetrics clusters, one per availability zone, updated one
/// zone at a time behind a shared VMAuth.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[schemars(transform = unwrap_descriptions)]
#[kube(
    group = "operator.victoriametrics.com",
    version = "v1alpha1",
    kind = "VMDistributed",
    doc = "VictoriaMetrics clusters, one per availability zone, that hold the same data behind one shared VMAuth and are updated one zone at a time, so that reads and writes keep working during upgrades.",
    plural = "vmdistributed",
    singular = "vmdistributed",
    shortname = "vmd",
    namespaced,
    status = "VMDistributedStatus",
    printcolumn(name = "Status", type_ = "string", json_path = ".status.updateStatus"),
    printcolumn(
        name = "Ready zones",
        type_ = "string",
        json_path = ".status.readyZones"
    ),
    printcolumn(
        name = "Rollout zone",
        type_ = "string",
        json_path = ".status.rollout.zone"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.rollout.phase"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VMDistributedSpec {
    /// Keep every child (VMCluster, VMAgent, VMAuth) when this VMDistributed is deleted.
    /// Default false: children this object created are deleted, adopted ones are released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain: Option<bool>,
    /// Stop all writes to children; a pending change is applied after unpausing. Deletion still
    /// works while paused. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    /// Enterprise license, copied at render time into every child spec that has no `license` of
    /// its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<License>,
    /// Kind of the per-zone storage backend, the same for all zones. Immutable after creation.
    /// Default VMCluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_type: Option<BackendType>,
    /// What happens to the children this object created for a zone removed from `zones`:
    /// Retain (default) releases them, Delete deletes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone_removal_policy: Option<ZoneRemovalPolicy>,
    /// The shared VMAuth that routes reads and writes to the zones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmauth: Option<VMAuthSettings>,
    /// Settings shared by every zone; names and specs may contain %ZONE%.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone_common: Option<ZoneCommon>,
    /// The zones, at least one and at most 16. Their order is the rollout order among healthy
    /// zones and the read order of the VMAuth.
    #[schemars(length(min = 1, max = MAX_ZONES))]
    pub zones: Vec<Zone>,
}

/// Enterprise license reference, as in the VictoriaMetrics operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[schemars(transform = unwrap_descriptions)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct License {
    /// License key given inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// License key read from a Secret key in the same namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_ref: Option<SecretKeySelector>,
    /// Verify the license offline only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_offline: Option<bool>,
    /// How often the license is re-read from `keyRef`, a Go duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reload_interval: Option<String>,
}

/// A key of a Secret in the object's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[schemars(transform = unwrap_descriptions)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeySelector {
    /// Name of the Secret.
    #[serde(default)]
    pub name: String,
    /// Key inside the Secret.
    pub key: String,
    /// Whether a missing Secret or key is acceptable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// Kind of the per-zone storage backend.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[schemars(transform = unwrap_descriptions)]
pub enum BackendType {
    /// A VMCluster (vminsert, vmselect, vmstorage) per zone.
    #[default]
    VMCluster,
    /// A VMSingle per zone.
    VMSingle,
}

/// What happens to the children of a zone removed from `zones`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[schemars(transform = unwrap_descriptions)]
pub enum ZoneRemovalPolicy {
    /// Release the children: labels, annotations and owner reference removed, never deleted.
    #[default]
    Retain,
    /// Delete the children this object created.
    Delete,
}

/// Which traffic a zone receives through the VMAuth.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[schemars(transform = unwrap_descriptions)]
pub enum TrafficMode {
    /// Reads and writes.
    #[default]
    #[serde(rename = "read-write")]
    ReadWrite,
    /// Reads only.
    #[serde(rename = "read-only")]
    ReadOnly,
    /// Writes only.
    #[serde(rename = "write-only")]
    WriteOnly,
    /// Neither reads nor writes.
    #[serde(rename = "maintenance")]
    Maintenance,
}

impl TrafficMode {
    /// Whether the zone is routed for reads.
    #[must_use]
    pub fn reads(self) -> bool {
        matches!(self, Self::ReadWrite | Self::ReadOnly)
    }

    /// Whether the zone is routed for writes.
    #[must_use]
    pub fn writes(self) -> bool {
        matches!(self, Self::ReadWrite | Self::WriteOnly)
    }
}

/// The shared VMAuth.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[schemars(transform = unwrap_descriptions)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VMAuthSettings {
    /// Manage a VMAuth at all. Default true; false leaves every VMAuth untouched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Name of the VMAuth: created if missing, adopted if it exists. Default: metadata.name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// An existing VMAuth in this namespace, never created or deleted.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<ChildRef>,
    /// VMAuthSpec of the VictoriaMetrics operator. `defaultTargetRefs` and `waitForConfigReload`
    /// are owned by the controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form")]
    pub spec: Option<Value>,
}

/// A reference to an existing object that is never created, deleted or owned.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[schemars(transform = unwrap_descriptions)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChildRef {
    /// Name of the existing object.
    pub name: String,
    /// Namespace of the existing object; when given it must equal this object's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Settings shared by every zone.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[schemars(transform = unwrap_descriptions)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ZoneCommon {
    /// Per-zone budget for each wait of a rollout (a Go duration, at least 1s). Default 5m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_timeout: Option<String>,
    /// How long a rollout waits for the vmagents' persistent queues to drain at each point
    /// that waits for them (a Go duration, at least 1s). Default: readyTimeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_timeout: Option<String>,
    /// Wait after a zone finished updating, before the next one starts (a Go duration).
    /// Default 1m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_pause: Option<String>,
    /// Template of every zone's VMCluster (name and spec may contain %ZONE%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmcluster: Option<CommonChild>,
    /// Template of every zone's VMSingle, for backendType VMSingle (name and spec may contain
    /// %ZONE%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmsingle: Option<CommonChild>,
    /// Template of every zone's VMAgent (name and spec may contain %ZONE%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmagent: Option<CommonChild>,
    /// Remote-write settings (VMAgentRemoteWriteSpec without url) every agent uses for each target
    /// zone; %ZONE% is the target zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form")]
    pub remote_write: Option<Value>,
}

/// A child template shared by all zones.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[schemars(transform = unwrap_descriptions)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CommonChild {
    /// Name template; %ZONE% is replaced by the zone name. Without %ZONE% it only fits a
    /// single-zone object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Spec template (the child kind's spec); %ZONE% is replaced in string values and keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form")]
    pub spec: Option<Value>,
}

/// One availability zone.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[schemars(transform = unwrap_descriptions)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Zone {
    /// Zone name, a DNS-1123 label, unique within the object.
    pub name: String,
    /// Traffic the zone receives through the VMAuth. Default read-write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_mode: Option<TrafficMode>,
    /// This zone's VMCluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmcluster: Option<ZoneChild>,
    /// This zone's VMSingle (backendType VMSingle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmsingle: Option<ZoneChild>,
    /// This zone's VMAgent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmagent: Option<ZoneChild>,
    /// Remote-write settings every agent uses when writing into this zone, merged over
    /// zoneCommon.remoteWrite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form")]
    pub remote_write: Option<Value>,
}

/// A zone's child: a name (created or adopted) or a ref (existing, never created), plus a spec
/// merged over the zoneCommon template.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[schemars(transform = unwrap_descriptions)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ZoneChild {
    /// Name of the child, verbatim (no %ZONE%). Created if missing, adopted if it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// An existing child in this namespace, never created or deleted. Exclusive with `name`.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<ChildRef>,
    /// Spec overrides merged over zoneCommon's spec: objects merge, lists and scalars replace,
    /// `{$patch: delete}` or null removes a key, `{$patch: replace}` replaces an object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form")]
    pub spec: Option<Value>,
}

/// Observed state, written by the controller only.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[schemars(transform = unwrap_descriptions)]
#[serde(rename_all = "camelCase")]
pub struct VMDistributedStatus {
    /// expanding, operational, failed or paused (the upstream values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_status: Option<UpdateStatus>,
    /// Why the object is in this state, for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Progressing and Degraded conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Ready zones out of all zones, for example 2/3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_zones: Option<String>,
    /// The generation whose children passed the server-side dry-run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preflight_generation: Option<i64>,
    /// Per-zone state, in spec order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<ZoneStatus>,
    /// The zone being updated and the phase it is in; the clock of the pause between zones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStatus>,
    /// The versions the controller writes into children whose spec leaves the version to the
    /// VictoriaMetrics operator's default, per kind; absent when no child gets one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned_versions: Option<PinnedVersions>,
}

/// The versions the controller pins into children whose spec sets none, per kind. `None` pins
/// nothing for that kind (the child follows the operator's default). The values and the rule
/// for which children get them are in [`crate::versions`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(transform = unwrap_descriptions)]
#[serde(rename_all = "camelCase")]
pub struct PinnedVersions {
    /// `clusterVersion` of `VMCluster`s (for example `v1.148.0-cluster`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmcluster: Option<String>,
    /// `image.tag` of `VMAgent`s (for example `v1.148.0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmagent: Option<String>,
    /// `image.tag` of `VMSingle`s (for example `v1.148.0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmsingle: Option<String>,
}

/// The upstream `updateStatus` values.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[schemars(transform = unwrap_descriptions)]
#[serde(rename_all = "lowercase")]
pub enum UpdateStatus {
    /// Children are being created or updated.
    Expanding,
    /// Every zone is current and ready.
    Operational,
    /// The spec is invalid or a zone did not become ready in time.
    Failed,
    /// `spec.paused` is true.
    Paused,
}

/// State of one zone.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[schemars(transform = unwrap_descriptions)]
#[serde(rename_all = "camelCase")]
pub struct ZoneStatus {
    /// Zone name.
    pub name: String,
    /// Name of the zone's backend (VMCluster, or VMSingle with backendType VMSingle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmcluster: Option<String>,
    /// Name of the zone's VMAgent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmagent: Option<String>,
    /// Backend and agent are operational at their current generation.
    #[serde(default)]
    pub ready: bool,
    /// Backend and agent carry the desired spec.
    #[serde(default)]
    pub current: bool,
    /// The VMAuth routes reads to this zone.
    #[serde(default)]
    pub in_read: bool,
    /// The VMAuth routes writes to this zone.
    #[serde(default)]
    pub in_write: bool,
    /// What is wrong with the zone, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Phase of the zone under update.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[schemars(transform = unwrap_descriptions)]
pub enum ZonePhase {
    /// Taking the zone out of the VMAuth.
    Excluding,
    /// Applying the zone's backend and agent and waiting for them to be ready.
    Applying,
    /// Putting the zone back into the VMAuth.
    Restoring,
}

/// Progress of the rollout, persisted so any replica can resume it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[schemars(transform = unwrap_descriptions)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// The zone under update, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Its phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ZonePhase>,
    /// When the phase was entered (readyTimeout counts from here).
    // Both times keep microseconds: a pause lasts what was asked, not up to a second more, and
    // the next phase's start is never stored as earlier than the pause's end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_since: Option<MicroTime>,
    /// No zone starts before this time (updatePause after the previous zone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_until: Option<MicroTime>,
    /// The phase's persistent-queue drain: `Draining` since `phaseSince`, or `Drained`, then
    /// `phaseSince` is when it finished (the phase's other waits count from there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<DrainState>,
}

/// Where the phase's persistent-queue drain is (docs/rollout.md "Persistent-queue drain").
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[schemars(transform = unwrap_descriptions)]
pub enum DrainState {
    /// Waiting for the agents' queues to empty.
    Draining,
    /// The queues were empty; the phase goes on.
    Drained,
}
