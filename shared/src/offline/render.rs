//! The pure logic of `vmdistributed-controller render -f FILE|-`: the children a
//! `VMDistributed` renders to (docs/cli.md "`vmdistributed-controller render`"), printed as
//! YAML, offline.
//!
//! Input is multi-document YAML; documents of other kinds are skipped with a note on stderr, and
//! a YAML syntax error names the document and the line. Each valid `VMDistributed` is defaulted
//! and rendered with no cluster at hand, which changes three things, all said on stderr:
//! remote-write URLs use the merged spec of every backend (the controller uses the live object
//! for `ref` and adopted backends), the VMAuth routes every zone its `trafficMode` allows (the
//! steady state; the controller derives membership from the live cluster), and without a
//! `metadata.uid` no created-by annotation or owner reference is shown. Versions the spec
//! leaves unset are pinned as the controller pins them, from the same flags.

use std::fmt::Write as _;

use super::CliOutput;
use super::check::{Parsed, parse_document, split_documents};
use crate::VMDistributed;
use crate::api::{KIND, TrafficMode};
use crate::defaults::default_in_place;
use crate::model::{ChildIntent, Membership, Observed};
use crate::names::ChildKind;
use crate::parse::strict;
use crate::preflight::zones_where;
use crate::render::{render_vmauth, render_zone};
use crate::validation::validate_value;
use crate::versions::PinnedVersions;

/// Render every `VMDistributed` in `input` (multi-document YAML) to its children's intents,
/// with the controller's default pinned versions. Exit code 1 when a document is not valid YAML
/// or a `VMDistributed` is invalid.
#[must_use]
pub fn render_documents(input: &str) -> CliOutput {
    render_documents_with(input, &PinnedVersions::operator_defaults())
}

/// [`render_documents`] pinning `pins` where a spec leaves the version unset.
#[must_use]
pub fn render_documents_with(input: &str, pins: &PinnedVersions) -> CliOutput {
    let mut out = CliOutput::default();
    let (mut rendered, mut failed) = (0usize, 0usize);
    for doc in split_documents(input) {
        let label = doc.label();
        let value = match parse_document(&doc, &label, &mut out) {
            Parsed::Object(value) => value,
            Parsed::Empty | Parsed::OtherKind => continue,
            Parsed::Broken => {
                failed += 1;
                continue;
            }
        };
        let report = validate_value(&value, None);
        let cr = match strict::<VMDistributed>(&value) {
            Ok(cr) if report.is_valid() => cr,
            _ => {
                failed += 1;
                for error in &report.errors {
                    let _ = writeln!(out.stderr, "{label}: error: {error}");
                }
                continue;
            }
        };
        match render_one(cr, &label, pins, &mut out) {
            Ok(()) => rendered += 1,
            Err(err) => {
                failed += 1;
                let _ = writeln!(out.stderr, "{label}: cannot print: {err}");
            }
        }
    }
    if rendered == 0 && failed == 0 {
        let _ = writeln!(out.stderr, "no {KIND} found");
    }
    out.exit_code = i32::from(failed > 0);
    out
}

fn render_one(
    mut cr: VMDistributed,
    label: &str,
    pins: &PinnedVersions,
    out: &mut CliOutput,
) -> Result<(), String> {
    default_in_place(&mut cr);
    let name = cr.metadata.name.clone().unwrap_or_default();
    if cr.metadata.namespace.is_none() {
        cr.metadata.namespace = Some("default".to_owned());
        let _ = writeln!(
            out.stderr,
            "{label}: {KIND} {name}: no metadata.namespace, rendering into \"default\""
        );
    }
    let _ = writeln!(
        out.stderr,
        "{label}: {KIND} {name}: offline: remote-write URLs use each backend's merged spec (the \
         controller reads ref and adopted backends from the cluster), the VMAuth routes every \
         zone its trafficMode allows{}",
        if cr.metadata.uid.is_none() {
            ", and without metadata.uid no created-by annotation or owner reference is shown"
        } else {
            ""
        }
    );
    let pinned: Vec<String> = [
        ChildKind::VMCluster,
        ChildKind::VMAgent,
        ChildKind::VMSingle,
    ]
    .into_iter()
    .filter_map(|kind| pins.of(kind).map(|v| format!("{kind} {v}")))
    .collect();
    if !pinned.is_empty() {
        let _ = writeln!(
            out.stderr,
            "{label}: {KIND} {name}: versions the spec leaves unset are pinned as the controller \
             pins them: {} (--pinned-*-version)",
            pinned.join(", ")
        );
    }
    let observed = Observed {
        pinned_versions: pins.clone(),
        ..Observed::default()
    };
    let mut intents: Vec<(String, ChildIntent)> = Vec::new();
    for zone in &cr.spec.zones {
        let zone_intents = render_zone(&cr, zone, &observed);
        intents.push((format!("zone {}", zone.name), zone_intents.backend));
        intents.push((format!("zone {}", zone.name), zone_intents.agent));
    }
    let steady = Membership {
        write: zones_where(&cr, TrafficMode::writes),
        read: zones_where(&cr, TrafficMode::reads),
    };
    if let Some(auth) = render_vmauth(&cr, &observed, &steady) {
        intents.push(("shared VMAuth".to_owned(), auth));
    }
    for (what, intent) in intents {
        let yaml = serde_saphyr::to_string(&intent.to_object()).map_err(|e| e.to_string())?;
        let _ = writeln!(
            out.stdout,
            "---\n# {KIND} {name}, {what}: {} {}",
            intent.kind, intent.name
        );
        out.stdout.push_str(&yaml);
    }
    Ok(())
}
