//! Tests of what TestMesh's ApplicationSet generator lists.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

use super::*;

fn environment(name: &str, context: &str, provider: &str, phase: Option<Phase>) -> TestEnvironment {
    let spec = serde_json::from_value(json!({
        "context": context, "provider": provider, "providerAppName": format!("{name}-app"),
        "namespace": format!("review-{name}"), "ttlMinutes": 60,
        "services": [{"name": "web", "image": "org/web:pr-1", "repo": "github.com/org/web", "sourceRef": "pr-1"},
                     {"name": "db"}],
    }))
    .unwrap();
    let mut environment = TestEnvironment::new(name, spec);
    environment.metadata.namespace = Some("team-a".into());
    environment.metadata.uid = Some(format!("uid-{name}"));
    environment.metadata.generation = Some(1);
    environment.status = phase.map(|phase| status(phase, 1));
    environment
}

/// In `phase` at `generation`, provisioning since it created its namespace (unless cold).
fn status(phase: Phase, generation: i64) -> TestEnvironmentStatus {
    TestEnvironmentStatus {
        phase: Some(phase),
        observed_generation: Some(generation),
        provisioning_started_at: (phase != Phase::Cold).then_some(Time(Timestamp::UNIX_EPOCH)),
        ..TestEnvironmentStatus::default()
    }
}

#[test]
fn an_environment_that_failed_before_creating_its_namespace_is_never_listed() {
    let mut environment = environment("pr-1", "pr-1", "argocd", Some(Phase::Failed));
    let mut failed_early = status(Phase::Failed, 1);
    failed_early.provisioning_started_at = None;
    environment.status = Some(failed_early.clone());
    assert_eq!(parameters(&environment, &failed_early), None);
}

#[test]
fn an_environment_is_listed_from_provisioning_until_its_teardown_begins() {
    let cases = [
        (None, false),
        (Some(Phase::Cold), false),
        (Some(Phase::Provisioning), true),
        (Some(Phase::Warm), true),
        (Some(Phase::Running), true),
        (Some(Phase::Cooling), true),
        (Some(Phase::Sleeping), true),
        (Some(Phase::Degraded), true),
        (Some(Phase::Failed), true),
        (Some(Phase::Destroying), false),
        (Some(Phase::Destroyed), false),
    ];
    for (phase, listed) in cases {
        let environment = environment("pr-1", "pr-1", "argocd", phase);
        let status = environment.status.clone().unwrap_or_default();
        assert_eq!(
            parameters(&environment, &status).is_some(),
            listed,
            "{phase:?}"
        );
    }
}

#[test]
fn a_teardown_asked_for_drops_it_when_the_status_records_it() {
    let mut destroy = environment("pr-1", "pr-1", "argocd", Some(Phase::Warm));
    destroy.spec.destroy = true;
    let mut deleted = environment("pr-1", "pr-1", "argocd", Some(Phase::Running));
    deleted.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
    for environment in [destroy, deleted] {
        let before = environment.status.clone().unwrap();
        assert!(parameters(&environment, &before).is_some());
        let tearing_down = status(Phase::Destroying, 2);
        assert_eq!(parameters(&environment, &tearing_down), None);
        assert!(listing_changes(&environment, &before, &tearing_down));
    }
}

#[test]
fn a_sleeping_environment_is_listed_asleep_at_zero_replicas() {
    let environment = environment("pr-1", "pr-1", "argocd", Some(Phase::Sleeping));
    let set = parameters(&environment, environment.status.as_ref().unwrap()).unwrap();
    assert_eq!(
        (set["awake"].clone(), set["replicas"].clone()),
        (json!(false), json!(0))
    );
}

#[test]
fn flux_environments_are_never_listed() {
    let environment = environment("pr-1", "pr-1", "flux", Some(Phase::Warm));
    assert_eq!(
        parameters(&environment, environment.status.as_ref().unwrap()),
        None
    );
}

#[test]
fn a_parameter_set_carries_what_a_template_needs() {
    let environment = environment("pr-1", "pr-1", "argocd", Some(Phase::Warm));
    assert_eq!(
        parameters(&environment, environment.status.as_ref().unwrap()),
        Some(json!({
            "name": "pr-1",
            "workspace": "team-a",
            "context": "pr-1",
            "namespace": "review-pr-1",
            "appName": "pr-1-app",
            "environmentUid": "uid-pr-1",
            "services": [
                {"name": "web", "image": "org/web:pr-1", "repo": "github.com/org/web", "sourceRef": "pr-1"},
                {"name": "db", "image": null, "repo": null, "sourceRef": null},
            ],
            "awake": true,
            "replicas": 1,
        }))
    );
}

#[test]
fn sets_are_ordered_by_name_and_filtered_by_context() {
    let environments = [
        environment("pr-2", "pr-2", "argocd", Some(Phase::Warm)),
        environment("pr-1", "pr-1", "argocd", Some(Phase::Provisioning)),
        environment("pr-1-2", "pr-1", "argocd", Some(Phase::Cold)),
        environment("pr-3", "pr-3", "argocd", Some(Phase::Destroyed)),
    ];
    let names = |request: &Request| -> Vec<String> {
        parameter_sets(request, &environments)
            .iter()
            .map(|set| set["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = Request {
        workspace: "team-a".into(),
        context: None,
    };
    assert_eq!(names(&all), ["pr-1", "pr-2"]);
    let pr_2 = Request {
        context: Some("pr-2".into()),
        ..all
    };
    assert_eq!(names(&pr_2), ["pr-2"]);
}

#[test]
fn input_parameters_are_checked_field_by_field() {
    let ok = |value| Request::from_parameters(&value).unwrap();
    let bad = |value| Request::from_parameters(&value).unwrap_err().field;
    assert_eq!(
        ok(json!({"workspace": "team-a"})),
        Request {
            workspace: "team-a".into(),
            context: None
        }
    );
    assert_eq!(
        ok(json!({"workspace": "team-a", "context": "pr-1", "other": [1]})).context,
        Some("pr-1".into()),
        "other parameters are the ApplicationSet's own business"
    );
    assert_eq!(bad(json!(null)), "input.parameters");
    assert_eq!(bad(json!([])), "input.parameters");
    assert_eq!(bad(json!({})), "input.parameters.workspace");
    assert_eq!(bad(json!({"workspace": ""})), "input.parameters.workspace");
    assert_eq!(bad(json!({"workspace": 7})), "input.parameters.workspace");
    assert_eq!(
        bad(json!({"workspace": "a", "context": true})),
        "input.parameters.context"
    );
    assert_eq!(
        bad(json!({"workspace": "a", "context": ""})),
        "input.parameters.context"
    );
}

#[test]
fn the_listing_changes_when_an_environment_enters_or_leaves_it_or_its_spec_changes() {
    let environment = environment("pr-1", "pr-1", "argocd", Some(Phase::Warm));
    let cases = [
        (Phase::Cold, 1, Phase::Provisioning, 1, true, "enters"),
        (
            Phase::Provisioning,
            1,
            Phase::Warm,
            1,
            false,
            "phase change within",
        ),
        (Phase::Running, 1, Phase::Cooling, 1, false, "released"),
        (Phase::Warm, 1, Phase::Destroying, 1, true, "leaves"),
        (
            Phase::Destroying,
            1,
            Phase::Destroyed,
            1,
            false,
            "already gone",
        ),
        (
            Phase::Warm,
            1,
            Phase::Warm,
            2,
            true,
            "spec changed while listed",
        ),
        (
            Phase::Cold,
            1,
            Phase::Cold,
            2,
            false,
            "spec changed while not listed",
        ),
    ];
    for (from, from_generation, to, to_generation, changes, what) in cases {
        assert_eq!(
            listing_changes(
                &environment,
                &status(from, from_generation),
                &status(to, to_generation)
            ),
            changes,
            "{what}"
        );
    }
}
