//! `/api/v1/workspaces/{workspace_id}/test-environments/{id}/events`: the Kubernetes
//! Events about one environment — each phase change with its reason and message, as the
//! operator published it — so that "why did this take four minutes" is answered without
//! `kubectl describe`.
//!
//! Read with the caller's token like everything else: a caller who may not list Events
//! in the workspace gets the API server's 403 (Kubernetes' `view`, `edit` and `admin`
//! roles include Events). Events age out (an hour by default), the status timestamps
//! stay.

use axum::Json;
use axum::extract::Path;
use axum::extract::rejection::PathRejection;
use k8s_openapi::api::events::v1::Event as KubeEvent;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use schemars::JsonSchema;
use serde::Serialize;

use super::caller::Caller;
use super::error::ApiError;
use super::object_of;
use crate::resources::TestEnvironment;

/// Something that happened to an environment, from a Kubernetes Event.
#[derive(Serialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct EnvironmentEvent {
    /// Normal or Warning.
    #[serde(rename = "type")]
    pub type_: String,
    /// Why, in CamelCase, e.g. `Available` or `AppDegraded`.
    pub reason: String,
    /// What happened, e.g. `provisioning → warm: …`.
    pub note: String,
    /// What was done, e.g. `PhaseChange`.
    pub action: Option<String>,
    /// When it was first observed.
    pub time: Option<String>,
    /// How often it was observed (1 unless the reporter folded repeats into a series).
    pub count: u32,
    /// Who reported it, e.g. `testmesh.io/operator`.
    pub reporting_controller: Option<String>,
}

/// An environment's events, oldest first.
#[derive(Serialize, JsonSchema, Debug, Clone, PartialEq)]
pub struct EnvironmentEventList {
    pub items: Vec<EnvironmentEvent>,
}

pub async fn list(
    Caller(client): Caller,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<EnvironmentEventList>, ApiError> {
    let (workspace, id) = object_of(path)?;
    // By uid, so an earlier environment of the same name lends it no events; reading it
    // first also answers 404 for an environment that does not exist.
    let environment = Api::<TestEnvironment>::namespaced(client.clone(), &workspace)
        .get(&id)
        .await?;
    let Some(uid) = environment.uid() else {
        return Ok(Json(EnvironmentEventList { items: Vec::new() }));
    };
    let events: Api<KubeEvent> = Api::namespaced(client, &workspace);
    let listed = events
        .list(&ListParams::default().fields(&format!("regarding.uid={uid}")))
        .await?;
    let mut events = listed.items;
    events.sort_by_key(first_observed);
    Ok(Json(EnvironmentEventList {
        items: events.iter().map(EnvironmentEvent::from).collect(),
    }))
}

/// When `event` was first observed: events.k8s.io/v1 has `eventTime`; one written
/// through core/v1 may have only the deprecated timestamps.
fn first_observed(event: &KubeEvent) -> Option<jiff::Timestamp> {
    event
        .event_time
        .as_ref()
        .map(|t| t.0)
        .or_else(|| event.deprecated_first_timestamp.as_ref().map(|t| t.0))
        .or_else(|| event.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

impl From<&KubeEvent> for EnvironmentEvent {
    fn from(event: &KubeEvent) -> EnvironmentEvent {
        let count = event
            .series
            .as_ref()
            .map(|series| series.count)
            .or(event.deprecated_count)
            .unwrap_or(1);
        EnvironmentEvent {
            type_: event.type_.clone().unwrap_or_else(|| "Normal".to_owned()),
            reason: event.reason.clone().unwrap_or_default(),
            note: event.note.clone().unwrap_or_default(),
            action: event.action.clone(),
            time: first_observed(event).map(|t| t.to_string()),
            count: u32::try_from(count).unwrap_or(1).max(1),
            reporting_controller: event.reporting_controller.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::events::v1::EventSeries;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};

    fn at(text: &str) -> jiff::Timestamp {
        text.parse().expect("timestamp")
    }

    #[test]
    fn an_event_is_shown_with_its_time_and_words() {
        let event = KubeEvent {
            type_: Some("Warning".to_owned()),
            reason: Some("AppDegraded".to_owned()),
            note: Some("warm → degraded: the app is Degraded".to_owned()),
            action: Some("PhaseChange".to_owned()),
            event_time: Some(MicroTime(at("2026-11-24T08:00:01.5Z"))),
            reporting_controller: Some("testmesh.io/operator".to_owned()),
            ..KubeEvent::default()
        };
        let shown = EnvironmentEvent::from(&event);
        assert_eq!(shown.type_, "Warning");
        assert_eq!(shown.reason, "AppDegraded");
        assert_eq!(shown.note, "warm → degraded: the app is Degraded");
        assert_eq!(shown.time.as_deref(), Some("2026-11-24T08:00:01.5Z"));
        assert_eq!(shown.count, 1);
    }

    #[test]
    fn an_old_style_event_falls_back_to_its_deprecated_fields() {
        let event = KubeEvent {
            deprecated_first_timestamp: Some(Time(at("2026-11-24T08:00:00Z"))),
            deprecated_count: Some(3),
            ..KubeEvent::default()
        };
        let shown = EnvironmentEvent::from(&event);
        assert_eq!(shown.type_, "Normal");
        assert_eq!(shown.time.as_deref(), Some("2026-11-24T08:00:00Z"));
        assert_eq!(shown.count, 3);
        let series = KubeEvent {
            series: Some(EventSeries {
                count: 7,
                last_observed_time: MicroTime(at("2026-11-24T08:05:00Z")),
            }),
            ..event
        };
        assert_eq!(EnvironmentEvent::from(&series).count, 7);
    }
}
