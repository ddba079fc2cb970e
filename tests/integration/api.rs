//! The REST API on a real control plane, called as two ordinary users: alice has a Role in
//! her workspace, bob in his. Every request carries the user's own token, so the API
//! server's RBAC decides, and its audit log shows the user — never the operator — made
//! the change.

use std::net::SocketAddr;
use std::time::Duration;

use kube::Api;
use serde_json::{Value, json};
use testmesh::resources::TestEnvironment;
use testmesh_testenv::apply_yaml;
use testmesh_testenv::http_client::{self, Answer};

use crate::support::{Operated, REACTION, operated_workspace, repo_root, wait_for};

/// A Role for TestMesh's objects in `workspace`, bound to `user`.
pub fn role_for(workspace: &str, user: &str) -> String {
    role_with(
        workspace,
        user,
        "testmesh-user",
        "get, list, watch, create, patch, delete",
    )
}

/// A Role `name` with `verbs` on TestMesh's objects in `workspace`, bound to `user`.
pub fn role_with(workspace: &str, user: &str, name: &str, verbs: &str) -> String {
    format!(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: {name}, namespace: {workspace}}}
rules:
  - apiGroups: [testmesh.io]
    resources: [testenvironments, testenvironmentclaims]
    verbs: [{verbs}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: {name}, namespace: {workspace}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: {name}}}
subjects:
  - {{apiGroup: rbac.authorization.k8s.io, kind: User, name: {user}}}
"#
    )
}

/// A Role to read the Kubernetes Events in `workspace`, bound to `user`: what `view`,
/// `edit` and the chart's roles grant, and an environment's events need.
pub fn events_reader(workspace: &str, user: &str) -> String {
    format!(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: events-reader, namespace: {workspace}}}
rules:
  - apiGroups: [events.k8s.io]
    resources: [events]
    verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: events-reader-{user}, namespace: {workspace}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: events-reader}}
subjects:
  - {{apiGroup: rbac.authorization.k8s.io, kind: User, name: {user}}}
"#
    )
}

/// Grants `user` the events Role of `workspace` and waits until it is in force.
pub async fn grant_events(t: &Operated, user: &str) {
    apply_yaml(&t.client, &events_reader(&t.workspace, user))
        .await
        .expect("grant the events Role");
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(
        t.control_plane
            .user_client(user)
            .await
            .expect("user client"),
        &t.workspace,
    );
    for _ in 0..100 {
        if events.list(&Default::default()).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the events Role for {user} never took effect");
}

/// An operated workspace where `user` holds the Role; (workspace, user's token).
pub async fn workspace_of(prefix: &str, user: &str) -> (Operated, String) {
    workspace_with(prefix, user, &[]).await
}

pub async fn workspace_with(
    prefix: &str,
    user: &str,
    operator_args: &[&str],
) -> (Operated, String) {
    let t = operated_workspace(prefix, operator_args).await;
    let token = grant(&t, user, &role_for(&t.workspace, user)).await;
    (t, token)
}

/// Applies `role` (a Role and its binding to `user`) and waits until `user` may list
/// environments in the workspace; the user's token.
pub async fn grant(t: &Operated, user: &str, role: &str) -> String {
    apply_yaml(&t.client, role).await.expect("grant the Role");
    // The API server's authorizer learns of a new binding through its own watch: wait
    // until the grant is in force before testing with it.
    let as_user: Api<TestEnvironment> = Api::namespaced(
        t.control_plane
            .user_client(user)
            .await
            .expect("user client"),
        &t.workspace,
    );
    let mut granted = false;
    for _ in 0..100 {
        if as_user.list(&Default::default()).await.is_ok() {
            granted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(granted, "the Role for {user} never took effect");
    t.control_plane
        .user_token(user)
        .expect("test user")
        .to_owned()
}

/// Calls the API without blocking the test's runtime.
pub async fn call(
    address: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Answer {
    let (method, path) = (method.to_owned(), path.to_owned());
    let token = token.map(str::to_owned);
    let body = body.map(|b| b.to_string());
    tokio::task::spawn_blocking(move || {
        http_client::request(address, &method, &path, token.as_deref(), body.as_deref())
    })
    .await
    .expect("request thread")
}

pub async fn wait_for_api(address: SocketAddr) {
    for _ in 0..300 {
        if std::net::TcpStream::connect(address).is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the API did not listen on {address}");
}

pub fn environments(workspace: &str) -> String {
    format!("/api/v1/workspaces/{workspace}/test-environments")
}

/// SPEC.md's example payload, unchanged.
fn seed() -> Value {
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

#[tokio::test]
async fn the_seed_payload_provisions_and_delete_destroys_keeping_the_record() {
    let (t, alice) = workspace_of("api-seed", "alice").await;
    let api = t.operator.api;
    wait_for_api(api).await;
    t.argo.create_app("testmesh-pr-123", "review-pr-123").await;
    t.argo.make_healthy("testmesh-pr-123").await;

    let created = call(
        api,
        "POST",
        &environments(&t.workspace),
        Some(&alice),
        Some(seed()),
    )
    .await;
    assert_eq!(created.status, 201, "{created:?}");
    let environment = created.json();
    let id = environment["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("pr-123-"), "{id}");
    assert_eq!(
        created.header("location"),
        Some(format!("{}/{id}", environments(&t.workspace)).as_str())
    );
    for (field, value) in [
        ("name", json!("PR-123 Review Environment")),
        ("context", json!("pr-123")),
        ("provider", json!("argocd")),
        ("provider_app_name", json!("testmesh-pr-123")),
        ("namespace", json!("review-pr-123")),
        ("ttl_minutes", json!(60)),
        ("workspace_id", json!(t.workspace)),
        ("services", seed()["services"].clone()),
    ] {
        assert_eq!(environment[field], value, "{field}");
    }

    let one = format!("{}/{id}", environments(&t.workspace));
    let ready = call(
        api,
        "GET",
        &format!("{one}?wait=ready&timeout_seconds=60"),
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(ready.status, 200, "{ready:?}");
    let ready = ready.json();
    assert_eq!(ready["state"], "warm", "{ready:#}");
    assert_eq!(ready["reason"], "Available");
    for field in ["last_used_at", "expires_at", "created_at", "ready_at"] {
        assert!(ready[field].is_string(), "{field}: {ready:#}");
    }
    assert!(ready["routing_policy"].is_object());
    assert_eq!(
        ready["missing_services"],
        json!(["user-service", "product-service"])
    );

    let list = call(api, "GET", &environments(&t.workspace), Some(&alice), None).await;
    assert_eq!(list.status, 200);
    assert_eq!(list.json()["items"][0]["id"], json!(id));

    let deleted = call(api, "DELETE", &one, Some(&alice), None).await;
    assert_eq!(deleted.status, 202, "{deleted:?}");
    assert_eq!(deleted.json()["destroy_requested"], true);
    let destroyed = call(
        api,
        "GET",
        &format!("{one}?wait=destroyed&timeout_seconds=90"),
        Some(&alice),
        None,
    )
    .await;
    let destroyed = destroyed.json();
    assert_eq!(destroyed["state"], "destroyed", "{destroyed:#}");
    assert!(destroyed["destroyed_at"].is_string());
    assert_eq!(
        call(api, "GET", &one, Some(&alice), None).await.status,
        200,
        "the record stays"
    );

    // Alice made the changes, with her own identity.
    let writes = t.control_plane.audited_writes().expect("audit log");
    let by_alice = |verb: &str| {
        writes.iter().any(|w| {
            w.user == "alice"
                && w.verb == verb
                && w.resource == "testenvironments"
                && w.namespace.as_deref() == Some(t.workspace.as_str())
        })
    };
    assert!(
        by_alice("create") && by_alice("patch"),
        "the API acted as alice"
    );
    // (In this test's workspace: other tests call the API as other users at the same time.)
    assert!(
        !writes
            .iter()
            .any(|w| w.user_agent.starts_with("testmesh-api")
                && w.namespace.as_deref() == Some(t.workspace.as_str())
                && w.user != "alice"),
        "the API used someone else's identity"
    );
    // Created with the teardown finalizer: the operator had none to add.
    let finalizer_patches = t.finalizer_patches();
    assert!(
        finalizer_patches.is_empty(),
        "the operator patched the environment: {finalizer_patches:#?}"
    );
}

#[tokio::test]
async fn kubernetes_identity_and_rbac_decide_everything() {
    let (t, alice) = workspace_of("api-alice", "alice").await;
    let (bobs, bob) = workspace_of("api-bob", "bob").await;
    let api = t.operator.api;
    wait_for_api(api).await;
    let alices_list = environments(&t.workspace);
    let bobs_list = environments(&bobs.workspace);

    let anonymous = call(api, "GET", &alices_list, None, None).await;
    assert_eq!(anonymous.status, 401, "{anonymous:?}");
    assert_eq!(anonymous.json()["error"]["reason"], "Unauthorized");
    assert_eq!(
        call(api, "GET", &alices_list, Some("not-a-token"), None)
            .await
            .status,
        401
    );

    assert_eq!(
        call(api, "GET", &alices_list, Some(&alice), None)
            .await
            .status,
        200
    );
    let mut body = seed();
    body["id"] = json!("alice-env");
    body["namespace"] = json!(format!("{}-env", bobs.workspace));
    for (method, path, body) in [
        ("GET", bobs_list.clone(), None),
        ("POST", bobs_list.clone(), Some(body.clone())),
        ("GET", format!("{bobs_list}/anything"), None),
        ("DELETE", format!("{bobs_list}/anything"), None),
        (
            "PATCH",
            format!("{bobs_list}/anything"),
            Some(json!({"ttl_minutes": 90})),
        ),
        (
            "GET",
            format!(
                "/api/v1/watch/workspaces/{}/test-environments",
                bobs.workspace
            ),
            None,
        ),
        (
            "GET",
            format!("/api/v1/workspaces/{}/claims", bobs.workspace),
            None,
        ),
    ] {
        let answer = call(api, method, &path, Some(&alice), body).await;
        assert_eq!(answer.status, 403, "alice {method} {path}: {answer:?}");
        assert_eq!(answer.json()["error"]["reason"], "Forbidden");
        assert!(
            answer.json()["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("alice")),
            "the API server's own message: {answer:?}"
        );
    }
    assert_eq!(
        call(api, "GET", &bobs_list, Some(&bob), None).await.status,
        200
    );

    let missing = call(
        api,
        "GET",
        &format!("{alices_list}/no-such-env"),
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(missing.status, 404, "{missing:?}");
    assert_eq!(
        call(
            api,
            "DELETE",
            &format!("{alices_list}/no-such-env"),
            Some(&alice),
            None
        )
        .await
        .status,
        404
    );
    let created = call(api, "POST", &alices_list, Some(&alice), Some(body.clone())).await;
    assert_eq!(created.status, 201, "{created:?}");
    let again = call(api, "POST", &alices_list, Some(&alice), Some(body)).await;
    assert_eq!(again.status, 409, "{again:?}");
    assert_eq!(
        call(api, "GET", "/api/v1/nothing-here", Some(&alice), None)
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn bad_input_is_a_400_naming_the_field_and_creates_nothing() {
    let (t, alice) = workspace_of("api-bad", "alice").await;
    let api = t.operator.api;
    wait_for_api(api).await;
    let list = environments(&t.workspace);
    let with = |field: &str, value: Value| {
        let mut body = seed();
        body[field] = value;
        body
    };
    let without = |field: &str| {
        let mut body = seed();
        body.as_object_mut().expect("object").remove(field);
        body
    };
    let cases: Vec<(Value, &str)> = vec![
        (with("ttl_minutes", json!(0)), "ttl_minutes"),
        (with("ttl_minutes", json!(43_201)), "ttl_minutes"),
        (with("ttl_minutes", json!(-5)), "ttl_minutes"),
        (with("ttl_minutes", json!("soon")), "ttl_minutes"),
        (with("namespace", json!("Review_PR")), "namespace"),
        (with("context", json!("pr 123")), "context"),
        (with("context", json!("")), "context"),
        (with("provider", json!("helm")), "provider"),
        (
            with("provider_app_name", json!("Test App")),
            "provider_app_name",
        ),
        (with("name", json!("x".repeat(254))), "name"),
        (with("id", json!("Not_A_Name")), "id"),
        (
            with("services", json!([{"name": "a"}, {"name": "a"}])),
            "services[1]",
        ),
        (
            with("services", json!([{"name": "1st"}])),
            "services[0].name",
        ),
        (
            with("routing", json!({"baseline_namespace": "review-pr-123"})),
            "routing.baseline_namespace",
        ),
        (
            with("routing", json!({"overrides": {"a": "ftp://x"}})),
            "routing.overrides",
        ),
        (with("ttl_minute", json!(5)), "ttl_minute"),
        (without("provider_app_name"), "provider_app_name"),
        (without("context"), "context"),
        (json!("a string"), "body"),
    ];
    for (body, field) in cases {
        let answer = call(api, "POST", &list, Some(&alice), Some(body.clone())).await;
        assert_eq!(answer.status, 400, "{field}: {answer:?}");
        let error = &answer.json()["error"];
        assert_eq!(error["field"], json!(field), "{body}: {answer:?}");
        assert!(!error["message"].as_str().unwrap_or_default().is_empty());
    }
    let bad_workspace = call(
        api,
        "GET",
        "/api/v1/workspaces/Bad_Workspace/test-environments",
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(bad_workspace.status, 400);
    assert_eq!(bad_workspace.json()["error"]["field"], "workspace_id");
    let bad_id = call(api, "GET", &format!("{list}/Bad_Id"), Some(&alice), None).await;
    assert_eq!(bad_id.json()["error"]["field"], "id", "{bad_id:?}");
    let bad_wait = call(
        api,
        "GET",
        &format!("{list}/x?wait=forever"),
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(bad_wait.status, 400, "{bad_wait:?}");
    let bad_timeout = call(
        api,
        "GET",
        &format!("{list}/x?wait=ready&timeout_seconds=0"),
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(bad_timeout.status, 400, "{bad_timeout:?}");

    let after = call(api, "GET", &list, Some(&alice), None).await;
    assert_eq!(after.json()["items"], json!([]), "nothing half-created");
}

#[tokio::test]
async fn claims_reuse_a_warm_environment_over_http() {
    let (t, alice) = workspace_of("api-claims", "alice").await;
    let api = t.operator.api;
    wait_for_api(api).await;
    let namespace = t.healthy_app("claimed-app").await;
    let template = json!({
        "provider": "argocd",
        "provider_app_name": "claimed-app",
        "namespace": namespace,
        "ttl_minutes": 60,
    });
    let mut body = template.clone();
    body["id"] = json!("pr-7");
    body["context"] = json!("pr-7");
    let created = call(
        api,
        "POST",
        &environments(&t.workspace),
        Some(&alice),
        Some(body),
    )
    .await;
    assert_eq!(created.status, 201, "{created:?}");
    let warm = call(
        api,
        "GET",
        &format!("{}/pr-7?wait=ready", environments(&t.workspace)),
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(warm.json()["state"], "warm");

    let claims = format!("/api/v1/workspaces/{}/claims", t.workspace);
    for run in 0..2 {
        let acquired = call(
            api,
            "POST",
            &claims,
            Some(&alice),
            Some(json!({"context": "pr-7", "template": template})),
        )
        .await;
        assert_eq!(acquired.status, 201, "{acquired:?}");
        let id = acquired.json()["id"].as_str().expect("claim id").to_owned();
        let ready = call(
            api,
            "GET",
            &format!("{claims}/{id}?wait=ready&timeout_seconds=30"),
            Some(&alice),
            None,
        )
        .await;
        let ready = ready.json();
        assert_eq!(ready["ready"], true, "run {run}: {ready:#}");
        assert_eq!(ready["state"], "bound");
        assert_eq!(ready["reused"], true);
        assert_eq!(ready["bound_environment_id"], "pr-7");
        assert_eq!(ready["namespace"], json!(namespace));
        let environment = call(
            api,
            "GET",
            &format!("{}/pr-7", environments(&t.workspace)),
            Some(&alice),
            None,
        )
        .await;
        assert_eq!(environment.json()["claimed_by"], json!([id]));
        let released = call(api, "DELETE", &format!("{claims}/{id}"), Some(&alice), None).await;
        assert_eq!(released.status, 204, "{released:?}");
        assert_eq!(
            call(api, "GET", &format!("{claims}/{id}"), Some(&alice), None)
                .await
                .status,
            404
        );
    }
    let bad = call(
        api,
        "POST",
        &claims,
        Some(&alice),
        Some(json!({"context": "pr-7", "template": template, "max_duration_minutes": 0})),
    )
    .await;
    assert_eq!(bad.status, 400);
    assert_eq!(
        bad.json()["error"]["field"],
        "max_duration_minutes",
        "{bad:?}"
    );
}

/// `expires_at - last_used_at` of the environment, in minutes, once the operator has
/// computed it for the current spec.
fn idle_lifetime_minutes(environment: Option<&TestEnvironment>) -> Option<i64> {
    let environment = environment?;
    let status = environment.status.as_ref()?;
    if status.observed_generation != environment.metadata.generation {
        return None;
    }
    let lifetime = status
        .expires_at
        .as_ref()?
        .0
        .duration_since(status.last_used_at.as_ref()?.0);
    Some(lifetime.as_mins())
}

#[tokio::test]
async fn patch_extends_the_ttl_refuses_bad_values_by_name_and_needs_the_patch_right() {
    let (t, alice) = workspace_of("api-patch", "alice").await;
    let api = t.operator.api;
    wait_for_api(api).await;
    let namespace = t.healthy_app("patched-app").await;
    let mut body = seed();
    body["id"] = json!("pr-8");
    body["context"] = json!("pr-8");
    body["provider_app_name"] = json!("patched-app");
    body["namespace"] = json!(namespace);
    let list = environments(&t.workspace);
    let one = format!("{list}/pr-8");
    let created = call(api, "POST", &list, Some(&alice), Some(body)).await;
    assert_eq!(created.status, 201, "{created:?}");
    let warm = call(api, "GET", &format!("{one}?wait=ready"), Some(&alice), None).await;
    assert_eq!(warm.json()["state"], "warm", "{warm:?}");
    wait_for(
        &t.environments,
        "pr-8",
        REACTION,
        "expiring 60 min after last use",
        |e| idle_lifetime_minutes(e) == Some(60),
    )
    .await;

    // The extension a user asks for: the TTL, and with it expires_at.
    let extended = call(
        api,
        "PATCH",
        &one,
        Some(&alice),
        Some(json!({"ttl_minutes": 180})),
    )
    .await;
    assert_eq!(extended.status, 200, "{extended:?}");
    let extended = extended.json();
    assert_eq!(extended["ttl_minutes"], 180);
    assert_eq!(extended["state"], "warm");
    assert_eq!(
        extended["name"], "PR-123 Review Environment",
        "the rest stays"
    );
    assert_eq!(extended["services"], seed()["services"]);
    wait_for(
        &t.environments,
        "pr-8",
        REACTION,
        "expiring 180 min after last use",
        |e| idle_lifetime_minutes(e) == Some(180),
    )
    .await;

    // Other mutable fields; null clears what may be absent.
    let changed = call(
        api,
        "PATCH",
        &one,
        Some(&alice),
        Some(json!({
            "name": null,
            "services": [{"name": "user-service", "image": "myrepo/user-service:pr-8"}],
            "routing": {"baseline_namespace": "staging"},
        })),
    )
    .await;
    assert_eq!(changed.status, 200, "{changed:?}");
    let changed = changed.json();
    assert_eq!(changed["name"], "pr-8", "no display name: the id");
    assert_eq!(changed["services"][0]["image"], "myrepo/user-service:pr-8");
    assert_eq!(changed["services"].as_array().map(Vec::len), Some(1));
    assert_eq!(changed["routing"]["baseline_namespace"], "staging");
    assert_eq!(changed["ttl_minutes"], 180);

    // Bad values: a 400 naming the field, and nothing changes.
    for (body, field) in [
        (json!({"ttl_minutes": 0}), "ttl_minutes"),
        (json!({"ttl_minutes": 43_201}), "ttl_minutes"),
        (json!({"ttl_minutes": -5}), "ttl_minutes"),
        (json!({"ttl_minutes": "longer"}), "ttl_minutes"),
        (json!({"namespace": "elsewhere"}), "namespace"),
        (json!({"context": "pr-9"}), "context"),
        (
            json!({"provider_app_name": "Not An App"}),
            "provider_app_name",
        ),
        (
            json!({"services": [{"name": "a"}, {"name": "a"}]}),
            "services[1]",
        ),
        (
            json!({"routing": {"baseline_namespace": namespace}}),
            "routing.baseline_namespace",
        ),
        (json!([]), "body"),
    ] {
        let answer = call(api, "PATCH", &one, Some(&alice), Some(body.clone())).await;
        assert_eq!(answer.status, 400, "{body}: {answer:?}");
        assert_eq!(
            answer.json()["error"]["field"],
            json!(field),
            "{body}: {answer:?}"
        );
    }
    let unchanged = call(api, "GET", &one, Some(&alice), None).await.json();
    assert_eq!(unchanged["ttl_minutes"], 180);
    assert_eq!(unchanged["namespace"], json!(namespace));

    // bob may read alice's workspace but not patch in it: the API server's 403.
    let bob = grant(
        &t,
        "bob",
        &role_with(&t.workspace, "bob", "testmesh-viewer", "get, list, watch"),
    )
    .await;
    assert_eq!(call(api, "GET", &one, Some(&bob), None).await.status, 200);
    let refused = call(
        api,
        "PATCH",
        &one,
        Some(&bob),
        Some(json!({"ttl_minutes": 43_200})),
    )
    .await;
    assert_eq!(refused.status, 403, "{refused:?}");
    assert_eq!(refused.json()["error"]["reason"], "Forbidden");
    assert!(
        refused.json()["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("bob") && m.contains("patch")),
        "the API server's own message: {refused:?}"
    );
    let still = call(api, "GET", &one, Some(&alice), None).await.json();
    assert_eq!(still["ttl_minutes"], 180);

    let missing = call(
        api,
        "PATCH",
        &format!("{list}/no-such-env"),
        Some(&alice),
        Some(json!({"ttl_minutes": 90})),
    )
    .await;
    assert_eq!(missing.status, 404, "{missing:?}");

    // Once destroy is asked for, nothing changes any more.
    assert_eq!(
        call(api, "DELETE", &one, Some(&alice), None).await.status,
        202
    );
    let too_late = call(
        api,
        "PATCH",
        &one,
        Some(&alice),
        Some(json!({"ttl_minutes": 600})),
    )
    .await;
    assert_eq!(too_late.status, 409, "{too_late:?}");
    assert_eq!(too_late.json()["error"]["reason"], "Conflict");

    let writes = t.control_plane.audited_writes().expect("audit log");
    assert!(
        writes.iter().any(|w| w.user == "alice"
            && w.verb == "patch"
            && w.resource == "testenvironments"
            && w.namespace.as_deref() == Some(t.workspace.as_str())),
        "the API patched as alice"
    );
}

#[tokio::test]
async fn the_watch_stream_shows_every_change_without_polling() {
    let (t, alice) = workspace_of("api-watch", "alice").await;
    let api = t.operator.api;
    wait_for_api(api).await;
    let mut body = seed();
    body["id"] = json!("watched");
    body["namespace"] = json!(format!("{}-env", t.workspace));
    assert_eq!(
        call(
            api,
            "POST",
            &environments(&t.workspace),
            Some(&alice),
            Some(body)
        )
        .await
        .status,
        201
    );

    let path = format!("/api/v1/watch/workspaces/{}/test-environments", t.workspace);
    let mut received = snapshots(api, path, alice.clone());
    let mut next = async || next_snapshot(&mut received).await;
    let first = next().await;
    assert_eq!(first["items"][0]["id"], "watched");
    assert_eq!(first["items"][0]["destroy_requested"], false);

    let one = format!("{}/watched", environments(&t.workspace));
    assert_eq!(
        call(api, "DELETE", &one, Some(&alice), None).await.status,
        202
    );
    loop {
        let snapshot = next().await;
        if snapshot["items"][0]["destroy_requested"] == true {
            break;
        }
    }
}

/// What an environment's page reads besides the list, each as the caller may: its link
/// into Argo CD's UI and the app's health, its Events, the caller's permissions from
/// access reviews, the claims as a live list, and the workspaces across the cluster.
#[tokio::test]
async fn an_environments_page_reads_links_events_permissions_and_claims_as_the_caller() {
    let (t, alice) = workspace_with(
        "api-page",
        "alice",
        &["--argocd-url=https://argocd.example.test/"],
    )
    .await;
    let api = t.operator.api;
    wait_for_api(api).await;
    grant_events(&t, "alice").await;
    let app = "testmesh-paged";
    t.argo
        .create_app(app, &format!("{}-paged", t.workspace))
        .await;
    t.argo.make_healthy(app).await;
    let mut body = seed();
    body["id"] = json!("paged");
    body["provider_app_name"] = json!(app);
    body["namespace"] = json!(format!("{}-paged", t.workspace));
    let list = environments(&t.workspace);
    assert_eq!(
        call(api, "POST", &list, Some(&alice), Some(body))
            .await
            .status,
        201
    );
    let one = format!("{list}/paged");
    let warm = call(api, "GET", &format!("{one}?wait=ready"), Some(&alice), None)
        .await
        .json();
    assert_eq!(warm["state"], "warm", "{warm:#}");
    assert_eq!(
        warm["provider_app_url"],
        json!(format!(
            "https://argocd.example.test/applications/{}/{app}",
            t.argo.namespace
        ))
    );
    assert_eq!(warm["provider_app_status"]["health"], "Healthy", "{warm:#}");
    assert_eq!(warm["provider_app_status"]["sync"], "Synced", "{warm:#}");
    for field in ["created_at", "provisioning_started_at", "ready_at"] {
        assert!(warm[field].is_string(), "{field}: {warm:#}");
    }

    // The phase changes the operator published, oldest first, with their times.
    let events = format!("{one}/events");
    let mut notes = Vec::new();
    for _ in 0..100 {
        let answer = call(api, "GET", &events, Some(&alice), None).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        notes = answer.json()["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|e| {
                assert!(e["time"].is_string(), "{e}");
                e["note"].as_str().unwrap_or_default().to_owned()
            })
            .collect();
        if notes.iter().any(|n| n.contains(" → warm: ")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        notes.first().is_some_and(|n| n.starts_with("cold → "))
            && notes.iter().any(|n| n.contains(" → warm: ")),
        "its phase changes, oldest first: {notes:?}"
    );
    let unknown = call(
        api,
        "GET",
        &format!("{list}/nope/events"),
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(unknown.status, 404, "{unknown:?}");

    let permissions = format!("/api/v1/workspaces/{}/permissions", t.workspace);
    let mine = call(api, "GET", &permissions, Some(&alice), None).await;
    assert_eq!(mine.status, 200, "{mine:?}");
    assert_eq!(
        mine.json(),
        json!({
            "workspace_id": t.workspace,
            "create_test_environments": true,
            "patch_test_environments": true,
            "create_claims": true,
            "delete_claims": true,
            "list_events": true,
        })
    );
    // bob may only look, and not at the events.
    let bob = grant(
        &t,
        "bob",
        &role_with(&t.workspace, "bob", "testmesh-viewer", "get, list, watch"),
    )
    .await;
    let his = call(api, "GET", &permissions, Some(&bob), None)
        .await
        .json();
    for action in [
        "create_test_environments",
        "patch_test_environments",
        "create_claims",
        "delete_claims",
        "list_events",
    ] {
        assert_eq!(his[action], false, "{action}: {his:#}");
    }
    let refused = call(api, "GET", &events, Some(&bob), None).await;
    assert_eq!(refused.status, 403, "{refused:?}");

    // Only someone who may list environments everywhere learns the workspaces.
    let workspaces = call(api, "GET", "/api/v1/workspaces", Some(&alice), None).await;
    assert_eq!(workspaces.status, 403, "{workspaces:?}");
    let admin = t.control_plane.user_token("admin").expect("admin");
    let all = call(api, "GET", "/api/v1/workspaces", Some(admin), None)
        .await
        .json();
    assert!(
        all["items"]
            .as_array()
            .expect("items")
            .contains(&json!({"workspace_id": t.workspace, "test_environments": 1})),
        "{all:#}"
    );

    // The claims' live list shows a claim bound without polling.
    let path = format!("/api/v1/watch/workspaces/{}/claims", t.workspace);
    let mut received = snapshots(api, path, alice.clone());
    let mut next = async || next_snapshot(&mut received).await;
    assert_eq!(next().await["items"], json!([]));
    let claim = json!({"id": "paged-run", "context": "pr-123", "environment_id": "paged"});
    let claims = format!("/api/v1/workspaces/{}/claims", t.workspace);
    assert_eq!(
        call(api, "POST", &claims, Some(&alice), Some(claim))
            .await
            .status,
        201
    );
    loop {
        let snapshot = next().await;
        if snapshot["items"][0]["state"] == "bound" {
            assert_eq!(snapshot["items"][0]["bound_environment_id"], "paged");
            break;
        }
    }
}

/// schemathesis (`make fuzz-tools`) generates requests from the OpenAPI document, valid
/// and invalid, as alice in her workspace: none may get a 5xx, and every answer must
/// match the document (status, content type, body schema).
#[tokio::test]
async fn a_fuzzer_finds_no_server_error_and_no_answer_outside_the_document() {
    let schemathesis = repo_root().join("target/tools/schemathesis/bin/schemathesis");
    assert!(
        schemathesis.exists(),
        "{} is missing: run `make fuzz-tools` (part of `make test`)",
        schemathesis.display()
    );
    // Generated environments name random namespaces: the operator refuses them all.
    let (t, alice) = workspace_with(
        "api-fuzz",
        "alice",
        &["--allowed-namespaces=fuzz-allowed-*"],
    )
    .await;
    let api = t.operator.api;
    wait_for_api(api).await;
    // Python 3.11's ast module crashes schemathesis's coverage phase ("AST constructor
    // recursion depth mismatch"); `make fuzz-tools` prefers a newer Python, and without
    // one the coverage phase is left out.
    let python = schemathesis.with_file_name("python");
    let modern = std::process::Command::new(&python)
        .args([
            "-c",
            "import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)",
        ])
        .status()
        .is_ok_and(|status| status.success());
    let phases = if modern {
        "examples,coverage,fuzzing"
    } else {
        eprintln!("schemathesis runs on Python < 3.12: coverage phase skipped");
        "examples,fuzzing"
    };
    let output = tokio::process::Command::new(&schemathesis)
        // Its cache of past crashes goes under target/, not into the repository.
        .current_dir(repo_root().join("target"))
        .arg("--config-file")
        .arg(repo_root().join("tests/fuzz/schemathesis.toml"))
        .arg("run")
        .arg(format!("http://{api}/api/v1/openapi.json"))
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--exclude-path-regex",
            "^/api/v1/watch/",
            "--phases",
            phases,
        ])
        .env("TESTMESH_TOKEN", &alice)
        .env("TESTMESH_WORKSPACE", &t.workspace)
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary: Vec<&str> = stdout.lines().rev().take(25).collect();
    eprintln!(
        "{}",
        summary.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Every operation of the document was fuzzed (PATCH too), but the event stream and
    // the document itself (schemathesis leaves out the URL it loaded the document from).
    let document = testmesh::api::openapi_document();
    let operations = document["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .filter(|(path, _)| {
            !path.starts_with("/api/v1/watch/") && path.as_str() != testmesh::api::OPENAPI_PATH
        })
        .map(|(_, methods)| methods.as_object().map_or(0, |m| m.len()))
        .sum::<usize>();
    assert!(
        stdout.contains(&format!("Tested: {operations}\n")),
        "not all {operations} operations were fuzzed:\n{stdout}"
    );
}

/// The snapshots of the event stream at `path`, read as `token` on a thread of its own.
fn snapshots(
    api: std::net::SocketAddr,
    path: String,
    token: String,
) -> tokio::sync::mpsc::UnboundedReceiver<Value> {
    let (snapshots, received) = tokio::sync::mpsc::unbounded_channel::<Value>();
    std::thread::spawn(move || {
        let (status, events) = http_client::events(api, &path, Some(&token));
        assert_eq!(status, 200);
        for data in events {
            let snapshot = serde_json::from_str(&data).expect("a JSON snapshot");
            if snapshots.send(snapshot).is_err() {
                return;
            }
        }
    });
    received
}

/// The stream's next snapshot, within 30 s.
async fn next_snapshot(received: &mut tokio::sync::mpsc::UnboundedReceiver<Value>) -> Value {
    tokio::time::timeout(Duration::from_secs(30), received.recv())
        .await
        .expect("a snapshot within 30 s")
        .expect("the stream stays open")
}
