//! Which reconciliations a change concerns: an informer event names its own object, and
//! these maps name the others that read it (a claim's environment, an app's environments,
//! the environments routing through a namespace).

use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::api::DynamicObject;
use kube::runtime::reflector::{ObjectRef, Store};

use super::packed::Packed;
use crate::resources::{ENVIRONMENT_ANNOTATION, Provider, TestEnvironment, TestEnvironmentClaim};

/// References to the cached objects `concerned` picks: the trigger maps below differ
/// only in their predicate.
pub fn refs_where<K>(store: &Store<K>, concerned: impl Fn(&K) -> bool) -> Vec<ObjectRef<K>>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    store
        .state()
        .iter()
        .filter(|object| concerned(object))
        .map(|object| ObjectRef::from_obj(object.as_ref()))
        .collect()
}

/// The environments a claim may concern: the one it names or holds, and the live ones of
/// its context.
pub fn environments_of_claim(
    environments: &Store<TestEnvironment>,
    claim: &TestEnvironmentClaim,
) -> Vec<ObjectRef<TestEnvironment>> {
    let workspace = claim.namespace();
    let holding = claim
        .status
        .as_ref()
        .and_then(|s| s.environment_name.as_deref());
    refs_where(environments, |env| {
        let name = env.name_any();
        env.namespace() == workspace
            && (claim.spec.environment_name.as_deref() == Some(name.as_str())
                || holding == Some(name.as_str())
                || env.spec.context == claim.spec.context)
    })
}

/// The claims an environment's change may concern: those of its context or naming it.
pub fn claims_of_environment(
    claims: &Store<TestEnvironmentClaim>,
    environment: &TestEnvironment,
) -> Vec<ObjectRef<TestEnvironmentClaim>> {
    let workspace = environment.namespace();
    let name = environment.name_any();
    refs_where(claims, |claim| {
        claim.namespace() == workspace
            && (claim.spec.context == environment.spec.context
                || claim.spec.environment_name.as_deref() == Some(name.as_str()))
    })
}

/// A namespace TestMesh created points back at its environment.
pub fn environment_of_namespace(namespace: &Namespace) -> Option<ObjectRef<TestEnvironment>> {
    let owner = namespace.annotations().get(ENVIRONMENT_ANNOTATION)?;
    let (workspace, name) = owner.split_once('/')?;
    Some(ObjectRef::new(name).within(workspace))
}

/// The environments deployed by `app`. A provider's app may live in another namespace
/// than any environment, so ownerReferences cannot link them; the controller's own cache
/// is scanned instead (cheap next to the event that triggered it).
pub fn environments_of_app(
    environments: &Store<TestEnvironment>,
    provider: Provider,
    default_namespace: &str,
    app: &Packed<DynamicObject>,
) -> Vec<ObjectRef<TestEnvironment>> {
    let app_namespace = app.namespace().unwrap_or_default();
    let app_name = app.name();
    refs_where(environments, |env| {
        let spec = &env.spec.template;
        spec.provider == provider
            && spec.provider_app_name == app_name
            && spec
                .provider_app_namespace
                .as_deref()
                .unwrap_or(default_namespace)
                == app_namespace
    })
}

/// The environments deployed in `namespace`.
pub fn environments_deployed_in(
    environments: &Store<TestEnvironment>,
    namespace: &str,
) -> Vec<ObjectRef<TestEnvironment>> {
    refs_where(environments, |env| env.spec.template.namespace == namespace)
}

/// The environments whose routing reads Services of `namespace`: deployed there, or
/// using it as their baseline.
pub fn environments_routing_from(
    environments: &Store<TestEnvironment>,
    namespace: &str,
) -> Vec<ObjectRef<TestEnvironment>> {
    refs_where(environments, |env| {
        let template = &env.spec.template;
        template.namespace == namespace
            || template
                .routing
                .as_ref()
                .and_then(|r| r.baseline_namespace.as_deref())
                == Some(namespace)
    })
}
