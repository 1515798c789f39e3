//! Preflight (docs/operations.md, "Preflight"): every child a spec makes the controller write, in
//! every shape it writes it, is sent to the API server as a server-side dry-run apply before
//! anything is written: by the validating webhook at `kubectl apply` time, and by the controller
//! before a generation's first child write. What the installed CRD schemas and other admission
//! webhooks refuse is then refused up front instead of mid-rollout, with a zone out of the load
//! balancer.
//!
//! The webhook and the controller share everything here, so they cannot disagree about what is
//! the spec's fault:
//! - [`shapes`]: what to dry-run;
//! - `classify` / [`classify_status`]: what an answer of the API server means;
//! - [`verdict`]: the messages, mapped back to the user's field paths, each reported once.
//!
//! Pure: the callers send the requests.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api::{TrafficMode, VMDistributed, Zone};
use crate::children::ChildObject;
use crate::model::{ChildIntent, Membership, Observed};
use crate::names::{ChildKind, common_child, zone_child};
use crate::render::{render_vmauth, render_zone};

/// What the API server's answer to one dry-run means for the spec.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Finding {
    /// The object would be accepted.
    Accepted,
    /// The object is refused: the spec is wrong. Deny (webhook) or stop (controller).
    Rejected {
        /// The API server's message.
        message: String,
        /// The fields it names, when it names any.
        causes: Vec<Cause>,
    },
    /// The answer says nothing about the object (timeout, 5xx, RBAC, CRD missing): allow with
    /// this warning.
    Inconclusive(String),
}

/// One field the API server named in a rejection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cause {
    /// The path in the child, as the API server wrote it (`spec.vmstorage.replicaCount`).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// How long the controller holds a preflight rejection, by default, before it dry-runs the same
/// generation again: the cause may be outside the spec (a CRD, an admission policy) and be
/// fixed without any change the controller watches.
pub const RECHECK_BASE: Duration = Duration::from_secs(120);
/// The longest a rejection is held before the next dry-run.
pub(crate) const RECHECK_CAP: Duration = Duration::from_secs(30 * 60);

/// How long the `rejections`-th consecutive rejection of one generation (the first is 1) is
/// held before the next dry-run: `base` doubled for each earlier rejection, at most
/// `RECHECK_CAP`, so a spec that stays wrong costs a few dry-runs an hour.
#[must_use]
pub fn recheck_after(base: Duration, rejections: u32) -> Duration {
    let doublings = rejections.saturating_sub(1).min(31);
    base.saturating_mul(1 << doublings).min(RECHECK_CAP)
}

/// What a dry-run that got no answer within `budget` means: nothing about the object.
#[must_use]
pub fn no_answer(budget: Duration) -> Finding {
    Finding::Inconclusive(format!("no answer within {budget:?}"))
}

/// Classify the API server's answer to a dry-run apply from its HTTP status code, message and
/// field causes (`details.causes`).
///
/// Rejected: 400 and 422 (schema, strict field validation), any answer naming a denial by an
/// admission webhook or a ValidatingAdmissionPolicy (whatever code they chose: the
/// VictoriaMetrics operator's webhook answers 403), and the server-side apply 500 "failed to
/// create typed patch object", which is how a field the CRD schema does not declare (or of the
/// wrong type) is reported: the real apply would fail the same way.
///
/// Inconclusive: 403 from RBAC, 404 (the CRD is not installed), 409, 429 and 5xx.
#[must_use]
pub(crate) fn classify(code: u16, message: &str, causes: &[Cause]) -> Finding {
    let webhook_denial = message.contains("admission webhook")
        && message.contains("denied the request")
        || message.contains("ValidatingAdmissionPolicy") && message.contains("denied request");
    let typed_patch = message.contains("failed to create typed patch object");
    if matches!(code, 400 | 422) || webhook_denial || typed_patch {
        let mut causes: Vec<Cause> = causes
            .iter()
            .filter(|c| !c.field.is_empty() && c.field != "<nil>")
            .cloned()
            .collect();
        if causes.is_empty() && typed_patch {
            causes = typed_patch_causes(message);
        }
        return Finding::Rejected {
            message: message.to_owned(),
            causes,
        };
    }
    Finding::Inconclusive(match code {
        403 => format!("forbidden (RBAC): {message}"),
        404 => format!("not found (is the CRD installed?): {message}"),
        code => format!("the API server answered {code}: {message}"),
    })
}

/// `classify` for the API server's `Status` answer (its code, message and causes). A request
/// that got no answer is judged by the binaries' client (`vmdistributed_runtime::dry_run`).
#[must_use]
pub fn classify_status(status: &kube::core::Status) -> Finding {
    let causes: Vec<Cause> = status
        .details
        .iter()
        .flat_map(|d| &d.causes)
        .map(|c| Cause {
            field: c.field.clone(),
            message: c.message.clone(),
        })
        .collect();
    classify(status.code, &status.message, &causes)
}

/// The fields of a server-side apply's "failed to create typed patch object (...): errors:\n
/// .spec.a: ...\n .spec.b: ..." (or a single `.spec.a: ...` after the colon).
fn typed_patch_causes(message: &str) -> Vec<Cause> {
    let Some((_, rest)) = message.split_once("): ") else {
        return Vec::new();
    };
    let rest = rest.strip_prefix("errors:").unwrap_or(rest);
    rest.lines()
        .map(str::trim)
        .filter_map(|line| {
            let line = line.strip_prefix('.')?;
            let (field, what) = line.split_once(": ")?;
            Some(Cause {
                field: field.to_owned(),
                message: what.to_owned(),
            })
        })
        .collect()
}

/// Which form of its child a dry-run object is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Variant {
    /// A zone's backend or agent, as rendered.
    Zone,
    /// The VMAuth routing every zone its `trafficMode` allows (the steady state).
    AllZones,
    /// The VMAuth with one zone taken out (while that zone is updated).
    Without(String),
    /// The VMAuth routing no zone yet (before any zone is ready).
    NoZones,
}

/// One object to dry-run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Shape {
    /// The intent, without owner references (a dry-run of a new object must not point at a CR
    /// that may not exist yet).
    pub intent: ChildIntent,
    /// Which form of the child it is.
    pub variant: Variant,
    /// For an agent: the zone each `remoteWrite` entry writes into, in the entry order, so a
    /// rejected entry maps back to that zone's settings.
    #[serde(default)]
    pub remote_write_zones: Vec<String>,
}

impl Shape {
    /// `VMCluster demo-a in zone a`, `VMAuth demo without zone a`, for messages.
    #[must_use]
    pub fn describe(&self) -> String {
        let child = format!("{} {}", self.intent.kind, self.intent.name);
        match (&self.variant, &self.intent.zone) {
            (Variant::Zone, Some(zone)) => format!("{child} in zone {zone}"),
            (Variant::Without(zone), _) => format!("{child} without zone {zone}"),
            (Variant::NoZones, _) => format!("{child} routing no zone"),
            _ => child,
        }
    }
}

/// Everything preflight dry-runs for `cr` given the observed children (none in the webhook):
/// every zone's backend and agent, then the VMAuth in every shape the controller writes it:
/// with every zone it may route, with each zone taken out, and with none. Shapes whose VMAuth
/// specs are equal are sent once. Owner references are left out.
#[must_use]
pub fn shapes(cr: &VMDistributed, observed: &Observed) -> Vec<Shape> {
    let mut out = Vec::new();
    for zone in &cr.spec.zones {
        let intents = render_zone(cr, zone, observed);
        let remote_write_zones = remote_write_zones(cr, &intents.agent, observed);
        out.push(Shape {
            intent: intents.backend.without_owner_references(),
            variant: Variant::Zone,
            remote_write_zones: Vec::new(),
        });
        out.push(Shape {
            intent: intents.agent.without_owner_references(),
            variant: Variant::Zone,
            remote_write_zones,
        });
    }
    let every = Membership {
        write: zones_where(cr, TrafficMode::writes),
        read: zones_where(cr, TrafficMode::reads),
    };
    let mut memberships = vec![(Variant::AllZones, every.clone())];
    if cr.spec.zones.len() > 1 {
        for zone in &cr.spec.zones {
            let mut without = every.clone();
            without.write.remove(&zone.name);
            without.read.remove(&zone.name);
            memberships.push((Variant::Without(zone.name.clone()), without));
        }
    }
    memberships.push((Variant::NoZones, Membership::default()));
    let mut seen: Vec<Value> = Vec::new();
    for (variant, membership) in memberships {
        let Some(intent) = render_vmauth(cr, observed, &membership) else {
            break;
        };
        if seen.contains(&intent.spec) {
            continue;
        }
        seen.push(intent.spec.clone());
        out.push(Shape {
            intent: intent.without_owner_references(),
            variant,
            remote_write_zones: Vec::new(),
        });
    }
    out
}

/// The [`shapes`] in which `intents` (what a generation writes, as the decision lists it in
/// its preflight) are written: each listed zone child as rendered, and, when the VMAuth is
/// listed, the VMAuth in every shape.
#[must_use]
pub fn shapes_for(cr: &VMDistributed, observed: &Observed, intents: &[ChildIntent]) -> Vec<Shape> {
    let listed = |kind: ChildKind, name: &str| {
        intents
            .iter()
            .any(|intent| intent.kind == kind && intent.name == name)
    };
    shapes(cr, observed)
        .into_iter()
        .filter(|shape| match shape.variant {
            Variant::Zone => listed(shape.intent.kind, &shape.intent.name),
            _ => intents
                .iter()
                .any(|intent| intent.kind == ChildKind::VMAuth),
        })
        .collect()
}

/// The zones whose `trafficMode` `allows` a target: the members of a VMAuth that routes every
/// zone its mode admits.
pub(crate) fn zones_where(cr: &VMDistributed, allows: fn(TrafficMode) -> bool) -> BTreeSet<String> {
    cr.spec
        .zones
        .iter()
        .filter(|z| allows(z.traffic_mode.unwrap_or_default()))
        .map(|z| z.name.clone())
        .collect()
}

/// The zone each `remoteWrite` entry of a rendered agent writes into, matched by URL.
fn remote_write_zones(cr: &VMDistributed, agent: &ChildIntent, observed: &Observed) -> Vec<String> {
    let urls: Vec<(String, &str)> = cr
        .spec
        .zones
        .iter()
        .map(|z| (crate::render::backend_url(cr, z, observed), z.name.as_str()))
        .collect();
    agent
        .spec
        .get("remoteWrite")
        .and_then(Value::as_array)
        .map(|entries| {
            entries
                .iter()
                .map(|entry| {
                    let url = entry.get("url").and_then(Value::as_str).unwrap_or_default();
                    urls.iter()
                        .find(|(u, _)| u == url)
                        .map(|(_, zone)| (*zone).to_owned())
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The outcome of one preflight, worded for a person.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Why the spec is refused, one line per problem; empty when it passed.
    pub rejections: Vec<String>,
    /// For each zone with a refused backend or agent, the lines of [`Verdict::rejections`]
    /// that name it, `; `-separated (the zone's `status.zones[].message`).
    pub zones: BTreeMap<String, String>,
    /// What could not be checked, one line per reason.
    pub warnings: Vec<String>,
}

impl Verdict {
    /// Every rejection on one line, `; `-separated; `None` when the spec passed.
    #[must_use]
    pub fn rejection(&self) -> Option<String> {
        (!self.rejections.is_empty()).then(|| self.rejections.join("; "))
    }
}

/// Word the findings (one per shape, in the same order) for `cr`.
///
/// A rejected field is named by the user's field path it came from
/// (`spec.zoneCommon.vmcluster.spec.vmstorage.replicaCount`), once for every child that
/// inherited it, followed by the API server's message and the children it refused; a field the
/// controller sets, or a rejection that names no field (a webhook's denial), is reported per
/// child with the API server's whole message. Identical messages are reported once.
#[must_use]
pub fn verdict(cr: &VMDistributed, shapes: &[Shape], findings: &[Finding]) -> Verdict {
    // What was found, with the shapes it was found for, in first-seen order.
    let mut rejections: Vec<(Problem, Vec<String>)> = Vec::new();
    // The zones of the refused zone children of each entry of `rejections`.
    let mut rejected_zones: Vec<BTreeSet<String>> = Vec::new();
    let mut warnings: Vec<(String, Vec<String>)> = Vec::new();
    for (shape, finding) in shapes.iter().zip(findings) {
        match finding {
            Finding::Accepted => {}
            Finding::Inconclusive(reason) => {
                group(&mut warnings, reason.clone(), shape.describe());
            }
            Finding::Rejected { message, causes } => {
                let mut problems = Vec::new();
                if causes.is_empty() {
                    problems.push(Problem::Child(one_line(message)));
                }
                for cause in causes {
                    problems.push(match user_path(cr, shape, &cause.field) {
                        Some(path) => Problem::Field(path, one_line(&cause.message)),
                        // A field the controller sets: only the child can be named.
                        None => {
                            Problem::Child(format!("{}: {}", cause.field, one_line(&cause.message)))
                        }
                    });
                }
                for problem in problems {
                    let entry = group(&mut rejections, problem, shape.describe());
                    rejected_zones.resize_with(rejections.len(), BTreeSet::new);
                    if let (Variant::Zone, Some(zone)) = (&shape.variant, &shape.intent.zone) {
                        rejected_zones[entry].insert(zone.clone());
                    }
                }
            }
        }
    }
    let rejections: Vec<String> = rejections
        .into_iter()
        .map(|(problem, shapes)| match problem {
            Problem::Field(path, message) => format!(
                "preflight: {path}: {message} (refused for {})",
                shapes.join(", ")
            ),
            Problem::Child(message) => format!(
                "preflight: {} rejected by the API server: {message}",
                shapes.join(", ")
            ),
        })
        .collect();
    let mut zones: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (line, names) in rejections.iter().zip(&rejected_zones) {
        for zone in names {
            zones.entry(zone.clone()).or_default().push(line);
        }
    }
    Verdict {
        zones: zones
            .into_iter()
            .map(|(zone, lines)| (zone, lines.join("; ")))
            .collect(),
        rejections,
        warnings: warnings
            .into_iter()
            .map(|(reason, shapes)| {
                format!("preflight: {} not checked: {reason}", shapes.join(", "))
            })
            .collect(),
    }
}

/// One rejected thing, as it is reported.
#[derive(PartialEq, Eq)]
enum Problem {
    /// A field the user wrote (user path, the API server's message about it).
    Field(String, String),
    /// Something only the child can be named for (the API server's message).
    Child(String),
}

/// Add `shape` to the entry for `what`, creating it after the others; returns the entry's
/// index.
fn group<T: PartialEq>(list: &mut Vec<(T, Vec<String>)>, what: T, shape: String) -> usize {
    match list.iter().position(|(w, _)| *w == what) {
        Some(index) => {
            let shapes = &mut list[index].1;
            if !shapes.contains(&shape) {
                shapes.push(shape);
            }
            index
        }
        None => {
            list.push((what, vec![shape]));
            list.len() - 1
        }
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The warning for a VMAuth that already exists and is claimed by another `VMDistributed` (its
/// [`crate::children::LABEL_CLAIM`] label names another object): the controller would never
/// write it (`OwnershipConflict`). `None` when `live` is unclaimed or claimed by `cr`.
#[must_use]
pub fn vmauth_claim_warning(cr: &VMDistributed, live: &ChildObject) -> Option<String> {
    let owner = live.claimed_by()?;
    let name = cr.metadata.name.as_deref().unwrap_or_default();
    if owner == name {
        return None;
    }
    let field = match cr.spec.vmauth.as_ref() {
        Some(settings) if settings.reference.is_some() => "spec.vmauth.ref.name",
        Some(settings) if settings.name.is_some() => "spec.vmauth.name",
        _ => "spec.vmauth.name (default: metadata.name)",
    };
    Some(format!(
        "{field}: VMAuth {}/{} is already claimed by VMDistributed {owner} (label {}); this \
         object will not write it (OwnershipConflict) until that label is gone: choose another \
         VMAuth name, or remove the other object's claim",
        live.namespace,
        live.name,
        crate::children::LABEL_CLAIM
    ))
}

/// One step of a field path.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

/// `spec.a[0].b`, `.spec.a[0].b` or `spec.labels[x.y/z]` as segments.
fn parse_path(path: &str) -> Vec<Segment> {
    let mut segments = Vec::new();
    let mut key = String::new();
    let mut chars = path.chars();
    while let Some(c) = chars.next() {
        match c {
            '.' => {
                if !key.is_empty() {
                    segments.push(Segment::Key(std::mem::take(&mut key)));
                }
            }
            '[' => {
                if !key.is_empty() {
                    segments.push(Segment::Key(std::mem::take(&mut key)));
                }
                let inner: String = chars.by_ref().take_while(|&c| c != ']').collect();
                segments.push(match inner.parse::<usize>() {
                    Ok(index) => Segment::Index(index),
                    Err(_) => Segment::Key(inner.trim_matches('"').to_owned()),
                });
            }
            c => key.push(c),
        }
    }
    if !key.is_empty() {
        segments.push(Segment::Key(key));
    }
    segments
}

/// Append `segments` to a user path.
fn join_path(mut path: String, segments: &[Segment]) -> String {
    for segment in segments {
        path = match segment {
            Segment::Key(key) => crate::path::child(&path, key),
            Segment::Index(index) => format!("{path}[{index}]"),
        };
    }
    path
}

/// How far `segments` reach into `value`, with the keys as written there (a `zoneCommon` key
/// may carry `%ZONE%` where the child has the zone's name).
fn reach(value: Option<&Value>, segments: &[Segment], zone: Option<&str>) -> Vec<Segment> {
    let mut matched = Vec::new();
    let mut current = value;
    for segment in segments {
        let step = match (segment, current) {
            (Segment::Key(key), Some(Value::Object(map))) => map
                .iter()
                .find(|(written, _)| {
                    *written == key
                        || zone.is_some_and(|zone| {
                            crate::template::replace_zone_str(written, zone) == *key
                        })
                })
                .map(|(written, child)| (Segment::Key(written.clone()), child)),
            (Segment::Index(index), Some(Value::Array(items))) => {
                items.get(*index).map(|item| (Segment::Index(*index), item))
            }
            _ => None,
        };
        let Some((written, child)) = step else { break };
        matched.push(written);
        current = Some(child);
    }
    matched
}

/// The user's field path that produced `field` of the shape's child, if the user wrote it
/// (or wrote the object it is missing from).
fn user_path(cr: &VMDistributed, shape: &Shape, field: &str) -> Option<String> {
    let segments = parse_path(field);
    let (Some(Segment::Key(first)), rest) = (segments.first(), segments.get(1..).unwrap_or(&[]))
    else {
        return None;
    };
    if first != "spec" || rest.is_empty() {
        return None;
    }
    let kind = shape.intent.kind;
    let license = cr
        .spec
        .license
        .as_ref()
        .and_then(|l| serde_json::to_value(l).ok());
    // (user path of the source, its value, the zone its %ZONE% stands for)
    let mut sources: Vec<(String, Option<Value>, Option<String>)> = Vec::new();
    let mut rest = rest;
    if kind == ChildKind::VMAuth {
        sources.push((
            "spec.vmauth.spec".to_owned(),
            cr.spec.vmauth.as_ref().and_then(|a| a.spec.clone()),
            None,
        ));
    } else {
        let (index, zone) = zone_of(cr, shape.intent.zone.as_deref())?;
        if kind == ChildKind::VMAgent
            && let [Segment::Key(list), Segment::Index(entry), tail @ ..] = rest
            && list == "remoteWrite"
        {
            // An entry's settings come from the target zone's remoteWrite over zoneCommon's.
            let target = shape.remote_write_zones.get(*entry)?;
            let (target_index, target_zone) = zone_of(cr, Some(target))?;
            sources.push((
                format!("spec.zones[{target_index}].remoteWrite"),
                target_zone.remote_write.clone(),
                None,
            ));
            sources.push((
                "spec.zoneCommon.remoteWrite".to_owned(),
                cr.spec
                    .zone_common
                    .as_ref()
                    .and_then(|c| c.remote_write.clone()),
                Some(target_zone.name.clone()),
            ));
            rest = tail;
        } else {
            let field = kind.field();
            sources.push((
                format!("spec.zones[{index}].{field}.spec"),
                zone_child(zone, kind).and_then(|c| c.spec.clone()),
                None,
            ));
            sources.push((
                format!("spec.zoneCommon.{field}.spec"),
                common_child(cr, kind).and_then(|c| c.spec.clone()),
                Some(zone.name.clone()),
            ));
        }
    }
    if rest.is_empty() {
        return None;
    }
    // The license is copied in only when the child spec has none of its own.
    if let [Segment::Key(key), tail @ ..] = rest
        && key == "license"
    {
        let written_in_spec = sources
            .iter()
            .any(|(_, value, _)| value.as_ref().is_some_and(|v| v.get("license").is_some()));
        if !written_in_spec {
            return license.map(|_| join_path("spec.license".to_owned(), tail));
        }
    }
    // The source that reaches deepest wrote it (the zone's own spec wins a tie: it is merged
    // over the common one).
    let mut best: Option<(usize, String)> = None;
    for (prefix, value, zone) in &sources {
        let matched = reach(value.as_ref(), rest, zone.as_deref());
        if matched.is_empty()
            || best
                .as_ref()
                .is_some_and(|(depth, _)| *depth >= matched.len())
        {
            continue;
        }
        let path = join_path(join_path(prefix.clone(), &matched), &rest[matched.len()..]);
        best = Some((matched.len(), path));
    }
    best.map(|(_, path)| path)
}

/// The index and zone named `name`.
fn zone_of<'a>(cr: &'a VMDistributed, name: Option<&str>) -> Option<(usize, &'a Zone)> {
    let name = name?;
    cr.spec
        .zones
        .iter()
        .enumerate()
        .find(|(_, z)| z.name == name)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The table of API server answers the webhook and the controller must judge alike
    /// (their own unit tests read the same file).
    const OUTCOMES: &str = include_str!("../tests/fixtures/preflight_outcomes.json");

    /// (what, code, message, causes, expected verdict) from [`OUTCOMES`].
    pub(crate) fn outcomes() -> Vec<(String, u16, String, Vec<Cause>, String)> {
        let table: Vec<Value> = serde_json::from_str(OUTCOMES).expect("the table is JSON");
        table
            .iter()
            .map(|row| {
                let causes = row["causes"]
                    .as_array()
                    .map(|causes| {
                        causes
                            .iter()
                            .map(|c| Cause {
                                field: c["field"].as_str().unwrap_or_default().to_owned(),
                                message: c["message"].as_str().unwrap_or_default().to_owned(),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                (
                    row["what"].as_str().unwrap_or_default().to_owned(),
                    u16::try_from(row["code"].as_u64().unwrap_or_default()).unwrap_or_default(),
                    row["message"].as_str().unwrap_or_default().to_owned(),
                    causes,
                    row["verdict"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    fn label(finding: &Finding) -> &'static str {
        match finding {
            Finding::Accepted => "accepted",
            Finding::Rejected { .. } => "rejected",
            Finding::Inconclusive(_) => "inconclusive",
        }
    }

    #[test]
    fn the_table_of_answers_is_classified_as_documented() {
        let rows = outcomes();
        assert!(rows.len() >= 10);
        for (what, code, message, causes, expected) in rows {
            let finding = classify(code, &message, &causes);
            assert_eq!(label(&finding), expected, "{what}: {finding:?}");
            // A Status carrying the same answer is judged the same way.
            let mut status = kube::core::Status::failure(&message, "");
            status.code = code;
            assert_eq!(
                classify_status(&status),
                classify(code, &message, &[]),
                "{what}"
            );
        }
        assert!(
            matches!(no_answer(Duration::from_secs(3)), Finding::Inconclusive(m) if m.contains("3s"))
        );
    }

    #[test]
    fn a_rejection_is_held_twice_as_long_each_time_up_to_half_an_hour() {
        let minutes: Vec<u64> = (1..=7)
            .map(|n| recheck_after(RECHECK_BASE, n).as_secs() / 60)
            .collect();
        assert_eq!(minutes, [2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(recheck_after(RECHECK_BASE, 0), RECHECK_BASE);
        assert_eq!(recheck_after(RECHECK_BASE, u32::MAX), RECHECK_CAP);
        assert_eq!(
            recheck_after(Duration::from_secs(1), 3),
            Duration::from_secs(4)
        );
    }

    #[test]
    fn typed_patch_errors_name_their_fields() {
        let finding = classify(
            500,
            "failed to create typed patch object (ns/a; operator.victoriametrics.com/v1beta1, Kind=VMAgent): errors:\n  .spec.remoteWrite[0].sendTimeout: expected string, got &value.valueUnstructured{Value:5}\n  .spec.replicaCount: expected numeric (int or float), got string",
            &[],
        );
        let Finding::Rejected { causes, .. } = finding else {
            panic!("{finding:?}")
        };
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(
            fields,
            ["spec.remoteWrite[0].sendTimeout", "spec.replicaCount"]
        );
        let single = classify(
            500,
            "failed to create typed patch object (ns/a; operator.victoriametrics.com/v1beta1, Kind=VMCluster): .spec.vmstorage.replicaCont: field not declared in schema",
            &[],
        );
        assert!(
            matches!(&single, Finding::Rejected { causes, .. } if causes == &[Cause { field: "spec.vmstorage.replicaCont".into(), message: "field not declared in schema".into() }]),
            "{single:?}"
        );
        // The API server's "other rules were not checked" cause names no field.
        let finding = classify(
            422,
            "invalid",
            &[
                Cause {
                    field: "spec.a".into(),
                    message: "Required value".into(),
                },
                Cause {
                    field: "<nil>".into(),
                    message: "some validation rules were not checked".into(),
                },
            ],
        );
        assert!(matches!(&finding, Finding::Rejected { causes, .. } if causes.len() == 1));
    }

    fn cr(spec: Value) -> VMDistributed {
        let value = json!({
            "apiVersion": "operator.victoriametrics.com/v1alpha1",
            "kind": "VMDistributed",
            "metadata": {"name": "demo", "namespace": "ns"},
            "spec": spec,
        });
        crate::defaults::apply_defaults(&crate::parse::strict(&value).expect("decodes"))
    }

    fn three_zones() -> VMDistributed {
        cr(json!({
            "license": {"key": "k"},
            "vmauth": {"spec": {"replicaCount": 1}},
            "zoneCommon": {
                "vmcluster": {"spec": {
                    "vmstorage": {"replicaCount": 1},
                    "vmselect": {"replicaCount": 1},
                    "vminsert": {"replicaCount": 1},
                    "serviceAccountName": "sa-%ZONE%"
                }},
                "vmagent": {"spec": {"replicaCount": 1}},
                "remoteWrite": {"sendTimeout": "10s"}
            },
            "zones": [
                {"name": "a"},
                {"name": "b", "vmcluster": {"spec": {"vmstorage": {"storage": {"x": 1}}}},
                 "remoteWrite": {"maxDiskUsage": "1GB"}},
                {"name": "c", "trafficMode": "maintenance"}
            ]
        }))
    }

    fn refs(shape: &Shape, target: &str) -> Vec<String> {
        shape.intent.spec["defaultTargetRefs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["name"] == target)
            .flat_map(|t| t["crd"]["objects"].as_array().cloned().unwrap_or_default())
            .filter_map(|o| o["name"].as_str().map(str::to_owned))
            .collect()
    }

    #[test]
    fn shapes_are_every_zone_child_and_the_vmauth_as_the_controller_writes_it() {
        let demo = three_zones();
        let shapes = shapes(&demo, &Observed::default());
        let described: Vec<String> = shapes.iter().map(Shape::describe).collect();
        assert_eq!(
            described,
            [
                "VMCluster demo-a in zone a",
                "VMAgent demo-a in zone a",
                "VMCluster demo-b in zone b",
                "VMAgent demo-b in zone b",
                "VMCluster demo-c in zone c",
                "VMAgent demo-c in zone c",
                "VMAuth demo",
                "VMAuth demo without zone a",
                "VMAuth demo without zone b",
                // Without zone c is the same VMAuth as with every zone: c takes no traffic.
                "VMAuth demo routing no zone",
            ]
        );
        assert!(shapes.iter().all(|s| s.intent.owner_references.is_empty()));
        let auth = |variant: Variant| {
            shapes
                .iter()
                .find(|s| s.variant == variant)
                .expect("the shape exists")
        };
        assert_eq!(refs(auth(Variant::AllZones), "write"), ["demo-a", "demo-b"]);
        assert_eq!(refs(auth(Variant::AllZones), "read"), ["demo-a", "demo-b"]);
        assert_eq!(refs(auth(Variant::Without("a".into())), "read"), ["demo-b"]);
        assert!(refs(auth(Variant::NoZones), "read").is_empty());
        assert_eq!(
            auth(Variant::NoZones).intent.spec["defaultTargetRefs"][0]["static"]["url"],
            crate::render::EMPTY_TARGET_URL
        );
        // The agent of zone a writes into a, b and c, in that order.
        assert_eq!(shapes[1].remote_write_zones, ["a", "b", "c"]);

        // Without a VMAuth, only the zones; with one zone, no exclusion shapes.
        let mut off = three_zones();
        off.spec.vmauth = Some(crate::api::VMAuthSettings {
            enabled: Some(false),
            ..Default::default()
        });
        assert_eq!(super::shapes(&off, &Observed::default()).len(), 6);
        let single = cr(json!({"zones": [{"name": "a"}]}));
        let described: Vec<String> = super::shapes(&single, &Observed::default())
            .iter()
            .map(Shape::describe)
            .collect();
        assert_eq!(
            described,
            [
                "VMCluster demo-a in zone a",
                "VMAgent demo-a in zone a",
                "VMAuth demo",
                "VMAuth demo routing no zone"
            ]
        );
    }

    fn rejected(fields: &[(&str, &str)]) -> Finding {
        Finding::Rejected {
            message: "refused".into(),
            causes: fields
                .iter()
                .map(|(field, message)| Cause {
                    field: (*field).into(),
                    message: (*message).into(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_rejected_field_is_named_by_the_users_path_once() {
        let cr = three_zones();
        let shapes = shapes(&cr, &Observed::default());
        let mut findings = vec![Finding::Accepted; shapes.len()];
        // Every zone's VMCluster refuses the common replicaCount, zone b's its own storage.
        for (i, shape) in shapes.iter().enumerate() {
            if shape.intent.kind == ChildKind::VMCluster {
                let mut causes = vec![("spec.vmstorage.replicaCount", "must be at least 2")];
                if shape.intent.zone.as_deref() == Some("b") {
                    causes.push(("spec.vmstorage.storage.x", "field not declared in schema"));
                }
                findings[i] = rejected(&causes);
            }
        }
        let verdict = verdict(&cr, &shapes, &findings);
        assert_eq!(
            verdict.rejections,
            [
                "preflight: spec.zoneCommon.vmcluster.spec.vmstorage.replicaCount: must be at least 2 (refused for VMCluster demo-a in zone a, VMCluster demo-b in zone b, VMCluster demo-c in zone c)",
                "preflight: spec.zones[1].vmcluster.spec.vmstorage.storage.x: field not declared in schema (refused for VMCluster demo-b in zone b)",
            ]
        );
        assert!(verdict.warnings.is_empty());
        assert!(verdict.rejection().is_some_and(|r| r.contains("; ")));
        // Each zone is told what of its own was refused.
        let zones: Vec<(&str, &str)> = verdict
            .zones
            .iter()
            .map(|(zone, message)| (zone.as_str(), message.as_str()))
            .collect();
        let both = verdict.rejections.join("; ");
        assert_eq!(
            zones,
            [
                ("a", verdict.rejections[0].as_str()),
                ("b", both.as_str()),
                ("c", verdict.rejections[0].as_str())
            ]
        );
    }

    #[test]
    fn paths_map_to_templates_remote_write_license_vmauth_and_missing_fields() {
        let cr = three_zones();
        let shapes = shapes(&cr, &Observed::default());
        let find = |describe: &str| {
            shapes
                .iter()
                .find(|s| s.describe() == describe)
                .expect("shape")
        };
        let agent_a = find("VMAgent demo-a in zone a");
        let cases = [
            // A %ZONE% template value, and a field missing below what the user wrote.
            (
                find("VMCluster demo-a in zone a"),
                "spec.serviceAccountName",
                Some("spec.zoneCommon.vmcluster.spec.serviceAccountName"),
            ),
            (
                find("VMCluster demo-b in zone b"),
                "spec.vmstorage.storage.volumeClaimTemplate",
                Some("spec.zones[1].vmcluster.spec.vmstorage.storage.volumeClaimTemplate"),
            ),
            (
                find("VMCluster demo-a in zone a"),
                "spec.vmstorage.storage",
                Some("spec.zoneCommon.vmcluster.spec.vmstorage.storage"),
            ),
            // remoteWrite entry 1 of zone a's agent writes into zone b.
            (
                agent_a,
                "spec.remoteWrite[1].maxDiskUsage",
                Some("spec.zones[1].remoteWrite.maxDiskUsage"),
            ),
            (
                agent_a,
                ".spec.remoteWrite[0].sendTimeout",
                Some("spec.zoneCommon.remoteWrite.sendTimeout"),
            ),
            (agent_a, "spec.license.key", Some("spec.license.key")),
            (
                find("VMAuth demo"),
                "spec.replicaCount",
                Some("spec.vmauth.spec.replicaCount"),
            ),
            // Fields the controller sets are no user's.
            (agent_a, "spec.remoteWrite[0].url", None),
            (agent_a, "spec.ingestOnlyMode", None),
            (
                find("VMAuth demo"),
                "spec.defaultTargetRefs[0].crd.name",
                None,
            ),
            (find("VMAuth demo"), "metadata.labels", None),
        ];
        for (shape, field, expected) in cases {
            assert_eq!(
                user_path(&cr, shape, field).as_deref(),
                expected,
                "{} {field}",
                shape.describe()
            );
        }
    }

    #[test]
    fn unmapped_rejections_and_warnings_name_the_child() {
        let cr = three_zones();
        let shapes = shapes(&cr, &Observed::default());
        let mut findings = vec![Finding::Accepted; shapes.len()];
        let auth = shapes
            .iter()
            .position(|s| s.variant == Variant::AllZones)
            .expect("vmauth");
        let refused = rejected(&[(
            "spec.defaultTargetRefs[1].crd.objects[0].name",
            "Invalid value",
        )]);
        findings[auth] = refused.clone();
        findings[auth + 2] = refused;
        findings[0] = Finding::Rejected {
            message: "admission webhook \"x\" denied the request:\n no".into(),
            causes: Vec::new(),
        };
        findings[1] = Finding::Inconclusive("no answer within 3s".into());
        findings[3] = Finding::Inconclusive("no answer within 3s".into());
        let verdict = verdict(&cr, &shapes, &findings);
        assert_eq!(
            verdict.rejections,
            [
                "preflight: VMCluster demo-a in zone a rejected by the API server: admission webhook \"x\" denied the request: no",
                "preflight: VMAuth demo, VMAuth demo without zone b rejected by the API server: spec.defaultTargetRefs[1].crd.objects[0].name: Invalid value",
            ]
        );
        assert_eq!(
            verdict.warnings,
            [
                "preflight: VMAgent demo-a in zone a, VMAgent demo-b in zone b not checked: no answer within 3s"
            ]
        );
    }

    #[test]
    fn field_paths_parse_with_indexes_and_quoted_keys() {
        assert_eq!(
            parse_path(".spec.a[2].b"),
            [
                Segment::Key("spec".into()),
                Segment::Key("a".into()),
                Segment::Index(2),
                Segment::Key("b".into())
            ]
        );
        assert_eq!(
            parse_path("spec.nodeSelector[topology.kubernetes.io/zone]"),
            [
                Segment::Key("spec".into()),
                Segment::Key("nodeSelector".into()),
                Segment::Key("topology.kubernetes.io/zone".into())
            ]
        );
        assert_eq!(
            join_path(
                "spec".into(),
                &parse_path("x[topology.kubernetes.io/zone][0]")
            ),
            "spec.x[\"topology.kubernetes.io/zone\"][0]"
        );
    }

    #[test]
    fn a_vmauth_claimed_by_another_object_gets_a_warning() {
        let demo = three_zones();
        let live = |claim: Option<&str>| {
            let mut labels = serde_json::Map::new();
            if let Some(claim) = claim {
                labels.insert(crate::children::LABEL_CLAIM.into(), json!(claim));
            }
            ChildObject::from_value(
                &json!({"kind": "VMAuth", "metadata": {"name": "demo", "namespace": "ns", "labels": labels}}),
                None,
            )
        };
        assert_eq!(vmauth_claim_warning(&demo, &live(None)), None);
        assert_eq!(vmauth_claim_warning(&demo, &live(Some("demo"))), None);
        let warning = vmauth_claim_warning(&demo, &live(Some("other"))).expect("a warning");
        assert!(
            warning.starts_with("spec.vmauth.name (default: metadata.name): VMAuth ns/demo is already claimed by VMDistributed other"),
            "{warning}"
        );
    }
}
