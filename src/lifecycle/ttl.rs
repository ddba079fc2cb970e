//! Idle-lifetime arithmetic: when an environment expires and whether it has.
//!
//! An environment is live during the half-open interval `[idle_since, expires_at)`:
//! at the instant `expires_at` it is expired, and from then on never reusable. Reuse and
//! expiry therefore agree at every instant, and the expiry timer fires exactly at
//! `expires_at` instead of one tick later.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

/// How long an environment may stay idle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ttl(SignedDuration);

impl Ttl {
    pub fn from_minutes(minutes: u32) -> Ttl {
        Ttl(SignedDuration::from_mins(i64::from(minutes)))
    }
}

/// `idle_since + ttl`. A timestamp too far in the future to add to saturates at the
/// latest representable instant: the environment then simply never expires.
pub fn expires_at(idle_since: Timestamp, ttl: Ttl) -> Timestamp {
    deadline(idle_since, ttl.0)
}

/// `start + duration`, the end of a TTL, grace period, timeout or lease: at the latest
/// representable instant when that is out of range, so a deadline that cannot be
/// computed never passes (rather than passing at once).
pub fn deadline(start: Timestamp, duration: SignedDuration) -> Timestamp {
    start.saturating_add(duration).unwrap_or(Timestamp::MAX)
}

/// Whether an environment with this expiry instant has expired at `now`.
pub fn is_expired(expires_at: Timestamp, now: Timestamp) -> bool {
    now >= expires_at
}

/// How long from `now` until `at`, for a requeue; zero when `at` is not in the future.
pub fn until(at: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    #[test]
    fn expiry_is_idle_since_plus_ttl() {
        assert_eq!(
            expires_at(at(1_000), Ttl::from_minutes(60)),
            at(1_000 + 3_600)
        );
    }

    #[test]
    fn expired_exactly_at_the_instant_not_before() {
        let expiry = at(10_000);
        assert!(!is_expired(expiry, at(9_999)), "one second before");
        assert!(is_expired(expiry, at(10_000)), "exactly at expiry");
        assert!(is_expired(expiry, at(10_001)), "one second after");
        let one_nanosecond_before = expiry.checked_sub(SignedDuration::from_nanos(1)).unwrap();
        assert!(!is_expired(expiry, one_nanosecond_before));
    }

    #[test]
    fn idle_since_in_the_future_delays_expiry_by_the_skew() {
        let now = at(1_000);
        let skewed_last_use = at(1_030);
        let expiry = expires_at(skewed_last_use, Ttl::from_minutes(1));
        assert_eq!(expiry, at(1_090));
        assert!(!is_expired(expiry, now));
        assert_eq!(until(expiry, now), Duration::from_secs(90));
    }

    #[test]
    fn until_is_exact_and_never_negative() {
        assert_eq!(until(at(70), at(10)), Duration::from_secs(60));
        assert_eq!(until(at(10), at(10)), Duration::ZERO);
        assert_eq!(until(at(10), at(70)), Duration::ZERO);
    }

    #[test]
    fn extreme_timestamps_saturate_instead_of_overflowing() {
        assert_eq!(
            expires_at(Timestamp::MAX, Ttl::from_minutes(43_200)),
            Timestamp::MAX
        );
    }
}
