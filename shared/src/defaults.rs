//! Defaulting, as done by the mutating webhook (docs/api.md "`spec`").
//!
//! Stored defaults, each set only where the user wrote nothing:
//!
//! | field | default |
//! |---|---|
//! | `spec.retain` | `false` |
//! | `spec.paused` | `false` |
//! | `spec.backendType` | `VMCluster` |
//! | `spec.zoneRemovalPolicy` | `Retain` |
//! | `spec.vmauth.enabled` | `true` |
//! | `spec.zoneCommon.readyTimeout` | `"5m"` |
//! | `spec.zoneCommon.updatePause` | `"1m"` |
//! | `spec.zones[].trafficMode` | `read-write` |
//!
//! Everything else stays absent. In particular `vmauth.name` is **not** stored: its default
//! (`metadata.name`) is applied when names are resolved ([`crate::names::vmauth_name`]), because a
//! stored `name` would later conflict with a `vmauth.ref` the user adds, and a name the user did
//! not write would look like one they did. Child names and specs are likewise resolved at render
//! time, never written back.

use std::time::Duration;

use crate::api::{
    BackendType, TrafficMode, VMAuthSettings, VMDistributed, ZoneCommon, ZoneRemovalPolicy,
};
use crate::duration::parse_go_duration;

/// Default of `spec.zoneCommon.readyTimeout`, as stored.
pub const DEFAULT_READY_TIMEOUT: &str = "5m";
/// Default of `spec.zoneCommon.updatePause`, as stored.
pub const DEFAULT_UPDATE_PAUSE: &str = "1m";

/// A copy of `cr` with every default of the table above filled in where the user wrote nothing.
///
/// Never changes a value the user wrote (including invalid ones, which validation reports), and
/// is idempotent: `apply_defaults(&apply_defaults(cr)) == apply_defaults(cr)`.
#[must_use]
pub fn apply_defaults(cr: &VMDistributed) -> VMDistributed {
    let mut out = cr.clone();
    default_in_place(&mut out);
    out
}

/// [`apply_defaults`] on an owned object, without a copy.
pub fn default_in_place(cr: &mut VMDistributed) {
    let spec = &mut cr.spec;
    spec.retain.get_or_insert(false);
    spec.paused.get_or_insert(false);
    spec.backend_type.get_or_insert(BackendType::VMCluster);
    spec.zone_removal_policy
        .get_or_insert(ZoneRemovalPolicy::Retain);
    spec.vmauth
        .get_or_insert_with(VMAuthSettings::default)
        .enabled
        .get_or_insert(true);
    let common = spec.zone_common.get_or_insert_with(ZoneCommon::default);
    common
        .ready_timeout
        .get_or_insert_with(|| DEFAULT_READY_TIMEOUT.to_owned());
    common
        .update_pause
        .get_or_insert_with(|| DEFAULT_UPDATE_PAUSE.to_owned());
    for zone in &mut spec.zones {
        zone.traffic_mode.get_or_insert(TrafficMode::ReadWrite);
    }
}

/// The effective `zoneCommon.readyTimeout`: the written value when it parses, else 5m.
///
/// An unparsable value is rejected by validation; the fallback only keeps callers total.
#[must_use]
pub fn ready_timeout(cr: &VMDistributed) -> Duration {
    cr.spec
        .zone_common
        .as_ref()
        .and_then(|c| c.ready_timeout.as_deref())
        .and_then(|s| parse_go_duration(s).ok())
        .unwrap_or(Duration::from_secs(300))
}

/// The effective `zoneCommon.drainTimeout`: the written value when it parses, else
/// [`ready_timeout`].
#[must_use]
pub fn drain_timeout(cr: &VMDistributed) -> Duration {
    cr.spec
        .zone_common
        .as_ref()
        .and_then(|c| c.drain_timeout.as_deref())
        .and_then(|s| parse_go_duration(s).ok())
        .unwrap_or_else(|| ready_timeout(cr))
}

/// The effective `zoneCommon.updatePause`: the written value when it parses, else 1m.
///
/// An unparsable value is rejected by validation; the fallback only keeps callers total.
#[must_use]
pub fn update_pause(cr: &VMDistributed) -> Duration {
    cr.spec
        .zone_common
        .as_ref()
        .and_then(|c| c.update_pause.as_deref())
        .and_then(|s| parse_go_duration(s).ok())
        .unwrap_or(Duration::from_secs(60))
}

/// Whether the shared VMAuth is managed (`vmauth.enabled`, default true).
#[must_use]
pub fn vmauth_enabled(cr: &VMDistributed) -> bool {
    cr.spec
        .vmauth
        .as_ref()
        .and_then(|a| a.enabled)
        .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{VMDistributedSpec, Zone};

    #[test]
    fn effective_durations_fall_back_to_defaults() {
        let mut cr = VMDistributed::new("x", VMDistributedSpec::default());
        assert_eq!(ready_timeout(&cr), Duration::from_secs(300));
        assert_eq!(update_pause(&cr), Duration::from_secs(60));
        cr.spec.zone_common = Some(ZoneCommon {
            ready_timeout: Some("10s".into()),
            update_pause: Some("0".into()),
            ..ZoneCommon::default()
        });
        assert_eq!(ready_timeout(&cr), Duration::from_secs(10));
        assert_eq!(update_pause(&cr), Duration::ZERO);
        cr.spec.zone_common = Some(ZoneCommon {
            ready_timeout: Some("ten seconds".into()),
            ..ZoneCommon::default()
        });
        assert_eq!(ready_timeout(&cr), Duration::from_secs(300));
    }

    #[test]
    fn in_place_matches_copy() {
        let cr = VMDistributed::new(
            "x",
            VMDistributedSpec {
                zones: vec![Zone {
                    name: "a".into(),
                    ..Zone::default()
                }],
                ..VMDistributedSpec::default()
            },
        );
        let mut owned = cr.clone();
        default_in_place(&mut owned);
        assert_eq!(owned.spec, apply_defaults(&cr).spec);
        assert_eq!(owned.metadata, cr.metadata);
        assert!(vmauth_enabled(&owned));
    }
}
