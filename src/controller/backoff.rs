//! Retries of failed reconciliations, per object: an object whose reconciliation keeps
//! failing (an API server that refuses it, a webhook that times out) is looked at again
//! after a delay that doubles with each failure, so it does not take a steady share of the
//! reconcilers from the objects that can progress — and one success resets it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// The delay after the first failure.
const FIRST: Duration = Duration::from_millis(500);
/// The longest delay between two attempts.
const LONGEST: Duration = Duration::from_secs(300);

/// Consecutive failures per object (`namespace/name`).
#[derive(Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// Records one more failure of `object` and says when to try it again.
    pub fn failed(&self, object: String) -> Duration {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = failures.entry(object).or_insert(0);
        *count = count.saturating_add(1);
        delay(*count)
    }

    /// Forgets the failures of `object`: it reconciled.
    pub fn succeeded(&self, object: &str) {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(object);
    }
}

/// The delay after `failures` consecutive failures: 0.5 s, 1 s, 2 s, … up to 5 minutes.
pub fn delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(20);
    FIRST.saturating_mul(1 << doublings).min(LONGEST)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_doubles_from_half_a_second_up_to_five_minutes() {
        let delays: Vec<u64> = (1..=12).map(|n| delay(n).as_millis() as u64).collect();
        assert_eq!(
            delays,
            [
                500, 1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 128_000, 256_000, 300_000,
                300_000
            ]
        );
        assert_eq!(delay(u32::MAX), LONGEST);
        assert_eq!(delay(0), FIRST);
    }

    #[test]
    fn each_object_backs_off_on_its_own_and_a_success_resets_it() {
        let backoff = Backoff::default();
        assert_eq!(backoff.failed("a/x".into()), Duration::from_millis(500));
        assert_eq!(backoff.failed("a/x".into()), Duration::from_secs(1));
        assert_eq!(
            backoff.failed("a/y".into()),
            Duration::from_millis(500),
            "another object starts at the first delay"
        );
        backoff.succeeded("a/x");
        assert_eq!(backoff.failed("a/x".into()), Duration::from_millis(500));
    }
}
