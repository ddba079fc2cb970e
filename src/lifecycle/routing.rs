//! The routing policy: where a run reaches each service, computed from what is really
//! deployed.
//!
//! - A service the environment declares (`spec.services`) is reached in the environment's
//!   namespace when a Service of that name exists there; a declared service with no
//!   Service yet is reported as missing — never silently pointed elsewhere.
//! - Every Service of the baseline namespace that the environment does not declare is
//!   reached in the baseline: the service-under-test pattern.
//! - `spec.routing.overrides` wins over both.
//!
//! The port is the Service's port named `http`, else its first port. A Service without
//! ports gives no URL (and a declared one counts as missing).
//!
//! A URL into the environment's namespace is only worth handing to a run once something
//! answers behind it: a declared Service that selects pods but has no ready endpoint yet
//! (its EndpointSlices) is reported as not serving. Argo CD can call an app Healthy a
//! moment before its Services' endpoints are ready.

use std::collections::BTreeMap;

use crate::resources::EnvironmentTemplate;

/// One Service as the policy needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePorts {
    pub name: String,
    /// `(port name, port)` in the Service's order.
    pub ports: Vec<(Option<String>, i32)>,
    /// Something answers behind it: it selects pods and one of its endpoints is ready,
    /// or it selects no pods (ExternalName, endpoints managed by hand), which is not ours
    /// to judge.
    pub serving: bool,
}

/// The computed policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Routing {
    /// Service name → URL.
    pub policy: BTreeMap<String, String>,
    /// Declared services with no Service (or no port) in the environment's namespace yet.
    pub missing: Vec<String>,
    /// Declared services routed into the environment's namespace whose Service has no
    /// ready endpoint yet.
    pub not_serving: Vec<String>,
}

/// The port a URL uses: the one named `http`, else the first.
pub fn port_of(service: &ServicePorts) -> Option<i32> {
    service
        .ports
        .iter()
        .find(|(name, _)| name.as_deref() == Some("http"))
        .or_else(|| service.ports.first())
        .map(|(_, port)| *port)
}

fn url(service: &str, namespace: &str, cluster_domain: &str, port: i32) -> String {
    format!("http://{service}.{namespace}.svc.{cluster_domain}:{port}")
}

/// The policy for an environment whose namespace holds `deployed` and whose baseline
/// namespace (if any) holds `baseline`.
pub fn compute(
    template: &EnvironmentTemplate,
    deployed: &[ServicePorts],
    baseline: &[ServicePorts],
    cluster_domain: &str,
) -> Routing {
    let mut routing = Routing::default();
    let declared = |name: &str| template.services.iter().any(|s| s.name == name);
    for service in &template.services {
        let deployed = deployed.iter().find(|s| s.name == service.name);
        match deployed.and_then(|deployed| Some((deployed, port_of(deployed)?))) {
            Some((deployed, port)) => {
                let target = url(&service.name, &template.namespace, cluster_domain, port);
                routing.policy.insert(service.name.clone(), target);
                if !deployed.serving {
                    routing.not_serving.push(service.name.clone());
                }
            }
            None => routing.missing.push(service.name.clone()),
        }
    }
    if let Some(baseline_namespace) = template
        .routing
        .as_ref()
        .and_then(|r| r.baseline_namespace.as_deref())
    {
        for service in baseline.iter().filter(|s| !declared(&s.name)) {
            if let Some(port) = port_of(service) {
                let target = url(&service.name, baseline_namespace, cluster_domain, port);
                routing.policy.insert(service.name.clone(), target);
            }
        }
    }
    let mut overridden = Vec::new();
    if let Some(routing_spec) = &template.routing {
        for (service, target) in &routing_spec.overrides {
            routing.policy.insert(service.clone(), target.clone());
            overridden.push(service.as_str());
        }
    }
    routing
        .missing
        .retain(|name| !routing.policy.contains_key(name));
    routing
        .not_serving
        .retain(|name| !overridden.contains(&name.as_str()));
    routing
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(
        services: &[&str],
        baseline: Option<&str>,
        overrides: &[(&str, &str)],
    ) -> EnvironmentTemplate {
        serde_json::from_value(serde_json::json!({
            "provider": "argocd",
            "providerAppName": "testmesh-pr-123",
            "namespace": "review-pr-123",
            "services": services.iter().map(|s| serde_json::json!({"name": s})).collect::<Vec<_>>(),
            "routing": {
                "baselineNamespace": baseline,
                "overrides": overrides.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect::<BTreeMap<_, _>>(),
            }
        }))
        .unwrap()
    }

    fn service(name: &str, ports: &[(Option<&str>, i32)]) -> ServicePorts {
        ServicePorts {
            name: name.into(),
            ports: ports
                .iter()
                .map(|(n, p)| (n.map(str::to_owned), *p))
                .collect(),
            serving: true,
        }
    }

    fn not_serving(service: ServicePorts) -> ServicePorts {
        ServicePorts {
            serving: false,
            ..service
        }
    }

    #[test]
    fn a_declared_service_without_ready_endpoints_is_routed_but_not_serving() {
        let template = template(
            &["user-service", "product-service", "search"],
            Some("staging"),
            &[("search", "https://search.example.com")],
        );
        let deployed = [
            service("user-service", &[(None, 8080)]),
            not_serving(service("product-service", &[(None, 8080)])),
            not_serving(service("search", &[(None, 8080)])),
            not_serving(service("undeclared", &[(None, 8080)])),
        ];
        let staging = [not_serving(service("order-service", &[(None, 8083)]))];
        let routing = compute(&template, &deployed, &staging, "cluster.local");
        assert_eq!(
            routing.not_serving,
            ["product-service"],
            "overridden, undeclared and baseline services are not waited for"
        );
        assert_eq!(
            routing.policy["product-service"],
            "http://product-service.review-pr-123.svc.cluster.local:8080"
        );
        assert!(routing.missing.is_empty());
    }

    #[test]
    fn the_seed_example_comes_out_exactly() {
        let template = template(&["user-service", "product-service"], Some("staging"), &[]);
        let deployed = [
            service("user-service", &[(Some("http"), 8080)]),
            service("product-service", &[(None, 8080)]),
        ];
        let staging = [
            service("user-service", &[(Some("http"), 8080)]),
            service("product-service", &[(Some("http"), 8080)]),
            service("order-service", &[(Some("http"), 8083)]),
        ];
        let routing = compute(&template, &deployed, &staging, "cluster.local");
        let expected: BTreeMap<String, String> = [
            (
                "user-service",
                "http://user-service.review-pr-123.svc.cluster.local:8080",
            ),
            (
                "product-service",
                "http://product-service.review-pr-123.svc.cluster.local:8080",
            ),
            (
                "order-service",
                "http://order-service.staging.svc.cluster.local:8083",
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(routing.policy, expected);
        assert!(routing.missing.is_empty());
    }

    #[test]
    fn the_http_port_wins_else_the_first() {
        assert_eq!(
            port_of(&service("a", &[(Some("grpc"), 9090), (Some("http"), 8080)])),
            Some(8080)
        );
        assert_eq!(
            port_of(&service(
                "a",
                &[(Some("grpc"), 9090), (Some("metrics"), 9100)]
            )),
            Some(9090)
        );
        assert_eq!(port_of(&service("a", &[])), None);
    }

    #[test]
    fn a_declared_service_without_a_service_is_missing_not_sent_to_the_baseline() {
        let template = template(&["user-service", "search"], Some("staging"), &[]);
        let deployed = [
            service("user-service", &[(None, 8080)]),
            service("search", &[]),
        ];
        let staging = [service("search", &[(None, 8080)])];
        let routing = compute(&template, &deployed, &staging, "cluster.local");
        assert_eq!(routing.missing, ["search"]);
        assert!(!routing.policy.contains_key("search"));
    }

    #[test]
    fn overrides_win_over_both_and_cover_missing_ones() {
        let template = template(
            &["user-service", "search"],
            Some("staging"),
            &[
                ("user-service", "https://users.example.com"),
                ("search", "https://search.example.com"),
                ("payments", "https://pay.example.com"),
            ],
        );
        let deployed = [service("user-service", &[(None, 8080)])];
        let staging = [service("payments", &[(None, 80)])];
        let routing = compute(&template, &deployed, &staging, "cluster.local");
        assert_eq!(routing.policy["user-service"], "https://users.example.com");
        assert_eq!(routing.policy["payments"], "https://pay.example.com");
        assert!(
            routing.missing.is_empty(),
            "an override covers a missing service"
        );
    }

    #[test]
    fn without_a_baseline_only_declared_services_and_overrides() {
        let template = template(&["user-service"], None, &[]);
        let deployed = [
            service("user-service", &[(None, 8080)]),
            service("undeclared", &[(None, 1)]),
        ];
        let routing = compute(
            &template,
            &deployed,
            &[service("other", &[(None, 1)])],
            "corp.local",
        );
        assert_eq!(routing.policy.len(), 1);
        assert_eq!(
            routing.policy["user-service"],
            "http://user-service.review-pr-123.svc.corp.local:8080"
        );
    }
}
