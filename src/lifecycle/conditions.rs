//! Condition types and reasons, in one place, and the bookkeeping Kubernetes conventions
//! ask for: `lastTransitionTime` moves only when `status` changes, and
//! `observedGeneration` is always the generation the condition was computed for (so
//! `kubectl wait --for=condition=Ready` trusts it).

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// `True` exactly when the environment (or the claim's environment) can serve a run.
pub const READY: &str = "Ready";
/// What the GitOps provider says about the app that deploys the environment.
pub const PROVIDER_READY: &str = "ProviderReady";
/// `True` once the namespace is gone; `False` with what blocks it while tearing down.
pub const DESTROYED: &str = "Destroyed";
/// `True` when every declared service has a Service to route to, with a ready endpoint.
pub const ROUTING_COMPLETE: &str = "RoutingComplete";

/// Reasons, CamelCase as Kubernetes expects.
pub mod reason {
    /// The namespace exists and the provider's app is being waited for.
    pub const PROVISIONING: &str = "Provisioning";
    /// Ready and idle.
    pub const AVAILABLE: &str = "Available";
    /// Ready and held by a run.
    pub const IN_USE: &str = "InUse";
    /// Idle past `sleepAfterMinutes`: scaled to zero by its ApplicationSet.
    pub const SLEEPING: &str = "Sleeping";
    /// Woken from sleep for a run; waiting for the provider to sync the woken app.
    pub const WAKING: &str = "Waking";
    /// The provider's app reports healthy and synced.
    pub const APP_READY: &str = "AppReady";
    /// The provider's app is still syncing or starting.
    pub const APP_PROGRESSING: &str = "AppProgressing";
    /// The provider's app reports Degraded.
    pub const APP_DEGRADED: &str = "AppDegraded";
    /// The provider's app does not exist.
    pub const APP_MISSING: &str = "AppMissing";
    /// The provider reports a failure (failed sync, error condition, …).
    pub const APP_FAILED: &str = "AppFailed";
    /// Degraded for longer than the grace period.
    pub const DEGRADED_TOO_LONG: &str = "DegradedTooLong";
    /// The app did not appear within the grace period.
    pub const APP_NOT_FOUND: &str = "AppNotFound";
    /// Provisioning did not finish within the timeout.
    pub const PROVISIONING_TIMEOUT: &str = "ProvisioningTimeout";
    /// The namespace exists but this environment did not create it.
    pub const NAMESPACE_NOT_OWNED: &str = "NamespaceNotOwned";
    /// The namespace is refused by the operator's namespace policy.
    pub const NAMESPACE_REFUSED: &str = "NamespaceRefused";
    /// Idle for longer than the TTL.
    pub const EXPIRED: &str = "Expired";
    /// The reason of the Warning event published once per expiry instant when an idle
    /// environment's TTL runs out within the warning lead (`--expiry-warning`).
    pub const EXPIRING_SOON: &str = "ExpiringSoon";
    /// Someone asked for the environment to be destroyed.
    pub const DESTROY_REQUESTED: &str = "DestroyRequested";
    /// The TestEnvironment object is being deleted.
    pub const DELETED: &str = "Deleted";
    /// Teardown is under way and waits on nobody: the app is deleted, then the namespace.
    pub const TEARING_DOWN: &str = "TearingDown";
    /// Teardown waits for the provider, which is deleting its app (pruning what it
    /// deployed).
    pub const WAITING_FOR_APP_DELETION: &str = "WaitingForAppDeletion";
    /// Teardown waits for the ApplicationSets generating from TestMesh to generate again
    /// without the environment before its namespace goes: until then one may still
    /// create its Application.
    pub const WAITING_FOR_GENERATOR: &str = "WaitingForGenerator";
    /// Teardown waits for a terminating namespace that reports what blocks it; also the
    /// `Ready` reason when the namespace is deleted outside of a teardown.
    pub const NAMESPACE_TERMINATING: &str = "NamespaceTerminating";
    /// Every declared service is routed.
    pub const ALL_SERVICES_ROUTED: &str = "AllServicesRouted";
    /// Some declared services have no Service yet.
    pub const SERVICES_MISSING: &str = "ServicesMissing";
    /// Some declared services routed into the environment's namespace have no ready
    /// endpoint yet.
    pub const ENDPOINTS_NOT_READY: &str = "EndpointsNotReady";
    /// Teardown is done: the namespace is gone.
    pub const TEARDOWN_COMPLETE: &str = "TeardownComplete";

    // A claim's `Ready` (`Provisioning` too: holding an environment still being
    // provisioned).
    /// Holding a ready environment.
    pub const BOUND: &str = "Bound";
    /// Waiting behind other runs for the environment.
    pub const QUEUED: &str = "Queued";
    /// No environment yet; one is being created from the template.
    pub const CREATING_ENVIRONMENT: &str = "CreatingEnvironment";
    /// The context's previous environment is still being torn down.
    pub const WAITING_FOR_TEARDOWN: &str = "WaitingForTeardown";
    /// The environment named in `spec.environmentName` does not exist.
    pub const ENVIRONMENT_NOT_FOUND: &str = "EnvironmentNotFound";
    /// The environment failed; the message carries its reason.
    pub const ENVIRONMENT_FAILED: &str = "EnvironmentFailed";
    /// The environment was torn down under the claim.
    pub const ENVIRONMENT_DESTROYED: &str = "EnvironmentDestroyed";
    /// The named environment belongs to another context.
    pub const CONTEXT_MISMATCH: &str = "ContextMismatch";
    /// The lease (`maxDurationMinutes`) ran out.
    pub const LEASE_EXPIRED: &str = "LeaseExpired";
    /// The environment was released.
    pub const RELEASED: &str = "Released";
}

/// `status` of a condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }
}

/// A condition as decided, before bookkeeping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub type_: &'static str,
    pub status: ConditionStatus,
    pub reason: &'static str,
    pub message: String,
}

impl Verdict {
    pub fn new(
        type_: &'static str,
        status: ConditionStatus,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Verdict {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }
}

/// Sets `verdict` in `conditions`, keeping `lastTransitionTime` when the status is
/// unchanged and stamping `observedGeneration` either way.
pub fn set(conditions: &mut Vec<Condition>, verdict: Verdict, generation: i64, now: Timestamp) {
    let existing = conditions.iter_mut().find(|c| c.type_ == verdict.type_);
    let status = verdict.status.as_str();
    match existing {
        Some(condition) => {
            if condition.status != status {
                condition.last_transition_time = Time(now);
                condition.status = status.to_owned();
            }
            condition.reason = verdict.reason.to_owned();
            condition.message = verdict.message;
            condition.observed_generation = Some(generation);
        }
        None => conditions.push(Condition {
            type_: verdict.type_.to_owned(),
            status: status.to_owned(),
            reason: verdict.reason.to_owned(),
            message: verdict.message,
            last_transition_time: Time(now),
            observed_generation: Some(generation),
        }),
    }
}

/// Whether the condition of this type is present and `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == ConditionStatus::True.as_str())
}

/// The condition of this type, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    #[test]
    fn new_condition_is_stamped_with_now_and_generation() {
        let mut conditions = Vec::new();
        set(
            &mut conditions,
            Verdict::new(
                READY,
                ConditionStatus::False,
                reason::PROVISIONING,
                "syncing",
            ),
            3,
            at(100),
        );
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].status, "False");
        assert_eq!(conditions[0].last_transition_time, Time(at(100)));
        assert_eq!(conditions[0].observed_generation, Some(3));
    }

    #[test]
    fn same_status_keeps_transition_time_but_updates_reason_message_and_generation() {
        let mut conditions = Vec::new();
        set(
            &mut conditions,
            Verdict::new(READY, ConditionStatus::False, reason::PROVISIONING, "a"),
            1,
            at(100),
        );
        set(
            &mut conditions,
            Verdict::new(READY, ConditionStatus::False, reason::APP_DEGRADED, "b"),
            2,
            at(200),
        );
        assert_eq!(conditions[0].last_transition_time, Time(at(100)));
        assert_eq!(conditions[0].reason, reason::APP_DEGRADED);
        assert_eq!(conditions[0].message, "b");
        assert_eq!(conditions[0].observed_generation, Some(2));
    }

    #[test]
    fn status_change_moves_transition_time() {
        let mut conditions = Vec::new();
        set(
            &mut conditions,
            Verdict::new(READY, ConditionStatus::False, reason::PROVISIONING, ""),
            1,
            at(100),
        );
        set(
            &mut conditions,
            Verdict::new(READY, ConditionStatus::True, reason::AVAILABLE, ""),
            1,
            at(200),
        );
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].status, "True");
        assert_eq!(conditions[0].last_transition_time, Time(at(200)));
    }
}
