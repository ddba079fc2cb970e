//! `testmesh claim` and `testmesh release`: the commands a CI job runs to get an
//! environment for one run and give it back, without writing Kubernetes manifests.
//!
//! `claim` creates a TestEnvironmentClaim, waits for it to be Ready (progress on stderr),
//! and prints the routing policy on stdout as JSON or as `export NAME_URL=…` lines. On
//! failure or timeout it releases the claim (so the queue moves on) and exits non-zero
//! with the reason.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use clap::{Args, ValueEnum};
use jiff::SignedDuration;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use kube::runtime::wait::await_condition;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use crate::lifecycle::{ClaimPhase, claims, conditions};
use crate::resources::{
    DEFAULT_MAX_DURATION_MINUTES, EnvironmentTemplate, TestEnvironmentClaim,
    TestEnvironmentClaimSpec,
};

/// Settings of `testmesh claim`.
#[derive(Args, Clone, Debug)]
pub struct ClaimArgs {
    /// The context to claim an environment for, e.g. `pr-123`.
    #[arg(long)]
    pub context: String,
    /// YAML file with the environment to create when none can be reused: a
    /// TestEnvironmentClaim manifest (its `spec.template` is used) or a bare template
    /// (`provider`, `providerAppName`, `namespace`, `ttlMinutes`, `services`, …).
    #[arg(long, value_name = "FILE", required_unless_present = "environment")]
    pub from: Option<PathBuf>,
    /// Claim this existing environment instead of choosing one by context.
    #[arg(long, value_name = "NAME")]
    pub environment: Option<String>,
    /// Workspace namespace (default: the kubeconfig context's namespace).
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Name of the claim (default: generated from the context).
    #[arg(long)]
    pub name: Option<String>,
    /// Lease in minutes: the environment is released after this even if the job dies.
    #[arg(long, default_value_t = DEFAULT_MAX_DURATION_MINUTES)]
    pub max_duration_minutes: u32,
    /// How long to wait for Ready (e.g. `15m`, `90s`).
    #[arg(long, default_value = "15m", value_parser = parse_wait)]
    pub wait: Duration,
    /// What to print once Ready.
    #[arg(long, value_enum, default_value_t = Output::Json)]
    pub output: Output,
    /// Keep the claim when it fails or times out (default: release it).
    #[arg(long)]
    pub keep_on_failure: bool,
}

/// Settings of `testmesh release`.
#[derive(Args, Clone, Debug)]
pub struct ReleaseArgs {
    /// The claim to release (delete).
    pub name: String,
    /// Workspace namespace (default: the kubeconfig context's namespace).
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
}

/// How `claim` prints the result.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// `{"claim", "environment", "namespace", "reused", "routingPolicy"}`.
    Json,
    /// `export TESTMESH_NAMESPACE=…` and one `export NAME_URL=…` per service.
    Env,
}

/// Why a CI command failed; the process exits non-zero with this message.
#[derive(Debug, thiserror::Error)]
pub enum CiError {
    #[error("cannot connect to Kubernetes: {0}")]
    Connect(#[source] kube::Error),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a claim or an environment template: {message}")]
    Template { path: String, message: String },
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("claim {claim} {phase}: {reason}: {message}")]
    ClaimFailed {
        claim: String,
        phase: ClaimPhase,
        reason: String,
        message: String,
    },
    #[error("claim {claim} was not Ready within {waited:?}; last: {last}")]
    Timeout {
        claim: String,
        waited: Duration,
        last: String,
    },
    #[error("claim {0} was deleted while waiting")]
    Deleted(String),
    #[error("watching the claim failed: {0}")]
    Watch(#[from] kube::runtime::wait::Error),
}

/// Creates a claim, waits for Ready, and prints the routing policy.
pub async fn claim(args: ClaimArgs) -> Result<(), CiError> {
    let client = Client::try_default().await.map_err(CiError::Connect)?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let template = match &args.from {
        Some(path) => Some(read_template(path)?),
        None => None,
    };
    let api: Api<TestEnvironmentClaim> = Api::namespaced(client, &namespace);
    let claim = TestEnvironmentClaim {
        metadata: ObjectMeta {
            name: args.name.clone(),
            generate_name: args
                .name
                .is_none()
                .then(|| format!("{}-", generated_prefix(&args.context))),
            ..ObjectMeta::default()
        },
        spec: TestEnvironmentClaimSpec {
            context: args.context.clone(),
            environment_name: args.environment.clone(),
            template,
            max_duration_minutes: args.max_duration_minutes,
        },
        status: None,
    };
    let created = api.create(&PostParams::default(), &claim).await?;
    let name = created.name_any();
    eprintln!(
        "claim {namespace}/{name} created for context {}",
        args.context
    );

    let outcome = wait_until_settled(&api, &name, args.wait).await;
    match outcome {
        Ok(bound) => {
            println!("{}", render(&bound, args.output));
            Ok(())
        }
        Err(error) => {
            if !args.keep_on_failure {
                let _ = api.delete(&name, &DeleteParams::default()).await;
                eprintln!("claim {namespace}/{name} released");
            }
            Err(error)
        }
    }
}

/// Deletes a claim, which releases its environment.
pub async fn release(args: ReleaseArgs) -> Result<(), CiError> {
    let client = Client::try_default().await.map_err(CiError::Connect)?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let api: Api<TestEnvironmentClaim> = Api::namespaced(client, &namespace);
    match api.delete(&args.name, &DeleteParams::default()).await {
        Ok(_) => {
            eprintln!("claim {namespace}/{} released", args.name);
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.is_not_found() => {
            eprintln!("claim {namespace}/{} was already gone", args.name);
            Ok(())
        }
        Err(error) => Err(error.into()),
    }
}

/// Waits until the claim is Ready (bound) or finished otherwise, printing each change of
/// phase, reason or queue position on stderr.
async fn wait_until_settled(
    api: &Api<TestEnvironmentClaim>,
    name: &str,
    wait: Duration,
) -> Result<TestEnvironmentClaim, CiError> {
    let last = Mutex::new(String::new());
    let settled = |claim: Option<&TestEnvironmentClaim>| {
        let Some(claim) = claim else { return true };
        let progress = describe(claim);
        if let Ok(mut last) = last.lock()
            && *last != progress
        {
            eprintln!("{progress}");
            *last = progress;
        }
        let phase = claim.status.as_ref().and_then(|s| s.phase);
        is_ready(claim)
            || matches!(
                phase,
                Some(ClaimPhase::Failed | ClaimPhase::Expired | ClaimPhase::Released)
            )
    };
    let waited = tokio::time::timeout(wait, await_condition(api.clone(), name, settled)).await;
    let last_seen = last.lock().map(|l| l.clone()).unwrap_or_default();
    let claim = match waited {
        Err(_) => {
            return Err(CiError::Timeout {
                claim: name.to_owned(),
                waited: wait,
                last: last_seen,
            });
        }
        Ok(Err(error)) => return Err(error.into()),
        Ok(Ok(None)) => return Err(CiError::Deleted(name.to_owned())),
        Ok(Ok(Some(claim))) => claim,
    };
    if is_ready(&claim) {
        return Ok(claim);
    }
    let status = claim.status.clone().unwrap_or_default();
    let ready = conditions::find(&status.conditions, conditions::READY);
    Err(CiError::ClaimFailed {
        claim: name.to_owned(),
        phase: status.phase.unwrap_or(ClaimPhase::Failed),
        reason: ready.map(|c| c.reason.clone()).unwrap_or_default(),
        message: ready.map(|c| c.message.clone()).unwrap_or_default(),
    })
}

fn is_ready(claim: &TestEnvironmentClaim) -> bool {
    claim
        .status
        .as_ref()
        .is_some_and(|s| conditions::is_true(&s.conditions, conditions::READY))
}

/// One progress line: phase, reason, queue position and message.
fn describe(claim: &TestEnvironmentClaim) -> String {
    let status = claim.status.clone().unwrap_or_default();
    let phase = status.phase.map_or("pending", ClaimPhase::as_str);
    match conditions::find(&status.conditions, conditions::READY) {
        Some(ready) => format!("{phase}: {}: {}", ready.reason, ready.message),
        None => format!("{phase}: waiting for the operator"),
    }
}

/// The result for the job.
fn render(claim: &TestEnvironmentClaim, output: Output) -> String {
    let status = claim.status.clone().unwrap_or_default();
    let environment = status.environment_name.clone().unwrap_or_default();
    let namespace = status.namespace.clone().unwrap_or_default();
    match output {
        Output::Json => json!({
            "claim": claim.name_any(),
            "environment": environment,
            "reused": status.reused.unwrap_or(false),
            "namespace": namespace,
            "routingPolicy": status.routing_policy,
        })
        .to_string(),
        Output::Env => env_lines(
            &claim.name_any(),
            &environment,
            &namespace,
            &status.routing_policy,
        ),
    }
}

/// `export NAME=value` lines; service `user-service` becomes `USER_SERVICE_URL`.
fn env_lines(
    claim: &str,
    environment: &str,
    namespace: &str,
    routing: &BTreeMap<String, String>,
) -> String {
    let mut lines = vec![
        format!("export TESTMESH_CLAIM={}", shell_quote(claim)),
        format!("export TESTMESH_ENVIRONMENT={}", shell_quote(environment)),
        format!("export TESTMESH_NAMESPACE={}", shell_quote(namespace)),
    ];
    for (service, url) in routing {
        let variable: String = service
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        lines.push(format!("export {variable}_URL={}", shell_quote(url)));
    }
    lines.join("\n")
}

fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// A name prefix for generated claim names: the context, made a valid name.
fn generated_prefix(context: &str) -> String {
    claims::name_prefix(context, 40).unwrap_or_else(|| "claim".to_owned())
}

/// Reads a claim manifest's `spec.template`, or a bare template.
fn read_template(path: &PathBuf) -> Result<EnvironmentTemplate, CiError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| CiError::Read {
        path: shown.clone(),
        source,
    })?;
    let document: Value = serde_saphyr::from_str(&text).map_err(|e| CiError::Template {
        path: shown.clone(),
        message: e.to_string(),
    })?;
    let template = match document.get("kind").and_then(Value::as_str) {
        Some("TestEnvironmentClaim") => {
            document
                .pointer("/spec/template")
                .cloned()
                .ok_or_else(|| CiError::Template {
                    path: shown.clone(),
                    message: "the claim has no spec.template".to_owned(),
                })?
        }
        Some(other) => {
            return Err(CiError::Template {
                path: shown,
                message: format!("kind {other} is neither a TestEnvironmentClaim nor a template"),
            });
        }
        None => document,
    };
    serde_json::from_value(template).map_err(|e| CiError::Template {
        path: shown,
        message: e.to_string(),
    })
}

fn parse_wait(text: &str) -> Result<Duration, String> {
    let duration: SignedDuration = text
        .parse()
        .map_err(|e| format!("not a duration like 15m or 90s: {e}"))?;
    Duration::try_from(duration).map_err(|_| "must not be negative".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_output_names_variables_after_services_and_quotes_values() {
        let routing = BTreeMap::from([
            (
                "user-service".to_owned(),
                "http://user-service.review-pr-1.svc.cluster.local:8080".to_owned(),
            ),
            ("order.api".to_owned(), "http://it's.example".to_owned()),
        ]);
        let lines = env_lines("pr-1-abcde", "pr-1-3f2a9c1e", "review-pr-1", &routing);
        assert_eq!(
            lines,
            "export TESTMESH_CLAIM='pr-1-abcde'\n\
             export TESTMESH_ENVIRONMENT='pr-1-3f2a9c1e'\n\
             export TESTMESH_NAMESPACE='review-pr-1'\n\
             export ORDER_API_URL='http://it'\\''s.example'\n\
             export USER_SERVICE_URL='http://user-service.review-pr-1.svc.cluster.local:8080'"
        );
    }

    #[test]
    fn generated_prefixes_are_valid_names() {
        assert_eq!(generated_prefix("pr-123"), "pr-123");
        assert_eq!(generated_prefix("Feature_X"), "feature-x");
        assert_eq!(generated_prefix("__"), "claim");
    }

    #[test]
    fn templates_come_from_a_claim_or_stand_alone_and_bad_files_name_the_problem() {
        let dir = std::env::temp_dir().join(format!("testmesh-ci-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let claim = dir.join("claim.yaml");
        std::fs::write(&claim, "apiVersion: testmesh.io/v1alpha1\nkind: TestEnvironmentClaim\nmetadata: {name: x}\nspec:\n  context: pr-1\n  template:\n    provider: argocd\n    providerAppName: app\n    namespace: review-pr-1\n").unwrap();
        assert_eq!(read_template(&claim).unwrap().namespace, "review-pr-1");
        let bare = dir.join("template.yaml");
        std::fs::write(
            &bare,
            "provider: flux\nproviderAppName: app\nnamespace: review-pr-2\nttlMinutes: 30\n",
        )
        .unwrap();
        let template = read_template(&bare).unwrap();
        assert_eq!(
            (template.namespace.as_str(), template.ttl_minutes),
            ("review-pr-2", 30)
        );
        let wrong = dir.join("wrong.yaml");
        std::fs::write(&wrong, "kind: ConfigMap\n").unwrap();
        assert!(
            read_template(&wrong)
                .unwrap_err()
                .to_string()
                .contains("kind ConfigMap")
        );
        let incomplete = dir.join("incomplete.yaml");
        std::fs::write(&incomplete, "provider: argocd\n").unwrap();
        assert!(
            read_template(&incomplete)
                .unwrap_err()
                .to_string()
                .contains("providerAppName")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_shipped_ci_examples_parse() {
        let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/ci");
        let template = read_template(&examples.join("environment-template.yaml")).unwrap();
        assert_eq!(template.namespace, "review-branch-main");
        let workflow = std::fs::read_to_string(examples.join("github-actions.yml")).unwrap();
        let workflow: Value = serde_saphyr::from_str(&workflow).unwrap();
        let steps = workflow
            .pointer("/jobs/integration/steps")
            .and_then(Value::as_array)
            .unwrap();
        let commands: Vec<&str> = steps.iter().filter_map(|s| s["run"].as_str()).collect();
        assert!(commands.iter().any(|c| c.contains("testmesh claim")));
        assert!(commands.iter().any(|c| c.contains("testmesh release")));
    }

    #[test]
    fn wait_durations_parse() {
        assert_eq!(parse_wait("15m"), Ok(Duration::from_secs(900)));
        assert!(parse_wait("forever").is_err());
    }
}
