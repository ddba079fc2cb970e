//! The REST API and the dashboard: a facade over the custom resources for tools and
//! people who do not speak Kubernetes.
//!
//! It keeps no state and holds no privileges: each request is made to the Kubernetes API
//! server with the caller's own bearer token (`caller`), so the API server's
//! authentication and RBAC decide everything, and the TestEnvironment objects are the only
//! truth. Every replica serves it, leader or not.

mod caller;
mod claims;
mod dashboard;
mod environments;
mod error;
mod events;
mod generator;
mod links;
mod model;
mod openapi;
mod permissions;
mod snapshots;
mod workspaces;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRef, Path, Query};
use axum::routing::{get, post};
use kube::api::Api;
use kube::runtime::wait::await_condition;

pub use caller::Cluster;
pub use error::ApiError;
pub use links::ProviderLinks;
pub use openapi::document as openapi_document;

/// Where the OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";
/// How often an idle event stream carries a keep-alive comment.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// What a request may read besides its own token: the cluster's address (without
/// anyone's credentials) and where the GitOps controllers' UIs are.
#[derive(Clone)]
struct ApiState {
    cluster: Cluster,
    links: Arc<ProviderLinks>,
}

impl FromRef<ApiState> for Cluster {
    fn from_ref(state: &ApiState) -> Cluster {
        state.cluster.clone()
    }
}

impl FromRef<ApiState> for Arc<ProviderLinks> {
    fn from_ref(state: &ApiState) -> Arc<ProviderLinks> {
        state.links.clone()
    }
}

/// The API's routes, and the dashboard's at `/test-environments`.
pub fn router(cluster: Cluster, links: ProviderLinks) -> Router {
    Router::new()
        .merge(dashboard::routes())
        .route(OPENAPI_PATH, get(openapi::serve))
        .route("/api/v1/workspaces", get(workspaces::list))
        .route(generator::PATH, post(generator::execute))
        .route(
            "/api/v1/workspaces/{workspace_id}/permissions",
            get(permissions::review),
        )
        .route(
            "/api/v1/workspaces/{workspace_id}/test-environments",
            get(environments::list).post(environments::create),
        )
        .route(
            "/api/v1/watch/workspaces/{workspace_id}/test-environments",
            get(environments::watch),
        )
        .route(
            "/api/v1/workspaces/{workspace_id}/test-environments/{id}",
            get(environments::get)
                .patch(environments::change)
                .delete(environments::destroy),
        )
        .route(
            "/api/v1/workspaces/{workspace_id}/test-environments/{id}/events",
            get(events::list),
        )
        .route(
            "/api/v1/workspaces/{workspace_id}/claims",
            get(claims::list).post(claims::acquire),
        )
        .route(
            "/api/v1/watch/workspaces/{workspace_id}/claims",
            get(claims::watch),
        )
        .route(
            "/api/v1/workspaces/{workspace_id}/claims/{id}",
            get(claims::get).delete(claims::release),
        )
        .fallback(|| async { ApiError::not_found("no such endpoint; see /api/v1/openapi.json") })
        .with_state(ApiState {
            cluster,
            links: Arc::new(links),
        })
}

/// A workspace id from the path: a namespace name (DNS-1123 label).
fn workspace_of(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(workspace) = path.map_err(|e| ApiError::bad_request(None, e.body_text()))?;
    checked_workspace(workspace)
}

/// A workspace id and an object id from the path; the object id is a DNS-1123 subdomain.
fn object_of(
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<(String, String), ApiError> {
    let Path((workspace, id)) = path.map_err(|e| ApiError::bad_request(None, e.body_text()))?;
    if id.len() > 253 || !id.split('.').all(is_dns_label) {
        return Err(ApiError::bad_request(
            Some("id".to_owned()),
            format!(
                "id {id:?} is not an object name (lowercase DNS subdomain, at most 253 characters)"
            ),
        ));
    }
    Ok((checked_workspace(workspace)?, id))
}

fn checked_workspace(workspace: String) -> Result<String, ApiError> {
    if workspace.len() > 63 || !is_dns_label(&workspace) {
        return Err(ApiError::bad_request(
            Some("workspace_id".to_owned()),
            format!(
                "workspace_id {workspace:?} is not a namespace name (lowercase DNS label, at most 63 characters)"
            ),
        ));
    }
    Ok(workspace)
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
fn is_dns_label(name: &str) -> bool {
    let alphanumeric = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let bytes = name.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) => {
            alphanumeric(first)
                && alphanumeric(last)
                && bytes.iter().all(|&c| alphanumeric(c) || c == b'-')
        }
        _ => false,
    }
}

fn checked_query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query
        .map(|Query(query)| query)
        .map_err(|e| ApiError::bad_request(Some("query".to_owned()), e.body_text()))
}

/// How long a `?wait=` request may wait.
struct WaitFor(Duration);

impl WaitFor {
    const DEFAULT_SECONDS: u16 = 60;
    const MAX_SECONDS: u16 = 300;

    fn from_seconds(seconds: Option<u16>) -> Result<WaitFor, ApiError> {
        match seconds.unwrap_or(Self::DEFAULT_SECONDS) {
            seconds @ 1..=Self::MAX_SECONDS => Ok(WaitFor(Duration::from_secs(seconds.into()))),
            _ => Err(ApiError::bad_request(
                Some("timeout_seconds".to_owned()),
                format!("timeout_seconds must be 1 to {}", Self::MAX_SECONDS),
            )),
        }
    }

    /// Watches `name` with the caller's rights until `done` or the time is up; the
    /// object as it then is.
    async fn wait<K>(
        &self,
        api: &Api<K>,
        name: &str,
        done: impl Fn(&K) -> bool + Send + 'static,
    ) -> Result<K, ApiError>
    where
        K: kube::Resource
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned
            + Send
            + Sync
            + 'static,
        K::DynamicType: Default,
    {
        let watched = await_condition(api.clone(), name, move |object: Option<&K>| {
            object.is_none_or(&done)
        });
        match tokio::time::timeout(self.0, watched).await {
            Ok(Ok(Some(object))) => Ok(object),
            Ok(Ok(None)) => Err(ApiError::not_found(format!("{name} was deleted"))),
            // Timed out, or the caller may get but not watch: the current state.
            Ok(Err(_)) | Err(_) => Ok(api.get(name).await?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_ids_are_namespace_names() {
        assert_eq!(
            checked_workspace("team-a".to_owned()),
            Ok("team-a".to_owned())
        );
        for bad in [
            "",
            "Team-A",
            "team_a",
            "-a",
            &"a".repeat(64),
            "a/b",
            "..",
            "ä",
        ] {
            let error = checked_workspace(bad.to_owned()).expect_err(bad);
            assert_eq!(error.status, 400);
            assert_eq!(error.field.as_deref(), Some("workspace_id"));
        }
    }

    #[test]
    fn object_ids_are_dns_subdomains() {
        let path = |id: &str| Ok(Path(("team-a".to_owned(), id.to_owned())));
        assert!(object_of(path("pr-123-x7k2p")).is_ok());
        assert!(object_of(path("a.b-c.d")).is_ok());
        for bad in ["", "A", "a..b", ".a", "a.", "a_b", &"a".repeat(254)] {
            let error = object_of(path(bad)).expect_err(bad);
            assert_eq!(error.field.as_deref(), Some("id"), "{bad}");
        }
    }

    #[test]
    fn waits_are_bounded() {
        assert_eq!(
            WaitFor::from_seconds(None).map(|w| w.0),
            Ok(Duration::from_secs(60))
        );
        assert_eq!(
            WaitFor::from_seconds(Some(300)).map(|w| w.0),
            Ok(Duration::from_secs(300))
        );
        for bad in [0, 301, u16::MAX] {
            let error = WaitFor::from_seconds(Some(bad))
                .map(|w| w.0)
                .expect_err("bounded");
            assert_eq!(error.field.as_deref(), Some("timeout_seconds"));
        }
    }
}
