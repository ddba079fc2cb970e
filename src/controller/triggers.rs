//! Which reconciliations a change concerns: an informer event names its own object, and
//! these maps name the others that read it (a claim's environment, an app's environments,
//! the environments routing through a namespace). The environments are looked up in
//! [`EnvironmentIndex`], never scanned.

use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::api::DynamicObject;
use kube::runtime::reflector::{ObjectRef, Store};

use super::index::EnvironmentIndex;
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

/// The environments a claim may concern: the one it names or holds, and those of its
/// context.
pub fn environments_of_claim(
    environments: &EnvironmentIndex,
    claim: &TestEnvironmentClaim,
) -> Vec<ObjectRef<TestEnvironment>> {
    let workspace = claim.namespace().unwrap_or_default();
    let holding = claim
        .status
        .as_ref()
        .and_then(|s| s.environment_name.as_deref());
    let mut concerned = environments.of_context(&workspace, &claim.spec.context);
    for name in [claim.spec.environment_name.as_deref(), holding]
        .into_iter()
        .flatten()
    {
        let named = ObjectRef::new(name).within(&workspace);
        if !concerned.contains(&named) {
            concerned.push(named);
        }
    }
    concerned
}

/// The claims an environment's change may concern: those of its context or naming it,
/// the ones it holds last.
///
/// Last, because kube's controller scheduler hands out triggers that arrive together
/// last-first (tokio's `DelayQueue` keeps the entries due at one instant as a stack): a
/// queue's hand-over triggers every claim waiting on the context, and the run just bound
/// is then reconciled first — to Ready — instead of after as many as every waiting claim.
/// Were the order ever first-first, it would cost time, never a wrong decision.
pub fn claims_of_environment(
    claims: &Store<TestEnvironmentClaim>,
    environment: &TestEnvironment,
) -> Vec<ObjectRef<TestEnvironmentClaim>> {
    let workspace = environment.namespace();
    let name = environment.name_any();
    let mut concerned = refs_where(claims, |claim| {
        claim.namespace() == workspace
            && (claim.spec.context == environment.spec.context
                || claim.spec.environment_name.as_deref() == Some(name.as_str()))
    });
    let holders = environment
        .status
        .as_ref()
        .map(|status| status.claimed_by.as_slice())
        .unwrap_or_default();
    concerned.sort_by_key(|claim| holders.contains(&claim.name));
    concerned
}

/// A namespace TestMesh created points back at its environment.
pub fn environment_of_namespace(namespace: &Namespace) -> Option<ObjectRef<TestEnvironment>> {
    let owner = namespace.annotations().get(ENVIRONMENT_ANNOTATION)?;
    let (workspace, name) = owner.split_once('/')?;
    Some(ObjectRef::new(name).within(workspace))
}

/// The environments deployed by `app`. A provider's app may live in another namespace
/// than any environment, so ownerReferences cannot link them; the index finds them.
pub fn environments_of_app(
    environments: &EnvironmentIndex,
    provider: Provider,
    default_namespace: &str,
    app: &Packed<DynamicObject>,
) -> Vec<ObjectRef<TestEnvironment>> {
    let app_namespace = app.namespace().unwrap_or_default();
    environments.of_app(provider, app_namespace, app.name(), default_namespace)
}

#[cfg(test)]
mod tests {
    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher;
    use serde_json::json;

    use super::*;

    #[test]
    fn an_environments_change_concerns_its_contexts_claims_and_those_naming_it_holders_last() {
        let mut writer: Writer<TestEnvironmentClaim> = Writer::default();
        let claims = [
            ("ws", "a", json!({"context": "pr-1"})),
            ("ws", "held", json!({"context": "pr-1"})),
            ("ws", "b", json!({"context": "pr-1"})),
            (
                "ws",
                "named",
                json!({"context": "other", "environmentName": "pr-1"}),
            ),
            ("ws", "unrelated", json!({"context": "pr-2"})),
            ("ws-2", "elsewhere", json!({"context": "pr-1"})),
        ];
        for (namespace, name, spec) in claims {
            let claim: TestEnvironmentClaim = serde_json::from_value(json!({
                "apiVersion": "testmesh.io/v1alpha1", "kind": "TestEnvironmentClaim",
                "metadata": {"name": name, "namespace": namespace}, "spec": spec
            }))
            .expect("claim");
            writer.apply_watcher_event(&watcher::Event::Apply(claim));
        }
        let environment: TestEnvironment = serde_json::from_value(json!({
            "apiVersion": "testmesh.io/v1alpha1", "kind": "TestEnvironment",
            "metadata": {"name": "pr-1", "namespace": "ws"},
            "spec": {"context": "pr-1", "provider": "argocd", "providerAppName": "pr-1",
                     "namespace": "review-pr-1", "ttlMinutes": 60},
            "status": {"claimedBy": ["held"]}
        }))
        .expect("environment");
        let concerned: Vec<String> = claims_of_environment(&writer.as_reader(), &environment)
            .into_iter()
            .map(|claim| claim.name)
            .collect();
        assert_eq!(concerned.len(), 4, "{concerned:?}");
        assert_eq!(concerned.last().map(String::as_str), Some("held"));
        for name in ["a", "b", "named"] {
            assert!(
                concerned.contains(&name.to_owned()),
                "{name} in {concerned:?}"
            );
        }
    }
}
