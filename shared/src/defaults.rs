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
pub(crate) const DEFAULT_READY_TIMEOUT: &str = "5m";
/// Default of `spec.zoneCommon.updatePause`, as stored.
pub(crate) const DEFAULT_UPDATE_PAUSE: &str = "1m";

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
pub(crate) fn default_in_place(cr: &mut VMDistributed) {
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

/// The rollout's timing, resolved once per decision: each `zoneCommon` value the user wrote, when
/// it parses, else its default from the table above (an unparsable value is refused by
/// validation; the fallback only keeps the decision total).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// `zoneCommon.readyTimeout`: the budget of each wait of a phase.
    pub ready_timeout: Duration,
    /// `zoneCommon.updatePause`: the wait between two zones.
    pub update_pause: Duration,
    /// `zoneCommon.drainTimeout`: the budget of a persistent-queue drain; `readyTimeout` when
    /// unset.
    pub drain_timeout: Duration,
}

impl Settings {
    /// The settings of `cr`.
    #[must_use]
    pub fn of(cr: &VMDistributed) -> Self {
        let common = cr.spec.zone_common.as_ref();
        let written = |value: Option<&String>| value.and_then(|v| parse_go_duration(v).ok());
        let ready_timeout = written(common.and_then(|c| c.ready_timeout.as_ref()))
            .unwrap_or_else(|| default_duration(DEFAULT_READY_TIMEOUT));
        Self {
            ready_timeout,
            update_pause: written(common.and_then(|c| c.update_pause.as_ref()))
                .unwrap_or_else(|| default_duration(DEFAULT_UPDATE_PAUSE)),
            drain_timeout: written(common.and_then(|c| c.drain_timeout.as_ref()))
                .unwrap_or(ready_timeout),
        }
    }
}

/// A default of the table above as a duration; the table's own values always parse.
fn default_duration(stored: &str) -> Duration {
    parse_go_duration(stored).unwrap_or_default()
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
        let defaults = Settings::of(&cr);
        assert_eq!(defaults.ready_timeout, Duration::from_secs(300));
        assert_eq!(defaults.update_pause, Duration::from_secs(60));
        assert_eq!(defaults.drain_timeout, Duration::from_secs(300));
        cr.spec.zone_common = Some(ZoneCommon {
            ready_timeout: Some("10s".into()),
            update_pause: Some("0".into()),
            ..ZoneCommon::default()
        });
        let written = Settings::of(&cr);
        assert_eq!(written.ready_timeout, Duration::from_secs(10));
        assert_eq!(written.update_pause, Duration::ZERO);
        assert_eq!(
            written.drain_timeout,
            Duration::from_secs(10),
            "follows readyTimeout"
        );
        cr.spec.zone_common = Some(ZoneCommon {
            ready_timeout: Some("ten seconds".into()),
            drain_timeout: Some("2m".into()),
            ..ZoneCommon::default()
        });
        let fallback = Settings::of(&cr);
        assert_eq!(fallback.ready_timeout, Duration::from_secs(300));
        assert_eq!(fallback.drain_timeout, Duration::from_secs(120));
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
