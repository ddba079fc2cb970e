//! `/api/v1/workspaces/{workspace_id}/claims`: SPEC.md's reuse over HTTP. Acquire
//! creates a TestEnvironmentClaim (the operator binds a warm environment of the context or
//! provisions one), get waits for it to be ready without busy polling, release deletes it;
//! a live list (`/api/v1/watch/workspaces/{workspace_id}/claims`) shows queues move.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::caller::Caller;
use super::error::ApiError;
use super::model::{Claim, NewClaim, parse_body};
use super::{WaitFor, checked_query, object_of, snapshots, workspace_of};
use crate::resources::TestEnvironmentClaim;

/// The claims of a workspace, sorted by id.
#[derive(Serialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct ClaimList {
    pub items: Vec<Claim>,
}

/// Query of one claim.
#[derive(Deserialize, JsonSchema, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct GetQuery {
    /// `ready`: answer once the claim is ready (its environment can serve the run) or
    /// can no longer become so (failed, expired, released), instead of at once.
    pub wait: Option<ClaimWait>,
    /// Longest wait, 1 to 300 seconds (default 60); then the current state is returned.
    pub timeout_seconds: Option<u16>,
}

/// What `wait` waits for.
#[derive(Deserialize, JsonSchema, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ClaimWait {
    Ready,
}

pub async fn list(
    Caller(client): Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<ClaimList>, ApiError> {
    let workspace = workspace_of(path)?;
    let api: Api<TestEnvironmentClaim> = Api::namespaced(client, &workspace);
    let mut items: Vec<Claim> = api
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .map(Claim::from_resource)
        .collect();
    items.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(Json(ClaimList { items }))
}

/// The list as server-sent events ([`snapshots`]), so a queue can be watched move.
pub async fn watch(
    Caller(client): Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let workspace = workspace_of(path)?;
    let api: Api<TestEnvironmentClaim> = Api::namespaced(client, &workspace);
    snapshots::serve(api, Claim::from_resource).await
}

pub async fn acquire(
    Caller(client): Caller,
    path: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let workspace = workspace_of(path)?;
    let new: NewClaim = parse_body(&body)?;
    let api: Api<TestEnvironmentClaim> = Api::namespaced(client, &workspace);
    let created = api
        .create(&PostParams::default(), &new.into_resource())
        .await?;
    let claim = Claim::from_resource(&created);
    let location = format!("/api/v1/workspaces/{workspace}/claims/{}", claim.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(claim),
    )
        .into_response())
}

pub async fn get(
    Caller(client): Caller,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<GetQuery>, QueryRejection>,
) -> Result<Json<Claim>, ApiError> {
    let (workspace, id) = object_of(path)?;
    let query = checked_query(query)?;
    let timeout = WaitFor::from_seconds(query.timeout_seconds)?;
    let api: Api<TestEnvironmentClaim> = Api::namespaced(client, &workspace);
    let claim = Claim::from_resource(&api.get(&id).await?);
    let done = |claim: &Claim| claim.ready || claim.is_settled();
    if query.wait.is_none() || done(&claim) {
        return Ok(Json(claim));
    }
    let waited = timeout
        .wait(&api, &id, move |c: &TestEnvironmentClaim| {
            done(&Claim::from_resource(c))
        })
        .await?;
    Ok(Json(Claim::from_resource(&waited)))
}

/// Deleting the claim hands its environment to the next run; the environment stays warm
/// until its idle TTL runs out.
pub async fn release(
    Caller(client): Caller,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let (workspace, id) = object_of(path)?;
    let api: Api<TestEnvironmentClaim> = Api::namespaced(client, &workspace);
    api.delete(&id, &DeleteParams::default()).await?;
    Ok(StatusCode::NO_CONTENT)
}
