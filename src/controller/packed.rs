//! Objects as the caches keep them — a `namespace/name` to find them by and the rest as
//! JSON text, in one allocation — and the store that holds them in `namespace/name`
//! order.
//!
//! The caches hold one namespace, at most one routing ConfigMap and one provider app per
//! environment, and every Service and EndpointSlice of the cluster; they are read by key
//! (one object per reconciliation) or by namespace. Held as Rust values the objects cost
//! far more than their text: an Argo CD Application as a `DynamicObject` is a
//! `serde_json::Value` tree with a map node per nested object (about 9 KiB), and even a
//! namespace carries a full `ObjectMeta` and a B-tree node for two annotations (about
//! 1.5 KiB). Kept as the compact text they serialize to (after the informer's trim) they
//! cost a few hundred bytes, and a reconciliation parses back the one it reads in
//! microseconds.
//!
//! Nor are they held in kube's reflector store: it keys each object by an `ObjectRef` of
//! five strings' worth (96 bytes in a hash table at most 7/8 full, plus the name and
//! namespace allocated again), about 250 bytes an object beside its text — 5 MiB for
//! 10,000 environments' namespaces and apps. A B-tree of the packed objects themselves
//! (each a shared pointer to its text), ordered by their key, costs 16 bytes an object,
//! finds one by name, and lists a namespace as one range instead of a scan of every
//! Service of the cluster. TestEnvironments and claims stay in kube's typed stores: their
//! controllers read those.

use std::borrow::{Borrow, Cow};
use std::collections::BTreeSet;
use std::marker::PhantomData;
use std::ops::Bound;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use kube::Resource;
use kube::runtime::reflector::Lookup;
use kube::runtime::watcher;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::context::{key_of, object_key};
use super::informers::Keeper;

/// An object of kind `K`, packed into JSON text behind its `namespace/name` key. A clone
/// shares the text.
///
/// The text leaves out what the key and the kind already say: the name and namespace
/// (unpacking puts them back from the key) and `apiVersion` and `kind`, which every
/// object of a store shares — an unpacked object has no type fields (a `DynamicObject`'s
/// `types` is `None`), and nothing the caches feed reads them. For a cluster's Services
/// and EndpointSlices, cut down to what routing reads, that is over half of their text.
pub struct Packed<K> {
    /// The key, then the rest of the object as compact JSON: the key ends where the JSON
    /// object's `{` begins, as no name or namespace holds one (they are DNS names).
    text: Arc<str>,
    kind: PhantomData<fn() -> K>,
}

impl<K: Resource + Serialize + DeserializeOwned> Packed<K> {
    pub fn pack(object: &K) -> Packed<K> {
        let mut text = object_key(object);
        // Kubernetes objects always serialize (their maps have string keys); were one
        // not to, reading it back fails the reconciliation with the error.
        match serde_json::to_value(object) {
            Ok(mut body) => {
                without_identity(&mut body);
                text.push_str(&body.to_string());
            }
            Err(error) => {
                tracing::error!(%error, key = text.as_str(), "cannot cache object");
            }
        }
        Packed {
            text: Arc::from(text),
            kind: PhantomData,
        }
    }

    /// The object as it was packed, named from its key, without type fields.
    pub fn unpack(&self) -> Result<K, serde_json::Error> {
        let mut object: K = serde_json::from_str(self.body())?;
        let meta = object.meta_mut();
        meta.name = Some(self.name().to_owned());
        meta.namespace = self.namespace().map(str::to_owned);
        Ok(object)
    }
}

/// Removes from a serialized object what its key and its store's kind say: the type
/// fields, the name and the namespace; and the metadata's empty lists and maps (an
/// informer's trim may leave them), which say no more than their absence (and the
/// metadata, if nothing else is left of it).
fn without_identity(object: &mut serde_json::Value) {
    let Some(fields) = object.as_object_mut() else {
        return;
    };
    fields.remove("apiVersion");
    fields.remove("kind");
    if let Some(metadata) = fields.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        metadata.remove("name");
        metadata.remove("namespace");
        metadata.retain(|_, value| {
            !(value.as_object().is_some_and(|map| map.is_empty())
                || value.as_array().is_some_and(Vec::is_empty))
        });
        if metadata.is_empty() {
            fields.remove("metadata");
        }
    }
}

impl<K> Packed<K> {
    /// The key and the JSON.
    fn parts(&self) -> (&str, &str) {
        self.text
            .split_at(self.text.find('{').unwrap_or(self.text.len()))
    }

    /// `namespace/name` (`/name` for an object of no namespace).
    fn key(&self) -> &str {
        self.parts().0
    }

    /// The object's JSON, less what [`Packed`] leaves out.
    fn body(&self) -> &str {
        self.parts().1
    }

    pub fn name(&self) -> &str {
        self.key().split_once('/').map_or("", |(_, name)| name)
    }

    pub fn namespace(&self) -> Option<&str> {
        self.key()
            .split_once('/')
            .map(|(namespace, _)| namespace)
            .filter(|namespace| !namespace.is_empty())
    }
}

impl<K> Clone for Packed<K> {
    fn clone(&self) -> Self {
        Packed {
            text: self.text.clone(),
            kind: PhantomData,
        }
    }
}

impl<K> std::fmt::Debug for Packed<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packed")
            .field("key", &self.key())
            .field("bytes", &self.body().len())
            .finish()
    }
}

/// What a relist compares by: the namespace and name. The kind strings only serve a
/// reference's `Display`, and no reference to a packed object is displayed.
impl<K> Lookup for Packed<K> {
    type DynamicType = ();

    fn kind(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("")
    }

    fn group(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("")
    }

    fn version(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("")
    }

    fn plural(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("")
    }

    fn name(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(Packed::name(self)))
    }

    fn namespace(&self) -> Option<Cow<'_, str>> {
        Packed::namespace(self).map(Cow::Borrowed)
    }

    fn resource_version(&self) -> Option<Cow<'_, str>> {
        None
    }

    fn uid(&self) -> Option<Cow<'_, str>> {
        None
    }
}

/// A packed object in a store, ordered and found by its key.
struct Held<K>(Packed<K>);

impl<K> Borrow<str> for Held<K> {
    fn borrow(&self) -> &str {
        self.0.key()
    }
}

impl<K> PartialEq for Held<K> {
    fn eq(&self, other: &Self) -> bool {
        self.0.key() == other.0.key()
    }
}

impl<K> Eq for Held<K> {}

impl<K> PartialOrd for Held<K> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<K> Ord for Held<K> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.key().cmp(other.0.key())
    }
}

/// The packed objects of one kind, as their informer last saw them.
pub struct PackedStore<K> {
    objects: Arc<RwLock<BTreeSet<Held<K>>>>,
}

impl<K> Clone for PackedStore<K> {
    fn clone(&self) -> Self {
        PackedStore {
            objects: self.objects.clone(),
        }
    }
}

impl<K> PackedStore<K> {
    /// An empty store, and the writer its informer keeps it with.
    pub fn new() -> (PackedWriter<K>, PackedStore<K>) {
        let store = PackedStore {
            objects: Arc::default(),
        };
        let writer = PackedWriter {
            store: store.clone(),
            relisting: None,
        };
        (writer, store)
    }

    /// The object named `name` in `namespace` (`None` for one of no namespace).
    pub fn get(&self, namespace: Option<&str>, name: &str) -> Option<Packed<K>> {
        self.read()
            .get(key_of(namespace, name).as_str())
            .map(|held| held.0.clone())
    }

    /// The objects of `namespace`.
    pub fn in_namespace(&self, namespace: &str) -> Vec<Packed<K>> {
        let prefix = key_of(Some(namespace), "");
        self.read()
            .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
            .take_while(|held| held.0.key().starts_with(&prefix))
            .map(|held| held.0.clone())
            .collect()
    }

    fn read(&self) -> RwLockReadGuard<'_, BTreeSet<Held<K>>> {
        // Every update leaves the set whole, so a panic elsewhere spoils nothing.
        self.objects.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, BTreeSet<Held<K>>> {
        self.objects.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Keeps a [`PackedStore`] as its informer's events say; a relist replaces what it holds
/// only once it is complete, as kube's reflector does.
pub struct PackedWriter<K> {
    store: PackedStore<K>,
    relisting: Option<BTreeSet<Held<K>>>,
}

impl<K: 'static> Keeper<Packed<K>> for PackedWriter<K> {
    fn take(&mut self, event: &watcher::Event<Packed<K>>) {
        match event {
            watcher::Event::Apply(object) => {
                self.store.write().replace(Held(object.clone()));
            }
            watcher::Event::Delete(object) => {
                self.store.write().remove(object.key());
            }
            watcher::Event::Init => self.relisting = Some(BTreeSet::new()),
            watcher::Event::InitApply(object) => {
                if let Some(listed) = &mut self.relisting {
                    listed.replace(Held(object.clone()));
                }
            }
            watcher::Event::InitDone => {
                if let Some(listed) = self.relisting.take() {
                    *self.store.write() = listed;
                }
            }
        }
    }

    fn held(&self) -> Vec<Arc<Packed<K>>> {
        self.store
            .read()
            .iter()
            .map(|held| Arc::new(held.0.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
    use kube::ResourceExt;
    use kube::api::DynamicObject;
    use serde_json::json;

    use super::*;

    fn config_map(namespace: &str, name: &str, data: &str) -> Packed<ConfigMap> {
        Packed::pack(
            &serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": namespace}, "data": {"k": data}
            }))
            .expect("config map"),
        )
    }

    fn names<P: Borrow<Packed<ConfigMap>>>(objects: Vec<P>) -> Vec<String> {
        objects
            .iter()
            .map(Borrow::borrow)
            .map(|o| format!("{}/{}", o.namespace().unwrap_or_default(), o.name()))
            .collect()
    }

    #[test]
    fn unpacks_what_was_packed() {
        let app: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": "pr-1", "namespace": "argocd", "labels": {"team": "a"}},
            "spec": {"destination": {"namespace": "review-pr-1"}},
            "status": {"health": {"status": "Healthy"}, "resources": [{"kind": "Service"}]}
        }))
        .expect("app");
        let packed = Packed::pack(&app);
        assert_eq!(
            (packed.namespace(), packed.name()),
            (Some("argocd"), "pr-1")
        );
        let unpacked = packed.unpack().expect("unpack");
        assert_eq!(unpacked.types, None, "the store's kind says it");
        assert_eq!(unpacked.metadata, app.metadata);
        assert_eq!(unpacked.data, app.data);

        let namespace: Namespace = serde_json::from_value(json!({
            "metadata": {"name": "review-pr-1", "uid": "u-1", "resourceVersion": "7",
                         "annotations": {"testmesh.io/environment-uid": "e-1"}},
            "status": {"phase": "Active"}
        }))
        .expect("namespace");
        let packed = Packed::pack(&namespace);
        assert_eq!((packed.namespace(), packed.name()), (None, "review-pr-1"));
        assert_eq!(packed.unpack().expect("unpack"), namespace);
    }

    #[test]
    fn the_text_holds_neither_the_key_nor_the_kind() {
        let service: Service = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "review-pr-1"},
            "spec": {"ports": [{"name": "http", "port": 80}]}
        }))
        .expect("service");
        let packed = Packed::pack(&service);
        assert_eq!(
            packed.body(),
            r#"{"spec":{"ports":[{"name":"http","port":80}]}}"#
        );
        assert_eq!(packed.unpack().expect("unpack"), service);

        let labelled: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": "routing", "namespace": "ns", "labels": {"a": "b"},
                         "annotations": {}, "managedFields": []}
        }))
        .expect("config map");
        let packed = Packed::pack(&labelled);
        assert_eq!(packed.body(), r#"{"metadata":{"labels":{"a":"b"}}}"#);
        let unpacked = packed.unpack().expect("unpack");
        assert_eq!(unpacked.labels(), labelled.labels());
        assert!(unpacked.annotations().is_empty() && unpacked.managed_fields().is_empty());
    }

    #[test]
    fn a_store_finds_an_object_by_namespace_and_name_and_lists_a_namespace_alone() {
        let (mut writer, store) = PackedStore::new();
        for (namespace, name) in [
            ("ns", "b"),
            ("ns", "a"),
            ("ns-2", "a"),
            ("n", "a"),
            ("ns0", "a"),
        ] {
            writer.take(&watcher::Event::Apply(config_map(namespace, name, "1")));
        }
        let found = store.get(Some("ns"), "a").expect("found");
        assert_eq!(
            found
                .unpack()
                .expect("unpack")
                .metadata
                .namespace
                .as_deref(),
            Some("ns")
        );
        assert!(store.get(Some("ns"), "c").is_none());
        assert!(
            store.get(None, "a").is_none(),
            "namespaced objects need their namespace"
        );
        assert_eq!(
            names(store.in_namespace("ns")),
            ["ns/a", "ns/b"],
            "not ns-2, n or ns0"
        );
        assert!(store.in_namespace("other").is_empty());

        let (mut writer, namespaces) = PackedStore::<Namespace>::new();
        let namespace: Namespace =
            serde_json::from_value(json!({"metadata": {"name": "review-pr-1"}})).expect("ns");
        writer.take(&watcher::Event::Apply(Packed::pack(&namespace)));
        assert!(
            namespaces.get(None, "review-pr-1").is_some(),
            "cluster-scoped"
        );
    }

    #[test]
    fn the_writer_replaces_and_deletes_and_swaps_in_a_relist_only_once_it_is_complete() {
        let (mut writer, store) = PackedStore::new();
        writer.take(&watcher::Event::Apply(config_map("ns", "a", "1")));
        writer.take(&watcher::Event::Apply(config_map("ns", "b", "1")));
        writer.take(&watcher::Event::Apply(config_map("ns", "a", "2")));
        let data = |store: &PackedStore<ConfigMap>, name: &str| {
            store
                .get(Some("ns"), name)
                .and_then(|o| o.unpack().expect("unpack").data)
                .and_then(|data| data.get("k").cloned())
        };
        assert_eq!(data(&store, "a").as_deref(), Some("2"), "replaced");
        writer.take(&watcher::Event::Delete(config_map("ns", "b", "1")));
        assert_eq!(names(writer.held()), ["ns/a"]);

        writer.take(&watcher::Event::Init);
        writer.take(&watcher::Event::InitApply(config_map("ns", "c", "1")));
        assert_eq!(
            names(store.in_namespace("ns")),
            ["ns/a"],
            "the old view until done"
        );
        writer.take(&watcher::Event::InitDone);
        assert_eq!(names(store.in_namespace("ns")), ["ns/c"], "the list's view");
        assert_eq!(names(writer.held()), ["ns/c"]);
    }
}
