//! Kubernetes Events for phase changes: one new Event per transition, nothing kept.
//!
//! kube-runtime's `Recorder` folds events of the same reason and action on one object
//! within six minutes into a series that keeps the first event's note, and holds every
//! event it published in memory for those six minutes. A phase change is one occurrence
//! with a note of its own ("cooling → destroying: …"), folding two of them loses the
//! second one's words, and an operator that just provisioned ten thousand environments
//! would hold ten thousand events. So each transition is created as it happens, and the
//! API server's event TTL ages them out.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as KubeEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::events::{Event, EventType, Reporter};

/// Publishes events as one reporting controller instance.
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    reporter: Reporter,
}

impl Recorder {
    pub fn new(client: Client, reporter: Reporter) -> Recorder {
        Recorder { client, reporter }
    }

    /// Creates `event` about `regarding`, in `regarding`'s namespace.
    pub async fn publish(
        &self,
        event: &Event,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let events: Api<KubeEvent> = Api::namespaced(self.client.clone(), namespace);
        let event = build(&self.reporter, event, regarding, Timestamp::now());
        events
            .create(&PostParams::default(), &event)
            .await
            .map(|_| ())
    }
}

/// The Event `reporter` publishes for `event` about `regarding` at `now`.
fn build(
    reporter: &Reporter,
    event: &Event,
    regarding: &ObjectReference,
    now: Timestamp,
) -> KubeEvent {
    let object = regarding.name.as_deref().unwrap_or(&reporter.controller);
    KubeEvent {
        metadata: ObjectMeta {
            // Unique per object and instant, as `kubectl` and client-go name them.
            name: Some(format!("{object}.{:x}", now.as_nanosecond())),
            namespace: regarding.namespace.clone(),
            ..ObjectMeta::default()
        },
        event_time: Some(MicroTime(now)),
        type_: Some(
            match event.type_ {
                EventType::Normal => "Normal",
                EventType::Warning => "Warning",
            }
            .to_owned(),
        ),
        reason: Some(event.reason.clone()),
        action: Some(event.action.clone()),
        note: event.note.clone(),
        regarding: Some(regarding.clone()),
        related: event.secondary.clone(),
        reporting_controller: Some(reporter.controller.clone()),
        reporting_instance: Some(
            reporter
                .instance
                .clone()
                .unwrap_or_else(|| reporter.controller.clone()),
        ),
        ..KubeEvent::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_names_its_object_reporter_and_instant() {
        let regarding = ObjectReference {
            api_version: Some("testmesh.io/v1alpha1".into()),
            kind: Some("TestEnvironment".into()),
            name: Some("pr-1".into()),
            namespace: Some("team-a".into()),
            uid: Some("uid-1".into()),
            ..ObjectReference::default()
        };
        let event = Event {
            type_: EventType::Warning,
            reason: "AppFailed".into(),
            note: Some("provisioning → failed: sync failed".into()),
            action: "PhaseChange".into(),
            secondary: None,
        };
        let now: Timestamp = "2026-11-24T10:00:00Z".parse().expect("time");
        let reporter = Reporter {
            controller: "testmesh".into(),
            instance: Some("testmesh-0".into()),
        };
        let built = build(&reporter, &event, &regarding, now);
        assert_eq!(
            built.metadata.name.as_deref(),
            Some(format!("pr-1.{:x}", now.as_nanosecond()).as_str())
        );
        assert_eq!(built.metadata.namespace.as_deref(), Some("team-a"));
        assert_eq!(built.type_.as_deref(), Some("Warning"));
        assert_eq!(built.reason.as_deref(), Some("AppFailed"));
        assert_eq!(built.action.as_deref(), Some("PhaseChange"));
        assert_eq!(
            built.note.as_deref(),
            Some("provisioning → failed: sync failed")
        );
        assert_eq!(built.regarding, Some(regarding));
        assert_eq!(built.reporting_controller.as_deref(), Some("testmesh"));
        assert_eq!(built.reporting_instance.as_deref(), Some("testmesh-0"));
        assert_eq!(built.event_time, Some(MicroTime(now)));
        assert!(
            built.series.is_none(),
            "every transition is an event of its own"
        );
    }
}
