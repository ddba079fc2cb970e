//! One watch per kind the operator reads, each feeding a cache and the reconcilers'
//! triggers — so an idle operator sends the API server nothing but those watches, and a
//! reconciliation normally reads only memory.
//!
//! Each informer writes an event into its cache *before* handing it on as a trigger, so
//! a reconciliation started by an event always sees at least that event. What the caches
//! cannot prove is read fresh by the reconciler (see `observe`).

use std::sync::{Arc, OnceLock};

use futures::channel::mpsc::UnboundedSender;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::Api;
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{Lookup, ObjectRef, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

/// A cache of one kind, and whether it has listed everything once.
pub struct Cache<K: Lookup + 'static>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    pub store: Store<K>,
    synced: watch::Receiver<bool>,
}

impl<K: Lookup + Clone + 'static> Cache<K>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    /// True once the first list is complete; before that an absent object proves nothing.
    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Resolves once the first list is complete (at once if it is).
    pub async fn synced(&self) {
        let _ = self.synced.clone().wait_for(|synced| *synced).await;
    }

    /// The object, if cached.
    pub fn get(&self, key: &ObjectRef<K>) -> Option<Arc<K>> {
        self.store.get(key)
    }
}

impl<K: Lookup + 'static> Clone for Cache<K>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    fn clone(&self) -> Self {
        Cache {
            store: self.store.clone(),
            synced: self.synced.clone(),
        }
    }
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Objects per page of an informer's (re)list. A page is held whole while it is decoded,
/// managed fields and all — 500, the client default, is about 15 MB of short-lived heap
/// per page of Applications, and on a restart under thousands of environments those
/// pages, freed between the caches' long-lived objects, kept the process 15 MiB larger
/// for good. More, smaller pages cost a few more requests, once.
const LIST_PAGE: u32 = 100;

/// What an informer hands on for every object it sees change (added, modified, deleted).
pub type OnChange<K> = Box<dyn FnMut(&K, Change) + Send>;

/// Whether the object was applied or deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Applied,
    Deleted,
}

/// Starts watching `api` into `writer`'s cache, keeping of each object what `keep` makes
/// of it; `on_change` runs after the cache took the event. Watch errors are retried with
/// backoff and logged, never passed on (a GitOps controller that is not installed must
/// not slow anything else down).
pub fn spawn<K, S>(
    kind: &str,
    api: Api<K>,
    config: watcher::Config,
    writer: Writer<S>,
    mut keep: impl FnMut(K) -> S + Send + 'static,
    mut on_change: OnChange<S>,
) -> Cache<S>
where
    K: Resource + Clone + std::fmt::Debug + DeserializeOwned + Send + 'static,
    S: Lookup + Clone + Send + Sync + 'static,
    S::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    let store = writer.as_reader();
    let (flag, synced) = watch::channel(false);
    let kind = kind.to_owned();
    let objects = watcher(api, config.page_size(LIST_PAGE))
        .default_backoff()
        .map_ok(move |event| {
            map_objects(event, |mut object| {
                // Managed fields and kubectl's last-applied copy are most of an object's
                // size, and nothing here reads them.
                object.managed_fields_mut().clear();
                object.annotations_mut().remove(LAST_APPLIED);
                keep(object)
            })
        });
    let events = reflector(writer, objects);
    tokio::spawn(async move {
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            match event {
                Ok(watcher::Event::Apply(object) | watcher::Event::InitApply(object)) => {
                    on_change(&object, Change::Applied);
                }
                Ok(watcher::Event::Delete(object)) => on_change(&object, Change::Deleted),
                Ok(watcher::Event::InitDone) => {
                    if !flag.send_replace(true) {
                        tracing::debug!(%kind, "cache synced");
                    }
                }
                Ok(watcher::Event::Init) => {}
                Err(error) => tracing::debug!(%error, %kind, "watch failed; retrying with backoff"),
            }
        }
    });
    Cache { store, synced }
}

/// The same event, carrying `f` of each object.
fn map_objects<K, S>(event: watcher::Event<K>, mut f: impl FnMut(K) -> S) -> watcher::Event<S> {
    match event {
        watcher::Event::Apply(object) => watcher::Event::Apply(f(object)),
        watcher::Event::Delete(object) => watcher::Event::Delete(f(object)),
        watcher::Event::InitApply(object) => watcher::Event::InitApply(f(object)),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

/// Sends each of `targets` to `sender`, ignoring a closed channel (the operator is
/// shutting down).
pub fn trigger<K>(
    sender: &UnboundedSender<ObjectRef<K>>,
    targets: impl IntoIterator<Item = ObjectRef<K>>,
) where
    K: Resource,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    for target in targets {
        let _ = sender.unbounded_send(target);
    }
}

/// Starts an informer with `start` once the CRD `crd` exists, and keeps it in `cache`: a
/// GitOps controller that is not installed costs one quiet watch, not a failing list every
/// few seconds.
pub async fn once_installed<K>(
    crds: Api<CustomResourceDefinition>,
    crd: String,
    cache: Arc<OnceLock<Cache<K>>>,
    start: impl FnOnce() -> Cache<K>,
) where
    K: Lookup + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    let config = watcher::Config::default().fields(&format!("metadata.name={crd}"));
    let events = watcher(crds, config).default_backoff().applied_objects();
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        match event {
            Ok(_) => {
                tracing::info!(%crd, "CRD installed; watching its objects");
                let _ = cache.set(start());
                return;
            }
            Err(error) => tracing::debug!(%error, %crd, "CRD watch failed; retrying with backoff"),
        }
    }
}
