//! Prometheus metrics: what the operator does, how long it takes, and how exact its
//! timers are (`testmesh_*`), which build runs, and the process's own figures
//! (`process_*`, `process`). Labels are static categories, never object names.

mod process;

use std::fmt;
use std::sync::{Arc, OnceLock};

use jiff::Timestamp;
use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::lifecycle::Phase;
use crate::lifecycle::environment::transient_since;
use crate::resources::TestEnvironment;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    /// The reconciliation step that failed (`observe`, `apply`, `status`, `other`).
    step: &'static str,
    reason: &'static str,
}

/// The operator's metrics, registered once at start-up.
pub struct Metrics {
    pub registry: Registry,
    reconciliations: Counter,
    errors: Family<ErrorLabels, Counter>,
    reconcile_duration: Histogram,
    provisioning_duration: Histogram,
    expiry_lateness: Histogram,
    teardown_duration: Histogram,
    leader: Gauge,
    /// The environments cache, once this replica leads.
    environments: Arc<OnceLock<Store<TestEnvironment>>>,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Arc<Metrics> {
        let mut root = Registry::default();
        root.register_collector(Box::new(process::ProcessCollector));
        let registry = root.sub_registry_with_prefix("testmesh");
        registry.register(
            "build",
            "The running build: its version and platform",
            Info::new(vec![
                ("version", env!("CARGO_PKG_VERSION")),
                ("arch", std::env::consts::ARCH),
                ("os", std::env::consts::OS),
            ]),
        );
        let reconciliations = Counter::default();
        registry.register(
            "reconciliations",
            "Reconciliations of TestEnvironments and TestEnvironmentClaims",
            reconciliations.clone(),
        );
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Failed reconciliations by step and error category",
            errors.clone(),
        );
        let reconcile_duration = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconciliation takes",
            reconcile_duration.clone(),
        );
        let provisioning_duration = Histogram::new(exponential_buckets(1.0, 2.0, 14));
        registry.register(
            "provisioning_duration_seconds",
            "From the start of provisioning to ready",
            provisioning_duration.clone(),
        );
        let expiry_lateness = Histogram::new(exponential_buckets(0.01, 2.0, 14));
        registry.register(
            "ttl_expiry_lateness_seconds",
            "Teardown start minus expiresAt, for environments that expired",
            expiry_lateness.clone(),
        );
        let teardown_duration = Histogram::new(exponential_buckets(0.5, 2.0, 12));
        registry.register(
            "teardown_duration_seconds",
            "From the start of teardown to the namespace being gone",
            teardown_duration.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the Lease and reconciles, else 0",
            leader.clone(),
        );
        let environments = Arc::new(OnceLock::new());
        registry.register_collector(Box::new(PhaseCollector(environments.clone())));
        Arc::new(Metrics {
            registry: root,
            reconciliations,
            errors,
            reconcile_duration,
            provisioning_duration,
            expiry_lateness,
            teardown_duration,
            leader,
            environments,
        })
    }

    pub fn reconciled(&self, seconds: f64) {
        self.reconciliations.inc();
        self.reconcile_duration.observe(seconds);
    }

    pub fn failed(&self, step: &'static str, reason: &'static str) {
        self.errors
            .get_or_create(&ErrorLabels { step, reason })
            .inc();
    }

    pub fn provisioned(&self, seconds: f64) {
        self.provisioning_duration.observe(seconds);
    }

    pub fn expired_late_by(&self, seconds: f64) {
        self.expiry_lateness.observe(seconds);
    }

    pub fn torn_down(&self, seconds: f64) {
        self.teardown_duration.observe(seconds);
    }

    /// Feeds the per-phase gauge from the leader's environments cache.
    pub fn count_phases_of(&self, environments: Store<TestEnvironment>) {
        let _ = self.environments.set(environments);
    }

    pub fn leading(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> Result<String, fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// Environments by phase, and how long the one longest in each transient phase has been
/// in it, from the controller's cache at scrape time, so the gauges are right after
/// restarts and deletions without bookkeeping. A standby replica reports zeros.
#[derive(Debug)]
struct PhaseCollector(Arc<OnceLock<Store<TestEnvironment>>>);

impl Collector for PhaseCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let environments = self.0.get().map(Store::state).unwrap_or_default();
        let environments = environments.iter().map(Arc::as_ref);
        encode_phases(environments, Timestamp::now(), &mut encoder)
    }
}

/// `testmesh_environments{phase}` and `testmesh_environments_longest_in_phase_seconds{phase}`
/// of `environments` at `now`.
fn encode_phases<'a>(
    environments: impl Iterator<Item = &'a TestEnvironment>,
    now: Timestamp,
    encoder: &mut DescriptorEncoder<'_>,
) -> Result<(), fmt::Error> {
    let mut counts = [0_i64; Phase::ALL.len()];
    let mut longest = [0_f64; Phase::TRANSIENT.len()];
    for environment in environments {
        let phase = environment
            .status
            .as_ref()
            .and_then(|s| s.phase)
            .unwrap_or(Phase::Cold);
        if let Some(index) = Phase::ALL.iter().position(|p| *p == phase) {
            counts[index] += 1;
        }
        if let Some((phase, since)) = transient_since(environment)
            && let Some(index) = Phase::TRANSIENT.iter().position(|p| *p == phase)
        {
            let seconds = now.duration_since(since).as_secs_f64().max(0.0);
            longest[index] = longest[index].max(seconds);
        }
    }
    let mut family = encoder.encode_descriptor(
        "environments",
        "TestEnvironments by phase",
        None,
        MetricType::Gauge,
    )?;
    for (phase, count) in Phase::ALL.iter().zip(counts) {
        let labels = [("phase", phase.as_str())];
        ConstGauge::new(count).encode(family.encode_family(&labels)?)?;
    }
    let mut family = encoder.encode_descriptor(
        "environments_longest_in_phase_seconds",
        "How long the environment longest in each transient phase (cold, provisioning, degraded, destroying) has been in it; 0 when none is",
        None,
        MetricType::Gauge,
    )?;
    for (phase, seconds) in Phase::TRANSIENT.iter().zip(longest) {
        let labels = [("phase", phase.as_str())];
        ConstGauge::new(seconds).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_the_build_the_process_and_the_operators_own_metrics() {
        let text = Metrics::new().render().expect("render");
        let build = format!(
            "testmesh_build_info{{version=\"{}\",arch=\"{}\",os=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::ARCH,
            std::env::consts::OS
        );
        assert!(text.contains(&build), "{text}");
        assert!(text.contains("# TYPE testmesh_build info\n"), "{text}");
        let mut lines = vec![
            "testmesh_reconciliations_total 0",
            "testmesh_leader 0",
            "testmesh_ttl_expiry_lateness_seconds_count 0",
        ];
        if cfg!(target_os = "linux") {
            lines.extend([
                "# TYPE process_cpu_seconds counter",
                "process_cpu_seconds_total ",
                "process_resident_memory_bytes ",
                "process_virtual_memory_bytes ",
                "process_start_time_seconds ",
                "process_open_fds ",
                "process_max_fds ",
            ]);
        }
        for line in lines {
            assert!(
                text.lines().any(|l| l.starts_with(line)),
                "no line {line:?} in\n{text}"
            );
        }
        assert!(
            !text.contains("testmesh_process_"),
            "the process's metrics carry no prefix: {text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    /// [`encode_phases`] of fixed environments at a fixed instant.
    #[derive(Debug)]
    struct Fixed(Vec<TestEnvironment>, Timestamp);

    impl Collector for Fixed {
        fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
            encode_phases(self.0.iter(), self.1, &mut encoder)
        }
    }

    fn environment(status: serde_json::Value) -> TestEnvironment {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "testmesh.io/v1alpha1", "kind": "TestEnvironment",
            "metadata": {"name": "e", "creationTimestamp": "2026-11-24T09:59:00Z"},
            "spec": {"context": "c", "provider": "argocd", "providerAppName": "a", "namespace": "n"},
            "status": status
        }))
        .expect("environment")
    }

    #[test]
    fn phases_are_counted_and_the_longest_in_each_transient_phase_is_timed() {
        let now: Timestamp = "2026-11-24T10:00:00Z".parse().expect("time");
        let environments = vec![
            environment(serde_json::json!({})),
            environment(
                serde_json::json!({"phase": "provisioning", "provisioningStartedAt": "2026-11-24T09:58:00Z"}),
            ),
            environment(
                serde_json::json!({"phase": "provisioning", "provisioningStartedAt": "2026-11-24T09:50:00Z"}),
            ),
            environment(
                serde_json::json!({"phase": "destroying", "teardownStartedAt": "2026-11-24T09:59:30.5Z"}),
            ),
            environment(
                serde_json::json!({"phase": "destroying", "teardownStartedAt": "2026-11-24T10:00:05Z"}),
            ),
            environment(serde_json::json!({"phase": "warm"})),
        ];
        let mut registry = Registry::with_prefix("testmesh");
        registry.register_collector(Box::new(Fixed(environments, now)));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        for line in [
            "testmesh_environments{phase=\"cold\"} 1",
            "testmesh_environments{phase=\"provisioning\"} 2",
            "testmesh_environments{phase=\"warm\"} 1",
            "testmesh_environments{phase=\"destroying\"} 2",
            "testmesh_environments{phase=\"failed\"} 0",
            "testmesh_environments_longest_in_phase_seconds{phase=\"cold\"} 60.0",
            "testmesh_environments_longest_in_phase_seconds{phase=\"provisioning\"} 600.0",
            "testmesh_environments_longest_in_phase_seconds{phase=\"degraded\"} 0.0",
            "testmesh_environments_longest_in_phase_seconds{phase=\"destroying\"} 29.5",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        assert!(
            !text.contains("longest_in_phase_seconds{phase=\"warm\"}"),
            "a rest is no transient phase: {text}"
        );
    }
}
