//! The cache of one child kind, filled from its watch.
//!
//! kube-runtime's reflector store keys every object by an `ObjectRef` that carries the kind's
//! whole `ApiResource` (five strings) besides name, namespace, resourceVersion and uid, and keeps
//! a clone of the decoded object with its `ObjectMeta`: with 1,000 CRs (7,000 children) that
//! bookkeeping was larger than the children themselves. Here a kind's children are grouped by
//! namespace and keyed by name only, and the cached form is the small [`CachedChild`]; the
//! watch's own object, reduced to its identity and claim, goes on to the event mapping.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use kube::runtime::watcher::Event;
use tokio::sync::watch;

use crate::cache::child::{CachedChild, WatchedChild};

/// Children of one namespace by name.
type Namespace = HashMap<Box<str>, Arc<CachedChild>>;
/// Every namespace's children.
type Objects = HashMap<Box<str>, Namespace>;

/// The children of one kind, as the watch last listed and updated them.
pub struct KindCache {
    state: RwLock<State>,
    filled: watch::Sender<bool>,
}

#[derive(Default)]
struct State {
    objects: Objects,
    /// The objects of a (re)list in progress: they replace `objects` when it completes, so
    /// objects deleted while the watch was down disappear.
    relist: Option<Objects>,
}

impl Default for KindCache {
    fn default() -> Self {
        Self {
            state: RwLock::default(),
            filled: watch::channel(false).0,
        }
    }
}

impl KindCache {
    /// Record a watch event. The objects move into the cache; the event passed on keeps only
    /// what the event mapping reads (identity and claim).
    pub fn apply(&self, mut event: Event<WatchedChild>) -> Event<WatchedChild> {
        let Ok(mut state) = self.state.write() else {
            return event;
        };
        match &mut event {
            Event::Apply(child) => {
                let (namespace, name, cached) = child.take_cached();
                insert(&mut state.objects, namespace, name, cached);
            }
            Event::Delete(child) => {
                let (namespace, name, _) = child.take_cached();
                if let Some(children) = state.objects.get_mut(namespace.as_str()) {
                    children.remove(name.as_str());
                    if children.is_empty() {
                        state.objects.remove(namespace.as_str());
                    }
                }
            }
            Event::Init => state.relist = Some(Objects::new()),
            Event::InitApply(child) => {
                let (namespace, name, cached) = child.take_cached();
                let relist = state.relist.get_or_insert_with(Objects::new);
                insert(relist, namespace, name, cached);
            }
            Event::InitDone => {
                if let Some(listed) = state.relist.take() {
                    state.objects = listed;
                }
                drop(state);
                self.filled.send_replace(true);
            }
        }
        event
    }

    /// Wait until the first list has completed.
    pub async fn filled(&self) {
        let mut filled = self.filled.subscribe();
        // The sender lives as long as `self`, so waiting cannot fail while we are borrowed.
        let _ = filled.wait_for(|f| *f).await;
    }

    /// The child `namespace/name`, if cached.
    #[must_use]
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<CachedChild>> {
        let state = self.state.read().ok()?;
        state.objects.get(namespace)?.get(name).cloned()
    }

    /// Call `visit` with the name and cached form of each child in `namespace`.
    pub fn for_each_in(&self, namespace: &str, mut visit: impl FnMut(&str, &CachedChild)) {
        let Ok(state) = self.state.read() else {
            return;
        };
        for (name, child) in state.objects.get(namespace).into_iter().flatten() {
            visit(name, child);
        }
    }
}

fn insert(objects: &mut Objects, namespace: String, name: String, child: CachedChild) {
    objects
        .entry(namespace.into_boxed_str())
        .or_default()
        .insert(name.into_boxed_str(), Arc::new(child));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn child(name: &str, version: &str) -> WatchedChild {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "resourceVersion": version,
                "labels": {"operator.victoriametrics.com/vmdistributed": "demo"}},
            "spec": {"clusterVersion": version}
        }))
        .expect("child")
    }

    fn names(cache: &KindCache) -> Vec<String> {
        let mut names = Vec::new();
        cache.for_each_in("ns", |name, _| names.push(name.to_owned()));
        names.sort();
        names
    }

    #[test]
    fn applies_and_deletes_update_the_cache_and_pass_on_the_identity() {
        let cache = KindCache::default();
        let passed = cache.apply(Event::Apply(child("a", "1")));
        let Event::Apply(passed) = passed else {
            panic!("the event kind changed");
        };
        assert_eq!(passed.metadata.name.as_deref(), Some("a"));
        assert_eq!(passed.claim.as_deref(), Some("demo"));
        cache.apply(Event::Apply(child("a", "2")));
        let cached = cache.get("ns", "a").expect("cached");
        assert_eq!(cached.resource_version(), Some("2"));
        let seen = cached
            .to_child_object(shared::names::ChildKind::VMCluster)
            .expect("decodes");
        assert_eq!(seen.spec, json!({"clusterVersion": "2"}));
        assert!(cache.get("other", "a").is_none());
        cache.apply(Event::Delete(child("a", "3")));
        assert!(cache.get("ns", "a").is_none());
        assert!(names(&cache).is_empty());
    }

    #[tokio::test]
    async fn a_relist_replaces_the_contents_when_it_completes() {
        let cache = KindCache::default();
        cache.apply(Event::Init);
        cache.apply(Event::InitApply(child("a", "1")));
        cache.apply(Event::InitApply(child("b", "1")));
        // Not filled before the list completes; nothing visible yet.
        assert!(names(&cache).is_empty());
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(20), cache.filled());
        assert!(waiting.await.is_err());
        cache.apply(Event::InitDone);
        cache.filled().await;
        assert_eq!(names(&cache), ["a", "b"]);
        // A re-list after a watch outage: `b` was deleted meanwhile; until the list completes
        // the old contents stay.
        cache.apply(Event::Init);
        cache.apply(Event::InitApply(child("a", "5")));
        assert_eq!(names(&cache), ["a", "b"]);
        cache.apply(Event::InitDone);
        assert_eq!(names(&cache), ["a"]);
        assert_eq!(
            cache.get("ns", "a").expect("a").resource_version(),
            Some("5")
        );
    }
}
