//! Watches of the four VictoriaMetrics kinds: caches read to build the decision's input, and the
//! mapping of a child event to the `VMDistributed` objects it concerns.

use std::sync::Arc;

use futures::{Stream, StreamExt, TryStreamExt};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use shared::VMDistributed;
use shared::children::ChildObject;
use shared::defaults::vmauth_enabled;
use shared::names::{ChildKind, resolved_names, zone_kinds};

use crate::cache::child::{CachedChild, WatchedChild};
use crate::cache::kind_cache::KindCache;
use crate::cache::name_index::NameIndex;

/// The caches of the four child kinds.
#[derive(Clone)]
pub struct ChildStores {
    stores: Vec<(ChildKind, Arc<KindCache>)>,
}

/// A watch stream of one kind, feeding its cache; yields every touched object (its identity
/// and claim: the rest is in the cache).
pub type ChildStream =
    std::pin::Pin<Box<dyn Stream<Item = Result<WatchedChild, watcher::Error>> + Send>>;

/// Start (lazily: the streams do nothing until polled) a watch of each of `kinds` (the kinds
/// whose CRDs are served) across all namespaces, or in `namespace`. The caches hold
/// [`CachedChild`]ren: trimmed, compressed, and marked when their `managedFields` hold entries
/// the ownership upgrade before an apply would act on (normally not), so an apply reads the
/// object live only then.
#[must_use]
pub fn watch_all(
    client: &Client,
    namespace: Option<&str>,
    kinds: &[ChildKind],
) -> (ChildStores, Vec<(ChildKind, ChildStream)>) {
    let mut stores = Vec::new();
    let mut streams = Vec::new();
    for &kind in kinds {
        let resource = vmdistributed_runtime::resources::child(kind);
        let cache = Arc::new(KindCache::default());
        stores.push((kind, Arc::clone(&cache)));
        let api: Api<WatchedChild> = match namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        let stream = watcher(api, watcher_config())
            .default_backoff()
            .map_ok(move |event| cache.apply(event))
            .touched_objects()
            .boxed();
        streams.push((kind, stream as ChildStream));
    }
    (ChildStores { stores }, streams)
}

/// How the controller's watches list and watch: from any cached state of the API server (the
/// decision re-reads live before it writes), in pages of `LIST_PAGE_SIZE`.
#[must_use]
pub fn watcher_config() -> watcher::Config {
    watcher::Config::default()
        .any_semantic()
        .page_size(LIST_PAGE_SIZE)
}

/// Objects per page of a (re)list. Each page is held whole as text and decoded objects while it
/// is processed; kube's default of 500 made the start-up peak of the heap, which the allocator
/// then keeps, larger than all the caches.
const LIST_PAGE_SIZE: u32 = 100;

impl ChildStores {
    /// The cached child `kind` `namespace/name`, if the cache has it.
    #[must_use]
    pub fn cached(&self, kind: ChildKind, namespace: &str, name: &str) -> Option<Arc<CachedChild>> {
        let (_, cache) = self.stores.iter().find(|(k, _)| *k == kind)?;
        cache.get(namespace, name)
    }

    /// The kinds `cr` writes (its zones' backend and agent, the VMAuth unless disabled) that
    /// are not watched because their CRDs are not served.
    #[must_use]
    pub fn missing_kinds(&self, cr: &VMDistributed) -> Vec<ChildKind> {
        let mut needed = zone_kinds(cr).to_vec();
        if vmauth_enabled(cr) {
            needed.push(ChildKind::VMAuth);
        }
        needed.retain(|kind| !self.stores.iter().any(|(k, _)| k == kind));
        needed
    }

    /// Wait until every cache has its first full list.
    pub async fn ready(&self) {
        for (_, cache) in &self.stores {
            cache.filled().await;
        }
    }

    /// The children relevant to `cr`: in its namespace, claimed by it (removal candidates) or
    /// named by one of its resolved names of that kind (whoever claims them, so conflicts are
    /// seen). Children claimed by other CRs under other names cannot matter to this decision
    /// and are left out: converting every child of the namespace for every reconcile made
    /// memory grow with the number of CRs.
    #[must_use]
    pub fn observed_children(&self, cr: &VMDistributed) -> Vec<ChildObject> {
        let namespace = cr.namespace().unwrap_or_default();
        let own_name = cr.name_any();
        let names = resolved_names(cr);
        let mut out = Vec::new();
        let mut decode = |kind: ChildKind, name: &str, cached: &CachedChild| match cached
            .to_child_object(kind)
        {
            Some(child) => out.push(child),
            None => tracing::warn!(child = %name, "cannot decode a cached child"),
        };
        for (kind, cache) in &self.stores {
            cache.for_each_in(&namespace, |name, cached| {
                if cached.claim() == Some(own_name.as_str()) {
                    decode(*kind, name, cached);
                }
            });
            // Resolved names claimed by someone else (or no one) are looked up directly.
            for (_, name) in names.iter().filter(|(k, _)| k == kind) {
                if let Some(cached) = cache.get(&namespace, name)
                    && cached.claim() != Some(own_name.as_str())
                {
                    decode(*kind, name, &cached);
                }
            }
        }
        out
    }
}

/// The `VMDistributed` objects a child event concerns: the one its claim label names, and every
/// object in its namespace that resolves its (kind, name) (a `ref` or adoption target appearing
/// wakes its CR).
#[must_use]
pub fn owners_of(
    kind: ChildKind,
    child: &WatchedChild,
    index: &NameIndex,
) -> Vec<ObjectRef<VMDistributed>> {
    let Some(namespace) = child.namespace() else {
        return Vec::new();
    };
    let mut owners: Vec<String> = child.claim.iter().cloned().collect();
    for cr in index.resolvers(&namespace, kind, &child.name_any()) {
        if !owners.contains(&cr) {
            owners.push(cr);
        }
    }
    owners
        .iter()
        .map(|cr| ObjectRef::new(cr).within(&namespace))
        .collect()
}
