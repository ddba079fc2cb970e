//! Kubernetes Events for phase changes, and the `ExpiringSoon` warning before an idle
//! environment expires: one new Event per occurrence, nothing kept.
//!
//! kube-runtime's `Recorder` folds events of the same reason and action on one object
//! within six minutes into a series that keeps the first event's note, and holds every
//! event it published in memory for those six minutes. A phase change is one occurrence
//! with a note of its own ("cooling → destroying: …"), folding two of them loses the
//! second one's words, and an operator that just provisioned ten thousand environments
//! would hold ten thousand events. So each transition is created as it happens, and the
//! API server's event TTL ages them out.
//!
//! Environments and claims tell their phase changes the same way ([`phase_change`]), and
//! every note is cut here to the API server's limit of 1,024 bytes ([`fit_note`]) — a
//! provider's message can be long and far from ASCII, and an event over the limit is
//! refused whole.

use std::fmt::Display;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as KubeEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime};
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::events::{Event, EventType, Reporter};
use tokio::sync::Semaphore;

use crate::lifecycle::conditions::{self, reason};

/// The longest note the API server accepts on an Event, in bytes (not characters).
pub const NOTE_MAX_BYTES: usize = 1024;

/// How many events are on their way at once. A reconciler that has one to publish when
/// this many are waits for the first of them to be answered.
const EVENTS_IN_FLIGHT: usize = 16;

/// Publishes events as one reporting controller instance, beside the reconciliations
/// rather than inside them: an event is told, not decided on, and a reconciler that
/// waited for each one to be answered would hold its slot for a round trip per
/// transition — under a burst of claims on a busy API server, two round trips per
/// binding instead of one. Each event is stamped when it is published and sent in the
/// background; at most [`EVENTS_IN_FLIGHT`] are on their way, and a reconciler publishing
/// beyond that waits its turn, so events do not pile up in the operator (sent with no
/// bound, the transitions of 10,000 environments created at once left it at 189 MiB
/// resident instead of 71). A failure is logged, not retried: the change is in the
/// status already.
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    reporter: Reporter,
    in_flight: Arc<Semaphore>,
}

impl Recorder {
    pub fn new(client: Client, reporter: Reporter) -> Recorder {
        Recorder {
            client,
            reporter,
            in_flight: Arc::new(Semaphore::new(EVENTS_IN_FLIGHT)),
        }
    }

    /// Publishes the phase change of `regarding` from `from` to `to` ([`phase_change`]).
    pub async fn publish_phase_change(
        &self,
        regarding: &ObjectReference,
        from: impl Display,
        to: impl Display,
        warning: bool,
        conditions: &[Condition],
    ) {
        let event = phase_change(from, to, warning, conditions);
        self.publish(&event, regarding).await;
    }

    /// Publishes that `regarding`, idle, expires at `expires_at` ([`expiring_soon`]). The
    /// status already records that it went out, so it is not tried again.
    pub async fn publish_expiring_soon(
        &self,
        regarding: &ObjectReference,
        expires_at: Timestamp,
        now: Timestamp,
    ) {
        self.publish(&expiring_soon(expires_at, now), regarding)
            .await;
    }

    /// Creates `event` about `regarding`, in `regarding`'s namespace, stamped now, once
    /// fewer than [`EVENTS_IN_FLIGHT`] are on their way; returns once it is sent off.
    async fn publish(&self, event: &Event, regarding: &ObjectReference) {
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let events: Api<KubeEvent> = Api::namespaced(self.client.clone(), namespace);
        let event = build(&self.reporter, event, regarding, Timestamp::now());
        let Ok(permit) = self.in_flight.clone().acquire_owned().await else {
            return;
        };
        tokio::spawn(async move {
            if let Err(error) = events.create(&PostParams::default(), &event).await {
                tracing::warn!(%error, reason = event.reason, "cannot publish event");
            }
            drop(permit);
        });
    }
}

/// The Event of a phase change, for environments and claims alike: the `Ready`
/// condition's reason, and the note `from → to: ` its message; Warning when `warning`.
pub fn phase_change(
    from: impl Display,
    to: impl Display,
    warning: bool,
    conditions: &[Condition],
) -> Event {
    let ready = conditions::find(conditions, conditions::READY);
    Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: ready.map_or("PhaseChanged", |c| &c.reason).to_owned(),
        note: Some(format!(
            "{from} → {to}: {}",
            ready.map_or("", |c| c.message.as_str())
        )),
        action: "PhaseChange".to_owned(),
        secondary: None,
    }
}

/// The Warning `ExpiringSoon`: an idle environment is torn down at `expires_at` unless a
/// run claims it or its TTL is extended; the note says when, and how long is left at
/// `now` (to the second).
pub fn expiring_soon(expires_at: Timestamp, now: Timestamp) -> Event {
    let left = SignedDuration::from_secs(expires_at.duration_since(now).as_secs().max(0));
    Event {
        type_: EventType::Warning,
        reason: reason::EXPIRING_SOON.to_owned(),
        note: Some(format!(
            "idle; expires at {expires_at} (in {left:#}) unless a run claims it or its TTL is extended, then it is torn down"
        )),
        action: "ExpiryWarning".to_owned(),
        secondary: None,
    }
}

/// `note` cut to at most [`NOTE_MAX_BYTES`] bytes on a character boundary, ending in `…`
/// when cut: a provider's message can be long, and not ASCII.
pub fn fit_note(note: &str) -> String {
    const CUT: &str = "…";
    if note.len() <= NOTE_MAX_BYTES {
        return note.to_owned();
    }
    let mut end = NOTE_MAX_BYTES - CUT.len();
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{CUT}", &note[..end])
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
        note: event.note.as_deref().map(fit_note),
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

    #[test]
    fn expiring_soon_is_a_warning_saying_when_and_how_long_is_left() {
        let expires_at: Timestamp = "2026-11-24T10:10:00.5Z".parse().expect("time");
        let now: Timestamp = "2026-11-24T10:00:00.25Z".parse().expect("time");
        let event = expiring_soon(expires_at, now);
        assert_eq!(
            (event.type_, event.reason.as_str(), event.action.as_str()),
            (EventType::Warning, "ExpiringSoon", "ExpiryWarning")
        );
        assert_eq!(
            event.note.as_deref(),
            Some(
                "idle; expires at 2026-11-24T10:10:00.5Z (in 10m) unless a run claims it or its TTL is extended, then it is torn down"
            )
        );
        let late = expiring_soon(expires_at, expires_at + SignedDuration::from_secs(3));
        assert!(
            late.note.expect("note").contains("(in 0s)"),
            "never a negative time left"
        );
    }

    #[test]
    fn a_note_is_cut_to_the_api_servers_byte_limit_on_a_character_boundary() {
        let fits = "x".repeat(NOTE_MAX_BYTES);
        let padded = |ascii: usize, tail: &str| "x".repeat(ascii) + tail;
        let cases = [
            ("short", "sync failed".to_owned()),
            ("exactly the limit", fits.clone()),
            ("one byte over", format!("{fits}x")),
            ("2-byte characters", "é".repeat(600)),
            ("3-byte characters", "同期".repeat(300)),
            ("4 bytes across the cut", padded(1019, "🦀🦀")),
            ("3 bytes ending at the cut", padded(1018, "…tail")),
        ];
        for (case, note) in cases {
            let cut = fit_note(&note);
            assert!(cut.len() <= NOTE_MAX_BYTES, "{case}: {} bytes", cut.len());
            if note.len() <= NOTE_MAX_BYTES {
                assert_eq!(cut, note, "{case}: kept whole");
            } else {
                let kept = cut.strip_suffix('…').expect("marked as cut");
                assert!(note.starts_with(kept), "{case}: a prefix of the note");
                assert!(
                    cut.len() > NOTE_MAX_BYTES - 4 - '…'.len_utf8(),
                    "{case}: no more cut than one character"
                );
            }
        }
    }

    #[test]
    fn every_published_event_fits_however_long_the_providers_message() {
        let message = "ComparisonError: ".to_owned() + &"リソースが見つかりません。".repeat(100);
        let ready = Condition {
            type_: conditions::READY.into(),
            status: "False".into(),
            reason: "AppFailed".into(),
            message,
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                Timestamp::UNIX_EPOCH,
            ),
            observed_generation: Some(1),
        };
        let event = phase_change("provisioning", "failed", true, &[ready]);
        assert_eq!(
            (event.type_, event.reason.as_str(), event.action.as_str()),
            (EventType::Warning, "AppFailed", "PhaseChange")
        );
        let reporter = Reporter {
            controller: "testmesh".into(),
            instance: None,
        };
        let nowhere = ObjectReference::default();
        let built = build(&reporter, &event, &nowhere, Timestamp::UNIX_EPOCH);
        let note = built.note.expect("note");
        assert!(note.len() <= NOTE_MAX_BYTES, "{} bytes", note.len());
        assert!(note.starts_with("provisioning → failed: ComparisonError: リソース"));
    }
}
