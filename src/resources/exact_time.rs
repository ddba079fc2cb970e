//! The status's own timestamps on the wire, written and read back to the nanosecond.
//!
//! k8s-openapi writes a `Time` in whole seconds, as metav1.Time does: read back, an
//! instant comes out up to a second *earlier* — and so does every deadline counted from
//! it: the TTL from `lastUsedAt`, the Degraded and Missing grace periods from
//! `healthSince`, the provisioning timeout from `provisioningStartedAt`, a claim's lease
//! from `boundAt`. So every `Option<Time>` of a status is written with its fraction of a
//! second, as Go's `time.RFC3339Nano` writes it (`2026-12-05T17:02:15.47Z`): the CRD's
//! `format: date-time` accepts it, metav1.Time parses it, and the operator reads back
//! exactly the instant it decided. Whole-second values written before still read.
//!
//! Used as `#[serde(default, skip_serializing_if = "Option::is_none", with =
//! "exact_time")]` on each of them.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// RFC 3339 with as many fractional digits as the instant needs (none for a whole second).
pub fn serialize<S: Serializer>(time: &Option<Time>, serializer: S) -> Result<S::Ok, S::Error> {
    time.as_ref().map(|t| t.0).serialize(serializer)
}

/// Any RFC 3339 instant, with or without a fraction.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Time>, D::Error> {
    Ok(Option::<Timestamp>::deserialize(deserializer)?.map(Time))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::resources::{ProviderStatus, TestEnvironmentClaimStatus, TestEnvironmentStatus};

    use super::*;

    fn at(text: &str) -> Option<Time> {
        Some(Time(text.parse().expect("RFC 3339")))
    }

    #[test]
    fn status_timestamps_keep_their_fraction_of_a_second() {
        let instants = [
            "2026-12-05T17:02:15.47Z",
            "2026-12-05T17:02:15.000000001Z",
            "2026-12-05T17:02:15Z",
        ];
        for wire in instants {
            let time = at(wire);
            let status = TestEnvironmentStatus {
                last_used_at: time.clone(),
                ..TestEnvironmentStatus::default()
            };
            let written = serde_json::to_value(&status).expect("serialize");
            assert_eq!(written, json!({"lastUsedAt": wire}), "{wire}");
            let read: TestEnvironmentStatus = serde_json::from_value(written).expect("read");
            assert_eq!(read.last_used_at, time, "{wire} reads back exactly");
        }
    }

    #[test]
    fn every_status_timestamp_is_written_exactly() {
        let instant = at("2026-12-05T17:02:15.470001Z");
        let wire = "2026-12-05T17:02:15.470001Z";
        let environment = TestEnvironmentStatus {
            last_used_at: instant.clone(),
            expires_at: instant.clone(),
            expiry_warning_at: instant.clone(),
            expiry_warned_for: instant.clone(),
            provisioning_started_at: instant.clone(),
            ready_at: instant.clone(),
            teardown_started_at: instant.clone(),
            destroyed_at: instant.clone(),
            held_since: instant.clone(),
            provider: Some(ProviderStatus {
                health_since: instant.clone(),
                ..ProviderStatus::default()
            }),
            ..TestEnvironmentStatus::default()
        };
        assert_eq!(
            serde_json::to_value(&environment).expect("serialize"),
            json!({
                "lastUsedAt": wire, "expiresAt": wire, "expiryWarningAt": wire,
                "expiryWarnedFor": wire, "provisioningStartedAt": wire,
                "readyAt": wire, "teardownStartedAt": wire, "destroyedAt": wire,
                "heldSince": wire, "provider": {"healthSince": wire},
            })
        );
        let claim = TestEnvironmentClaimStatus {
            bound_at: instant.clone(),
            lease_expires_at: instant,
            ..TestEnvironmentClaimStatus::default()
        };
        assert_eq!(
            serde_json::to_value(&claim).expect("serialize"),
            json!({"boundAt": wire, "leaseExpiresAt": wire})
        );
    }
}
