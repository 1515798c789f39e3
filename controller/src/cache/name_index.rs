//! Which `VMDistributed` objects resolve which child names, kept up to date from the CR watch.
//!
//! A child event must wake every CR that resolves the child's (kind, name), claimed or not (a
//! `ref` or adoption target appearing, a conflict). Asking each CR of the namespace per event
//! made every child event cost O(CRs): with 1,000 CRs, the 7,000 events of a start-up list
//! meant seven million checks. This index answers in one lookup; the names of a CR are resolved
//! once per generation, when the CR's own event arrives.
//!
//! Children are keyed by a 64-bit hash of (namespace, kind, name), not by the strings: that
//! keeps the index at about 70 bytes per child. A collision only wakes a CR that has nothing
//! to do, which its reconcile finds out.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

use kube::ResourceExt;
use kube::runtime::watcher::Event;
use shared::VMDistributed;
use shared::names::{ChildKind, resolved_names};

/// A CR by namespace and name.
type CrKey = (Arc<str>, Arc<str>);
/// A child: the hash of its namespace, kind and name.
type ChildKey = u64;

/// The reverse index from child names to the CRs that resolve them.
#[derive(Default)]
pub struct NameIndex {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Each CR's uid and generation when its names were resolved, and the names.
    by_cr: HashMap<CrKey, Resolved>,
    /// The CRs (by name) that resolve a child.
    by_child: HashMap<ChildKey, Vec<Arc<str>>>,
    /// The CRs listed so far by a (re)list in progress; the others are gone at its end.
    relisted: Option<HashSet<CrKey>>,
}

struct Resolved {
    uid: Option<String>,
    generation: Option<i64>,
    children: Vec<ChildKey>,
}

impl NameIndex {
    /// Record a CR watch event.
    pub fn observe(&self, event: &Event<VMDistributed>) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        match event {
            Event::Apply(cr) => state.upsert(cr),
            Event::InitApply(cr) => {
                state.upsert(cr);
                let key = cr_key(cr);
                state.relisted.get_or_insert_with(HashSet::new).insert(key);
            }
            Event::Delete(cr) => state.remove(&cr_key(cr)),
            Event::Init => state.relisted = Some(HashSet::new()),
            Event::InitDone => {
                let listed = state.relisted.take().unwrap_or_default();
                let gone: Vec<CrKey> = state
                    .by_cr
                    .keys()
                    .filter(|key| !listed.contains(*key))
                    .cloned()
                    .collect();
                for key in gone {
                    state.remove(&key);
                }
            }
        }
    }

    /// The names of the CRs in `namespace` that resolve the child (`kind`, `name`).
    #[must_use]
    pub fn resolvers(&self, namespace: &str, kind: ChildKind, name: &str) -> Vec<String> {
        let Ok(state) = self.state.lock() else {
            return Vec::new();
        };
        state
            .by_child
            .get(&child_key(namespace, kind, name))
            .map(|crs| crs.iter().map(|cr| cr.to_string()).collect())
            .unwrap_or_default()
    }
}

impl State {
    fn upsert(&mut self, cr: &VMDistributed) {
        let key = cr_key(cr);
        let uid = cr.uid();
        let generation = cr.metadata.generation;
        if let Some(known) = self.by_cr.get(&key)
            && known.uid == uid
            && known.generation == generation
        {
            return;
        }
        self.remove(&key);
        let children: Vec<ChildKey> = resolved_names(cr)
            .iter()
            .map(|(kind, name)| child_key(&key.0, *kind, name))
            .collect();
        for child in &children {
            let crs = self.by_child.entry(*child).or_default();
            if !crs.contains(&key.1) {
                crs.push(Arc::clone(&key.1));
            }
        }
        self.by_cr.insert(
            key,
            Resolved {
                uid,
                generation,
                children,
            },
        );
    }

    fn remove(&mut self, key: &CrKey) {
        let Some(resolved) = self.by_cr.remove(key) else {
            return;
        };
        for child in resolved.children {
            if let Some(crs) = self.by_child.get_mut(&child) {
                crs.retain(|cr| *cr != key.1);
                if crs.is_empty() {
                    self.by_child.remove(&child);
                }
            }
        }
    }
}

fn cr_key(cr: &VMDistributed) -> CrKey {
    (
        Arc::from(cr.namespace().unwrap_or_default()),
        Arc::from(cr.name_any()),
    )
}

/// The index key of a child.
fn child_key(namespace: &str, kind: ChildKind, name: &str) -> ChildKey {
    let mut hasher = DefaultHasher::new();
    (namespace, kind.kind(), name).hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cr(name: &str, uid: &str, generation: i64, zones: &[&str]) -> VMDistributed {
        let zones: Vec<_> = zones.iter().map(|z| json!({"name": z})).collect();
        serde_json::from_value(json!({
            "apiVersion": "operator.victoriametrics.com/v1alpha1",
            "kind": "VMDistributed",
            "metadata": {"name": name, "namespace": "ns", "uid": uid, "generation": generation},
            "spec": {"zones": zones}
        }))
        .expect("VMDistributed")
    }

    fn with_cluster_name(mut cr: VMDistributed, zone: usize, name: &str) -> VMDistributed {
        cr.spec.zones[zone].vmcluster = serde_json::from_value(json!({"name": name})).ok();
        cr
    }

    #[test]
    fn a_child_wakes_every_cr_that_resolves_its_name() {
        let index = NameIndex::default();
        index.observe(&Event::Apply(cr("demo", "u-1", 1, &["a", "b"])));
        let other = with_cluster_name(cr("other", "u-2", 1, &["x"]), 0, "demo-a");
        index.observe(&Event::Apply(other));
        let mut resolvers = index.resolvers("ns", ChildKind::VMCluster, "demo-a");
        resolvers.sort();
        assert_eq!(resolvers, ["demo", "other"]);
        assert_eq!(
            index.resolvers("ns", ChildKind::VMAgent, "demo-b"),
            ["demo"]
        );
        assert_eq!(index.resolvers("ns", ChildKind::VMAuth, "demo"), ["demo"]);
        assert!(
            index
                .resolvers("ns", ChildKind::VMAgent, "other-a")
                .is_empty()
        );
        assert!(
            index
                .resolvers("elsewhere", ChildKind::VMCluster, "demo-a")
                .is_empty()
        );
    }

    #[test]
    fn a_new_generation_replaces_the_names_and_a_delete_removes_them() {
        let index = NameIndex::default();
        let cluster = |name: &str| index.resolvers("ns", ChildKind::VMCluster, name);
        index.observe(&Event::Apply(cr("demo", "u-1", 1, &["a", "b"])));
        index.observe(&Event::Apply(cr("demo", "u-1", 2, &["a"])));
        assert!(cluster("demo-b").is_empty());
        assert_eq!(cluster("demo-a"), ["demo"]);
        // Same generation, other uid: a recreated CR is resolved again.
        let renamed = with_cluster_name(cr("demo", "u-9", 2, &["a"]), 0, "fresh");
        index.observe(&Event::Apply(renamed));
        assert!(cluster("demo-a").is_empty());
        assert_eq!(cluster("fresh"), ["demo"]);
        index.observe(&Event::Delete(cr("demo", "u-9", 2, &["a"])));
        assert!(cluster("fresh").is_empty());
        assert!(index.resolvers("ns", ChildKind::VMAuth, "demo").is_empty());
    }

    #[test]
    fn a_relist_forgets_crs_deleted_while_the_watch_was_down() {
        let index = NameIndex::default();
        index.observe(&Event::Apply(cr("kept", "u-1", 1, &["a"])));
        index.observe(&Event::Apply(cr("gone", "u-2", 1, &["a"])));
        index.observe(&Event::Init);
        index.observe(&Event::InitApply(cr("kept", "u-1", 1, &["a"])));
        // Until the list completes, nothing is forgotten.
        assert_eq!(index.resolvers("ns", ChildKind::VMAuth, "gone"), ["gone"]);
        index.observe(&Event::InitDone);
        assert_eq!(index.resolvers("ns", ChildKind::VMAuth, "kept"), ["kept"]);
        assert!(index.resolvers("ns", ChildKind::VMAuth, "gone").is_empty());
    }
}
