//! When each environment and claim is next due to be reconciled by the clock — its expiry,
//! its sleep, a provisioning timeout, the end of a destroyed record's retention — and the
//! task that hands each one to its controller when that instant comes, like any other
//! trigger.
//!
//! Kept here rather than in kube's controller scheduler (`Action::requeue`) for two
//! reasons. Size: every warm environment waits for its next instant, and the scheduler
//! holds each wait as a whole object reference in a delay queue and in a hash map — with
//! 10,000 environments about 7 MiB, a tenth of the operator. Here a wait is the object's
//! `namespace/name`, shared by both tables, and an instant. Meaning: an object has one due
//! instant, the one its latest reconciliation decided, which saw everything the earlier
//! ones saw; the scheduler keeps the earliest it was ever given, so a deadline that moved
//! later still woke the object at the stale one. Short retries (a conflict, a deferred
//! effect, a failure's backoff) stay with the scheduler: they are few and brief.

use std::collections::{BTreeSet, HashMap};
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, PoisonError};

use futures::channel::mpsc::UnboundedSender;
use jiff::Timestamp;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::context::object_key;
use crate::lifecycle::ttl;

/// The due instants of one kind's objects, shared by its reconciler (which sets them) and
/// the task that fires them ([`Wakeups::fire`]).
pub struct Wakeups<K> {
    shared: Arc<Shared>,
    kind: PhantomData<fn() -> K>,
}

struct Shared {
    schedule: Mutex<Schedule>,
    /// Told when the earliest instant moves earlier, so the firing task sleeps less.
    earlier: Notify,
}

impl<K> Clone for Wakeups<K> {
    fn clone(&self) -> Self {
        Wakeups {
            shared: self.shared.clone(),
            kind: PhantomData,
        }
    }
}

impl<K> Default for Wakeups<K> {
    fn default() -> Self {
        Wakeups {
            shared: Arc::new(Shared {
                schedule: Mutex::default(),
                earlier: Notify::new(),
            }),
            kind: PhantomData,
        }
    }
}

impl<K: kube::Resource<DynamicType = ()>> Wakeups<K> {
    /// `object` is next due at `at`, or — `None` — only when something changes; either
    /// replaces what was set for it before.
    pub fn set(&self, object: &K, at: Option<Timestamp>) {
        let key = object_key(object);
        let earlier = self.schedule().set(&key, at);
        if earlier {
            self.shared.earlier.notify_one();
        }
    }

    /// Sends each object to `due` when its instant comes, until `stop`.
    pub async fn fire(self, due: UnboundedSender<ObjectRef<K>>, stop: CancellationToken) {
        loop {
            let now = Timestamp::now();
            let next = {
                let mut schedule = self.schedule();
                for key in schedule.take_due(now) {
                    let _ = due.unbounded_send(object_ref(&key));
                }
                schedule.next()
            };
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep(ttl::until(at, now)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.shared.earlier.notified() => {}
                () = sleep => {}
            }
        }
    }

    fn schedule(&self) -> std::sync::MutexGuard<'_, Schedule> {
        // Every update leaves the schedule whole, so a panic elsewhere spoils nothing.
        self.shared
            .schedule
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The reference to the object of `key` (as [`object_key`] made it).
fn object_ref<K: kube::Resource<DynamicType = ()>>(key: &str) -> ObjectRef<K> {
    let (namespace, name) = key.split_once('/').unwrap_or(("", key));
    let object = ObjectRef::new(name);
    if namespace.is_empty() {
        object
    } else {
        object.within(namespace)
    }
}

/// Each object's due instant, and the same in instant order.
#[derive(Debug, Default)]
struct Schedule {
    at: HashMap<Arc<str>, Timestamp>,
    in_order: BTreeSet<(Timestamp, Arc<str>)>,
}

impl Schedule {
    /// Sets (or with `None` clears) `key`'s instant; true if the earliest instant is now
    /// earlier than it was.
    fn set(&mut self, key: &str, at: Option<Timestamp>) -> bool {
        let earliest = self.next();
        let shared = match self.at.remove_entry(key) {
            Some((shared, before)) => {
                self.in_order.remove(&(before, shared.clone()));
                shared
            }
            None => Arc::from(key),
        };
        let Some(at) = at else {
            return false;
        };
        self.in_order.insert((at, shared.clone()));
        self.at.insert(shared, at);
        earliest.is_none_or(|earliest| at < earliest)
    }

    /// The earliest instant set.
    fn next(&self) -> Option<Timestamp> {
        self.in_order.first().map(|(at, _)| *at)
    }

    /// Takes out the keys due at `now` (at or before it), earliest first.
    fn take_due(&mut self, now: Timestamp) -> Vec<Arc<str>> {
        let mut due = Vec::new();
        while let Some((at, _)) = self.in_order.first()
            && *at <= now
        {
            if let Some((_, key)) = self.in_order.pop_first() {
                self.at.remove(&key);
                due.push(key);
            }
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::StreamExt;
    use futures::channel::mpsc;
    use jiff::SignedDuration;

    use super::*;
    use crate::resources::TestEnvironment;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    fn keys(due: Vec<Arc<str>>) -> Vec<String> {
        due.iter().map(|key| key.to_string()).collect()
    }

    #[test]
    fn an_object_is_due_at_the_instant_set_last_whether_earlier_or_later() {
        let mut schedule = Schedule::default();
        assert!(
            schedule.set("ws/a", Some(at(100))),
            "the first instant is the earliest"
        );
        assert!(!schedule.set("ws/a", Some(at(200))), "moved later");
        assert_eq!(schedule.next(), Some(at(200)));
        assert!(
            keys(schedule.take_due(at(150))).is_empty(),
            "not at the stale instant"
        );
        assert!(schedule.set("ws/a", Some(at(50))), "moved earlier");
        assert_eq!(
            keys(schedule.take_due(at(50))),
            ["ws/a"],
            "due at its instant"
        );
        assert_eq!(schedule.next(), None, "and taken out");
        assert!(schedule.at.is_empty());
    }

    #[test]
    fn a_cleared_object_is_never_due() {
        let mut schedule = Schedule::default();
        schedule.set("ws/a", Some(at(100)));
        schedule.set("ws/b", Some(at(300)));
        assert!(!schedule.set("ws/a", None));
        assert!(!schedule.set("ws/never-set", None));
        assert_eq!(keys(schedule.take_due(at(1_000))), ["ws/b"]);
        assert!(schedule.at.is_empty() && schedule.in_order.is_empty());
    }

    #[test]
    fn due_objects_come_out_earliest_first_and_later_ones_stay() {
        let mut schedule = Schedule::default();
        schedule.set("ws/c", Some(at(300)));
        schedule.set("ws/a", Some(at(100)));
        schedule.set("other/a", Some(at(100)));
        schedule.set("ws/b", Some(at(200)));
        assert!(
            !schedule.set("ws/d", Some(at(100))),
            "not earlier than the earliest"
        );
        assert_eq!(
            keys(schedule.take_due(at(200))),
            ["other/a", "ws/a", "ws/d", "ws/b"]
        );
        assert_eq!(schedule.next(), Some(at(300)));
        assert_eq!(schedule.at.len(), 1);
    }

    fn environment(name: &str) -> TestEnvironment {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "testmesh.io/v1alpha1", "kind": "TestEnvironment",
            "metadata": {"name": name, "namespace": "team-a"},
            "spec": {"context": name, "provider": "argocd", "providerAppName": name,
                     "namespace": name, "ttlMinutes": 60}
        }))
        .unwrap()
    }

    #[test]
    fn keys_name_the_object_they_were_made_from() {
        let pr = environment("pr-1");
        let key = object_key(&pr);
        assert_eq!(key, "team-a/pr-1");
        assert_eq!(
            object_ref::<TestEnvironment>(&key),
            ObjectRef::from_obj(&pr)
        );
    }

    #[tokio::test]
    async fn the_firing_task_sends_each_object_when_it_is_due_and_stops_when_told() {
        let wakeups = Wakeups::<TestEnvironment>::default();
        let (due, mut fired) = mpsc::unbounded();
        let stop = CancellationToken::new();
        let task = tokio::spawn(wakeups.clone().fire(due, stop.clone()));
        let soon = |ms: i64| Timestamp::now() + SignedDuration::from_millis(ms);
        // Set while the task sleeps with nothing due: it wakes for the new instant.
        wakeups.set(&environment("later"), Some(soon(60_000)));
        wakeups.set(&environment("moved"), Some(soon(50)));
        wakeups.set(&environment("moved"), Some(soon(60_000)));
        wakeups.set(&environment("cleared"), Some(soon(50)));
        wakeups.set(&environment("cleared"), None);
        wakeups.set(&environment("due"), Some(soon(150)));
        let first = tokio::time::timeout(Duration::from_secs(5), fired.next())
            .await
            .expect("fired in time");
        assert_eq!(first, Some(ObjectRef::new("due").within("team-a")));
        stop.cancel();
        task.await.unwrap();
        assert_eq!(
            fired.next().await,
            None,
            "nothing else was due, and the task dropped its sender on stopping"
        );
    }
}
