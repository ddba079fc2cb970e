//! Live lists over server-sent events, for the dashboard and any tool that would
//! otherwise poll: `event: snapshot` with the whole list (`{"items": [...]}`, sorted by
//! id) now and after every change the caller's own watch reports, and a keep-alive
//! comment every 15 s. One stream serves environments and claims alike.
//!
//! Whole lists rather than deltas: a workspace holds tens of objects, and a client that
//! missed an event can never be left with a wrong list.

use std::collections::BTreeMap;
use std::convert::Infallible;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use kube::api::{Api, ListParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde::Serialize;

use super::KEEP_ALIVE;
use super::error::ApiError;

/// The objects of `api` as a live list of `view`s. The list is read first, so a caller
/// without the right to list gets a 403 rather than a silent stream.
pub async fn serve<K, T>(
    api: Api<K>,
    view: impl Fn(&K) -> T + Send + 'static,
) -> Result<Response, ApiError>
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default,
    T: Serialize + Clone + Send + 'static,
{
    let listed = api.list(&ListParams::default()).await?;
    let first = listed
        .items
        .iter()
        .map(|o| (o.name_any(), view(o)))
        .collect();
    Ok(Sse::new(snapshots(api, first, view))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}

/// The whole list now, then again after every change the caller's watch reports.
fn snapshots<K, T>(
    api: Api<K>,
    first: BTreeMap<String, T>,
    view: impl Fn(&K) -> T + Send + 'static,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default,
    T: Serialize + Clone + Send + 'static,
{
    let initial = futures::stream::once(std::future::ready(snapshot_event(&first)));
    let changes = watcher(api, watcher::Config::default())
        .default_backoff()
        .scan(
            (first, BTreeMap::new()),
            move |(known, relisting), event| {
                let changed = match event {
                    Ok(watcher::Event::Apply(object)) => {
                        known.insert(object.name_any(), view(&object));
                        true
                    }
                    Ok(watcher::Event::Delete(object)) => {
                        known.remove(&object.name_any());
                        true
                    }
                    Ok(watcher::Event::Init) => {
                        relisting.clear();
                        false
                    }
                    Ok(watcher::Event::InitApply(object)) => {
                        relisting.insert(object.name_any(), view(&object));
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
                std::future::ready(Some(changed.then(|| snapshot_event(known))))
            },
        )
        .filter_map(std::future::ready);
    initial.chain(changes)
}

/// A snapshot's data: the list in the shape of the list endpoints' answers.
#[derive(Serialize)]
struct Items<'a, T> {
    items: Vec<&'a T>,
}

fn snapshot_event<T: Serialize>(known: &BTreeMap<String, T>) -> Result<Event, Infallible> {
    let items = Items {
        items: known.values().collect(),
    };
    let data = serde_json::to_string(&items).unwrap_or_else(|_| "{\"items\":[]}".to_owned());
    Ok(Event::default().event("snapshot").data(data))
}
