//! One watch per kind the operator reads, each feeding a cache and the reconcilers'
//! triggers — so an idle operator sends the API server nothing but those watches, and a
//! reconciliation normally reads only memory.
//!
//! Each informer writes an event into its cache *before* handing it on as a trigger, so
//! a reconciliation started by an event always sees at least that event. What the caches
//! cannot prove is read fresh by the reconciler (see `observe`).

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use futures::channel::mpsc::UnboundedSender;
use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Resource;
use kube::api::Api;
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{Lookup, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

/// A cache of one kind — `store` holds the objects: kube's typed `Store` for the
/// controllers' own kinds (their controllers read it), a [`PackedStore`] for the rest —
/// and whether it has listed everything once.
///
/// [`PackedStore`]: super::packed::PackedStore
pub struct Cache<H> {
    pub store: H,
    synced: watch::Receiver<bool>,
}

impl<H> Cache<H> {
    /// True once the first list is complete; before that an absent object proves nothing.
    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Resolves once the first list is complete (at once if it is).
    pub async fn synced(&self) {
        let _ = self.synced.clone().wait_for(|synced| *synced).await;
    }
}

impl<H: Clone> Clone for Cache<H> {
    fn clone(&self) -> Self {
        Cache {
            store: self.store.clone(),
            synced: self.synced.clone(),
        }
    }
}

/// What keeps an informer's cache: it takes in each watch event before the event is
/// handed on (a relist's objects replace what it held only at the relist's end).
pub trait Keeper<S>: Send + 'static {
    fn take(&mut self, event: &watcher::Event<S>);

    /// Everything it holds now.
    fn held(&self) -> Vec<Arc<S>>;
}

impl<K> Keeper<K> for Writer<K>
where
    K: Lookup + Clone + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    fn take(&mut self, event: &watcher::Event<K>) {
        self.apply_watcher_event(event);
    }

    fn held(&self) -> Vec<Arc<K>> {
        self.as_reader().state()
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

/// Starts watching `api` into the cache `keeper` keeps and `store` reads, keeping of each
/// object what `keep` makes of it; `on_change` runs once the cache holds the change (for
/// a list, when it is complete). Watch errors are retried with backoff and logged, never
/// passed on (a GitOps controller that is not installed must not slow anything else
/// down).
pub fn spawn<K, S, H>(
    kind: &str,
    api: Api<K>,
    config: watcher::Config,
    (keeper, store): (impl Keeper<S>, H),
    mut keep: impl FnMut(K) -> S + Send + 'static,
    on_change: OnChange<S>,
) -> Cache<H>
where
    K: Resource + Clone + std::fmt::Debug + DeserializeOwned + Send + 'static,
    S: Lookup + Send + Sync + 'static,
{
    let (flag, synced) = watch::channel(false);
    let kind = kind.to_owned();
    let objects = watcher(api, config.page_size(LIST_PAGE))
        .default_backoff()
        .map_ok(move |event| {
            map_objects(event, |mut object| {
                without_unread_metadata(&mut object);
                keep(object)
            })
        });
    tokio::spawn(hand_on(objects, keeper, on_change, flag, kind));
    Cache { store, synced }
}

/// Drops an object's managed fields and kubectl's last-applied copy: most of its size,
/// and nothing here reads them.
fn without_unread_metadata<K: Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = &mut meta.annotations {
        annotations.remove(LAST_APPLIED);
    }
}

/// Has `keeper` take in each event, then hands the change on to `on_change`, and says when
/// the cache is synced.
///
/// The cache swaps to a (re)list's objects only once the list is complete, so they are
/// handed on then — a reconciliation triggered by a listed object earlier would read the
/// old cache — and the objects the list no longer holds are handed on as deleted (a
/// relist after a broken watch is the only news of what went meanwhile).
async fn hand_on<S, E>(
    events: impl Stream<Item = Result<watcher::Event<S>, E>>,
    mut keeper: impl Keeper<S>,
    mut on_change: OnChange<S>,
    flag: watch::Sender<bool>,
    kind: String,
) where
    S: Lookup,
    E: std::fmt::Display,
{
    let mut events = std::pin::pin!(events);
    // What the cache held when the current (re)list began.
    let mut before_list = Vec::new();
    while let Some(event) = events.next().await {
        if let Ok(event) = &event {
            keeper.take(event);
        }
        match event {
            Ok(watcher::Event::Apply(object)) => on_change(&object, Change::Applied),
            Ok(watcher::Event::Delete(object)) => on_change(&object, Change::Deleted),
            // Still the old view: a relist's objects are held only once it is done.
            Ok(watcher::Event::Init) => before_list = keeper.held(),
            Ok(watcher::Event::InitApply(_)) => {}
            Ok(watcher::Event::InitDone) => {
                let listed = keeper.held();
                let kept: HashSet<_> = listed.iter().map(|o| key_of(o.as_ref())).collect();
                for gone in before_list.drain(..) {
                    if !kept.contains(&key_of(gone.as_ref())) {
                        on_change(&gone, Change::Deleted);
                    }
                }
                for object in &listed {
                    on_change(object, Change::Applied);
                }
                if !flag.send_replace(true) {
                    tracing::debug!(%kind, "cache synced");
                }
            }
            Err(error) => tracing::debug!(%error, %kind, "watch failed; retrying with backoff"),
        }
    }
}

/// An object's namespace and name.
fn key_of<S: Lookup>(object: &S) -> (Option<String>, Option<String>) {
    (
        object.namespace().map(String::from),
        object.name().map(String::from),
    )
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
pub async fn once_installed<H>(
    crds: Api<CustomResourceDefinition>,
    crd: String,
    cache: Arc<OnceLock<Cache<H>>>,
    start: impl FnOnce() -> Cache<H>,
) {
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::ResourceExt;
    use kube::api::ObjectMeta;

    use super::*;

    fn config_map(name: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        }
    }

    #[test]
    fn managed_fields_and_the_last_applied_copy_are_dropped() {
        let mut bare: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "a", "namespace": "ns",
                         "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
                         "annotations": {LAST_APPLIED: "{}"}}
        }))
        .expect("config map");
        without_unread_metadata(&mut bare);
        assert_eq!(bare.metadata.managed_fields, None);
        assert!(bare.annotations().is_empty());

        let mut annotated = config_map("b");
        annotated.metadata.annotations = Some(
            [(LAST_APPLIED, "{}"), ("team", "x")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .into(),
        );
        without_unread_metadata(&mut annotated);
        assert_eq!(
            annotated.metadata.annotations,
            Some([("team".to_owned(), "x".to_owned())].into())
        );
    }

    /// What `on_change` was handed, and whether the cache held it then.
    type Seen = Arc<Mutex<Vec<(String, Change, bool)>>>;

    async fn handed_on(events: Vec<watcher::Event<ConfigMap>>) -> Vec<(String, Change, bool)> {
        let writer: Writer<ConfigMap> = Writer::default();
        let cache = writer.as_reader();
        let seen: Seen = Arc::default();
        let record = seen.clone();
        let reader = cache.clone();
        let on_change: OnChange<ConfigMap> = Box::new(move |object, change| {
            let cached = reader.get(&ObjectRef::from(object)).is_some();
            record
                .lock()
                .unwrap()
                .push((object.name_any(), change, cached));
        });
        let stream = futures::stream::iter(events.into_iter().map(Ok::<_, watcher::Error>));
        let (flag, _synced) = watch::channel(false);
        hand_on(stream, writer, on_change, flag, "ConfigMap".into()).await;
        seen.lock().unwrap().clone()
    }

    #[tokio::test]
    async fn a_relist_hands_on_its_objects_once_the_cache_holds_them_and_what_went_as_deleted() {
        use watcher::Event::{Apply, Init, InitApply, InitDone};
        let seen = handed_on(vec![
            Init,
            InitApply(config_map("a")),
            InitApply(config_map("b")),
            InitDone,
            Apply(config_map("c")),
            // The watch broke; the relist no longer holds `a`.
            Init,
            InitApply(config_map("b")),
            InitApply(config_map("c")),
            InitApply(config_map("d")),
            InitDone,
        ])
        .await;
        let mut first_list = seen[..2].to_vec();
        first_list.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(
            first_list,
            [
                ("a".into(), Change::Applied, true),
                ("b".into(), Change::Applied, true)
            ],
            "handed on when the cache holds them"
        );
        assert_eq!(seen[2], ("c".into(), Change::Applied, true));
        assert_eq!(
            seen[3],
            ("a".into(), Change::Deleted, false),
            "gone while the watch was broken"
        );
        let mut relisted: Vec<_> = seen[4..].to_vec();
        relisted.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(
            relisted,
            [
                ("b".into(), Change::Applied, true),
                ("c".into(), Change::Applied, true),
                ("d".into(), Change::Applied, true)
            ]
        );
    }
}
