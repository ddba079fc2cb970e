//! `/api/v1/workspaces/{workspace_id}/permissions`: what the caller may do in a
//! workspace, so that a dashboard or tool offers only the actions that will succeed
//! (no Extend or Release button for someone who may only look).
//!
//! Answered the way `kubectl auth can-i` answers: one SelfSubjectAccessReview per action,
//! made with the caller's own token, so the API server's authorizer (RBAC, webhooks, …)
//! decides, exactly as it will decide the request itself. The answer is a hint for
//! display; every request is still authorized on its own. A grant limited to some
//! objects by name (`resourceNames`) reads as not allowed here.

use axum::Json;
use axum::extract::Path;
use axum::extract::rejection::PathRejection;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::events::v1::Event as KubeEvent;
use kube::api::{Api, PostParams};
use kube::{Client, Resource};
use schemars::JsonSchema;
use serde::Serialize;

use super::caller::Caller;
use super::error::ApiError;
use super::workspace_of;
use crate::resources::{TestEnvironment, TestEnvironmentClaim};

/// What the caller may do in a workspace, as the API server's authorizer answers for
/// the caller's token.
#[derive(Serialize, JsonSchema, Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    pub workspace_id: String,
    /// `create` on testenvironments: POST an environment.
    pub create_test_environments: bool,
    /// `patch` on testenvironments: PATCH an environment (e.g. extend its TTL) and
    /// DELETE it (destroy is a change of the environment, not a deletion).
    pub patch_test_environments: bool,
    /// `create` on testenvironmentclaims: acquire.
    pub create_claims: bool,
    /// `delete` on testenvironmentclaims: release.
    pub delete_claims: bool,
    /// `list` on events (events.k8s.io): an environment's events.
    pub list_events: bool,
}

pub async fn review(
    Caller(client): Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Permissions>, ApiError> {
    let workspace = workspace_of(path)?;
    let environment = resource_of::<TestEnvironment>();
    let claim = resource_of::<TestEnvironmentClaim>();
    let event = resource_of::<KubeEvent>();
    let may = |verb: &str, resource: &ResourceAttributes| {
        allowed(client.clone(), review_of(&workspace, verb, resource))
    };
    let (
        create_test_environments,
        patch_test_environments,
        create_claims,
        delete_claims,
        list_events,
    ) = futures::try_join!(
        may("create", &environment),
        may("patch", &environment),
        may("create", &claim),
        may("delete", &claim),
        may("list", &event),
    )?;
    Ok(Json(Permissions {
        workspace_id: workspace,
        create_test_environments,
        patch_test_environments,
        create_claims,
        delete_claims,
        list_events,
    }))
}

/// `K`'s API group and resource, for an access review.
fn resource_of<K: Resource<DynamicType = ()>>() -> ResourceAttributes {
    ResourceAttributes {
        group: Some(K::group(&()).into_owned()),
        resource: Some(K::plural(&()).into_owned()),
        ..ResourceAttributes::default()
    }
}

/// The question "may I `verb` `resource` in `namespace`?".
fn review_of(
    namespace: &str,
    verb: &str,
    resource: &ResourceAttributes,
) -> SelfSubjectAccessReview {
    SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(namespace.to_owned()),
                verb: Some(verb.to_owned()),
                ..resource.clone()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    }
}

/// The API server's answer to `review`, asked as the bearer of `client`'s token.
async fn allowed(client: Client, review: SelfSubjectAccessReview) -> Result<bool, ApiError> {
    let reviewed = Api::<SelfSubjectAccessReview>::all(client)
        .create(&PostParams::default(), &review)
        .await?;
    Ok(reviewed
        .status
        .is_some_and(|s| s.allowed && !s.denied.unwrap_or(false)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_question_names_the_workspace_verb_group_and_resource() {
        let review = review_of("team-a", "patch", &resource_of::<TestEnvironment>());
        let asked = review
            .spec
            .resource_attributes
            .expect("resource attributes");
        assert_eq!(asked.namespace.as_deref(), Some("team-a"));
        assert_eq!(asked.verb.as_deref(), Some("patch"));
        assert_eq!(asked.group.as_deref(), Some("testmesh.io"));
        assert_eq!(asked.resource.as_deref(), Some("testenvironments"));
        assert_eq!(asked.name, None, "any object of the workspace");
        let events = resource_of::<KubeEvent>();
        assert_eq!(
            (events.group.as_deref(), events.resource.as_deref()),
            (Some("events.k8s.io"), Some("events"))
        );
        let claims = resource_of::<TestEnvironmentClaim>();
        assert_eq!(claims.resource.as_deref(), Some("testenvironmentclaims"));
    }
}
