//! When a replica may take the Lease, and until when a leader may keep acting: pure
//! functions of the Lease as last read, the replica's identity and its own monotonic
//! clock.
//!
//! Expiry is judged by when *this* replica saw the record last change, never by comparing
//! the Lease's `renewTime` with the local wall clock, so clock skew between nodes cannot
//! make two replicas leaders at once. A leader steps down once `renew_deadline` has passed
//! since its last successful renewal began; the deadline is shorter than the lease
//! duration, so the old leader has stopped before any other replica can consider the
//! lease expired.

use std::time::{Duration, Instant};

/// The election's clock settings, all derived from the lease duration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How long a Lease stays valid after it was last renewed.
    pub duration: Duration,
    /// How long a leader keeps acting without a successful renewal.
    pub renew_deadline: Duration,
    /// How often the leader renews and the others look.
    pub retry_period: Duration,
}

impl Timing {
    /// Kubernetes' own controllers' ratios (15 s / 10 s / 2 s), scaled to `duration`.
    pub fn for_duration(duration: Duration) -> Timing {
        Timing {
            duration,
            renew_deadline: duration * 2 / 3,
            retry_period: duration * 2 / 15,
        }
    }
}

/// The Lease's holder, as the API server last returned it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// `spec.holderIdentity`; empty or absent once released.
    pub holder: Option<&'a str>,
    /// `spec.leaseDurationSeconds`, as the holder wrote it.
    pub duration: Option<Duration>,
}

/// Whether `me` may write itself into the Lease: it is free (released or never held),
/// already ours, or unchanged for a whole lease duration since this replica first saw
/// that version of it (the holder stopped renewing).
pub fn may_take(
    record: Record<'_>,
    me: &str,
    unchanged_since: Instant,
    now: Instant,
    timing: &Timing,
) -> bool {
    match record.holder.filter(|holder| !holder.is_empty()) {
        None => true,
        Some(holder) if holder == me => true,
        Some(_) => {
            let duration = record.duration.unwrap_or(timing.duration);
            now.saturating_duration_since(unchanged_since) >= duration
        }
    }
}

/// Whether a leader whose last successful renewal began at `renewed_at` may still act.
pub fn still_leading(renewed_at: Instant, now: Instant, timing: &Timing) -> bool {
    now.saturating_duration_since(renewed_at) < timing.renew_deadline
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "testmesh-a";
    const OTHER: &str = "testmesh-b";

    fn timing() -> Timing {
        Timing::for_duration(Duration::from_secs(15))
    }

    fn held_by(holder: &str) -> Record<'_> {
        Record {
            holder: Some(holder),
            duration: Some(Duration::from_secs(15)),
        }
    }

    #[test]
    fn timing_keeps_kubernetes_ratios() {
        assert_eq!(
            timing(),
            Timing {
                duration: Duration::from_secs(15),
                renew_deadline: Duration::from_secs(10),
                retry_period: Duration::from_secs(2),
            }
        );
    }

    #[test]
    fn a_free_lease_may_be_taken_at_once() {
        let now = Instant::now();
        for holder in [None, Some("")] {
            let record = Record {
                holder,
                duration: Some(Duration::from_secs(1)),
            };
            assert!(may_take(record, ME, now, now, &timing()), "{holder:?}");
        }
    }

    #[test]
    fn our_own_lease_is_renewed() {
        let now = Instant::now();
        assert!(may_take(held_by(ME), ME, now, now, &timing()));
    }

    #[test]
    fn another_holder_keeps_the_lease_until_a_whole_duration_passes_unchanged() {
        let seen = Instant::now();
        let just_before = seen + Duration::from_secs(15) - Duration::from_nanos(1);
        assert!(!may_take(held_by(OTHER), ME, seen, seen, &timing()));
        assert!(!may_take(held_by(OTHER), ME, seen, just_before, &timing()));
        assert!(may_take(
            held_by(OTHER),
            ME,
            seen,
            seen + Duration::from_secs(15),
            &timing()
        ));
    }

    #[test]
    fn the_holders_own_duration_counts_and_ours_is_the_fallback() {
        let seen = Instant::now();
        let short = Record {
            holder: Some(OTHER),
            duration: Some(Duration::from_secs(3)),
        };
        assert!(may_take(
            short,
            ME,
            seen,
            seen + Duration::from_secs(3),
            &timing()
        ));
        let unknown = Record {
            holder: Some(OTHER),
            duration: None,
        };
        assert!(!may_take(
            unknown,
            ME,
            seen,
            seen + Duration::from_secs(14),
            &timing()
        ));
        assert!(may_take(
            unknown,
            ME,
            seen,
            seen + Duration::from_secs(15),
            &timing()
        ));
    }

    #[test]
    fn a_clock_that_seems_to_run_backwards_never_expires_a_lease() {
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        assert!(!may_take(held_by(OTHER), ME, later, now, &timing()));
    }

    #[test]
    fn a_leader_stops_at_the_renew_deadline_before_anyone_may_take_over() {
        let renewed = Instant::now();
        let timing = timing();
        assert!(still_leading(renewed, renewed, &timing));
        assert!(still_leading(
            renewed,
            renewed + timing.renew_deadline - Duration::from_nanos(1),
            &timing
        ));
        assert!(!still_leading(
            renewed,
            renewed + timing.renew_deadline,
            &timing
        ));
        // A follower saw the renewal no earlier than it began, so it cannot take the
        // lease before the old leader has stopped.
        assert!(timing.renew_deadline < timing.duration);
        assert!(!may_take(
            held_by(OTHER),
            ME,
            renewed,
            renewed + timing.renew_deadline,
            &timing
        ));
    }
}
