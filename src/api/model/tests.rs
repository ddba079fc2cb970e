use super::*;
use serde_json::json;

/// SPEC.md's example payload, unchanged.
fn seed() -> serde_json::Value {
    json!({
      "name": "PR-123 Review Environment",
      "context": "pr-123",
      "provider": "argocd",
      "provider_app_name": "testmesh-pr-123",
      "namespace": "review-pr-123",
      "ttl_minutes": 60,
      "services": [
        {"name": "user-service", "image": "myrepo/user-service:pr-123",
         "repo": "github.com/org/user-service", "source_ref": "pr-123"},
        {"name": "product-service", "image": "myrepo/product-service:pr-123",
         "repo": "github.com/org/product-service", "source_ref": "pr-123"}
      ]
    })
}

fn parse<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    parse_body(value.to_string().as_bytes())
}

#[test]
fn the_seed_payload_becomes_one_test_environment() {
    let new: NewEnvironment = parse(seed()).expect("seed payload");
    let resource = new.into_resource();
    assert_eq!(resource.metadata.name, None);
    assert_eq!(resource.metadata.generate_name.as_deref(), Some("pr-123-"));
    assert_eq!(
        resource.metadata.finalizers,
        Some(vec![TEARDOWN_FINALIZER.to_owned()]),
        "born with the teardown finalizer"
    );
    let expected: TestEnvironmentSpec = serde_json::from_value(json!({
        "context": "pr-123",
        "displayName": "PR-123 Review Environment",
        "provider": "argocd",
        "providerAppName": "testmesh-pr-123",
        "namespace": "review-pr-123",
        "ttlMinutes": 60,
        "services": [
            {"name": "user-service", "image": "myrepo/user-service:pr-123",
             "repo": "github.com/org/user-service", "sourceRef": "pr-123"},
            {"name": "product-service", "image": "myrepo/product-service:pr-123",
             "repo": "github.com/org/product-service", "sourceRef": "pr-123"}
        ]
    }))
    .expect("spec");
    assert_eq!(resource.spec, expected);
}

#[test]
fn an_id_names_the_object_and_defaults_fill_the_rest() {
    let new: NewEnvironment = parse(json!({
        "id": "nightly", "context": "nightly", "provider": "flux",
        "provider_app_name": "nightly", "namespace": "nightly-env"
    }))
    .expect("minimal payload");
    let resource = new.into_resource();
    assert_eq!(resource.metadata.name.as_deref(), Some("nightly"));
    assert_eq!(resource.metadata.generate_name, None);
    assert_eq!(resource.spec.template.ttl_minutes, DEFAULT_TTL_MINUTES);
    assert_eq!(resource.spec.template.display_name, None);
}

#[test]
fn bad_bodies_name_the_field() {
    let cases: Vec<(serde_json::Value, &str)> = vec![
        (json!({"ttl_minute": 5}), "ttl_minute"),
        (
            {
                let mut v = seed();
                v.as_object_mut().expect("object").remove("context");
                v
            },
            "context",
        ),
        (
            {
                let mut v = seed();
                v["ttl_minutes"] = json!(-1);
                v
            },
            "ttl_minutes",
        ),
        (
            {
                let mut v = seed();
                v["provider"] = json!("helm");
                v
            },
            "provider",
        ),
        (
            {
                let mut v = seed();
                v["services"][1]["name"] = json!(7);
                v
            },
            "services[1].name",
        ),
        (
            {
                let mut v = seed();
                v["services"][0]["tag"] = json!("x");
                v
            },
            "services[0].tag",
        ),
        (json!("not an object"), "body"),
    ];
    for (body, field) in cases {
        let error = parse::<NewEnvironment>(body.clone()).expect_err("must be rejected");
        assert_eq!(error.status, 400, "{body}");
        assert_eq!(error.field.as_deref(), Some(field), "{body}: {error:?}");
        assert!(
            error.message.contains(field) || field == "body",
            "{error:?}"
        );
    }
}

#[test]
fn malformed_json_and_trailing_bytes_are_rejected() {
    for (body, field) in [
        (&b"{"[..], "body"),
        (b"", "body"),
        (
            br#"{"context": "c", "provider": "flux", "provider_app_name": "a", "namespace": "n"} {}"#,
            "body",
        ),
        (b"{\"id\": }", "id"),
    ] {
        let error = parse_body::<NewEnvironment>(body).expect_err("rejected");
        assert_eq!(error.status, 400);
        assert_eq!(error.field.as_deref(), Some(field), "{error:?}");
    }
}

#[test]
fn generated_names_are_valid_prefixes() {
    assert_eq!(generated_prefix("pr-123"), "pr-123");
    assert_eq!(generated_prefix("PR_123.main"), "pr-123-main");
    assert_eq!(generated_prefix("--x--"), "x");
    assert_eq!(generated_prefix("___"), "env");
    assert_eq!(generated_prefix(&"a".repeat(80)).len(), 40);
}

#[test]
fn an_environment_is_shown_from_its_status() {
    let mut resource = parse::<NewEnvironment>(seed())
        .expect("seed")
        .into_resource();
    resource.metadata.name = Some("pr-123-abcde".to_owned());
    resource.metadata.namespace = Some("team-a".to_owned());
    let links = ProviderLinks {
        argocd_namespace: "argocd".to_owned(),
        argocd_url: Some("https://argocd.example.com".to_owned()),
        ..ProviderLinks::default()
    };
    let shown = Environment::from_resource(&resource, &links);
    assert_eq!(shown.id, "pr-123-abcde");
    assert_eq!(shown.workspace_id, "team-a");
    assert_eq!(shown.name, "PR-123 Review Environment");
    assert_eq!(shown.state, Phase::Cold);
    assert_eq!(shown.reason, None);
    assert!(!shown.is_ready() && !shown.is_settled());
    assert_eq!(
        shown.provider_app_url.as_deref(),
        Some("https://argocd.example.com/applications/argocd/testmesh-pr-123")
    );
    assert_eq!(shown.provider_app_status, None);
    assert_eq!(
        Environment::from_resource(&resource, &ProviderLinks::default()).provider_app_url,
        None,
        "no link without --argocd-url"
    );

    let status: crate::resources::TestEnvironmentStatus = serde_json::from_value(json!({
        "phase": "warm",
        "conditions": [{"type": "Ready", "status": "True", "reason": "Warm",
            "message": "ready for runs", "lastTransitionTime": "2026-11-24T08:00:00Z",
            "observedGeneration": 1}],
        "routingPolicy": {"user-service": "http://user-service.review-pr-123.svc.cluster.local:8080"},
        "provisioningStartedAt": "2026-11-24T07:56:00Z",
        "readyAt": "2026-11-24T08:00:00Z",
        "lastUsedAt": "2026-11-24T08:00:00Z",
        "expiresAt": "2026-11-24T09:00:00Z",
        "provider": {"health": "Healthy", "healthSince": "2026-11-24T07:59:58Z",
            "sync": "Synced", "revision": "4f1c2e9"}
    }))
    .expect("status");
    resource.status = Some(status);
    let shown = Environment::from_resource(&resource, &links);
    assert_eq!(
        shown.provisioning_started_at.as_deref(),
        Some("2026-11-24T07:56:00Z")
    );
    assert_eq!(shown.ready_at.as_deref(), Some("2026-11-24T08:00:00Z"));
    assert_eq!(shown.teardown_started_at, None);
    assert_eq!(
        shown.provider_app_status,
        Some(ProviderAppStatus {
            health: Some("Healthy".to_owned()),
            health_since: Some("2026-11-24T07:59:58Z".to_owned()),
            sync: Some("Synced".to_owned()),
            revision: Some("4f1c2e9".to_owned()),
            message: None,
        })
    );
    assert_eq!(shown.state, Phase::Warm);
    assert!(shown.is_ready());
    assert_eq!(shown.reason.as_deref(), Some("Warm"));
    assert_eq!(shown.expires_at.as_deref(), Some("2026-11-24T09:00:00Z"));
    assert_eq!(shown.conditions[0].type_, "Ready");
    let json = serde_json::to_value(&shown).expect("json");
    for key in [
        "id",
        "name",
        "context",
        "provider",
        "provider_app_name",
        "namespace",
        "ttl_minutes",
        "services",
        "routing_policy",
        "state",
        "last_used_at",
        "expires_at",
        "created_at",
        "conditions",
        "reason",
    ] {
        assert!(json.get(key).is_some(), "missing {key}");
    }
    assert_eq!(json["state"], "warm");
    assert_eq!(json["services"][0]["source_ref"], "pr-123");
}

#[test]
fn an_environment_is_expiring_soon_once_warned_for_its_current_expiry() {
    let mut resource = parse::<NewEnvironment>(seed())
        .expect("seed")
        .into_resource();
    resource.metadata.name = Some("pr-123-abcde".to_owned());
    let shown = |status: serde_json::Value| {
        let mut resource = resource.clone();
        resource.status = Some(serde_json::from_value(status).expect("status"));
        Environment::from_resource(&resource, &ProviderLinks::default())
    };
    let warned = shown(json!({
        "phase": "cooling",
        "expiresAt": "2026-11-24T09:00:00Z",
        "expiryWarningAt": "2026-11-24T08:50:00Z",
        "expiryWarnedFor": "2026-11-24T09:00:00Z"
    }));
    assert!(warned.expiring_soon);
    assert_eq!(
        warned.expiry_warning_at.as_deref(),
        Some("2026-11-24T08:50:00Z")
    );
    let json = serde_json::to_value(&warned).expect("json");
    assert_eq!(
        (&json["expiring_soon"], &json["expiry_warning_at"]),
        (&json!(true), &json!("2026-11-24T08:50:00Z"))
    );
    let not_yet = shown(json!({
        "phase": "warm",
        "expiresAt": "2026-11-24T09:00:00Z",
        "expiryWarningAt": "2026-11-24T08:50:00Z"
    }));
    assert!(!not_yet.expiring_soon, "the warning is not due yet");
    let extended = shown(json!({
        "phase": "warm",
        "expiresAt": "2026-11-24T10:00:00Z",
        "expiryWarningAt": "2026-11-24T09:50:00Z",
        "expiryWarnedFor": "2026-11-24T09:00:00Z"
    }));
    assert!(!extended.expiring_soon, "warned for an expiry since moved");
    let tearing_down = shown(json!({
        "phase": "destroying",
        "expiresAt": "2026-11-24T09:00:00Z",
        "expiryWarnedFor": "2026-11-24T09:00:00Z"
    }));
    assert!(!tearing_down.expiring_soon, "expired");
}

#[test]
fn a_claim_request_becomes_one_claim() {
    let new: NewClaim = parse(json!({
        "context": "pr-123",
        "template": {"provider": "argocd", "provider_app_name": "a", "namespace": "review-pr-123"}
    }))
    .expect("claim");
    let claim = new.into_resource();
    assert_eq!(claim.metadata.generate_name.as_deref(), Some("pr-123-"));
    assert_eq!(claim.metadata.finalizers, None, "claims carry no finalizer");
    assert_eq!(claim.spec.max_duration_minutes, 120);
    assert_eq!(
        claim.spec.template.as_ref().map(|t| t.namespace.as_str()),
        Some("review-pr-123")
    );
    let error = parse::<NewClaim>(json!({"context": "x", "template": {"nme": 1}}))
        .expect_err("unknown template field");
    assert_eq!(error.field.as_deref(), Some("template.nme"));
    let shown = Claim::from_resource(&claim);
    assert_eq!(shown.state, ClaimPhase::Pending);
    assert!(!shown.ready && !shown.is_settled());
}

#[test]
fn a_claim_template_keeps_its_placeholders_for_the_operator_to_resolve() {
    let new: NewClaim = parse(json!({
        "context": "pr-7",
        "template": {"provider": "argocd", "provider_app_name": "testmesh-{{context}}",
                     "namespace": "review-{{context}}"}
    }))
    .expect("claim");
    let template = new.into_resource().spec.template.expect("template");
    assert_eq!(template.namespace, "review-{{context}}");
    assert_eq!(template.provider_app_name, "testmesh-{{context}}");
    let document = crate::api::openapi_document();
    let template = &document["components"]["schemas"]["NewTemplate"]["properties"];
    // A character class the placeholder's braces belong to (the CRD checks the exact rule).
    assert_eq!(
        template["namespace"]["pattern"], "^[-a-z0-9{}]+$",
        "the document allows the placeholder"
    );
    assert_eq!(template["provider_app_name"]["pattern"], "^[-.a-z0-9{}]+$");
}

/// The seed's environment as stored, with routing and a provider app namespace.
fn stored_spec() -> TestEnvironmentSpec {
    let mut new: NewEnvironment = parse(seed()).expect("seed payload");
    new.provider_app_namespace = Some("apps".to_owned());
    new.routing = Some(Routing {
        baseline_namespace: Some("staging".to_owned()),
        overrides: BTreeMap::from([
            ("a".to_owned(), "http://a".to_owned()),
            ("b".to_owned(), "http://b".to_owned()),
        ]),
        publish_config_map: false,
    });
    new.into_resource().spec
}

#[test]
fn a_change_touches_only_the_fields_given() {
    let spec = stored_spec();
    let changes: EnvironmentChanges = parse(json!({"ttl_minutes": 240})).expect("changes");
    let changed = changes.applied_to(&spec);
    assert_eq!(changed.template.ttl_minutes, 240);
    let mut expected = spec.clone();
    expected.template.ttl_minutes = 240;
    assert_eq!(changed, expected);

    let nothing: EnvironmentChanges = parse(json!({})).expect("no changes");
    assert_eq!(nothing.applied_to(&spec), spec);
    let nulls: EnvironmentChanges =
        parse(json!({"ttl_minutes": null, "services": null})).expect("nulls");
    assert_eq!(
        nulls.applied_to(&spec),
        spec,
        "null leaves what cannot be absent"
    );
}

#[test]
fn null_clears_what_may_be_absent_and_lists_are_replaced_whole() {
    let spec = stored_spec();
    let changes: EnvironmentChanges = parse(json!({
        "name": null,
        "provider_app_namespace": null,
        "routing": {"overrides": {"b": "http://b2", "c": "http://c"}},
        "services": [{"name": "user-service", "image": "myrepo/user-service:pr-124"}],
        "provider_app_name": "testmesh-pr-123-v2",
    }))
    .expect("changes");
    let changed = changes.applied_to(&spec).template;
    assert_eq!(changed.display_name, None);
    assert_eq!(changed.provider_app_namespace, None);
    assert_eq!(changed.provider_app_name, "testmesh-pr-123-v2");
    assert_eq!(changed.services.len(), 1);
    assert_eq!(
        changed.services[0].image.as_deref(),
        Some("myrepo/user-service:pr-124")
    );
    let routing = changed.routing.expect("routing");
    assert_eq!(
        routing.baseline_namespace, None,
        "routing is replaced whole"
    );
    assert_eq!(
        routing.overrides.keys().collect::<Vec<_>>(),
        ["b", "c"],
        "{:?}",
        routing.overrides
    );
}

#[test]
fn immutable_and_unknown_fields_are_refused_by_name() {
    for (body, field) in [
        (json!({"context": "pr-9"}), "context"),
        (json!({"namespace": "elsewhere"}), "namespace"),
        (json!({"provider": "flux"}), "provider"),
        (json!({"destroy": true}), "destroy"),
        (json!({"ttl_minutes": -1}), "ttl_minutes"),
        (json!({"ttl_minutes": "later"}), "ttl_minutes"),
        (
            json!({"services": [{"name": "a", "port": 1}]}),
            "services[0].port",
        ),
        (json!([]), "body"),
    ] {
        let error = parse::<EnvironmentChanges>(body.clone()).expect_err("refused");
        assert_eq!(error.field.as_deref(), Some(field), "{body}: {error:?}");
    }
}

#[test]
fn the_merge_patch_carries_only_what_differs_and_nulls_what_went() {
    let spec = stored_spec();
    let changes: EnvironmentChanges = parse(json!({
        "ttl_minutes": 240,
        "name": null,
        "routing": {"baseline_namespace": "staging", "overrides": {"b": "http://b2"}},
    }))
    .expect("changes");
    let old = serde_json::to_value(&spec).expect("old");
    let new = serde_json::to_value(changes.applied_to(&spec)).expect("new");
    assert_eq!(
        merge_patch(&old, &new),
        json!({
            "ttlMinutes": 240,
            "displayName": null,
            "routing": {"overrides": {"a": null, "b": "http://b2"}},
        })
    );
    assert_eq!(merge_patch(&old, &old), json!({}), "nothing changed");
    let services_changed = {
        let mut new = old.clone();
        new["services"][1]["image"] = json!("other");
        new
    };
    assert_eq!(
        merge_patch(&old, &services_changed),
        json!({"services": services_changed["services"].clone()}),
        "a list is replaced whole"
    );
}
