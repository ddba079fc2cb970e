//! `make run` on a machine with no cluster configured (issue 14 §4). It runs
//! `testmesh-dev-cluster --examples`, whose whole setup is [`LocalRun::start`]: this test
//! runs that setup with the `testmesh` binary, checks that the example environment turns
//! `warm` by itself, that the printed token command signs in to the API, and runs the
//! claim and release commands it prints for a second shell — the claim must bind the warm
//! environment, the release leave it `cooling`.
//!
//! A test binary of its own: it starts its own control plane, kwok and Argo CD, as
//! `make run` does, not the ones the integration tests share.

use std::process::Command;
use std::time::Duration;

use kube::Api;
use kube::runtime::wait::await_condition;
use testmesh::lifecycle::{ClaimPhase, Phase};
use testmesh::resources::{TestEnvironment, TestEnvironmentClaim};
use testmesh_testenv::http_client;
use testmesh_testenv::local_run::{API_USER, LocalRun, LocalRunConfig};

/// The first run takes about a minute on a loaded 2-core machine.
const WARM: Duration = Duration::from_secs(300);
const SETTLE: Duration = Duration::from_secs(30);
const CLAIM: &str = "first-run";

fn progress(line: String) {
    eprintln!("{line}");
}

/// `testmesh args…` as a newcomer's second shell runs it: with the printed KUBECONFIG.
fn testmesh(local: &LocalRun, args: &[String]) -> (String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_testmesh"))
        .args(args)
        .env("KUBECONFIG", local.control_plane().kubeconfig_path())
        .output()
        .expect("run testmesh");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "testmesh {}: {}\n{stdout}\n{stderr}",
        args.join(" "),
        output.status
    );
    (stdout, stderr)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_example_turns_warm_by_itself_and_the_printed_claim_binds_it() {
    let config = LocalRunConfig::on_free_ports(env!("CARGO_BIN_EXE_testmesh")).expect("ports");
    let local = tokio::task::spawn_blocking(move || LocalRun::start(config, &progress))
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("the local run did not start: {e}"));
    let warm_after = local
        .wait_warm(WARM, &progress)
        .await
        .unwrap_or_else(|e| panic!("the example environment did not turn warm: {e}"));
    eprintln!("warm {warm_after:.1?} after start");

    let client = local.control_plane().admin_client().await.expect("client");
    let environments: Api<TestEnvironment> = Api::namespaced(client.clone(), local.workspace());
    let claims: Api<TestEnvironmentClaim> = Api::namespaced(client, local.workspace());
    let warm = environments.get(local.environment()).await.expect("pr-123");
    let status = warm.status.expect("status");
    assert_eq!(
        status.routing_policy.keys().collect::<Vec<_>>(),
        ["order-service", "product-service", "user-service"],
        "the review services and order-service from staging: {:?}",
        status.routing_policy
    );

    // The dashboard's sign-in: the printed token command's token may use the API.
    let mut create_token = local.control_plane().kubectl();
    create_token.args(["-n", local.workspace(), "create", "token", API_USER]);
    let token = create_token.output().expect("kubectl create token");
    assert!(token.status.success(), "{token:?}");
    let token = String::from_utf8_lossy(&token.stdout).trim().to_owned();
    assert!(
        local
            .token_command()
            .ends_with(&format!("create token {API_USER}"))
    );
    let listed = http_client::request(
        local.api_address(),
        "GET",
        &format!("/api/v1/workspaces/{}/test-environments", local.workspace()),
        Some(&token),
        None,
    );
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.json()["items"][0]["id"], "pr-123", "{}", listed.body);

    let (exports, _) = testmesh(&local, &local.claim_args(CLAIM));
    for line in [
        format!("export TESTMESH_CLAIM='{CLAIM}'"),
        "export TESTMESH_ENVIRONMENT='pr-123'".to_owned(),
        "export TESTMESH_NAMESPACE='review-pr-123'".to_owned(),
        "export USER_SERVICE_URL='http://user-service.review-pr-123.svc.cluster.local:8080'"
            .to_owned(),
        "export ORDER_SERVICE_URL='http://order-service.staging.svc.cluster.local:8083'".to_owned(),
    ] {
        assert!(exports.lines().any(|l| l == line), "{line} in:\n{exports}");
    }
    let claim = claims.get(CLAIM).await.expect("the claim");
    let claim_status = claim.status.expect("claim status");
    assert_eq!(claim_status.phase, Some(ClaimPhase::Bound));
    assert_eq!(claim_status.environment_name.as_deref(), Some("pr-123"));
    assert_eq!(
        claim_status.reused,
        Some(true),
        "bound to the warm environment"
    );
    let running = environments.get(local.environment()).await.expect("pr-123");
    assert_eq!(running.status.and_then(|s| s.phase), Some(Phase::Running));

    testmesh(&local, &local.release_args(CLAIM));
    tokio::time::timeout(
        SETTLE,
        await_condition(
            environments,
            local.environment(),
            |environment: Option<&TestEnvironment>| {
                environment
                    .and_then(|e| e.status.as_ref())
                    .and_then(|s| s.phase)
                    == Some(Phase::Cooling)
            },
        ),
    )
    .await
    .expect("cooling after the release")
    .expect("watch");
}
