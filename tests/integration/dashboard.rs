//! The dashboard in a real headless Chromium (Debian's, driven by `tests/browser/dashboard.mjs`
//! through playwright-core) against an operator on the real control plane. alice signs in
//! and sees each environment with its state's badge and countdown, finds them by state,
//! context and name, opens an environment's page (routing URLs, services, conditions,
//! claims and queue, its Argo CD app and link, lifecycle timeline, events), extends a TTL,
//! releases a claim so the queue moves, destroys an environment and watches its row turn
//! red without reloading, and switches workspaces without retyping; bob, who may only
//! look, is offered no Extend, Destroy or Release, and gets a clear error in a workspace
//! where he has no rights.
//!
//! `TESTMESH_DASHBOARD_SCREENSHOT=docs/dashboard.png` refreshes the README's screenshots
//! (the environment page goes next to it as `dashboard-environment.png`).

use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

use crate::api::{
    call, environments, grant, grant_events, role_with, wait_for_api, workspace_with,
};
use crate::support::{create_namespace, from_json, repo_root};

/// A Service without a selector: it serves as far as TestMesh may judge.
fn service(name: &str, port: i32) -> Service {
    from_json(json!({
        "metadata": {"name": name},
        "spec": {"ports": [{"name": "http", "port": port}]}
    }))
}

#[tokio::test]
async fn a_person_finds_inspects_extends_releases_and_destroys_through_the_dashboard() {
    let node_modules = repo_root().join("tests/browser/node_modules/playwright-core");
    assert!(
        node_modules.exists(),
        "the browser driver is missing: run `make browser-tools` (part of `make test`)"
    );
    // A missing Application fails its environment after a second, for a `failed` badge.
    let (t, alice) = workspace_with(
        "dashboard",
        "alice",
        &[
            "--missing-grace=1s",
            "--argocd-url=https://argocd.example.test",
        ],
    )
    .await;
    grant_events(&t, "alice").await;
    let api = t.operator.api;
    wait_for_api(api).await;
    let list = environments(&t.workspace);
    let claims = format!("/api/v1/workspaces/{}/claims", t.workspace);

    // The baseline the environments fall back to.
    let staging = format!("{}-staging", t.workspace);
    create_namespace(&t.client, &staging).await;
    Api::<Service>::namespaced(t.client.clone(), &staging)
        .create(&PostParams::default(), &service("order-service", 8083))
        .await
        .expect("staging Service");

    // (id, Application, state the dashboard must show)
    let wanted = [
        // Deployed while the dashboard's test watches: provisioning, then warm.
        ("pr-101", Some(false), "running"),
        ("pr-102", Some(false), "provisioning"),
        ("pr-103", None, "failed"),
        ("pr-104", Some(true), "warm"),
        ("pr-99", Some(true), "destroyed"),
    ];
    for (id, app, _) in wanted {
        let namespace = format!("{}-{id}", t.workspace);
        let app_name = format!("testmesh-{id}");
        match app {
            Some(true) => {
                t.argo.create_app(&app_name, &namespace).await;
                t.argo.make_healthy(&app_name).await;
            }
            Some(false) => {
                t.argo.create_app(&app_name, &namespace).await;
                t.argo
                    .set_status(&app_name, testmesh_testenv::argocd::progressing_status())
                    .await;
            }
            None => {}
        }
        let body = json!({
            "id": id,
            "name": format!("{} review environment", id.to_uppercase()),
            "context": id,
            "provider": "argocd",
            "provider_app_name": app_name,
            "namespace": namespace,
            "ttl_minutes": 30,
            "services": [{"name": "user-service", "image": format!("myrepo/user-service:{id}"),
                          "repo": "github.com/org/user-service", "source_ref": id}],
            "routing": {"baseline_namespace": staging,
                        "overrides": {"payments": "https://payments.example.test/api"}},
        });
        let created = call(api, "POST", &list, Some(&alice), Some(body)).await;
        assert_eq!(created.status, 201, "{created:?}");
    }
    let get = |path: String| {
        let alice = alice.clone();
        async move { call(api, "GET", &path, Some(&alice), None).await.json() }
    };
    let warm = get(format!("{list}/pr-99?wait=ready")).await;
    assert_eq!(warm["state"], "warm", "{warm:#}");
    assert_eq!(
        call(api, "DELETE", &format!("{list}/pr-99"), Some(&alice), None)
            .await
            .status,
        202
    );
    // Argo CD finishes pr-101 and deploys user-service, which its policy then routes.
    t.argo.make_healthy("testmesh-pr-101").await;
    let pr_101 = get(format!("{list}/pr-101?wait=ready")).await;
    assert_eq!(pr_101["state"], "warm", "{pr_101:#}");
    Api::<Service>::namespaced(t.client.clone(), &format!("{}-pr-101", t.workspace))
        .create(&PostParams::default(), &service("user-service", 8080))
        .await
        .expect("pr-101's Service");

    // One run holds pr-101, a second waits behind it, a third cannot have pr-103.
    for (claim, context, environment) in [
        ("run-101-a", "pr-101", "pr-101"),
        ("run-101-b", "pr-101", "pr-101"),
        ("run-103", "pr-103", "pr-103"),
    ] {
        let body = json!({"id": claim, "context": context, "environment_id": environment});
        let created = call(api, "POST", &claims, Some(&alice), Some(body)).await;
        assert_eq!(created.status, 201, "{created:?}");
        if claim == "run-101-a" {
            let bound = get(format!("{claims}/{claim}?wait=ready")).await;
            assert_eq!(bound["state"], "bound", "{bound:#}");
        }
    }
    let mut shown = Value::Null;
    for _ in 0..100 {
        shown = get(format!("{claims}/run-101-b")).await;
        let failed = get(format!("{claims}/run-103")).await;
        if shown["queue_position"] == 1 && failed["state"] == "failed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(shown["queue_position"], 1, "{shown:#}");

    for (id, _, state) in wanted {
        let wait = if state == "destroyed" {
            "destroyed"
        } else {
            "ready"
        };
        let mut shown = Value::Null;
        for _ in 0..12 {
            shown = get(format!("{list}/{id}?wait={wait}&timeout_seconds=5")).await;
            let routed = id != "pr-101" || shown["routing_policy"]["user-service"].is_string();
            if shown["state"] == state && routed {
                break;
            }
        }
        assert_eq!(shown["state"], state, "{id}: {shown:#}");
    }

    // bob may look at the workspace and its events, and change nothing.
    let bob = grant(
        &t,
        "bob",
        &role_with(&t.workspace, "bob", "testmesh-viewer", "get, list, watch"),
    )
    .await;
    grant_events(&t, "bob").await;

    let expect: serde_json::Map<String, Value> = wanted
        .iter()
        .map(|(id, _, state)| ((*id).to_owned(), json!(state)))
        .collect();
    let screenshot = std::env::var("TESTMESH_DASHBOARD_SCREENSHOT")
        .map(|path| repo_root().join(path))
        .unwrap_or_else(|_| repo_root().join("target/dashboard.png"));
    let page_screenshot = screenshot.with_file_name("dashboard-environment.png");
    let output = tokio::process::Command::new("node")
        .arg(repo_root().join("tests/browser/dashboard.mjs"))
        .env("TESTMESH_URL", format!("http://{api}"))
        .env("TESTMESH_WORKSPACE", &t.workspace)
        // Nobody has rights there.
        .env(
            "TESTMESH_OTHER_WORKSPACE",
            format!("{}-elsewhere", t.workspace),
        )
        .env("TESTMESH_TOKEN", &alice)
        .env("TESTMESH_READONLY_TOKEN", &bob)
        .env("TESTMESH_EXPECT", Value::Object(expect).to_string())
        .env("TESTMESH_PAGE", "pr-101")
        .env("TESTMESH_EXTEND", "pr-104")
        .env("TESTMESH_EXTEND_MINUTES", "240")
        .env("TESTMESH_RELEASE", "run-101-a")
        .env("TESTMESH_DESTROY", "pr-104")
        .env("TESTMESH_SCREENSHOT", &screenshot)
        .env("TESTMESH_PAGE_SCREENSHOT", &page_screenshot)
        .output()
        .await
        .expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the browser run failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("a JSON summary");
    assert_eq!(summary["ok"], true, "{summary:#}");

    // What the buttons did, through the API.
    let extended = get(format!("{list}/pr-104")).await;
    assert_eq!(extended["ttl_minutes"], 240, "{extended:#}");
    assert_eq!(
        extended["destroy_requested"], true,
        "the button destroyed it through the API: {extended:#}"
    );
    let released = call(
        api,
        "GET",
        &format!("{claims}/run-101-a"),
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(released.status, 404, "the claim was deleted: {released:?}");
    let next = get(format!("{claims}/run-101-b")).await;
    assert_eq!(next["state"], "bound", "the queue moved: {next:#}");
}
