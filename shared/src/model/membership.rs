//! Which zones the VMAuth routes to, as data: the two targets and the zones in each. How the
//! membership is derived from the cluster is the rollout's (`rollout::membership`); `render`
//! only writes a given membership into the VMAuth, so the type lives below both.

use std::collections::BTreeSet;

use crate::api::TrafficMode;

/// The zones (by name) the VMAuth should route writes and reads to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    /// Zones whose agent receives writes.
    pub write: BTreeSet<String>,
    /// Zones whose backend receives reads.
    pub read: BTreeSet<String>,
}

impl Membership {
    /// The zone names of one target.
    #[must_use]
    pub fn of(&self, target: Target) -> &BTreeSet<String> {
        match target {
            Target::Write => &self.write,
            Target::Read => &self.read,
        }
    }

    /// The zone names of one target, to change.
    pub(crate) fn of_mut(&mut self, target: Target) -> &mut BTreeSet<String> {
        match target {
            Target::Write => &mut self.write,
            Target::Read => &mut self.read,
        }
    }
}

/// The two VMAuth targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// Writes, routed to the zones' agents.
    Write,
    /// Reads, routed to the zones' backends.
    Read,
}

impl Target {
    /// Both targets.
    pub const ALL: [Self; 2] = [Self::Write, Self::Read];

    /// Whether a zone in `mode` takes this target's traffic.
    #[must_use]
    pub(crate) fn allowed_by(self, mode: TrafficMode) -> bool {
        match self {
            Self::Write => mode.writes(),
            Self::Read => mode.reads(),
        }
    }

    /// The target's name in the VMAuth (`write`, `read`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Write => "write",
            Self::Read => "read",
        }
    }
}
