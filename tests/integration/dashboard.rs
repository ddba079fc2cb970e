//! The dashboard in a real headless Chromium (Debian's, driven by `tests/browser/dashboard.mjs`
//! through playwright-core) against an operator on the real control plane: alice signs in
//! and sees each environment with its state's badge, destroys one and watches its row turn
//! red without reloading; bob, without rights in the workspace, gets a clear error.
//!
//! `TESTMESH_DASHBOARD_SCREENSHOT=docs/dashboard.png` refreshes the README's screenshot.

use serde_json::{Value, json};

use crate::api::{call, environments, wait_for_api, workspace_with};
use crate::support::repo_root;

#[tokio::test]
async fn a_person_signs_in_sees_the_badges_and_destroys_an_environment() {
    let node_modules = repo_root().join("tests/browser/node_modules/playwright-core");
    assert!(
        node_modules.exists(),
        "the browser driver is missing: run `make browser-tools` (part of `make test`)"
    );
    // A missing Application fails its environment after a second, for a `failed` badge.
    let (t, alice) = workspace_with("dashboard", "alice", &["--missing-grace=1s"]).await;
    let bob = t.control_plane.user_token("bob").expect("bob").to_owned();
    let api = t.operator.api;
    wait_for_api(api).await;
    let list = environments(&t.workspace);

    // (id, Application, state the dashboard must show)
    let wanted = [
        ("pr-101", Some(true), "warm"),
        ("pr-102", Some(false), "provisioning"),
        ("pr-103", None, "failed"),
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
            "services": [{"name": "user-service", "image": format!("myrepo/user-service:{id}")}],
        });
        let created = call(api, "POST", &list, Some(&alice), Some(body)).await;
        assert_eq!(created.status, 201, "{created:?}");
    }
    let warm = call(
        api,
        "GET",
        &format!("{list}/pr-99?wait=ready"),
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(warm.json()["state"], "warm", "{warm:?}");
    assert_eq!(
        call(api, "DELETE", &format!("{list}/pr-99"), Some(&alice), None)
            .await
            .status,
        202
    );
    for (id, _, state) in wanted {
        let wait = if state == "destroyed" {
            "destroyed"
        } else {
            "ready"
        };
        let mut shown = Value::Null;
        for _ in 0..12 {
            shown = call(
                api,
                "GET",
                &format!("{list}/{id}?wait={wait}&timeout_seconds=5"),
                Some(&alice),
                None,
            )
            .await
            .json();
            if shown["state"] == state {
                break;
            }
        }
        assert_eq!(shown["state"], state, "{id}: {shown:#}");
    }

    let expect: serde_json::Map<String, Value> = wanted
        .iter()
        .map(|(id, _, state)| ((*id).to_owned(), json!(state)))
        .collect();
    let screenshot = std::env::var("TESTMESH_DASHBOARD_SCREENSHOT")
        .map(|path| repo_root().join(path))
        .unwrap_or_else(|_| repo_root().join("target/dashboard.png"));
    let output = tokio::process::Command::new("node")
        .arg(repo_root().join("tests/browser/dashboard.mjs"))
        .env("TESTMESH_URL", format!("http://{api}"))
        .env("TESTMESH_WORKSPACE", &t.workspace)
        .env("TESTMESH_TOKEN", &alice)
        .env("TESTMESH_OTHER_TOKEN", &bob)
        .env("TESTMESH_EXPECT", Value::Object(expect).to_string())
        .env("TESTMESH_DESTROY", "pr-101")
        .env("TESTMESH_SCREENSHOT", &screenshot)
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
    let destroyed = call(api, "GET", &format!("{list}/pr-101"), Some(&alice), None).await;
    assert!(
        destroyed.json()["destroy_requested"] == true,
        "the button destroyed it through the API: {destroyed:?}"
    );
}
