//! Objects as the caches keep them: a name to find them by, and the rest as JSON text.
//!
//! The caches hold one namespace, at most one routing ConfigMap and one provider app per
//! environment, and are read by key: one object per reconciliation. Held as Rust values
//! they cost far more than their text: an Argo CD Application as a `DynamicObject` is a
//! `serde_json::Value` tree with a map node per nested object (about 9 KiB), and even a
//! namespace carries a full `ObjectMeta` and a B-tree node for two annotations (about
//! 1.5 KiB). Kept as the compact text they serialize to (after the informer's trim) they
//! cost a few hundred bytes, and a reconciliation parses back the one it reads in
//! microseconds. TestEnvironments and claims are not packed: the triggers scan them.

use std::borrow::Cow;
use std::marker::PhantomData;

use kube::Resource;
use kube::runtime::reflector::Lookup;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// An object of kind `K`, packed into JSON text.
pub struct Packed<K> {
    name: Box<str>,
    namespace: Option<Box<str>>,
    /// The whole object, as compact JSON.
    body: Box<str>,
    kind: PhantomData<fn() -> K>,
}

impl<K: Resource + Serialize + DeserializeOwned> Packed<K> {
    pub fn pack(object: &K) -> Packed<K> {
        let meta = object.meta();
        Packed {
            name: meta.name.as_deref().unwrap_or_default().into(),
            namespace: meta.namespace.as_deref().map(Into::into),
            // Kubernetes objects always serialize (their maps have string keys); were one
            // not to, reading it back fails the reconciliation with the error.
            body: serde_json::to_string(object)
                .unwrap_or_else(|error| {
                    tracing::error!(%error, name = meta.name.as_deref(), "cannot cache object");
                    String::new()
                })
                .into_boxed_str(),
            kind: PhantomData,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// The object as it was packed.
    pub fn unpack(&self) -> Result<K, serde_json::Error> {
        serde_json::from_str(&self.body)
    }
}

impl<K> Clone for Packed<K> {
    fn clone(&self) -> Self {
        Packed {
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            body: self.body.clone(),
            kind: PhantomData,
        }
    }
}

impl<K> std::fmt::Debug for Packed<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packed")
            .field("name", &self.name)
            .field("namespace", &self.namespace)
            .field("bytes", &self.body.len())
            .finish()
    }
}

/// Keyed by namespace and name alone, so a cache of packed objects is looked up with
/// references that carry no kind (`ObjectRef::new(name).within(namespace)`): each cache
/// holds one kind, and a kind in every key — for apps a whole `ApiResource`, five strings
/// known only at run time — cost 3.5 MiB with 10,000 apps. The kind strings below only
/// serve a reference's `Display`. The resourceVersion and UID are left out of the key:
/// lookups ignore them.
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
        Some(Cow::Borrowed(&self.name))
    }

    fn namespace(&self) -> Option<Cow<'_, str>> {
        self.namespace.as_deref().map(Cow::Borrowed)
    }

    fn resource_version(&self) -> Option<Cow<'_, str>> {
        None
    }

    fn uid(&self) -> Option<Cow<'_, str>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::DynamicObject;
    use kube::runtime::reflector::ObjectRef;
    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher;
    use serde_json::json;

    use super::*;

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
        let unpacked = Packed::pack(&app).unpack().expect("unpack");
        assert_eq!(unpacked.types, app.types);
        assert_eq!(unpacked.metadata, app.metadata);
        assert_eq!(unpacked.data, app.data);
    }

    #[test]
    fn a_cache_of_packed_objects_is_read_with_the_objects_references() {
        let namespace: Namespace = serde_json::from_value(json!({
            "metadata": {"name": "review-pr-1", "uid": "u-1", "resourceVersion": "7",
                         "annotations": {"testmesh.io/environment-uid": "e-1"}},
            "status": {"phase": "Active"}
        }))
        .expect("namespace");
        let mut writer: Writer<Packed<Namespace>> = Writer::default();
        writer.apply_watcher_event(&watcher::Event::Apply(Packed::pack(&namespace)));
        let cached = writer
            .as_reader()
            .get(&ObjectRef::new("review-pr-1"))
            .expect("found by name");
        assert_eq!(cached.unpack().expect("unpack"), namespace);

        let app: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": "a", "namespace": "b"}
        }))
        .expect("object");
        let mut writer: Writer<Packed<DynamicObject>> = Writer::default();
        writer.apply_watcher_event(&watcher::Event::Apply(Packed::pack(&app)));
        let apps = writer.as_reader();
        assert!(
            apps.get(&ObjectRef::new("a").within("b")).is_some(),
            "namespaced, of a kind known only at run time"
        );
        assert!(apps.get(&ObjectRef::new("a").within("c")).is_none());
        assert!(apps.get(&ObjectRef::new("a")).is_none());
    }
}
