//! The reuse choice: which existing environment, if any, a run of a context is bound to.
//!
//! SPEC: an environment of the same workspace and context that is `warm` or `cooling`,
//! not expired and not held by another run is bound immediately, with no provisioning.
//! When several qualify, the one with the most life left (latest `expiresAt`) wins, so the
//! others age out and a context converges on one environment; equal expiry falls back to
//! the name, so every replica makes the same choice.

use jiff::Timestamp;

use super::phase::Phase;
use super::ttl;

/// What the reuse choice needs to know about one environment of the workspace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate<'a> {
    pub name: &'a str,
    pub context: &'a str,
    pub phase: Phase,
    pub expires_at: Option<Timestamp>,
    /// Runs currently holding it.
    pub holders: usize,
    /// The object is being deleted or a destroy was requested.
    pub teardown_requested: bool,
}

impl Candidate<'_> {
    /// Whether a new run of `context` may be bound to this environment at `now`.
    pub fn is_reusable_for(&self, context: &str, now: Timestamp) -> bool {
        self.context == context
            && self.phase.is_reusable()
            && self.holders == 0
            && !self.teardown_requested
            && self
                .expires_at
                .is_some_and(|expiry| !ttl::is_expired(expiry, now))
    }
}

/// The environment a run of `context` reuses at `now`, if any.
pub fn choose<'c, 'a>(
    candidates: &'c [Candidate<'a>],
    context: &str,
    now: Timestamp,
) -> Option<&'c Candidate<'a>> {
    candidates
        .iter()
        .filter(|candidate| candidate.is_reusable_for(context, now))
        .max_by(|a, b| {
            a.expires_at
                .cmp(&b.expires_at)
                .then_with(|| b.name.cmp(a.name))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    fn warm<'a>(name: &'a str, expires: i64) -> Candidate<'a> {
        Candidate {
            name,
            context: "pr-123",
            phase: Phase::Warm,
            expires_at: Some(at(expires)),
            holders: 0,
            teardown_requested: false,
        }
    }

    const NOW: i64 = 1_000;

    #[test]
    fn warm_and_cooling_within_ttl_are_reused() {
        for phase in [Phase::Warm, Phase::Cooling] {
            let candidates = [Candidate {
                phase,
                ..warm("a", 2_000)
            }];
            assert_eq!(
                choose(&candidates, "pr-123", at(NOW)).map(|c| c.name),
                Some("a")
            );
        }
    }

    #[test]
    fn no_other_phase_is_reused() {
        for phase in Phase::ALL.into_iter().filter(|p| !p.is_reusable()) {
            let candidates = [Candidate {
                phase,
                ..warm("a", 2_000)
            }];
            assert_eq!(choose(&candidates, "pr-123", at(NOW)), None, "{phase}");
        }
    }

    #[test]
    fn other_contexts_are_never_reused() {
        let candidates = [Candidate {
            context: "pr-124",
            ..warm("a", 2_000)
        }];
        assert_eq!(choose(&candidates, "pr-123", at(NOW)), None);
    }

    #[test]
    fn held_or_condemned_environments_are_not_reused() {
        let held = [Candidate {
            holders: 1,
            ..warm("a", 2_000)
        }];
        assert_eq!(choose(&held, "pr-123", at(NOW)), None);
        let condemned = [Candidate {
            teardown_requested: true,
            ..warm("a", 2_000)
        }];
        assert_eq!(choose(&condemned, "pr-123", at(NOW)), None);
    }

    #[test]
    fn ttl_edges() {
        let one_second_before = [warm("a", NOW + 1)];
        assert!(choose(&one_second_before, "pr-123", at(NOW)).is_some());
        let exactly_at_expiry = [warm("a", NOW)];
        assert_eq!(choose(&exactly_at_expiry, "pr-123", at(NOW)), None);
        let one_second_after = [warm("a", NOW - 1)];
        assert_eq!(choose(&one_second_after, "pr-123", at(NOW)), None);
        let never_stamped = [Candidate {
            expires_at: None,
            ..warm("a", 0)
        }];
        assert_eq!(choose(&never_stamped, "pr-123", at(NOW)), None);
    }

    #[test]
    fn most_life_left_wins_a_tie() {
        let candidates = [
            warm("soon", 1_500),
            warm("later", 3_000),
            warm("middle", 2_000),
        ];
        assert_eq!(
            choose(&candidates, "pr-123", at(NOW)).map(|c| c.name),
            Some("later")
        );
    }

    #[test]
    fn equal_expiry_falls_back_to_the_smallest_name_in_any_order() {
        let forward = [warm("env-a", 2_000), warm("env-b", 2_000)];
        let backward = [warm("env-b", 2_000), warm("env-a", 2_000)];
        assert_eq!(
            choose(&forward, "pr-123", at(NOW)).map(|c| c.name),
            Some("env-a")
        );
        assert_eq!(
            choose(&backward, "pr-123", at(NOW)).map(|c| c.name),
            Some("env-a")
        );
    }

    #[test]
    fn ineligible_environments_never_win_over_an_eligible_one() {
        let candidates = [
            Candidate {
                holders: 1,
                ..warm("busy", 9_000)
            },
            Candidate {
                phase: Phase::Failed,
                ..warm("broken", 9_000)
            },
            warm("free", 2_000),
        ];
        assert_eq!(
            choose(&candidates, "pr-123", at(NOW)).map(|c| c.name),
            Some("free")
        );
    }
}
