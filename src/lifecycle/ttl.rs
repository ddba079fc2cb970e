//! Idle-lifetime arithmetic: when an environment expires and whether it has.
//!
//! An environment is live during the half-open interval `[idle_since, expires_at)`:
//! at the instant `expires_at` it is expired, and from then on never reusable. Reuse and
//! expiry therefore agree at every instant, and the expiry timer fires exactly at
//! `expires_at` instead of one tick later.
//!
//! A warning lead before that instant, the environment is *expiring soon*: from
//! [`warning_at`] until `expires_at` (the `ExpiringSoon` event is published then, once).

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

/// When an environment expiring at `expires_at` starts expiring soon: `lead` before it,
/// or never when `lead` is zero (the warning is off) or it never expires. A lead longer
/// than the time left gives an instant already past: it is expiring soon at once.
pub fn warning_at(expires_at: Timestamp, lead: SignedDuration) -> Option<Timestamp> {
    if !lead.is_positive() || expires_at == Timestamp::MAX {
        return None;
    }
    Some(expires_at.saturating_sub(lead).unwrap_or(Timestamp::MIN))
}

/// Whether an environment expiring at `expires_at` is expiring soon at `now`: within
/// `lead` of its expiry, and not expired yet.
pub fn is_expiring_soon(expires_at: Timestamp, lead: SignedDuration, now: Timestamp) -> bool {
    warning_at(expires_at, lead).is_some_and(|at| now >= at) && !is_expired(expires_at, now)
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
    fn expiring_soon_from_the_lead_before_expiry_until_expiry() {
        let expiry = at(10_000);
        let lead = SignedDuration::from_mins(10);
        assert_eq!(warning_at(expiry, lead), Some(at(10_000 - 600)));
        let nanosecond = SignedDuration::from_nanos(1);
        let cases = [
            ("long before", at(1_000), false),
            (
                "a nanosecond before the lead",
                at(9_400) - nanosecond,
                false,
            ),
            ("exactly the lead before", at(9_400), true),
            ("within the lead", at(9_999), true),
            ("a nanosecond before expiry", expiry - nanosecond, true),
            ("exactly at expiry: expired, no longer soon", expiry, false),
            ("after expiry", at(10_001), false),
        ];
        for (case, now, soon) in cases {
            assert_eq!(is_expiring_soon(expiry, lead, now), soon, "{case}");
        }
    }

    #[test]
    fn a_zero_lead_or_an_expiry_that_never_comes_warns_never() {
        assert_eq!(warning_at(at(10_000), SignedDuration::ZERO), None);
        assert_eq!(warning_at(at(10_000), SignedDuration::from_secs(-5)), None);
        assert_eq!(
            warning_at(Timestamp::MAX, SignedDuration::from_mins(10)),
            None
        );
        assert!(!is_expiring_soon(
            at(10_000),
            SignedDuration::ZERO,
            at(9_999)
        ));
    }

    #[test]
    fn a_lead_longer_than_the_ttl_is_due_at_once() {
        let idle_since = at(1_000);
        let expiry = expires_at(idle_since, Ttl::from_minutes(5));
        let lead = SignedDuration::from_mins(10);
        assert!(warning_at(expiry, lead).is_some_and(|w| w < idle_since));
        assert!(is_expiring_soon(expiry, lead, idle_since));
        assert_eq!(
            warning_at(Timestamp::MIN + SignedDuration::from_secs(1), lead),
            Some(Timestamp::MIN),
            "saturates at the earliest instant"
        );
    }

    #[test]
    fn extreme_timestamps_saturate_instead_of_overflowing() {
        assert_eq!(
            expires_at(Timestamp::MAX, Ttl::from_minutes(43_200)),
            Timestamp::MAX
        );
    }
}
