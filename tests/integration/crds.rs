//! The CRDs on a real kube-apiserver: they install, the API server itself rejects bad
//! input with a message naming the field, the examples apply, `kubectl explain` shows
//! the docs, and `kubectl wait --for=condition=Ready` works with our conditions.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, Status};
use kube::{Client, Resource};
use serde_json::{Value, json};
use testmesh::lifecycle::conditions;
use testmesh::resources::{TestEnvironment, TestEnvironmentClaim};

use crate::support::{repo_root, run, workspace, yaml_files};

/// The column names of a `kubectl get` table.
fn header(table: &str) -> Vec<&str> {
    table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect()
}

fn valid_environment(name: &str) -> Value {
    json!({
        "apiVersion": "testmesh.io/v1alpha1",
        "kind": "TestEnvironment",
        "metadata": {"name": name},
        "spec": {
            "context": "pr-123",
            "provider": "argocd",
            "providerAppName": "testmesh-pr-123",
            "namespace": "review-pr-123",
            "services": [
                {"name": "user-service", "image": "myrepo/user-service:pr-123"},
                {"name": "product-service"}
            ],
            "routing": {"baselineNamespace": "staging"}
        }
    })
}

fn valid_claim(name: &str) -> Value {
    json!({
        "apiVersion": "testmesh.io/v1alpha1",
        "kind": "TestEnvironmentClaim",
        "metadata": {"name": name},
        "spec": {
            "context": "pr-123",
            "template": {
                "provider": "argocd",
                "providerAppName": "testmesh-pr-123",
                "namespace": "review-pr-123"
            }
        }
    })
}

fn dynamic_api<K: Resource<DynamicType = ()>>(
    client: &Client,
    namespace: &str,
) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &ApiResource::erase::<K>(&()))
}

async fn create(api: &Api<DynamicObject>, object: Value) -> Result<DynamicObject, Status> {
    let object: DynamicObject = serde_json::from_value(object).expect("object JSON");
    api.create(&PostParams::default(), &object)
        .await
        .map_err(|e| match e {
            kube::Error::Api(response) => *response,
            other => panic!("unexpected client error: {other}"),
        })
}

/// Sets a JSON pointer path (creating objects on the way) to a value.
fn with(mut object: Value, pointer: &str, value: Value) -> Value {
    *pointer_mut_creating(&mut object, pointer) = value;
    object
}

fn pointer_mut_creating<'a>(mut value: &'a mut Value, pointer: &str) -> &'a mut Value {
    for key in pointer.trim_start_matches('/').split('/') {
        if value.is_null() {
            *value = json!({});
        }
        value = match value {
            Value::Object(map) => map.entry(key.to_owned()).or_insert(Value::Null),
            Value::Array(items) => &mut items[key.parse::<usize>().expect("index")],
            other => panic!("cannot descend into {other}"),
        };
    }
    value
}

fn without(mut object: Value, pointer: &str, key: &str) -> Value {
    object
        .pointer_mut(pointer)
        .and_then(Value::as_object_mut)
        .expect("object at pointer")
        .remove(key);
    object
}

#[tokio::test]
async fn crds_are_established_with_names_columns_and_category() {
    let (control_plane, _client, workspace) = workspace("crds").await;
    let mut kubectl = control_plane.kubectl();
    kubectl.args(["api-resources", "--api-group=testmesh.io", "-o", "wide"]);
    let (ok, stdout, stderr) = run(kubectl);
    assert!(ok, "{stderr}");
    for expected in [
        "testenvironments",
        "te,testenv",
        "testenvironmentclaims",
        "tec,testenvclaim",
        "testmesh",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected} in:\n{stdout}"
        );
    }

    let env_api = dynamic_api::<TestEnvironment>(&_client, workspace.name());
    create(&env_api, valid_environment("columns"))
        .await
        .expect("valid environment");
    let claim_api = dynamic_api::<TestEnvironmentClaim>(&_client, workspace.name());
    create(&claim_api, valid_claim("columns"))
        .await
        .expect("valid claim");

    let mut kubectl = control_plane.kubectl();
    kubectl.args(["get", "testmesh", "-n", workspace.name()]);
    let (ok, stdout, stderr) = run(kubectl);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("testenvironment.testmesh.io/columns"),
        "{stdout}"
    );
    assert!(
        stdout.contains("testenvironmentclaim.testmesh.io/columns"),
        "{stdout}"
    );

    let mut kubectl = control_plane.kubectl();
    kubectl.args(["get", "te", "-n", workspace.name()]);
    let (ok, stdout, stderr) = run(kubectl);
    assert!(ok, "{stderr}");
    assert_eq!(
        header(&stdout),
        [
            "NAME",
            "PHASE",
            "CONTEXT",
            "NAMESPACE",
            "TTL",
            "READY",
            "REASON",
            "EXPIRES",
            "AGE"
        ]
    );
    assert!(
        stdout.contains("pr-123") && stdout.contains("review-pr-123") && stdout.contains("120"),
        "{stdout}"
    );

    let mut kubectl = control_plane.kubectl();
    kubectl.args(["get", "tec", "-n", workspace.name()]);
    let (ok, stdout, stderr) = run(kubectl);
    assert!(ok, "{stderr}");
    assert_eq!(
        header(&stdout),
        [
            "NAME",
            "PHASE",
            "CONTEXT",
            "ENVIRONMENT",
            "READY",
            "REASON",
            "QUEUE",
            "REUSED",
            "AGE"
        ]
    );
}

#[tokio::test]
async fn defaults_are_applied_by_the_api_server() {
    let (_, client, workspace) = workspace("defaults").await;
    let envs: Api<TestEnvironment> = Api::namespaced(client.clone(), workspace.name());
    create(
        &dynamic_api::<TestEnvironment>(&client, workspace.name()),
        valid_environment("defaults"),
    )
    .await
    .expect("valid environment");
    let stored = envs.get("defaults").await.expect("get");
    assert_eq!(stored.spec.template.ttl_minutes, 120);

    let claims: Api<TestEnvironmentClaim> = Api::namespaced(client.clone(), workspace.name());
    create(
        &dynamic_api::<TestEnvironmentClaim>(&client, workspace.name()),
        valid_claim("defaults"),
    )
    .await
    .expect("valid claim");
    let stored = claims.get("defaults").await.expect("get");
    assert_eq!(stored.spec.max_duration_minutes, 120);
    assert_eq!(stored.spec.template.expect("template").ttl_minutes, 120);
}

/// Each invalid environment is rejected, and the message names the field.
#[tokio::test]
async fn invalid_environments_are_rejected_naming_the_field() {
    let (_, client, workspace) = workspace("invalid-env").await;
    let api = dynamic_api::<TestEnvironment>(&client, workspace.name());
    let base = || valid_environment("invalid");
    let long_label = "a".repeat(64);
    let cases: Vec<(&str, Value, &[&str])> = vec![
        (
            "namespace not a DNS-1123 label",
            with(base(), "/spec/namespace", json!("Review_PR")),
            &["spec.namespace", "should match"],
        ),
        (
            "namespace too long",
            with(base(), "/spec/namespace", json!(long_label)),
            &["spec.namespace", "63"],
        ),
        (
            "context not a label value",
            with(base(), "/spec/context", json!("pr 123")),
            &["spec.context", "should match"],
        ),
        (
            "context too long",
            with(base(), "/spec/context", json!(long_label)),
            &["spec.context", "63"],
        ),
        (
            "empty context",
            with(base(), "/spec/context", json!("")),
            &["spec.context"],
        ),
        (
            "ttlMinutes zero",
            with(base(), "/spec/ttlMinutes", json!(0)),
            &["spec.ttlMinutes", "greater than or equal to 1"],
        ),
        (
            "ttlMinutes above 30 days",
            with(base(), "/spec/ttlMinutes", json!(43_201)),
            &["spec.ttlMinutes", "less than or equal to 43200"],
        ),
        (
            "unknown provider",
            with(base(), "/spec/provider", json!("helm")),
            &["spec.provider", "Unsupported value: \"helm\""],
        ),
        (
            "empty providerAppName",
            with(base(), "/spec/providerAppName", json!("")),
            &["spec.providerAppName"],
        ),
        (
            "missing providerAppName",
            without(base(), "/spec", "providerAppName"),
            &["spec.providerAppName", "Required value"],
        ),
        (
            "providerAppName not an object name",
            with(base(), "/spec/providerAppName", json!("Test App")),
            &["spec.providerAppName", "should match"],
        ),
        (
            "providerAppNamespace not a label",
            with(base(), "/spec/providerAppNamespace", json!("Argo CD")),
            &["spec.providerAppNamespace", "should match"],
        ),
        (
            "duplicate service names",
            with(
                base(),
                "/spec/services",
                json!([{"name": "user-service"}, {"name": "user-service"}]),
            ),
            &["spec.services[1]", "Duplicate value"],
        ),
        (
            "service name not a DNS-1035 label",
            with(base(), "/spec/services/0/name", json!("1st-service")),
            &["spec.services[0].name", "should match"],
        ),
        (
            "empty image",
            with(base(), "/spec/services/0/image", json!("")),
            &["spec.services[0].image"],
        ),
        (
            "baseline is the environment's own namespace",
            with(
                base(),
                "/spec/routing/baselineNamespace",
                json!("review-pr-123"),
            ),
            &[
                "spec.routing.baselineNamespace",
                "must differ from namespace",
            ],
        ),
        (
            "override is not a URL",
            with(
                base(),
                "/spec/routing/overrides",
                json!({"payments": "not a url"}),
            ),
            &[
                "spec.routing.overrides",
                "must be absolute http:// or https:// URLs",
            ],
        ),
        (
            "override key is not a service name",
            with(
                base(),
                "/spec/routing/overrides",
                json!({"Payments_API": "http://payments:80"}),
            ),
            &["spec.routing.overrides", "keys must be service names"],
        ),
        (
            "displayName too long",
            with(base(), "/spec/displayName", json!("x".repeat(254))),
            &["spec.displayName"],
        ),
    ];
    for (name, object, expected) in cases {
        let error = create(&api, object)
            .await
            .err()
            .unwrap_or_else(|| panic!("{name}: accepted"));
        assert_eq!(error.code, 422, "{name}: {}", error.message);
        for fragment in expected {
            assert!(
                error.message.contains(fragment),
                "{name}: expected {fragment:?} in {:?}",
                error.message
            );
        }
        println!("{name}: {}", error.message);
    }
    let stored = api.list(&Default::default()).await.expect("list");
    assert!(stored.items.is_empty(), "nothing invalid was stored");
}

/// `context`, `provider` and `namespace` cannot change after creation, and a rejected
/// change leaves the stored object as it was.
#[tokio::test]
async fn identity_fields_are_immutable() {
    let (_, client, workspace) = workspace("immutable").await;
    let api = dynamic_api::<TestEnvironment>(&client, workspace.name());
    create(&api, valid_environment("fixed"))
        .await
        .expect("valid environment");
    let cases = [
        (
            "context",
            json!({"spec": {"context": "pr-999"}}),
            "spec.context is immutable",
        ),
        (
            "provider",
            json!({"spec": {"provider": "flux"}}),
            "provider is immutable",
        ),
        (
            "namespace",
            json!({"spec": {"namespace": "elsewhere"}}),
            "namespace is immutable",
        ),
    ];
    for (field, patch, message) in cases {
        let error = api
            .patch("fixed", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .err()
            .unwrap_or_else(|| panic!("{field}: change accepted"));
        let kube::Error::Api(response) = error else {
            panic!("{field}: {error}")
        };
        assert!(
            response.message.contains(&format!("spec.{field}")),
            "{field}: {}",
            response.message
        );
        assert!(
            response.message.contains(message),
            "{field}: {}",
            response.message
        );
        println!("{field}: {}", response.message);
    }
    let changed = api
        .patch(
            "fixed",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"ttlMinutes": 30}})),
        )
        .await
        .expect("ttlMinutes may change");
    let typed: TestEnvironment =
        serde_json::from_value(serde_json::to_value(changed).expect("json")).expect("typed");
    assert_eq!(typed.spec.context, "pr-123");
    assert_eq!(typed.spec.template.namespace, "review-pr-123");
    assert_eq!(typed.spec.template.ttl_minutes, 30);
}

#[tokio::test]
async fn invalid_claims_are_rejected_naming_the_field() {
    let (_, client, workspace) = workspace("invalid-claim").await;
    let api = dynamic_api::<TestEnvironmentClaim>(&client, workspace.name());
    let base = || valid_claim("invalid");
    let cases: Vec<(&str, Value, &[&str])> = vec![
        (
            "neither template nor environmentName",
            without(base(), "/spec", "template"),
            &[
                "spec: Invalid value",
                "spec.template or spec.environmentName must be set",
            ],
        ),
        (
            "context not a label value",
            with(base(), "/spec/context", json!("pr/123")),
            &["spec.context", "should match"],
        ),
        (
            "maxDurationMinutes zero",
            with(base(), "/spec/maxDurationMinutes", json!(0)),
            &["spec.maxDurationMinutes"],
        ),
        (
            "template namespace invalid",
            with(base(), "/spec/template/namespace", json!("UPPER")),
            &["spec.template.namespace", "should match"],
        ),
        (
            "template provider unknown",
            with(base(), "/spec/template/provider", json!("jenkins")),
            &["spec.template.provider", "Unsupported value"],
        ),
        (
            "environmentName not an object name",
            with(base(), "/spec/environmentName", json!("Not Valid")),
            &["spec.environmentName", "should match"],
        ),
        (
            "template namespace resolves to no namespace name",
            with(
                with(
                    base(),
                    "/spec/template/namespace",
                    json!("review-{{context}}"),
                ),
                "/spec/context",
                json!("PR_123"),
            ),
            &[
                "spec.template.namespace",
                "template.namespace is review-PR_123 for context PR_123, which is not a namespace name",
            ],
        ),
        (
            "template namespace resolves to more than 63 characters",
            with(
                with(
                    base(),
                    "/spec/template/namespace",
                    json!("review-environment-{{context}}"),
                ),
                "/spec/context",
                json!("a".repeat(50)),
            ),
            &["spec.template.namespace", "at most 63 characters"],
        ),
        (
            "an unknown placeholder",
            with(base(), "/spec/template/namespace", json!("review-{{ctx}}")),
            &["spec.template.namespace", "should match"],
        ),
        (
            "template app name resolves to no object name",
            with(
                with(
                    base(),
                    "/spec/template/providerAppName",
                    json!("testmesh-{{context}}"),
                ),
                "/spec/context",
                json!("Feature_X"),
            ),
            &[
                "spec.template.providerAppName",
                "template.providerAppName is testmesh-Feature_X for context Feature_X",
            ],
        ),
        (
            "template namespace resolves to the baseline",
            with(
                with(
                    with(base(), "/spec/template/namespace", json!("{{context}}")),
                    "/spec/template/routing",
                    json!({"baselineNamespace": "staging"}),
                ),
                "/spec/context",
                json!("staging"),
            ),
            &[
                "spec.template.routing.baselineNamespace",
                "must differ from the namespace the template resolves to",
            ],
        ),
    ];
    for (name, object, expected) in cases {
        let error = create(&api, object)
            .await
            .err()
            .unwrap_or_else(|| panic!("{name}: accepted"));
        assert_eq!(error.code, 422, "{name}: {}", error.message);
        for fragment in expected {
            assert!(
                error.message.contains(fragment),
                "{name}: expected {fragment:?} in {:?}",
                error.message
            );
        }
        println!("{name}: {}", error.message);
    }
    create(&api, valid_claim("by-template"))
        .await
        .expect("template claim");
    // One template for every context: the placeholder, in the names and the title.
    let for_every_context = with(
        with(
            with(
                valid_claim("for-every-context"),
                "/spec/template/namespace",
                json!("review-{{context}}"),
            ),
            "/spec/template/providerAppName",
            json!("testmesh-{{context}}"),
        ),
        "/spec/template/displayName",
        json!("Review {{context}}"),
    );
    create(&api, for_every_context)
        .await
        .expect("template with placeholders");
    // An environment is always concrete: its names take no placeholder.
    let environments = dynamic_api::<TestEnvironment>(&client, workspace.name());
    let error = create(
        &environments,
        with(
            valid_environment("placeholder"),
            "/spec/namespace",
            json!("review-{{context}}"),
        ),
    )
    .await
    .expect_err("an environment with a placeholder");
    assert!(
        error.message.contains("spec.namespace") && error.message.contains("should match"),
        "{}",
        error.message
    );
    let by_name = without(
        with(
            valid_claim("by-name"),
            "/spec/environmentName",
            json!("pr-123"),
        ),
        "/spec",
        "template",
    );
    create(&api, by_name)
        .await
        .expect("claim naming an environment");
    let error = api
        .patch(
            "by-name",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"context": "other"}})),
        )
        .await
        .expect_err("claim context is immutable");
    assert!(
        error.to_string().contains("spec.context is immutable"),
        "{error}"
    );
}

#[tokio::test]
async fn examples_apply_cleanly() {
    let (control_plane, client, _workspace) = workspace("examples").await;
    // The GitOps controllers' own namespaces and CRDs, as a cluster running them has.
    testmesh_testenv::argocd::install_crds(&client).await;
    testmesh_testenv::flux::install_crds(&client).await;
    let namespaces =
        std::fs::read_to_string(repo_root().join("tests/assets/gitops-namespaces.yaml"))
            .expect("GitOps namespaces manifest");
    testmesh_testenv::apply_yaml(&client, &namespaces)
        .await
        .expect("GitOps namespaces");
    let examples = repo_root().join("examples");
    assert!(!yaml_files(&examples).is_empty());
    let mut kubectl = control_plane.kubectl();
    kubectl
        .args(["apply", "--server-side", "-f"])
        .arg(&examples);
    let (ok, stdout, stderr) = run(kubectl);
    assert!(ok, "kubectl apply -f examples/ failed:\n{stdout}\n{stderr}");
    let mut kubectl = control_plane.kubectl();
    kubectl.args([
        "get",
        "testenvironment/pr-123",
        "-n",
        "team-a",
        "-o",
        "jsonpath={.spec.ttlMinutes}",
    ]);
    let (ok, stdout, stderr) = run(kubectl);
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "60");
}

#[tokio::test]
async fn kubectl_explain_shows_the_field_docs() {
    let (control_plane, _client, _workspace) = workspace("explain").await;
    // The API server publishes a new CRD's OpenAPI a moment after it is Established.
    let explain = |path: &str| {
        let mut kubectl = control_plane.kubectl();
        kubectl.args(["explain", path]);
        run(kubectl)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let (ok, stdout, stderr) = loop {
        let result = explain("testenvironment.spec");
        if result.0 || std::time::Instant::now() > deadline {
            break result;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    assert!(ok, "{stderr}");
    for expected in [
        "The reuse key",
        "ttlMinutes",
        "Idle lifetime in minutes",
        "providerAppName",
        "routing",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    let (ok, stdout, stderr) = explain("testenvironmentclaim.spec.maxDurationMinutes");
    assert!(ok, "{stderr}");
    assert!(stdout.contains("Lease"), "{stdout}");
}

/// `kubectl wait --for=condition=Ready` returns once the status says Ready=True for the
/// current generation, and not while the condition is stale.
#[tokio::test]
async fn kubectl_wait_sees_ready_for_the_current_generation_only() {
    let (control_plane, client, workspace) = workspace("wait").await;
    let api = dynamic_api::<TestEnvironment>(&client, workspace.name());
    let created = create(&api, valid_environment("waited"))
        .await
        .expect("create");
    let generation = created.metadata.generation.expect("generation");

    let patch_ready = |observed_generation: i64| {
        let condition = Condition {
            type_: conditions::READY.to_owned(),
            status: "True".to_owned(),
            reason: conditions::reason::AVAILABLE.to_owned(),
            message: "ready for a run".to_owned(),
            last_transition_time: Time(jiff::Timestamp::now()),
            observed_generation: Some(observed_generation),
        };
        json!({
            "apiVersion": "testmesh.io/v1alpha1",
            "kind": "TestEnvironment",
            "status": {"phase": "warm", "observedGeneration": observed_generation, "conditions": [condition]}
        })
    };
    let wait = |timeout: &str| {
        let mut kubectl = control_plane.kubectl();
        kubectl.args([
            "wait",
            "--for=condition=Ready",
            "testenvironment/waited",
            "-n",
            workspace.name(),
        ]);
        kubectl.arg(format!("--timeout={timeout}"));
        run(kubectl)
    };
    let params = PatchParams::apply("testmesh-test").force();

    api.patch_status(
        "waited",
        &params,
        &Patch::Apply(patch_ready(generation - 1)),
    )
    .await
    .expect("stale status patch");
    let (ok, _, _) = wait("2s");
    assert!(
        !ok,
        "a Ready condition for an older generation must not satisfy kubectl wait"
    );

    api.patch_status("waited", &params, &Patch::Apply(patch_ready(generation)))
        .await
        .expect("status patch");
    let (ok, stdout, stderr) = wait("30s");
    assert!(ok, "kubectl wait failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("condition met"), "{stdout}");
}
