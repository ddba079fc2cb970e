//! The states an environment and a claim move through, as users see them in
//! `status.phase`.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where an environment is in its life. SPEC's six states plus `sleeping`, `degraded`,
/// `failed` and `destroying`, so that an environment scaled to zero, a broken app, a
/// failure and a teardown in progress are shown truthfully.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Registered, nothing provisioned yet.
    Cold,
    /// The namespace exists; the GitOps provider is syncing and services are starting.
    Provisioning,
    /// Ready and not in use.
    Warm,
    /// A run (claim) is using it.
    Running,
    /// The run ended; idle, within its TTL, reusable.
    Cooling,
    /// Idle past `sleepAfterMinutes`: its ApplicationSet scaled it to zero through
    /// TestMesh's generator. Reusable: a claim wakes it, and it is ready again once the
    /// woken app is Healthy. Its TTL keeps counting.
    Sleeping,
    /// The provider reports its app Degraded: not Ready, not reusable. Within the
    /// degraded grace it recovers by itself (back to `warm`, `cooling` or `running`);
    /// after it the environment is `failed` (`DegradedTooLong`).
    Degraded,
    /// Provisioning failed or the deployed app broke; the reason is in the `Ready`
    /// condition. Recovers by itself when the provider's app becomes ready again.
    Failed,
    /// Teardown is under way: the provider's app and then the namespace are being deleted.
    Destroying,
    /// The namespace is gone; the record is kept. Final.
    Destroyed,
}

impl Phase {
    /// Every phase, in lifecycle order.
    pub const ALL: [Phase; 10] = [
        Phase::Cold,
        Phase::Provisioning,
        Phase::Warm,
        Phase::Running,
        Phase::Cooling,
        Phase::Sleeping,
        Phase::Degraded,
        Phase::Failed,
        Phase::Destroying,
        Phase::Destroyed,
    ];

    /// The phases an environment passes through and leaves by itself, unless something
    /// is wrong: an environment long in one of them is stuck (the other phases are rests:
    /// ready, in use, failed waiting for its app, or done).
    pub const TRANSIENT: [Phase; 4] = [
        Phase::Cold,
        Phase::Provisioning,
        Phase::Degraded,
        Phase::Destroying,
    ];

    /// The wire name, as in `status.phase`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Cold => "cold",
            Phase::Provisioning => "provisioning",
            Phase::Warm => "warm",
            Phase::Running => "running",
            Phase::Cooling => "cooling",
            Phase::Sleeping => "sleeping",
            Phase::Degraded => "degraded",
            Phase::Failed => "failed",
            Phase::Destroying => "destroying",
            Phase::Destroyed => "destroyed",
        }
    }

    /// Whether a new run may be bound to an environment in this phase (TTL permitting).
    pub fn is_reusable(self) -> bool {
        matches!(self, Phase::Warm | Phase::Cooling | Phase::Sleeping)
    }

    /// Whether the environment is ready and serving runs (or ready to).
    pub fn is_serving(self) -> bool {
        matches!(self, Phase::Warm | Phase::Running | Phase::Cooling)
    }

    /// Whether teardown has begun or finished.
    pub fn is_tearing_down(self) -> bool {
        matches!(self, Phase::Destroying | Phase::Destroyed)
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a claim is in its life.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum ClaimPhase {
    /// Waiting for an environment: queued behind another run, or provisioning.
    Pending,
    /// Holding an environment that is ready for the run.
    Bound,
    /// The run released the environment.
    Released,
    /// The lease (`maxDurationMinutes`) ran out and the environment was released.
    Expired,
    /// The environment could not be provided; the reason is in the `Ready` condition.
    Failed,
}

impl ClaimPhase {
    /// Whether the claim is over (released, expired or failed): final, it never moves on.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            ClaimPhase::Released | ClaimPhase::Expired | ClaimPhase::Failed
        )
    }

    /// The wire name, as in `status.phase`.
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimPhase::Pending => "pending",
            ClaimPhase::Bound => "bound",
            ClaimPhase::Released => "released",
            ClaimPhase::Expired => "expired",
            ClaimPhase::Failed => "failed",
        }
    }
}

impl fmt::Display for ClaimPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
