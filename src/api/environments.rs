//! `/api/v1/workspaces/{workspace_id}/test-environments`: SPEC.md's four endpoints, plus
//! a live list (`/api/v1/watch/workspaces/{workspace_id}/test-environments`, server-sent
//! events) and a readiness wait (`?wait=ready`) so that nobody has to busy-poll.

use std::collections::BTreeMap;
use std::convert::Infallible;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use schemars::JsonSchema;
use serde::Deserialize;

use super::caller::Caller;
use super::error::ApiError;
use super::model::{
    Environment, EnvironmentChanges, EnvironmentList, NewEnvironment, merge_patch, parse_body,
};
use super::{KEEP_ALIVE, WaitFor, checked_query, object_of, workspace_of};
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
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<EnvironmentList>, ApiError> {
    let workspace = workspace_of(path)?;
    let api: Api<TestEnvironment> = Api::namespaced(client, &workspace);
    Ok(Json(list_of(&api).await?))
}

/// The list as server-sent events: an `event: snapshot` with the whole list now and
/// after every change, a keep-alive comment every 15 s.
pub async fn watch(
    Caller(client): Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let workspace = workspace_of(path)?;
    let api: Api<TestEnvironment> = Api::namespaced(client, &workspace);
    // Listing first turns a missing right into a 403 rather than a silent stream.
    let list = list_of(&api).await?;
    Ok(Sse::new(snapshots(api, list))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}

async fn list_of(api: &Api<TestEnvironment>) -> Result<EnvironmentList, ApiError> {
    let listed = api.list(&ListParams::default()).await?;
    Ok(sorted(listed.items.iter().map(Environment::from_resource)))
}

pub async fn create(
    Caller(client): Caller,
    path: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let workspace = workspace_of(path)?;
    let new: NewEnvironment = parse_body(&body)?;
    let api: Api<TestEnvironment> = Api::namespaced(client, &workspace);
    let created = api
        .create(&PostParams::default(), &new.into_resource())
        .await?;
    let environment = Environment::from_resource(&created);
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
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<GetQuery>, QueryRejection>,
) -> Result<Json<Environment>, ApiError> {
    let (workspace, id) = object_of(path)?;
    let query = checked_query(query)?;
    let timeout = WaitFor::from_seconds(query.timeout_seconds)?;
    let api: Api<TestEnvironment> = Api::namespaced(client, &workspace);
    let environment = Environment::from_resource(&api.get(&id).await?);
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
    let waited = timeout
        .wait(&api, &id, move |e: &TestEnvironment| {
            done(&Environment::from_resource(e))
        })
        .await?;
    Ok(Json(Environment::from_resource(&waited)))
}

/// How often a change is retried when the environment changed between read and write
/// (the operator writes its status often).
const CHANGE_ATTEMPTS: usize = 5;

/// Changes the fields given, on the environment as it is now: a merge patch of just what
/// differs, conditional on the `resourceVersion` read, so a concurrent change is never
/// overwritten. A patch, so the caller needs `patch` on testenvironments, as for DELETE.
pub async fn change(
    Caller(client): Caller,
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
            Ok(patched) => return Ok(Json(Environment::from_resource(&patched))),
            Err(kube::Error::Api(status)) if status.is_conflict() && attempt < CHANGE_ATTEMPTS => {
                attempt += 1;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

pub async fn destroy(
    Caller(client): Caller,
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
        Json(Environment::from_resource(&patched)),
    )
        .into_response())
}

fn sorted(environments: impl Iterator<Item = Environment>) -> EnvironmentList {
    let mut items: Vec<Environment> = environments.collect();
    items.sort_by(|a, b| a.id.cmp(&b.id));
    EnvironmentList { items }
}

/// The whole list now, then again after every change the caller's watch reports.
fn snapshots(
    api: Api<TestEnvironment>,
    first: EnvironmentList,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    let known: BTreeMap<String, Environment> = first
        .items
        .iter()
        .map(|e| (e.id.clone(), e.clone()))
        .collect();
    let initial = futures::stream::once(std::future::ready(snapshot_event(&first)));
    let changes = watcher(api, watcher::Config::default())
        .default_backoff()
        .scan((known, BTreeMap::new()), |(known, relisting), event| {
            let changed = match event {
                Ok(watcher::Event::Apply(object)) => {
                    let environment = Environment::from_resource(&object);
                    known.insert(environment.id.clone(), environment);
                    true
                }
                Ok(watcher::Event::Delete(object)) => {
                    known.remove(&Environment::from_resource(&object).id);
                    true
                }
                Ok(watcher::Event::Init) => {
                    relisting.clear();
                    false
                }
                Ok(watcher::Event::InitApply(object)) => {
                    let environment = Environment::from_resource(&object);
                    relisting.insert(environment.id.clone(), environment);
                    false
                }
                Ok(watcher::Event::InitDone) => {
                    *known = std::mem::take(relisting);
                    true
                }
                Err(error) => {
                    tracing::debug!(%error, "watch for an API client failed; retrying");
                    false
                }
            };
            let event = changed.then(|| {
                snapshot_event(&EnvironmentList {
                    items: known.values().cloned().collect(),
                })
            });
            std::future::ready(Some(event))
        })
        .filter_map(std::future::ready);
    initial.chain(changes)
}

fn snapshot_event(list: &EnvironmentList) -> Result<Event, Infallible> {
    let data = serde_json::to_string(list).unwrap_or_else(|_| "{\"items\":[]}".to_owned());
    Ok(Event::default().event("snapshot").data(data))
}
