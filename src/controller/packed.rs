//! A provider's app as the cache keeps it: its metadata, and the rest as JSON text.
//!
//! An Argo CD Application or Flux Kustomization arrives as a `DynamicObject`, whose body
//! is a `serde_json::Value` tree with a map node for every nested object: a plain
//! Application costs about 9 KiB of heap that way, and an operator holding ten thousand
//! environments holds ten thousand apps. Kept as the compact text it serializes to (after
//! the provider's trim), the same Application costs about a tenth of that. A
//! reconciliation parses back only the app it reads, which takes microseconds next to
//! the API requests around it.

use std::borrow::Cow;

use kube::Resource;
use kube::api::{ApiResource, DynamicObject, ObjectMeta};
use kube::core::{DynamicResourceScope, TypeMeta};

/// An app with its body packed into JSON text.
#[derive(Clone, Debug)]
pub struct PackedApp {
    types: Option<TypeMeta>,
    metadata: ObjectMeta,
    /// Everything but the metadata (`spec`, `status`, …), as compact JSON.
    body: Box<str>,
}

impl PackedApp {
    pub fn pack(app: DynamicObject) -> PackedApp {
        PackedApp {
            types: app.types,
            metadata: app.metadata,
            body: app.data.to_string().into_boxed_str(),
        }
    }

    /// The app as it was packed.
    pub fn unpack(&self) -> Result<DynamicObject, serde_json::Error> {
        Ok(DynamicObject {
            types: self.types.clone(),
            metadata: self.metadata.clone(),
            data: serde_json::from_str(&self.body)?,
        })
    }
}

/// The same identity as the `DynamicObject` it packs, so caches and references key it
/// alike.
impl Resource for PackedApp {
    type DynamicType = ApiResource;
    type Scope = DynamicResourceScope;

    fn kind(resource: &ApiResource) -> Cow<'_, str> {
        DynamicObject::kind(resource)
    }

    fn group(resource: &ApiResource) -> Cow<'_, str> {
        DynamicObject::group(resource)
    }

    fn version(resource: &ApiResource) -> Cow<'_, str> {
        DynamicObject::version(resource)
    }

    fn api_version(resource: &ApiResource) -> Cow<'_, str> {
        DynamicObject::api_version(resource)
    }

    fn plural(resource: &ApiResource) -> Cow<'_, str> {
        DynamicObject::plural(resource)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
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
        let packed = PackedApp::pack(app.clone());
        assert_eq!(packed.meta(), &app.metadata);
        let unpacked = packed.unpack().expect("unpack");
        assert_eq!(unpacked.types, app.types);
        assert_eq!(unpacked.metadata, app.metadata);
        assert_eq!(unpacked.data, app.data);
    }
}
