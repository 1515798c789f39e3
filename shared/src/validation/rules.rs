//! The rules that judge one object on its own (CREATE, and UPDATE before the old/new checks).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::time::Duration;

use serde_json::Value;

use super::Report;
use super::dns::{DNS_LABEL_MAX, child_name_problem, dns_label_problem};
use crate::api::{
    BackendType, ChildRef, TrafficMode, VMDistributed, ZONE_PLACEHOLDER, Zone, ZoneChild,
};
use crate::defaults::vmauth_enabled;
use crate::duration::parse_go_duration;
use crate::merge::{PATCH_KEY, directive_value_is_known};
use crate::names::{ChildKind, NameSource, common_child, resolve_child_name, zone_child};
use crate::path;
use crate::spec::{adopts_by_name, zone_child_spec};
use crate::template::{contains_placeholder, placeholder_paths};

const PLACEHOLDER_HINT: &str = "%ZONE% is only replaced in spec.zoneCommon (the vmcluster, \
     vmsingle and vmagent name and spec, and remoteWrite); here it would stay literally, so write \
     the value itself";

/// Run every single-object rule on `cr`.
pub(super) fn check(cr: &VMDistributed, report: &mut Report) {
    let mut ctx = Ctx {
        cr,
        name: cr.metadata.name.as_deref().unwrap_or_default(),
        namespace: cr.metadata.namespace.as_deref().filter(|ns| !ns.is_empty()),
        backend: cr.spec.backend_type.unwrap_or_default(),
        report,
    };
    ctx.metadata();
    ctx.license();
    ctx.vmauth();
    ctx.zone_common();
    let valid_zones = ctx.zones();
    ctx.child_names(&valid_zones);
    ctx.backend_creation(&valid_zones);
    if cr.spec.zones.len() == 1 {
        ctx.report.warn(
            "spec.zones: a single zone cannot keep serving while it is updated (reads and \
             writes are interrupted during each rollout); add a second zone for \
             zero-downtime rollouts",
        );
    } else {
        ctx.only_serving_zone();
    }
}

struct Ctx<'a> {
    cr: &'a VMDistributed,
    name: &'a str,
    namespace: Option<&'a str>,
    backend: BackendType,
    report: &'a mut Report,
}

impl Ctx<'_> {
    /// A zone that is the only one whose `trafficMode` takes writes (or reads) is updated in
    /// place for them, as a single zone would be: say so at admission.
    fn only_serving_zone(&mut self) {
        for (traffic, takes) in [
            ("writes", TrafficMode::writes as fn(TrafficMode) -> bool),
            ("reads", TrafficMode::reads),
        ] {
            let zones: Vec<&str> = self
                .cr
                .spec
                .zones
                .iter()
                .filter(|z| takes(z.traffic_mode.unwrap_or_default()))
                .map(|z| z.name.as_str())
                .collect();
            if let [only] = zones.as_slice() {
                self.report.warn(format!(
                    "spec.zones: zone {only:?} is the only zone whose trafficMode takes {traffic}: \
                     it is updated in place (it keeps receiving {traffic} while it restarts, so \
                     {traffic} are interrupted during its update); give a second zone a \
                     trafficMode that takes {traffic} for zero-downtime rollouts"
                ));
            }
        }
    }

    fn metadata(&mut self) {
        if self.name.is_empty() {
            self.report.error(
                "metadata.name",
                "is required: child names are derived from it (generateName is not supported)",
            );
        } else if self.name.len() > DNS_LABEL_MAX {
            self.report.error(
                "metadata.name",
                format!(
                    "is {} characters long; at most {DNS_LABEL_MAX}, because it is the value of \
                     the operator.victoriametrics.com/vmdistributed label on every child",
                    self.name.len()
                ),
            );
        }
    }

    fn license(&mut self) {
        let Some(license) = &self.cr.spec.license else {
            return;
        };
        if let Some(interval) = &license.reload_interval
            && let Err(err) = parse_go_duration(interval)
        {
            self.report
                .error("spec.license.reloadInterval", err.to_string());
        }
        let fields = [
            ("spec.license.key", license.key.as_deref()),
            (
                "spec.license.keyRef.name",
                license.key_ref.as_ref().map(|r| r.name.as_str()),
            ),
            (
                "spec.license.keyRef.key",
                license.key_ref.as_ref().map(|r| r.key.as_str()),
            ),
            (
                "spec.license.reloadInterval",
                license.reload_interval.as_deref(),
            ),
        ];
        for (path, value) in fields {
            if value.is_some_and(|v| v.contains(ZONE_PLACEHOLDER)) {
                self.report.error(path, PLACEHOLDER_HINT);
            }
        }
    }

    fn vmauth(&mut self) {
        let Some(auth) = &self.cr.spec.vmauth else {
            return;
        };
        let base = "spec.vmauth";
        if auth.name.is_some() && auth.reference.is_some() {
            self.report.error(
                base,
                "set either name or ref, not both: name creates or adopts a VMAuth, ref points at \
                 an existing one that is never created or deleted",
            );
        }
        if auth
            .name
            .as_deref()
            .is_some_and(|n| n.contains(ZONE_PLACEHOLDER))
        {
            self.report.error(format!("{base}.name"), PLACEHOLDER_HINT);
        }
        if let Some(reference) = &auth.reference {
            self.reference(base, ChildKind::VMAuth, reference);
        }
        if let Some(spec) = &auth.spec {
            self.free_form(spec, &format!("{base}.spec"), false);
        }
    }

    fn zone_common(&mut self) {
        let Some(common) = &self.cr.spec.zone_common else {
            return;
        };
        for (field, value, what) in [
            (
                "readyTimeout",
                &common.ready_timeout,
                "a zone has time to become ready",
            ),
            (
                "drainTimeout",
                &common.drain_timeout,
                "the agents have time to send what they queued",
            ),
        ] {
            let Some(timeout) = value else {
                continue;
            };
            let path = format!("spec.zoneCommon.{field}");
            match parse_go_duration(timeout) {
                Err(err) => self.report.error(&path, err.to_string()),
                Ok(d) if d < Duration::from_secs(1) => self.report.error(
                    &path,
                    format!(
                        "{timeout:?} is too short: at least 1s, so {what} (for example \"5m\")"
                    ),
                ),
                Ok(_) => {}
            }
        }
        if let Some(pause) = &common.update_pause
            && let Err(err) = parse_go_duration(pause)
        {
            self.report
                .error("spec.zoneCommon.updatePause", err.to_string());
        }
        for kind in [
            ChildKind::VMCluster,
            ChildKind::VMSingle,
            ChildKind::VMAgent,
        ] {
            let Some(child) = common_child(self.cr, kind) else {
                continue;
            };
            let base = format!("spec.zoneCommon.{}", kind.field());
            if !self.backend_consistent(kind, &base) {
                continue;
            }
            if let Some(spec) = &child.spec {
                self.free_form(spec, &format!("{base}.spec"), true);
            }
        }
        if let Some(remote_write) = &common.remote_write {
            self.free_form(remote_write, "spec.zoneCommon.remoteWrite", true);
        }
    }

    /// Per-zone rules; returns, per zone index, whether its name is usable for deriving child
    /// names (valid and not a duplicate), so later rules do not repeat the zone-name error.
    fn zones(&mut self) -> Vec<bool> {
        let zones = &self.cr.spec.zones;
        if zones.is_empty() {
            self.report.error(
                "spec.zones",
                "at least one zone is required (for example `zones: [{name: zone-a}]`)",
            );
        }
        let mut seen: HashMap<&str, usize> = HashMap::with_capacity(zones.len());
        let mut usable = Vec::with_capacity(zones.len());
        for (i, zone) in zones.iter().enumerate() {
            let path = format!("spec.zones[{i}].name");
            let mut ok = true;
            if zone.name.contains(ZONE_PLACEHOLDER) {
                self.report.error(&path, PLACEHOLDER_HINT);
                ok = false;
            } else if let Some(problem) = dns_label_problem(&zone.name) {
                self.report
                    .error(&path, format!("zone name {:?} {problem}", zone.name));
                ok = false;
            }
            match seen.entry(zone.name.as_str()) {
                Entry::Occupied(first) => {
                    self.report.error(
                        &path,
                        format!(
                            "duplicate zone name {:?} (already used by spec.zones[{}]); zone names \
                             must be unique",
                            zone.name,
                            first.get()
                        ),
                    );
                    ok = false;
                }
                Entry::Vacant(slot) => {
                    slot.insert(i);
                }
            }
            usable.push(ok);
            for kind in [
                ChildKind::VMCluster,
                ChildKind::VMSingle,
                ChildKind::VMAgent,
            ] {
                if let Some(child) = zone_child(zone, kind) {
                    let base = format!("spec.zones[{i}].{}", kind.field());
                    if self.backend_consistent(kind, &base) {
                        self.zone_child(&base, kind, child);
                    }
                }
            }
            if let Some(remote_write) = &zone.remote_write {
                self.free_form(remote_write, &format!("spec.zones[{i}].remoteWrite"), false);
            }
        }
        usable
    }

    fn zone_child(&mut self, base: &str, kind: ChildKind, child: &ZoneChild) {
        if let (Some(name), Some(reference)) = (&child.name, &child.reference) {
            self.report.error(
                base,
                format!(
                    "set either name or ref, not both: name {name:?} creates or adopts a {kind}, \
                     ref {:?} points at an existing {kind} that is never created or deleted",
                    reference.name
                ),
            );
        }
        if child
            .name
            .as_deref()
            .is_some_and(|n| n.contains(ZONE_PLACEHOLDER))
        {
            self.report.error(
                format!("{base}.name"),
                format!(
                    "{PLACEHOLDER_HINT} (or use spec.zoneCommon.{}.name for a per-zone template)",
                    kind.field()
                ),
            );
        }
        if let Some(reference) = &child.reference {
            self.reference(base, kind, reference);
        }
        if let Some(spec) = &child.spec {
            self.free_form(spec, &format!("{base}.spec"), false);
        }
    }

    fn reference(&mut self, base: &str, kind: ChildKind, reference: &ChildRef) {
        if reference.name.is_empty() {
            self.report.error(
                format!("{base}.ref.name"),
                format!("must name the existing {kind}"),
            );
        } else if reference.name.contains(ZONE_PLACEHOLDER) {
            self.report
                .error(format!("{base}.ref.name"), PLACEHOLDER_HINT);
        }
        let Some(ref_ns) = reference.namespace.as_deref().filter(|ns| !ns.is_empty()) else {
            return;
        };
        match self.namespace {
            Some(ns) if ns != ref_ns => self.report.error(
                format!("{base}.ref.namespace"),
                format!(
                    "cross-namespace reference: VMDistributed {ns}/{} cannot reference {kind} \
                     {ref_ns}/{}",
                    self.name, reference.name
                ),
            ),
            Some(_) => {}
            None => self.report.warn(format!(
                "{base}.ref.namespace: {ref_ns:?} can only be used if this VMDistributed is \
                 created in namespace {ref_ns:?}; children always live in the VMDistributed's \
                 namespace"
            )),
        }
    }

    /// Whether settings for `kind` fit `backendType`; reports an error when they do not.
    fn backend_consistent(&mut self, kind: ChildKind, base: &str) -> bool {
        let wrong = match (kind, self.backend) {
            (ChildKind::VMSingle, BackendType::VMCluster) => "VMSingle",
            (ChildKind::VMCluster, BackendType::VMSingle) => "VMCluster",
            _ => return true,
        };
        let (backend, field) = match self.backend {
            BackendType::VMCluster => ("VMCluster", "vmcluster"),
            BackendType::VMSingle => ("VMSingle", "vmsingle"),
        };
        self.report.error(
            base,
            format!(
                "{wrong} settings are not used with backendType {backend}; move them to \
                 {field}, or set spec.backendType: {wrong} (only when the object is created)"
            ),
        );
        false
    }

    /// A free-form object: must be an object, `$patch` values must be known, and `%ZONE%` is an
    /// error unless `templated`.
    fn free_form(&mut self, value: &Value, path: &str, templated: bool) {
        if !value.is_object() {
            self.report.error(path, "must be an object");
            return;
        }
        // Paths are only built for subtrees that hold something to report: admission runs this
        // on every request, and most specs have neither directives nor placeholders.
        if has_patch_key(value) {
            self.patch_directives(value, path);
        }
        if !templated && contains_placeholder(value) {
            for at in placeholder_paths(value, path) {
                self.report.error(at, PLACEHOLDER_HINT);
            }
        }
    }

    fn patch_directives(&mut self, value: &Value, path: &str) {
        match value {
            Value::Object(map) => {
                for (key, item) in map {
                    let child = path::child(path, key);
                    if key == PATCH_KEY {
                        if !directive_value_is_known(item) {
                            self.report.error(
                                child,
                                format!(
                                    "unknown directive {item}: use \"delete\" (remove the key), \
                                     \"replace\" (replace the common object) or \"merge\""
                                ),
                            );
                        }
                    } else {
                        self.patch_directives(item, &child);
                    }
                }
            }
            Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    self.patch_directives(item, &format!("{path}[{index}]"));
                }
            }
            _ => {}
        }
    }

    fn child_names(&mut self, usable: &[bool]) {
        let zones = &self.cr.spec.zones;
        for kind in [ChildKind::backend(self.backend), ChildKind::VMAgent] {
            let field = kind.field();
            // name -> zone index of its first use
            let mut used: HashMap<String, usize> = HashMap::with_capacity(zones.len());
            let mut reported_template = false;
            for (i, zone) in zones.iter().enumerate() {
                let (name, source) = resolve_child_name(self.cr, zone, kind);
                let derived = matches!(source, NameSource::CommonTemplate | NameSource::Derived);
                if derived && !usable[i]
                    || source == NameSource::Derived && self.name.is_empty()
                    || name.contains(ZONE_PLACEHOLDER)
                {
                    // Already reported (zone name, metadata.name or a %ZONE% error).
                    continue;
                }
                let path = name_path(i, kind, source);
                let template = common_child(self.cr, kind).and_then(|c| c.name.as_deref());
                let fixed_template = template.is_some_and(|t| !t.contains(ZONE_PLACEHOLDER));
                if let Some(problem) = child_name_problem(kind, &name) {
                    match source {
                        NameSource::Ref | NameSource::ZoneName => self
                            .report
                            .error(path, format!("{kind} name {name:?} {problem}")),
                        NameSource::CommonTemplate if fixed_template && reported_template => {}
                        NameSource::CommonTemplate => {
                            reported_template |= fixed_template;
                            self.report.error(
                                path,
                                format!(
                                    "for zone {:?} the {kind} name resolves to {name:?}, which \
                                     {problem}",
                                    zone.name
                                ),
                            );
                        }
                        NameSource::Derived => self.report.error(
                            path,
                            format!(
                                "the {kind} name {name:?} (metadata.name, \"-\", zone name) \
                                 {problem}; shorten them, or set spec.zoneCommon.{field}.name \
                                 (with %ZONE%) or spec.zones[{i}].{field}.name"
                            ),
                        ),
                    }
                    continue;
                }
                match used.entry(name) {
                    Entry::Vacant(slot) => {
                        slot.insert(i);
                    }
                    Entry::Occupied(first) => {
                        let name = first.key();
                        let first_zone = &zones[*first.get()];
                        if source == NameSource::CommonTemplate && fixed_template {
                            if !reported_template {
                                reported_template = true;
                                self.report.error(
                                    path,
                                    format!(
                                        "{name:?} contains no %ZONE%, so every zone resolves to \
                                         the same {kind} {name:?}; add %ZONE% (for example \
                                         \"{name}-%ZONE%\")"
                                    ),
                                );
                            }
                        } else {
                            self.report.error(
                                path,
                                format!(
                                    "zone {:?} resolves to {kind} {name:?}, which is already the \
                                     {kind} of zone {:?} (spec.zones[{}]); every zone needs its \
                                     own {kind}",
                                    zone.name,
                                    first_zone.name,
                                    first.get()
                                ),
                            );
                        }
                    }
                }
            }
        }
        self.vmauth_name();
    }

    fn vmauth_name(&mut self) {
        if !vmauth_enabled(self.cr) {
            return;
        }
        let auth = self.cr.spec.vmauth.as_ref();
        let (name, path, defaulted) = if let Some(r) = auth.and_then(|a| a.reference.as_ref()) {
            (r.name.as_str(), "spec.vmauth.ref.name", false)
        } else if let Some(n) = auth.and_then(|a| a.name.as_deref()) {
            (n, "spec.vmauth.name", false)
        } else {
            (self.name, "metadata.name", true)
        };
        if name.is_empty() && defaulted || name.contains(ZONE_PLACEHOLDER) {
            return; // reported by metadata() or vmauth()
        }
        if let Some(problem) = child_name_problem(ChildKind::VMAuth, name) {
            let message = if defaulted {
                format!(
                    "the VMAuth is named after metadata.name, and {name:?} {problem}; set \
                     spec.vmauth.name"
                )
            } else {
                format!("VMAuth name {name:?} {problem}")
            };
            self.report.error(path, message);
        }
    }

    /// Backends this object would create need `vminsert` and `vmselect`; backends that cannot be
    /// created are adopted by name (a warning).
    fn backend_creation(&mut self, usable: &[bool]) {
        let kind = ChildKind::backend(self.backend);
        let field = kind.field();
        for (i, zone) in self.cr.spec.zones.iter().enumerate() {
            if !usable[i] || zone_child(zone, kind).is_some_and(|c| c.reference.is_some()) {
                continue;
            }
            let merged = zone_child_spec(self.cr, zone, kind);
            let name = resolve_child_name(self.cr, zone, kind).0;
            if adopts_by_name(kind, &merged) {
                let what = match kind {
                    ChildKind::VMCluster => "has no vminsert, vmselect or vmstorage in its spec",
                    _ => "has an empty spec",
                };
                let ns = self.namespace.unwrap_or("the VMDistributed's namespace");
                self.report.warn(format!(
                    "spec.zones[{i}].{field}: {kind} {name:?} {what}, so it is adopted by name and \
                     must already exist in {ns}; the zone waits until it does"
                ));
                continue;
            }
            if kind != ChildKind::VMCluster {
                continue;
            }
            let missing: Vec<&str> = ["vminsert", "vmselect"]
                .into_iter()
                .filter(|c| merged.get(*c).is_none())
                .collect();
            if !missing.is_empty() {
                let list = missing.join(" and ");
                self.report.error(
                    format!("spec.zones[{i}].vmcluster.spec"),
                    format!(
                        "VMCluster {name:?} would be created by this VMDistributed, but its \
                         merged spec has no {list}; add {list} to spec.zoneCommon.vmcluster.spec \
                         or spec.zones[{i}].vmcluster.spec"
                    ),
                );
            }
        }
    }
}

fn has_patch_key(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.contains_key(PATCH_KEY) || map.values().any(has_patch_key),
        Value::Array(items) => items.iter().any(has_patch_key),
        _ => false,
    }
}

/// The field a resolved child name comes from.
fn name_path(zone: usize, kind: ChildKind, source: NameSource) -> String {
    let field = kind.field();
    match source {
        NameSource::Ref => format!("spec.zones[{zone}].{field}.ref.name"),
        NameSource::ZoneName => format!("spec.zones[{zone}].{field}.name"),
        NameSource::CommonTemplate => format!("spec.zoneCommon.{field}.name"),
        NameSource::Derived => format!("spec.zones[{zone}].name"),
    }
}

/// The zone of `cr` named `name`, if any.
pub(super) fn zone_named<'a>(cr: &'a VMDistributed, name: &str) -> Option<&'a Zone> {
    cr.spec.zones.iter().find(|z| z.name == name)
}
