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
    assert_eq!(name_prefix("pr-123"), "pr-123");
    assert_eq!(name_prefix("PR_123.main"), "pr-123-main");
    assert_eq!(name_prefix("--x--"), "x");
    assert_eq!(name_prefix("___"), "env");
    assert_eq!(name_prefix(&"a".repeat(80)).len(), 40);
}

#[test]
fn an_environment_is_shown_from_its_status() {
    let mut resource = parse::<NewEnvironment>(seed())
        .expect("seed")
        .into_resource();
    resource.metadata.name = Some("pr-123-abcde".to_owned());
    resource.metadata.namespace = Some("team-a".to_owned());
    let shown = Environment::from_resource(&resource);
    assert_eq!(shown.id, "pr-123-abcde");
    assert_eq!(shown.workspace_id, "team-a");
    assert_eq!(shown.name, "PR-123 Review Environment");
    assert_eq!(shown.state, Phase::Cold);
    assert_eq!(shown.reason, None);
    assert!(!shown.is_ready() && !shown.is_settled());

    let status: crate::resources::TestEnvironmentStatus = serde_json::from_value(json!({
        "phase": "warm",
        "conditions": [{"type": "Ready", "status": "True", "reason": "Warm",
            "message": "ready for runs", "lastTransitionTime": "2026-11-24T08:00:00Z",
            "observedGeneration": 1}],
        "routingPolicy": {"user-service": "http://user-service.review-pr-123.svc.cluster.local:8080"},
        "lastUsedAt": "2026-11-24T08:00:00Z",
        "expiresAt": "2026-11-24T09:00:00Z"
    }))
    .expect("status");
    resource.status = Some(status);
    let shown = Environment::from_resource(&resource);
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
