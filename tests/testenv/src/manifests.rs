//! Applying YAML manifests (CRDs in particular) with server-side apply.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client};

use crate::error::{Error, Result};

/// Field manager used for every server-side apply done by this crate.
pub const FIELD_MANAGER: &str = "testmesh-testenv";
/// How long to wait for a CRD to become `Established`.
pub const CRD_ESTABLISHED_TIMEOUT: Duration = Duration::from_secs(60);
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Server-side applies every CustomResourceDefinition in a (multi-document) YAML
/// stream and waits until each one is `Established`, so custom resources can be
/// created right afterwards. Fails without applying anything if a document is not
/// a CRD. Returns the CRD names.
pub async fn install_crds_from_yaml(client: &Client, yaml: &str) -> Result<Vec<String>> {
    let objects = parse_yaml(yaml)?;
    if let Some(other) = objects.iter().find(|o| !is_crd(gvk_of(o).ok().as_ref())) {
        return Err(Error::InvalidManifest(format!(
            "expected only CustomResourceDefinitions, found {}",
            describe(other)
        )));
    }
    let mut names = Vec::with_capacity(objects.len());
    for object in &objects {
        names.push(apply_object(client, "default", object, &mut HashMap::new()).await?);
    }
    Ok(names)
}

/// Installs the CRDs of each file of [`crate::ControlPlane::crd_assets_dir`] (third-party
/// CRDs `make test-assets` copies there), waiting until they are Established.
pub async fn install_crd_assets(client: &Client, files: &[&str]) -> Result<()> {
    for file in files {
        let path = crate::ControlPlane::crd_assets_dir().join(file);
        let yaml = std::fs::read_to_string(&path)
            .map_err(|e| Error::io(format!("read {}", path.display()), e))?;
        install_crds_from_yaml(client, &yaml).await?;
    }
    Ok(())
}

/// Waits until the object `name` of `api` is `Some` and satisfies `accept`, or is gone
/// (`None`) if `accept(None)` says so; returns what was seen last.
pub async fn wait_object(
    api: &Api<DynamicObject>,
    name: &str,
    timeout: Duration,
    accept: impl Fn(Option<&DynamicObject>) -> bool,
) -> Result<Option<DynamicObject>> {
    tokio::time::timeout(timeout, await_condition(api.clone(), name, accept))
        .await
        .map_err(|_| Error::Timeout {
            what: format!("{} {name}", api.resource_url()),
            after: timeout,
        })?
        .map_err(Error::from)
}

/// Server-side applies every object of a (multi-document) YAML stream, in order,
/// with [`FIELD_MANAGER`] and `force`. Namespaced objects without a namespace go
/// to `default`. CRDs are waited for until `Established` before the next document
/// is applied, so a CRD followed by its custom resources works. Returns
/// `Kind/name` of every applied object.
pub async fn apply_yaml(client: &Client, yaml: &str) -> Result<Vec<String>> {
    apply_yaml_in(client, "default", yaml).await
}

/// [`apply_yaml`], with namespaced objects that name no namespace going to `namespace`.
pub async fn apply_yaml_in(client: &Client, namespace: &str, yaml: &str) -> Result<Vec<String>> {
    let mut discovered = HashMap::new();
    let mut applied = Vec::new();
    for object in parse_yaml(yaml)? {
        let name = apply_object(client, namespace, &object, &mut discovered).await?;
        applied.push(format!("{}/{name}", gvk_of(&object)?.kind));
    }
    Ok(applied)
}

fn parse_yaml(yaml: &str) -> Result<Vec<DynamicObject>> {
    let documents: Vec<serde_json::Value> = serde_saphyr::from_multiple(yaml)?;
    documents
        .into_iter()
        .filter(|doc| !doc.is_null())
        .map(|doc| {
            serde_json::from_value::<DynamicObject>(doc)
                .map_err(|e| Error::InvalidManifest(e.to_string()))
        })
        .collect()
}

fn gvk_of(object: &DynamicObject) -> Result<GroupVersionKind> {
    let types = object.types.as_ref().ok_or_else(|| {
        Error::InvalidManifest(format!("{} has no apiVersion/kind", describe(object)))
    })?;
    GroupVersionKind::try_from(types).map_err(|e| Error::InvalidManifest(e.to_string()))
}

fn is_crd(gvk: Option<&GroupVersionKind>) -> bool {
    gvk.is_some_and(|gvk| {
        gvk.group == "apiextensions.k8s.io" && gvk.kind == "CustomResourceDefinition"
    })
}

fn describe(object: &DynamicObject) -> String {
    let kind = object
        .types
        .as_ref()
        .map_or("<no kind>", |t| t.kind.as_str());
    let name = object.metadata.name.as_deref().unwrap_or("<no name>");
    format!("{kind}/{name}")
}

/// Applies one object (into `default_namespace` if it is namespaced and names none),
/// returns its name.
async fn apply_object(
    client: &Client,
    default_namespace: &str,
    object: &DynamicObject,
    discovered: &mut HashMap<GroupVersionKind, (ApiResource, ApiCapabilities)>,
) -> Result<String> {
    let gvk = gvk_of(object)?;
    let name = object.metadata.name.clone().ok_or_else(|| {
        Error::InvalidManifest(format!("{} has no metadata.name", describe(object)))
    })?;
    let (resource, capabilities) = match discovered.get(&gvk) {
        Some(found) => found.clone(),
        None => {
            let found = discover(client, &gvk).await?;
            discovered.insert(gvk.clone(), found.clone());
            found
        }
    };
    let api: Api<DynamicObject> = match capabilities.scope {
        Scope::Namespaced => Api::namespaced_with(
            client.clone(),
            object
                .metadata
                .namespace
                .as_deref()
                .unwrap_or(default_namespace),
            &resource,
        ),
        Scope::Cluster => Api::all_with(client.clone(), &resource),
    };
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await?;
    if is_crd(Some(&gvk)) {
        wait_crd_established(client, &name).await?;
    }
    Ok(name)
}

/// Looks up how `gvk` is served. Retries for a while: an earlier document may
/// have just installed the CRD, and discovery can lag behind `Established`.
async fn discover(
    client: &Client,
    gvk: &GroupVersionKind,
) -> Result<(ApiResource, ApiCapabilities)> {
    let deadline = tokio::time::Instant::now() + DISCOVERY_TIMEOUT;
    loop {
        match kube::discovery::pinned_kind(client, gvk).await {
            Ok(found) => return Ok(found),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Waits (bounded by [`CRD_ESTABLISHED_TIMEOUT`]) until the CRD `name` has
/// condition `Established=True`.
pub async fn wait_crd_established(client: &Client, name: &str) -> Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    tokio::time::timeout(
        CRD_ESTABLISHED_TIMEOUT,
        await_condition(crds, name, conditions::is_crd_established()),
    )
    .await
    .map_err(|_| Error::Timeout {
        what: format!("CRD {name} to become Established"),
        after: CRD_ESTABLISHED_TIMEOUT,
    })??;
    Ok(())
}
