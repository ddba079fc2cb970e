//! The operator's settings: command-line flags, each with an environment-variable
//! fallback so a Helm chart can set them either way.

use std::net::SocketAddr;

use clap::{Args, ValueEnum};
use jiff::SignedDuration;

use crate::api::ProviderLinks;
use crate::lifecycle::environment::Timing;
use crate::lifecycle::policy::NamespacePolicy;

/// Settings of `testmesh run`.
#[derive(Args, Clone, Debug)]
pub struct RunConfig {
    /// Only manage TestEnvironments in this namespace (default: every namespace).
    #[arg(long, env = "TESTMESH_WATCH_NAMESPACE", value_name = "NAMESPACE")]
    pub watch_namespace: Option<String>,

    /// Namespace of Argo CD Applications when an environment does not set
    /// `providerAppNamespace`. It is also protected: no environment may use it.
    #[arg(long, env = "TESTMESH_ARGOCD_NAMESPACE", default_value = "argocd")]
    pub argocd_namespace: String,

    /// Namespace of Flux Kustomizations when an environment does not set
    /// `providerAppNamespace`. It is also protected: no environment may use it.
    #[arg(long, env = "TESTMESH_FLUX_NAMESPACE", default_value = "flux-system")]
    pub flux_namespace: String,

    /// The ConfigMap (in the Argo CD namespace) that an ApplicationSet's plugin
    /// generator names to generate from TestMesh: when what TestMesh lists changes, the
    /// ApplicationSets naming it are asked to generate again at once.
    #[arg(
        long,
        env = "TESTMESH_GENERATOR_CONFIG_MAP",
        default_value = "testmesh-generator",
        value_name = "NAME"
    )]
    pub generator_config_map: String,

    /// The operator's own namespace; protected like the system namespaces.
    #[arg(
        long,
        env = "TESTMESH_OPERATOR_NAMESPACE",
        default_value = "testmesh-system"
    )]
    pub operator_namespace: String,

    /// Comma-separated glob patterns (`*` = any characters) of namespace names
    /// environments may use, e.g. `review-*,nightly-*`. Empty: any name that is not a
    /// system, operator or GitOps namespace.
    #[arg(
        long,
        env = "TESTMESH_ALLOWED_NAMESPACES",
        value_delimiter = ',',
        value_name = "PATTERNS"
    )]
    pub allowed_namespaces: Vec<String>,

    /// Cluster DNS domain used in routing URLs.
    #[arg(long, env = "TESTMESH_CLUSTER_DOMAIN", default_value = "cluster.local")]
    pub cluster_domain: String,

    /// Longest provisioning may take before the environment fails (e.g. `30m`, `90s`).
    #[arg(long, env = "TESTMESH_PROVISIONING_TIMEOUT", default_value = "30m", value_parser = parse_duration)]
    pub provisioning_timeout: SignedDuration,

    /// How long the provider's app may stay Degraded before the environment fails.
    #[arg(long, env = "TESTMESH_DEGRADED_GRACE", default_value = "5m", value_parser = parse_duration)]
    pub degraded_grace: SignedDuration,

    /// How long the provider's app may be missing before the environment fails.
    #[arg(long, env = "TESTMESH_MISSING_GRACE", default_value = "2m", value_parser = parse_duration)]
    pub missing_grace: SignedDuration,

    /// How long before an idle environment's TTL runs out a Warning event `ExpiringSoon`
    /// is published about it (once per expiry instant); `0s` publishes none.
    #[arg(long, env = "TESTMESH_EXPIRY_WARNING", default_value = "10m", value_parser = parse_duration)]
    pub expiry_warning: SignedDuration,

    /// Delete `destroyed` TestEnvironment records this long after their teardown
    /// (e.g. `168h`). Default: keep them until someone deletes them.
    #[arg(long, env = "TESTMESH_DESTROYED_RETENTION", value_parser = parse_duration)]
    pub destroyed_retention: Option<SignedDuration>,

    /// Address of the HTTP server for /metrics, /livez and /readyz.
    #[arg(long, env = "TESTMESH_HTTP_ADDRESS", default_value = "0.0.0.0:8080")]
    pub http_address: SocketAddr,

    /// Address of the REST API and the dashboard (`/test-environments`).
    #[arg(long, env = "TESTMESH_API_ADDRESS", default_value = "0.0.0.0:8000")]
    pub api_address: SocketAddr,

    /// Run for leadership through a Lease in the operator namespace, so that of several
    /// replicas exactly one reconciles (every replica serves HTTP).
    #[arg(long, env = "TESTMESH_LEADER_ELECTION")]
    pub leader_election: bool,

    /// Name of the Lease that elects the leader.
    #[arg(
        long,
        env = "TESTMESH_LEASE_NAME",
        default_value = "testmesh-operator",
        value_name = "NAME"
    )]
    pub lease_name: String,

    /// How long the Lease stays valid without renewal: a crashed leader is replaced
    /// after at most this long. The leader renews every 2/15 of it and stops
    /// reconciling when 2/3 of it pass without a successful renewal.
    #[arg(long, env = "TESTMESH_LEASE_DURATION", default_value = "15s", value_parser = parse_lease_duration)]
    pub lease_duration: SignedDuration,

    /// On SIGTERM, how long in-flight reconciliations may take to finish before the
    /// operator releases the Lease and exits anyway.
    #[arg(long, env = "TESTMESH_SHUTDOWN_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub shutdown_timeout: SignedDuration,

    /// This replica's name: the Lease holder identity, the events' reporting instance
    /// and part of the User-Agent. Default: the host name and process id.
    #[arg(long, env = "POD_NAME", value_name = "NAME")]
    pub identity: Option<String>,

    /// Argo CD's web UI, e.g. `https://argocd.example.com`: the API and dashboard then
    /// link each environment to its Application (`URL/applications/NAMESPACE/NAME`).
    #[arg(long, env = "TESTMESH_ARGOCD_URL", value_name = "URL", value_parser = parse_ui_url)]
    pub argocd_url: Option<String>,

    /// A Flux UI's page of one Kustomization, with `{namespace}` and `{name}` in it, e.g.
    /// `https://gitops.example.com/kustomization/details?clusterName=Default&name={name}&namespace={namespace}`:
    /// the API and dashboard then link each Flux environment to its Kustomization.
    #[arg(long, env = "TESTMESH_FLUX_UI_URL", value_name = "URL_TEMPLATE", value_parser = parse_flux_ui_url)]
    pub flux_ui_url: Option<String>,

    /// Log format. The level comes from RUST_LOG (default `info`).
    #[arg(long, env = "TESTMESH_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How logs are written.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl RunConfig {
    /// The provisioning deadlines and the expiry warning's lead for the lifecycle core.
    pub fn timing(&self) -> Timing {
        Timing {
            provisioning_timeout: self.provisioning_timeout,
            degraded_grace: self.degraded_grace,
            missing_grace: self.missing_grace,
            expiry_warning: self.expiry_warning,
        }
    }

    /// Who this replica is: `--identity` (the pod name in a cluster), else host name
    /// and process id, unique among replicas on one machine.
    pub fn identity(&self) -> String {
        self.identity.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME")
                .ok()
                .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "testmesh".to_owned());
            format!("{host}-{}", std::process::id())
        })
    }

    /// The election's clock, from `--lease-duration`.
    pub fn lease_timing(&self) -> crate::leadership::lease::Timing {
        crate::leadership::lease::Timing::for_duration(self.lease_duration.unsigned_abs())
    }

    /// Where the API links environments to their apps in the GitOps controllers' UIs.
    pub fn provider_links(&self) -> ProviderLinks {
        ProviderLinks {
            argocd_namespace: self.argocd_namespace.clone(),
            flux_namespace: self.flux_namespace.clone(),
            argocd_url: self.argocd_url.clone(),
            flux_ui_url: self.flux_ui_url.clone(),
        }
    }

    /// The namespace policy: system namespaces, this operator's and the GitOps
    /// controllers' are refused; the allow-list applies when set.
    pub fn namespace_policy(&self) -> NamespacePolicy {
        NamespacePolicy::new(
            [
                self.operator_namespace.as_str(),
                self.argocd_namespace.as_str(),
                self.flux_namespace.as_str(),
            ],
            self.allowed_namespaces.iter().map(String::as_str),
        )
    }
}

/// Parses `30m`, `90s`, `1h30m` (jiff's friendly format); must not be negative.
fn parse_duration(text: &str) -> Result<SignedDuration, String> {
    let duration: SignedDuration = text
        .parse()
        .map_err(|e| format!("not a duration like 30m, 90s or 1h30m: {e}"))?;
    if duration.is_negative() {
        return Err("must not be negative".to_owned());
    }
    Ok(duration)
}

/// An absolute http(s) URL of a web UI, as a person's browser reaches it.
fn parse_ui_url(text: &str) -> Result<String, String> {
    let host = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
        .ok_or("must start with https:// or http://")?;
    if host.is_empty() || host.starts_with('/') {
        return Err("names no host".to_owned());
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces".to_owned());
    }
    Ok(text.to_owned())
}

/// A UI URL with `{name}` (and usually `{namespace}`) standing for the Kustomization's.
fn parse_flux_ui_url(text: &str) -> Result<String, String> {
    let url = parse_ui_url(text)?;
    if !url.contains("{name}") {
        return Err("must contain {name} (and usually {namespace})".to_owned());
    }
    Ok(url)
}

/// A lease duration: whole seconds (the Lease stores seconds), at least 2 s.
fn parse_lease_duration(text: &str) -> Result<SignedDuration, String> {
    let duration = parse_duration(text)?;
    if duration < SignedDuration::from_secs(2) || duration.subsec_nanos() != 0 {
        return Err("must be whole seconds, at least 2s".to_owned());
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_friendly_form_and_reject_nonsense() {
        assert_eq!(parse_duration("30m"), Ok(SignedDuration::from_mins(30)));
        assert_eq!(parse_duration("90s"), Ok(SignedDuration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Ok(SignedDuration::from_mins(90)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-5m").is_err());
    }

    #[test]
    fn ui_urls_are_absolute_http_urls() {
        assert_eq!(
            parse_ui_url("https://argocd.example.com"),
            Ok("https://argocd.example.com".to_owned())
        );
        assert!(parse_ui_url("http://127.0.0.1:8080/argo/").is_ok());
        for bad in [
            "argocd.example.com",
            "ftp://x",
            "https://",
            "https:///x",
            "https://a b",
        ] {
            assert!(parse_ui_url(bad).is_err(), "{bad}");
        }
        assert!(parse_flux_ui_url("https://ui/ks/{namespace}/{name}").is_ok());
        assert!(parse_flux_ui_url("https://ui/ks").is_err());
    }

    #[test]
    fn lease_durations_are_whole_seconds_of_at_least_two() {
        assert_eq!(
            parse_lease_duration("15s"),
            Ok(SignedDuration::from_secs(15))
        );
        assert_eq!(parse_lease_duration("2s"), Ok(SignedDuration::from_secs(2)));
        assert!(parse_lease_duration("1s").is_err());
        assert!(parse_lease_duration("2500ms").is_err());
        assert!(parse_lease_duration("0s").is_err());
    }
}
