//! `/api/v1/workspaces/{workspace_id}/test-environments`: SPEC.md's four endpoints, plus
//! a live list (`/api/v1/watch/workspaces/{workspace_id}/test-environments`, server-sent
//! events) and a readiness wait (`?wait=ready`) so that nobody has to busy-poll.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use schemars::JsonSchema;
use serde::Deserialize;

use super::caller::Caller;
use super::error::ApiError;
use super::links::ProviderLinks;
use super::model::{
    Environment, EnvironmentChanges, EnvironmentList, NewEnvironment, merge_patch, parse_body,
};
use super::{WaitFor, checked_query, object_of, snapshots, workspace_of};
use crate::resources::TestEnvironment;

/// Query of one environment.
#[derive(Deserialize, JsonSchema, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct GetQuery {
    /// Answer once the environment is ready (warm or running), failed, destroying or
    /// destroyed — or `destroyed` only — instead of at once.
    pub wait: Option<EnvironmentWait>,
    /// Longest wait, 1 to 300 seconds (default 60); then the current state is returned.
    pub timeout_seconds: Option<u16>,
}

/// What `wait` waits for.
#[derive(Deserialize, JsonSchema, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EnvironmentWait {
    Ready,
    Destroyed,
}

pub async fn list(
    Caller(client): Caller,
    State(links): State<Arc<ProviderLinks>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<EnvironmentList>, ApiError> {
    let workspace = workspace_of(path)?;
    let api: Api<TestEnvironment> = Api::namespaced(client, &workspace);
    let listed = api.list(&ListParams::default()).await?;
    let mut items: Vec<Environment> = listed
        .items
        .iter()
        .map(|e| Environment::from_resource(e, &links))
        .collect();
    items.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(Json(EnvironmentList { items }))
}

/// The list as server-sent events ([`snapshots`]).
pub async fn watch(
    Caller(client): Caller,
    State(links): State<Arc<ProviderLinks>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let workspace = workspace_of(path)?;
    let api: Api<TestEnvironment> = Api::namespaced(client, &workspace);
    snapshots::serve(api, move |e| Environment::from_resource(e, &links)).await
}

pub async fn create(
    Caller(client): Caller,
    State(links): State<Arc<ProviderLinks>>,
    path: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let workspace = workspace_of(path)?;
    let new: NewEnvironment = parse_body(&body)?;
    let api: Api<TestEnvironment> = Api::namespaced(client, &workspace);
    let created = api
        .create(&PostParams::default(), &new.into_resource())
        .await?;
    let environment = Environment::from_resource(&created, &links);
    let location = format!(
        "/api/v1/workspaces/{workspace}/test-environments/{}",
        environment.id
    );
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(environment),
    )
        .into_response())
}

pub async fn get(
    Caller(client): Caller,
    State(links): State<Arc<ProviderLinks>>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<GetQuery>, QueryRejection>,
) -> Result<Json<Environment>, ApiError> {
    let (workspace, id) = object_of(path)?;
    let query = checked_query(query)?;
    let timeout = WaitFor::from_seconds(query.timeout_seconds)?;
    let api: Api<TestEnvironment> = Api::namespaced(client, &workspace);
    let environment = Environment::from_resource(&api.get(&id).await?, &links);
    let Some(wait) = query.wait else {
        return Ok(Json(environment));
    };
    let done = move |environment: &Environment| match wait {
        EnvironmentWait::Ready => environment.is_ready() || environment.is_settled(),
        EnvironmentWait::Destroyed => environment.state == crate::lifecycle::Phase::Destroyed,
    };
    if done(&environment) {
        return Ok(Json(environment));
    }
    let shown = links.clone();
    let waited = timeout
        .wait(&api, &id, move |e: &TestEnvironment| {
            done(&Environment::from_resource(e, &shown))
        })
        .await?;
    Ok(Json(Environment::from_resource(&waited, &links)))
}

/// How often a change is retried when the environment changed between read and write
/// (the operator writes its status often).
const CHANGE_ATTEMPTS: usize = 5;

/// Changes the fields given, on the environment as it is now: a merge patch of just what
/// differs, conditional on the `resourceVersion` read, so a concurrent change is never
/// overwritten. A patch, so the caller needs `patch` on testenvironments, as for DELETE.
pub async fn change(
    Caller(client): Caller,
    State(links): State<Arc<ProviderLinks>>,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Bytes,
) -> Result<Json<Environment>, ApiError> {
    let (workspace, id) = object_of(path)?;
    let changes: EnvironmentChanges = parse_body(&body)?;
    let api: Api<TestEnvironment> = Api::namespaced(client, &workspace);
    let mut attempt = 1;
    loop {
        let current = api.get(&id).await?;
        if current.spec.destroy || current.metadata.deletion_timestamp.is_some() {
            return Err(ApiError::conflict(format!(
                "environment {id} is being destroyed; it can no longer be changed"
            )));
        }
        let spec = changes.applied_to(&current.spec);
        let old = serde_json::to_value(&current.spec).map_err(ApiError::internal)?;
        let new = serde_json::to_value(&spec).map_err(ApiError::internal)?;
        let request = serde_json::json!({
            "metadata": {"resourceVersion": current.metadata.resource_version},
            "spec": merge_patch(&old, &new),
        });
        match api
            .patch(&id, &PatchParams::default(), &Patch::Merge(&request))
            .await
        {
            Ok(patched) => return Ok(Json(Environment::from_resource(&patched, &links))),
            Err(kube::Error::Api(status)) if status.is_conflict() && attempt < CHANGE_ATTEMPTS => {
                attempt += 1;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

pub async fn destroy(
    Caller(client): Caller,
    State(links): State<Arc<ProviderLinks>>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let (workspace, id) = object_of(path)?;
    let api: Api<TestEnvironment> = Api::namespaced(client, &workspace);
    let request = serde_json::json!({"spec": {"destroy": true}});
    let patched = api
        .patch(&id, &PatchParams::default(), &Patch::Merge(&request))
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Environment::from_resource(&patched, &links)),
    )
        .into_response())
}
