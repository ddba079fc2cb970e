//! Tests of how gathered objects read in the lifecycle's terms.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NamespaceCondition, NamespaceStatus, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::ObjectMeta;

use super::*;
use crate::lifecycle::environment::Readiness;
use crate::resources::{
    ROUTING_CONFIG_MAP, TestEnvironmentClaimSpec, TestEnvironmentSpec, TestEnvironmentStatus,
};

fn namespace(owner: Option<&str>) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some("review-pr-1".into()),
            annotations: owner.map(|uid| {
                BTreeMap::from([(ENVIRONMENT_UID_ANNOTATION.to_owned(), uid.to_owned())])
            }),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

fn terminating(mut namespace: Namespace) -> Namespace {
    namespace.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
    namespace
}

#[test]
fn only_a_namespace_with_our_uid_is_owned() {
    let allowed = || None;
    assert_eq!(
        classify_namespace(Some(&namespace(Some("uid-1"))), "uid-1", allowed),
        NamespaceState::Owned {
            terminating: false,
            blockers: None,
            created_at: None,
        }
    );
    assert_eq!(
        classify_namespace(Some(&namespace(Some("uid-2"))), "uid-1", allowed),
        NamespaceState::NotOwned,
        "another environment's namespace"
    );
    assert_eq!(
        classify_namespace(Some(&namespace(None)), "uid-1", allowed),
        NamespaceState::NotOwned
    );
    assert_eq!(
        classify_namespace(None, "uid-1", allowed),
        NamespaceState::Absent
    );
}

#[test]
fn policy_refuses_absent_or_foreign_namespaces_but_not_our_own() {
    let refuse = || Some("protected".to_owned());
    assert_eq!(
        classify_namespace(None, "uid-1", refuse),
        NamespaceState::Refused("protected".into())
    );
    assert_eq!(
        classify_namespace(Some(&namespace(None)), "uid-1", refuse),
        NamespaceState::Refused("protected".into())
    );
    assert!(matches!(
        classify_namespace(Some(&namespace(Some("uid-1"))), "uid-1", refuse),
        NamespaceState::Owned { .. }
    ));
}

#[test]
fn terminating_namespace_reports_its_blockers() {
    let mut ns = terminating(namespace(Some("uid-1")));
    ns.status = Some(NamespaceStatus {
        conditions: Some(vec![
            NamespaceCondition {
                type_: "NamespaceContentRemaining".into(),
                status: "True".into(),
                message: Some(
                    "Some resources are remaining: configmaps. has 1 resource instances".into(),
                ),
                ..NamespaceCondition::default()
            },
            NamespaceCondition {
                type_: "NamespaceDeletionDiscoveryFailure".into(),
                status: "False".into(),
                message: Some("All resources successfully discovered".into()),
                ..NamespaceCondition::default()
            },
        ]),
        ..NamespaceStatus::default()
    });
    assert_eq!(
        classify_namespace(Some(&ns), "uid-1", || None),
        NamespaceState::Owned {
            terminating: true,
            blockers: Some(
                "Some resources are remaining: configmaps. has 1 resource instances".into()
            ),
            created_at: None,
        }
    );
}

#[test]
fn routing_is_read_only_in_our_own_living_namespace() {
    let cases = [
        (None, false, "absent"),
        (Some(namespace(Some("uid-1"))), true, "ours"),
        (
            Some(terminating(namespace(Some("uid-1")))),
            false,
            "ours, going",
        ),
        (
            Some(namespace(Some("uid-2"))),
            false,
            "another environment's",
        ),
        (Some(namespace(None)), false, "nobody's"),
    ];
    for (ns, expected, what) in cases {
        assert_eq!(routes_from(ns.as_ref(), "uid-1"), expected, "{what}");
    }
}

fn config_map(labels: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(ROUTING_CONFIG_MAP.into()),
            uid: Some("cm-uid".into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([("web".into(), "http://web".into())])),
        ..ConfigMap::default()
    }
}

fn gathered_with_map(config_map: Option<ConfigMap>) -> Gathered {
    Gathered {
        routing: Some(RoutingObjects {
            config_map,
            ..RoutingObjects::default()
        }),
        ..Gathered::default()
    }
}

#[test]
fn only_a_routing_config_map_with_the_operators_label_is_ours() {
    assert_eq!(classify_routing_map(None), RoutingMap::Absent);
    assert!(our_routing_map(&gathered_with_map(None)).is_none());
    let ours = config_map(&[(MANAGED_BY_LABEL, MANAGED_BY)]);
    assert_eq!(
        classify_routing_map(Some(&ours)),
        RoutingMap::Ours(BTreeMap::from([("web".into(), "http://web".into())]))
    );
    assert_eq!(
        our_routing_map(&gathered_with_map(Some(ours.clone()))),
        Some(&ours)
    );
    for foreign in [
        config_map(&[]),
        config_map(&[(MANAGED_BY_LABEL, "helm")]),
        config_map(&[("testmesh", MANAGED_BY)]),
    ] {
        assert_eq!(classify_routing_map(Some(&foreign)), RoutingMap::Foreign);
        assert!(
            our_routing_map(&gathered_with_map(Some(foreign))).is_none(),
            "never updated or deleted"
        );
    }
}

fn service(name: &str, selects_pods: bool, ports: &[(Option<&str>, i32)]) -> Arc<Service> {
    Arc::new(Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("review-pr-1".into()),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            selector: selects_pods.then(|| BTreeMap::from([("app".into(), name.into())])),
            ports: Some(
                ports
                    .iter()
                    .map(|(name, port)| ServicePort {
                        name: name.map(str::to_owned),
                        port: *port,
                        ..ServicePort::default()
                    })
                    .collect(),
            ),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    })
}

/// A slice of `service` with one endpoint per readiness (`None`: not stated).
fn slice(service: &str, readiness: &[Option<bool>]) -> Arc<EndpointSlice> {
    Arc::new(EndpointSlice {
        metadata: ObjectMeta {
            name: Some(format!("{service}-abcde")),
            labels: Some(BTreeMap::from([(
                SERVICE_NAME_LABEL.to_owned(),
                service.to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        address_type: "IPv4".into(),
        endpoints: Some(
            readiness
                .iter()
                .map(|ready| Endpoint {
                    conditions: Some(EndpointConditions {
                        ready: *ready,
                        ..EndpointConditions::default()
                    }),
                    ..Endpoint::default()
                })
                .collect(),
        ),
        ports: None,
    })
}

#[test]
fn a_service_that_selects_pods_serves_once_one_of_its_slices_holds_a_ready_endpoint() {
    let web = || vec![service("web", true, &[(Some("http"), 8080)])];
    let cases: [(&str, Vec<Arc<EndpointSlice>>, bool); 7] = [
        ("no slice yet", vec![], false),
        ("an empty slice", vec![slice("web", &[])], false),
        ("not ready", vec![slice("web", &[Some(false)])], false),
        ("ready", vec![slice("web", &[Some(true)])], true),
        (
            "readiness not stated counts as ready",
            vec![slice("web", &[None])],
            true,
        ),
        (
            "one ready among several slices",
            vec![slice("web", &[Some(false)]), slice("web", &[Some(true)])],
            true,
        ),
        (
            "another Service's ready slice",
            vec![slice("api", &[Some(true)])],
            false,
        ),
    ];
    for (what, slices, serving) in cases {
        let read = service_ports(&web(), Some(&slices));
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].serving, serving, "{what}");
        assert_eq!(read[0].ports, vec![(Some("http".to_owned()), 8080)]);
    }
}

#[test]
fn services_without_a_selector_and_baseline_services_always_serve() {
    let external = vec![service("db", false, &[(None, 5432)])];
    assert!(
        service_ports(&external, Some(&[]))[0].serving,
        "no selector"
    );
    let baseline = vec![service("web", true, &[(None, 80)])];
    assert!(service_ports(&baseline, None)[0].serving, "baseline");
}

/// Reads every app as `Progressing`, with a teardown note naming it.
struct Reader;

impl AppReader for Reader {
    fn interpret(&self, app: &DynamicObject, environment_namespace: &str) -> AppReport {
        AppReport::of(
            Readiness::Progressing,
            &format!("{}@{environment_namespace}", app.name_any()),
        )
    }

    fn teardown_note(&self, app: &DynamicObject) -> Option<String> {
        Some(format!("{} prunes nothing", app.name_any()))
    }
}

fn environment(holders: &[&str]) -> TestEnvironment {
    let spec: TestEnvironmentSpec = serde_json::from_value(serde_json::json!({
        "context": "pr-1", "provider": "argocd", "providerAppName": "app",
        "namespace": "review-pr-1", "ttlMinutes": 60,
        "services": [{"name": "web"}],
    }))
    .unwrap();
    let mut environment = TestEnvironment::new("pr-1-1", spec);
    environment.metadata.namespace = Some("team-a".into());
    environment.metadata.uid = Some("uid-1".into());
    environment.status = Some(TestEnvironmentStatus {
        claimed_by: holders.iter().map(|h| (*h).to_owned()).collect(),
        ..TestEnvironmentStatus::default()
    });
    environment
}

fn claim(name: &str, context: &str, created: i64) -> Arc<TestEnvironmentClaim> {
    let spec: TestEnvironmentClaimSpec =
        serde_json::from_value(serde_json::json!({"context": context})).unwrap();
    let mut claim = TestEnvironmentClaim::new(name, spec);
    claim.metadata.namespace = Some("team-a".into());
    claim.metadata.creation_timestamp =
        Some(Time(jiff::Timestamp::from_second(1_000 + created).unwrap()));
    Arc::new(claim)
}

fn reading(policy: &NamespacePolicy) -> Reading<'_, Reader> {
    Reading {
        provider: &Reader,
        policy,
        cluster_domain: "cluster.local",
    }
}

#[test]
fn a_fresh_read_proves_the_holders_and_takes_the_waiting_claims_from_the_cache() {
    let mut released = (*claim("stale-holder", "pr-1", 1)).clone();
    released.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::from_second(2_000).unwrap()));
    let cached = vec![
        claim("stale-holder", "pr-1", 1),
        claim("gone-holder", "pr-1", 2),
        claim("waiting", "pr-1", 10),
    ];
    let fresh = vec![
        ("stale-holder".to_owned(), Some(Arc::new(released))),
        ("gone-holder".to_owned(), None),
        (
            "unseen-holder".to_owned(),
            Some(claim("unseen-holder", "pr-1", 3)),
        ),
    ];
    let claims = with_fresh_holders(cached, fresh);
    let gathered = Gathered {
        claims,
        ..Gathered::default()
    };
    let policy = NamespacePolicy::default();
    let environment = environment(&["stale-holder", "gone-holder", "unseen-holder"]);
    let observed = observed(&environment, "uid-1", &gathered, &reading(&policy));
    assert_eq!(
        observed.holders,
        ["unseen-holder"],
        "read fresh: one is being deleted, one is gone, one the cache had not seen yet"
    );
    assert_eq!(
        observed.waiting,
        ["waiting"],
        "the waiting come from the cache"
    );
}

#[test]
fn holders_are_the_claims_still_wanting_it_and_the_rest_wait_in_creation_order() {
    let claims = vec![
        claim("late", "pr-1", 30),
        claim("holder", "pr-1", 1),
        claim("gone-holder-replaced", "pr-2", 2),
        claim("early", "pr-1", 10),
    ];
    let gathered = Gathered {
        claims,
        ..Gathered::default()
    };
    let policy = NamespacePolicy::default();
    let observed = observed(
        &environment(&["holder", "deleted-holder"]),
        "uid-1",
        &gathered,
        &reading(&policy),
    );
    assert_eq!(
        observed.holders,
        ["holder"],
        "a deleted holder holds nothing"
    );
    assert_eq!(
        observed.waiting,
        ["early", "late"],
        "another context never waits"
    );
}

#[test]
fn an_app_is_read_by_its_provider_and_a_missing_one_is_missing() {
    let policy = NamespacePolicy::default();
    let app = DynamicObject {
        types: None,
        metadata: ObjectMeta {
            name: Some("app".into()),
            ..ObjectMeta::default()
        },
        data: serde_json::Value::Null,
    };
    let with_app = Gathered {
        app: Some(Arc::new(app)),
        ..Gathered::default()
    };
    let seen = observed(&environment(&[]), "uid-1", &with_app, &reading(&policy));
    assert_eq!(
        seen.app,
        AppState::Present(AppReport::of(Readiness::Progressing, "app@review-pr-1"))
    );
    assert_eq!(seen.teardown_note.as_deref(), Some("app prunes nothing"));

    let without = observed(
        &environment(&[]),
        "uid-1",
        &Gathered::default(),
        &reading(&policy),
    );
    assert_eq!(without.app, AppState::Missing);
    assert_eq!(without.teardown_note, None);
}

#[test]
fn routing_comes_from_what_was_gathered_and_nothing_when_nothing_was() {
    let policy = NamespacePolicy::default();
    let nothing = observed(
        &environment(&[]),
        "uid-1",
        &Gathered::default(),
        &reading(&policy),
    );
    assert_eq!(nothing.routing, Routing::default());
    assert_eq!(nothing.routing_map, RoutingMap::Absent);

    let gathered = Gathered {
        namespace: Some(Arc::new(namespace(Some("uid-1")))),
        routing: Some(RoutingObjects {
            services: vec![service("web", true, &[(None, 8080)])],
            endpoint_slices: vec![slice("web", &[Some(true)])],
            baseline_services: Vec::new(),
            config_map: Some(config_map(&[(MANAGED_BY_LABEL, MANAGED_BY)])),
        }),
        ..Gathered::default()
    };
    let seen = observed(&environment(&[]), "uid-1", &gathered, &reading(&policy));
    assert_eq!(
        seen.routing.policy.get("web").map(String::as_str),
        Some("http://web.review-pr-1.svc.cluster.local:8080")
    );
    assert!(matches!(seen.routing_map, RoutingMap::Ours(_)));
    assert!(matches!(seen.namespace, NamespaceState::Owned { .. }));
}

#[test]
fn the_operators_namespace_policy_is_applied_to_a_namespace_that_is_not_ours() {
    let policy = NamespacePolicy::new([], ["preview-*"]);
    let seen = observed(
        &environment(&[]),
        "uid-1",
        &Gathered::default(),
        &reading(&policy),
    );
    assert!(
        matches!(&seen.namespace, NamespaceState::Refused(why) if why.contains("preview-*")),
        "{:?}",
        seen.namespace
    );
}
