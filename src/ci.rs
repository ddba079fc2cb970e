//! `testmesh claim` and `testmesh release`: the commands a CI job runs to get an
//! environment for one run and give it back, without writing Kubernetes manifests.
//!
//! `claim` creates a TestEnvironmentClaim, waits for it to be Ready (progress on stderr),
//! and hands over the routing policy: on stdout as JSON, `export NAME_URL=…` lines or a
//! GitLab dotenv report, or straight into GitHub Actions' `$GITHUB_OUTPUT` and
//! `$GITHUB_ENV` files. On failure or timeout it releases the claim (so the queue moves
//! on) and exits non-zero with the reason.
//!
//! The wait may last many minutes in a CI log: it outlives a broken watch (it reconnects
//! with backoff until the `--wait` deadline, and only an identity refused by the API
//! server ends it early), and it prints one line per change of the claim and a heartbeat
//! — elapsed time, phase, reason, queue position — at least every `HEARTBEAT`, so the
//! log never goes silent. What to print is decided by `ProgressLog`, without a clock.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::time::Duration;

use clap::{Args, ValueEnum};
use futures::{Stream, StreamExt};
use jiff::SignedDuration;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, watch_object};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tokio::time::{Instant, sleep_until};

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

/// How `claim` hands over the result.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// `{"claim", "environment", "namespace", "reused", "routingPolicy"}` on stdout.
    Json,
    /// `export TESTMESH_NAMESPACE=…` and one `export NAME_URL=…` per service on stdout,
    /// for `. ./file` in a shell.
    Env,
    /// GitHub Actions: step outputs (`claim`, `environment`, `namespace`, `reused`,
    /// `routing-policy`) appended to `$GITHUB_OUTPUT`, and the variables of `env`
    /// appended to `$GITHUB_ENV` for the job's later steps.
    Github,
    /// GitLab CI: the variables of `env` as a dotenv file on stdout (`NAME=value`, no
    /// quotes), for `artifacts:reports:dotenv` and for `set -a; . ./file` in the job.
    Gitlab,
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
    Watch(#[source] watcher::Error),
    #[error("the watch on claim {0} ended")]
    WatchEnded(String),
    #[error("--output github needs ${0}, which GitHub Actions sets for every step")]
    NotInGithubActions(&'static str),
    #[error("cannot write to {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Unrepresentable(String),
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
    // Before anything is claimed: the result must have somewhere to go.
    let destination = Destination::for_output(args.output, |name| std::env::var_os(name))?;
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

    let outcome = match wait_until_settled(&api, &name, args.wait).await {
        Ok(bound) => destination.deliver(&Claimed::of(&bound)),
        Err(error) => Err(error),
    };
    match outcome {
        Ok(()) => Ok(()),
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

/// Waits until the claim is Ready (bound) or finished otherwise, or the deadline `wait`
/// from now passes, printing its progress on stderr ([`ProgressLog`]). A failed watch is
/// retried with kube's default backoff (up to 30 s apart) until the deadline.
async fn wait_until_settled(
    api: &Api<TestEnvironmentClaim>,
    name: &str,
    wait: Duration,
) -> Result<TestEnvironmentClaim, CiError> {
    let updates = watch_object(api.clone(), name).default_backoff();
    follow(updates, name, wait, |line| eprintln!("{line}")).await
}

/// [`wait_until_settled`] on the claim's `updates` (`None`: deleted), handing each
/// progress line to `print`.
async fn follow(
    updates: impl Stream<Item = Result<Option<TestEnvironmentClaim>, watcher::Error>>,
    name: &str,
    wait: Duration,
    mut print: impl FnMut(String),
) -> Result<TestEnvironmentClaim, CiError> {
    let started = Instant::now();
    let deadline = started + wait;
    let mut log = ProgressLog::default();
    let mut updates = pin!(updates);
    let mut say = |line: Option<String>| {
        if let Some(line) = line {
            print(line);
        }
    };
    let claim = loop {
        let update = tokio::select! {
            update = updates.next() => update,
            () = sleep_until(started + log.next_heartbeat()) => {
                say(log.tick(started.elapsed()));
                continue;
            }
            () = sleep_until(deadline) => {
                return Err(CiError::Timeout {
                    claim: name.to_owned(),
                    waited: wait,
                    last: log.last_seen(),
                });
            }
        };
        let elapsed = started.elapsed();
        match update {
            Some(Ok(Some(claim))) => {
                say(log.saw(Progress::of(&claim), elapsed));
                if is_settled(&claim) {
                    break claim;
                }
            }
            Some(Ok(None)) => return Err(CiError::Deleted(name.to_owned())),
            Some(Err(error)) if is_refused(&error) => return Err(CiError::Watch(error)),
            Some(Err(error)) => say(log.watch_failed(&explain(&error), elapsed)),
            None => return Err(CiError::WatchEnded(name.to_owned())),
        }
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

/// Ready, or finished without being Ready.
fn is_settled(claim: &TestEnvironmentClaim) -> bool {
    let phase = claim.status.as_ref().and_then(|s| s.phase);
    is_ready(claim) || phase.is_some_and(ClaimPhase::is_final)
}

/// The API server refused who we are (401) or what we asked (403): waiting does not
/// change that, so the wait ends at once instead of at its deadline.
fn is_refused(error: &watcher::Error) -> bool {
    api_status(error).is_some_and(|status| matches!(status.code, 401 | 403))
}

/// A broken watch in a few words: the API server's answer, or what failed on the way.
fn explain(error: &watcher::Error) -> String {
    match api_status(error) {
        Some(status) => format!("{} {}: {}", status.code, status.reason, status.message),
        None => error.to_string(),
    }
}

fn api_status(error: &watcher::Error) -> Option<&kube::core::Status> {
    match error {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status))
        | watcher::Error::WatchError(status) => Some(status),
        _ => None,
    }
}

/// How long a wait with nothing new to say stays silent at most.
const HEARTBEAT: Duration = Duration::from_secs(30);

/// What the job is told about its claim: the parts whose change is worth a line.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Progress {
    phase: ClaimPhase,
    /// The `Ready` condition's reason and message, once the operator has written them.
    ready: Option<(String, String)>,
    queue_position: Option<u32>,
}

impl Progress {
    fn of(claim: &TestEnvironmentClaim) -> Progress {
        let status = claim.status.clone().unwrap_or_default();
        Progress {
            phase: status.phase.unwrap_or(ClaimPhase::Pending),
            ready: conditions::find(&status.conditions, conditions::READY)
                .map(|c| (c.reason.clone(), c.message.clone())),
            queue_position: status.queue_position,
        }
    }

    /// `pending: Queued: position 1 in the queue for environment …`.
    fn describe(&self) -> String {
        match &self.ready {
            Some((reason, message)) => format!("{}: {reason}: {message}", self.phase),
            None => format!("{}: waiting for the operator", self.phase),
        }
    }

    /// `pending (Queued, queue position 1)`, for a heartbeat.
    fn summary(&self) -> String {
        let mut details: Vec<String> = self.ready.iter().map(|(r, _)| r.clone()).collect();
        details.extend(self.queue_position.map(|p| format!("queue position {p}")));
        if details.is_empty() {
            self.phase.to_string()
        } else {
            format!("{} ({})", self.phase, details.join(", "))
        }
    }
}

/// Decides the progress lines of one wait from what it sees and how long it has waited:
/// a line for each change, a line when the watch breaks (once until it works again), and
/// a heartbeat when nothing was printed for [`HEARTBEAT`]. Every line starts with the time
/// waited, `[2m05s]`.
#[derive(Debug, Default)]
struct ProgressLog {
    seen: Option<Progress>,
    /// When the last line was printed, as time waited.
    printed_at: Duration,
    /// The watch broke and has delivered nothing since.
    reconnecting: bool,
}

impl ProgressLog {
    /// The claim as the watch delivered it.
    fn saw(&mut self, progress: Progress, elapsed: Duration) -> Option<String> {
        let changed = self.seen.as_ref() != Some(&progress);
        let reconnected = std::mem::take(&mut self.reconnecting);
        let line = match (changed, reconnected) {
            (true, _) => progress.describe(),
            (false, true) => format!("watching again: {}", progress.describe()),
            (false, false) => return None,
        };
        self.seen = Some(progress);
        Some(self.line(line, elapsed))
    }

    /// The watch broke (`why`); it is retried after a backoff.
    fn watch_failed(&mut self, why: &str, elapsed: Duration) -> Option<String> {
        if std::mem::replace(&mut self.reconnecting, true) {
            return None;
        }
        Some(self.line(
            format!("lost the watch on the claim ({why}); retrying"),
            elapsed,
        ))
    }

    /// Time passed: a heartbeat if nothing was printed for [`HEARTBEAT`].
    fn tick(&mut self, elapsed: Duration) -> Option<String> {
        if elapsed < self.next_heartbeat() {
            return None;
        }
        let state = self
            .seen
            .as_ref()
            .map_or_else(|| "waiting for the claim".to_owned(), Progress::summary);
        let reconnecting = if self.reconnecting {
            "; reconnecting"
        } else {
            ""
        };
        Some(self.line(format!("still {state}{reconnecting}"), elapsed))
    }

    /// When, as time waited, the next heartbeat is due.
    fn next_heartbeat(&self) -> Duration {
        self.printed_at + HEARTBEAT
    }

    /// The claim's last progress, for a timeout's message.
    fn last_seen(&self) -> String {
        self.seen.as_ref().map_or_else(
            || "nothing from the operator".to_owned(),
            Progress::describe,
        )
    }

    fn line(&mut self, text: String, elapsed: Duration) -> String {
        self.printed_at = elapsed;
        format!("[{}] {text}", clock(elapsed))
    }
}

/// Time waited as `0m07s`, `12m30s`, `1h02m05s`.
fn clock(elapsed: Duration) -> String {
    let seconds = elapsed.as_secs();
    let (hours, minutes, seconds) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    if hours > 0 {
        format!("{hours}h{minutes:02}m{seconds:02}s")
    } else {
        format!("{minutes}m{seconds:02}s")
    }
}

/// What a run needs from its bound claim.
#[derive(Clone, Debug, PartialEq)]
struct Claimed {
    claim: String,
    environment: String,
    namespace: String,
    reused: bool,
    routing_policy: BTreeMap<String, String>,
}

impl Claimed {
    fn of(claim: &TestEnvironmentClaim) -> Claimed {
        let status = claim.status.clone().unwrap_or_default();
        Claimed {
            claim: claim.name_any(),
            environment: status.environment_name.unwrap_or_default(),
            namespace: status.namespace.unwrap_or_default(),
            reused: status.reused.unwrap_or(false),
            routing_policy: status.routing_policy,
        }
    }

    fn json(&self) -> Value {
        json!({
            "claim": self.claim,
            "environment": self.environment,
            "reused": self.reused,
            "namespace": self.namespace,
            "routingPolicy": self.routing_policy,
        })
    }

    /// The environment variables of a run: `TESTMESH_CLAIM`, `TESTMESH_ENVIRONMENT`,
    /// `TESTMESH_NAMESPACE`, and `NAME_URL` per service (`user-service` →
    /// `USER_SERVICE_URL`).
    fn variables(&self) -> Vec<(String, String)> {
        let mut variables = vec![
            ("TESTMESH_CLAIM".to_owned(), self.claim.clone()),
            ("TESTMESH_ENVIRONMENT".to_owned(), self.environment.clone()),
            ("TESTMESH_NAMESPACE".to_owned(), self.namespace.clone()),
        ];
        for (service, url) in &self.routing_policy {
            variables.push((url_variable(service), url.clone()));
        }
        variables
    }

    /// GitHub Actions step outputs: `steps.<id>.outputs.claim` and so on.
    fn step_outputs(&self) -> Vec<(String, String)> {
        vec![
            ("claim".to_owned(), self.claim.clone()),
            ("environment".to_owned(), self.environment.clone()),
            ("namespace".to_owned(), self.namespace.clone()),
            ("reused".to_owned(), self.reused.to_string()),
            (
                "routing-policy".to_owned(),
                json!(self.routing_policy).to_string(),
            ),
        ]
    }
}

/// `user-service` → `USER_SERVICE_URL`.
fn url_variable(service: &str) -> String {
    let name: String = service
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("{name}_URL")
}

/// Where `claim` hands its result over, decided before the claim is made.
#[derive(Clone, Debug, PartialEq)]
enum Destination {
    Stdout(Output),
    /// The files GitHub Actions names in `$GITHUB_OUTPUT` and `$GITHUB_ENV`.
    Github {
        outputs: PathBuf,
        env: PathBuf,
    },
}

impl Destination {
    /// For `output`, with the process environment read by `var`.
    fn for_output(
        output: Output,
        var: impl Fn(&str) -> Option<std::ffi::OsString>,
    ) -> Result<Destination, CiError> {
        if output != Output::Github {
            return Ok(Destination::Stdout(output));
        }
        let file = |name: &'static str| {
            var(name)
                .filter(|path| !path.is_empty())
                .map(PathBuf::from)
                .ok_or(CiError::NotInGithubActions(name))
        };
        Ok(Destination::Github {
            outputs: file("GITHUB_OUTPUT")?,
            env: file("GITHUB_ENV")?,
        })
    }

    fn deliver(&self, claimed: &Claimed) -> Result<(), CiError> {
        match self {
            Destination::Stdout(output) => {
                println!("{}", render(claimed, *output)?);
                Ok(())
            }
            Destination::Github { outputs, env } => {
                let step_outputs = claimed.step_outputs();
                let variables = claimed.variables();
                append(outputs, &github_lines(&step_outputs))?;
                append(env, &github_lines(&variables))?;
                let names = |pairs: &[(String, String)]| {
                    pairs
                        .iter()
                        .map(|(name, _)| name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                eprintln!(
                    "step outputs {} written to $GITHUB_OUTPUT; {} to $GITHUB_ENV",
                    names(&step_outputs),
                    names(&variables)
                );
                Ok(())
            }
        }
    }
}

/// The result for the job, as `output` prints it.
fn render(claimed: &Claimed, output: Output) -> Result<String, CiError> {
    Ok(match output {
        Output::Json => claimed.json().to_string(),
        Output::Env => env_lines(&claimed.variables()),
        Output::Gitlab => dotenv_lines(&claimed.variables())?,
        Output::Github => github_lines(&claimed.variables()),
    })
}

/// `export NAME='value'` lines, for a POSIX shell.
fn env_lines(variables: &[(String, String)]) -> String {
    variables
        .iter()
        .map(|(name, value)| format!("export {name}={}", shell_quote(value)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// GitLab's dotenv report: `NAME=value`, one per line. GitLab keeps quotes as they are
/// and accepts no line breaks, so values go unquoted and one with a line break is an
/// error rather than a broken variable.
fn dotenv_lines(variables: &[(String, String)]) -> Result<String, CiError> {
    let lines = variables
        .iter()
        .map(|(name, value)| {
            if value.contains(['\n', '\r']) {
                Err(CiError::Unrepresentable(format!(
                    "{name} has a line break, which a GitLab dotenv report cannot hold"
                )))
            } else {
                Ok(format!("{name}={value}"))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(lines.join("\n"))
}

/// Lines for `$GITHUB_OUTPUT` or `$GITHUB_ENV`: `name=value`, or GitHub's
/// `name<<DELIMITER` form for a value with a line break (a delimiter the value does not
/// contain). Each line ends with a newline, so appended files stay well formed.
fn github_lines(pairs: &[(String, String)]) -> String {
    let mut text = String::new();
    for (name, value) in pairs {
        if value.contains(['\n', '\r']) {
            let mut delimiter = "TESTMESH_EOF".to_owned();
            while value.contains(&delimiter) {
                delimiter.push('_');
            }
            text.push_str(&format!("{name}<<{delimiter}\n{value}\n{delimiter}\n"));
        } else {
            text.push_str(&format!("{name}={value}\n"));
        }
    }
    text
}

/// Appends `text` to the file at `path` (created if missing), as GitHub's runner expects.
fn append(path: &Path, text: &str) -> Result<(), CiError> {
    use std::io::Write;
    let error = |source| CiError::Write {
        path: path.display().to_string(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(error)?;
    file.write_all(text.as_bytes()).map_err(error)
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

    /// A bound claim with two services, one with a quote in its URL.
    fn claimed() -> Claimed {
        Claimed {
            claim: "pr-1-abcde".to_owned(),
            environment: "pr-1-1".to_owned(),
            namespace: "review-pr-1".to_owned(),
            reused: true,
            routing_policy: BTreeMap::from([
                (
                    "user-service".to_owned(),
                    "http://user-service.review-pr-1.svc.cluster.local:8080".to_owned(),
                ),
                ("order.api".to_owned(), "http://it's.example".to_owned()),
            ]),
        }
    }

    #[test]
    fn env_output_names_variables_after_services_and_quotes_values() {
        assert_eq!(
            render(&claimed(), Output::Env).unwrap(),
            "export TESTMESH_CLAIM='pr-1-abcde'\n\
             export TESTMESH_ENVIRONMENT='pr-1-1'\n\
             export TESTMESH_NAMESPACE='review-pr-1'\n\
             export ORDER_API_URL='http://it'\\''s.example'\n\
             export USER_SERVICE_URL='http://user-service.review-pr-1.svc.cluster.local:8080'"
        );
    }

    #[test]
    fn json_output_is_one_object() {
        let printed: Value =
            serde_json::from_str(&render(&claimed(), Output::Json).unwrap()).unwrap();
        assert_eq!(
            printed,
            json!({
                "claim": "pr-1-abcde", "environment": "pr-1-1", "namespace": "review-pr-1",
                "reused": true,
                "routingPolicy": {
                    "order.api": "http://it's.example",
                    "user-service": "http://user-service.review-pr-1.svc.cluster.local:8080",
                },
            })
        );
    }

    #[test]
    fn gitlab_output_is_a_dotenv_report_without_quotes() {
        assert_eq!(
            render(&claimed(), Output::Gitlab).unwrap(),
            "TESTMESH_CLAIM=pr-1-abcde\n\
             TESTMESH_ENVIRONMENT=pr-1-1\n\
             TESTMESH_NAMESPACE=review-pr-1\n\
             ORDER_API_URL=http://it's.example\n\
             USER_SERVICE_URL=http://user-service.review-pr-1.svc.cluster.local:8080"
        );
        let mut broken = claimed();
        broken
            .routing_policy
            .insert("web".to_owned(), "http://a\nEVIL=1".to_owned());
        let error = render(&broken, Output::Gitlab).unwrap_err().to_string();
        assert!(error.contains("WEB_URL has a line break"), "{error}");
    }

    #[test]
    fn github_output_writes_step_outputs_and_job_variables() {
        let claimed = claimed();
        assert_eq!(
            github_lines(&claimed.step_outputs()),
            "claim=pr-1-abcde\n\
             environment=pr-1-1\n\
             namespace=review-pr-1\n\
             reused=true\n\
             routing-policy={\"order.api\":\"http://it's.example\",\
             \"user-service\":\"http://user-service.review-pr-1.svc.cluster.local:8080\"}\n"
        );
        assert_eq!(
            github_lines(&claimed.variables()),
            "TESTMESH_CLAIM=pr-1-abcde\n\
             TESTMESH_ENVIRONMENT=pr-1-1\n\
             TESTMESH_NAMESPACE=review-pr-1\n\
             ORDER_API_URL=http://it's.example\n\
             USER_SERVICE_URL=http://user-service.review-pr-1.svc.cluster.local:8080\n"
        );
    }

    #[test]
    fn a_value_with_a_line_break_cannot_set_a_second_github_variable() {
        let pairs = [
            ("A".to_owned(), "x\nEVIL=1".to_owned()),
            ("B".to_owned(), "TESTMESH_EOF\ny".to_owned()),
        ];
        assert_eq!(
            github_lines(&pairs),
            "A<<TESTMESH_EOF\nx\nEVIL=1\nTESTMESH_EOF\n\
             B<<TESTMESH_EOF_\nTESTMESH_EOF\ny\nTESTMESH_EOF_\n"
        );
    }

    #[test]
    fn github_output_needs_the_runners_files_and_appends_to_them() {
        let none = |_: &str| None;
        let error = Destination::for_output(Output::Github, none).unwrap_err();
        assert!(error.to_string().contains("$GITHUB_OUTPUT"), "{error}");
        assert_eq!(
            Destination::for_output(Output::Gitlab, none).unwrap(),
            Destination::Stdout(Output::Gitlab)
        );

        let dir = std::env::temp_dir().join(format!("testmesh-gh-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (outputs, env) = (dir.join("output"), dir.join("env"));
        std::fs::write(&env, "EARLIER=1\n").unwrap();
        let runner = |name: &str| match name {
            "GITHUB_OUTPUT" => Some(outputs.clone().into_os_string()),
            "GITHUB_ENV" => Some(env.clone().into_os_string()),
            _ => None,
        };
        let destination = Destination::for_output(Output::Github, runner).unwrap();
        destination.deliver(&claimed()).unwrap();
        let written = std::fs::read_to_string(&outputs).unwrap();
        assert!(written.starts_with("claim=pr-1-abcde\n"), "{written}");
        let env_file = std::fs::read_to_string(&env).unwrap();
        assert!(
            env_file.starts_with("EARLIER=1\nTESTMESH_CLAIM=pr-1-abcde\n"),
            "appended: {env_file}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
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
        assert_eq!(
            template.namespace, "review-{{context}}",
            "one for every context"
        );
        let workflow = std::fs::read_to_string(examples.join("github-actions.yml")).unwrap();
        let workflow: Value = serde_saphyr::from_str(&workflow).unwrap();
        let steps = workflow
            .pointer("/jobs/integration/steps")
            .and_then(Value::as_array)
            .unwrap();
        let commands: Vec<&str> = steps.iter().filter_map(|s| s["run"].as_str()).collect();
        assert!(
            commands
                .iter()
                .any(|c| c.contains("testmesh claim") && c.contains("--output github"))
        );
        assert!(commands.iter().any(|c| c.contains("testmesh release")));
        assert!(
            !commands
                .iter()
                .any(|c| c.contains("grep") || c.contains("sed ")),
            "the outputs come from testmesh itself: {commands:#?}"
        );
        let gitlab = std::fs::read_to_string(examples.join("gitlab-ci.yml")).unwrap();
        let gitlab: Value = serde_saphyr::from_str(&gitlab).unwrap();
        let script = gitlab
            .pointer("/integration/script")
            .and_then(Value::as_array)
            .unwrap();
        assert!(script.iter().any(|line| {
            line.as_str()
                .is_some_and(|l| l.contains("testmesh claim") && l.contains("--output gitlab"))
        }));
        assert_eq!(
            gitlab.pointer("/integration/artifacts/reports/dotenv"),
            Some(&json!("testmesh.env"))
        );
    }

    /// Waiting in the queue at `position`.
    fn queued(position: u32) -> Progress {
        Progress {
            phase: ClaimPhase::Pending,
            ready: Some(("Queued".into(), format!("position {position} in the queue"))),
            queue_position: Some(position),
        }
    }

    /// What a wait sees, in order, as the loop in `wait_until_settled` feeds it.
    enum Seen {
        Claim(Progress),
        /// The watch broke: the API server answered 503.
        Lost,
        /// Nothing: the heartbeat's timer fired.
        Tick,
    }

    #[test]
    fn a_wait_prints_each_change_a_broken_watch_once_and_a_heartbeat_when_quiet() {
        let new = Progress {
            phase: ClaimPhase::Pending,
            ready: None,
            queue_position: None,
        };
        let bound = Progress {
            phase: ClaimPhase::Bound,
            ready: Some(("Bound".into(), "in namespace review-pr-1".into())),
            queue_position: None,
        };
        let script = [
            (0, Seen::Tick, ""),
            (
                0,
                Seen::Claim(new),
                "[0m00s] pending: waiting for the operator",
            ),
            (
                1,
                Seen::Claim(queued(2)),
                "[0m01s] pending: Queued: position 2 in the queue",
            ),
            (5, Seen::Claim(queued(2)), ""),
            (30, Seen::Tick, ""),
            (
                31,
                Seen::Tick,
                "[0m31s] still pending (Queued, queue position 2)",
            ),
            (
                40,
                Seen::Lost,
                "[0m40s] lost the watch on the claim (503 ServiceUnavailable: etcdserver: leader changed); retrying",
            ),
            (41, Seen::Lost, ""),
            (
                70,
                Seen::Tick,
                "[1m10s] still pending (Queued, queue position 2); reconnecting",
            ),
            (
                75,
                Seen::Claim(queued(2)),
                "[1m15s] watching again: pending: Queued: position 2 in the queue",
            ),
            (
                80,
                Seen::Claim(queued(1)),
                "[1m20s] pending: Queued: position 1 in the queue",
            ),
            (
                3_725,
                Seen::Claim(bound),
                "[1h02m05s] bound: Bound: in namespace review-pr-1",
            ),
        ];
        let mut log = ProgressLog::default();
        for (seconds, seen, expected) in script {
            let elapsed = Duration::from_secs(seconds);
            let line = match seen {
                Seen::Claim(progress) => log.saw(progress, elapsed),
                Seen::Lost => log.watch_failed(&explain(&unavailable()), elapsed),
                Seen::Tick => log.tick(elapsed),
            };
            assert_eq!(line.unwrap_or_default(), expected, "at {seconds} s");
        }
    }

    fn unavailable() -> watcher::Error {
        let status =
            kube::core::Status::failure("etcdserver: leader changed", "ServiceUnavailable")
                .with_code(503);
        watcher::Error::WatchFailed(kube::Error::Api(Box::new(status)))
    }

    /// The claim as the watch delivers it: `phase`, `Ready` with `reason`.
    fn claim_in(phase: ClaimPhase, ready: &str, reason: &str) -> TestEnvironmentClaim {
        let mut claim: TestEnvironmentClaim = serde_json::from_value(json!({
            "apiVersion": "testmesh.io/v1alpha1", "kind": "TestEnvironmentClaim",
            "metadata": {"name": "run", "namespace": "team-a"},
            "spec": {"context": "pr-1", "environmentName": "pr-1-1"},
        }))
        .unwrap();
        claim.status = Some(crate::resources::TestEnvironmentClaimStatus {
            phase: Some(phase),
            conditions: vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
                type_: conditions::READY.into(),
                status: ready.into(),
                reason: reason.into(),
                message: "details".into(),
                last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    jiff::Timestamp::UNIX_EPOCH,
                ),
                observed_generation: Some(1),
            }],
            ..Default::default()
        });
        claim
    }

    type Update = Result<Option<TestEnvironmentClaim>, watcher::Error>;

    /// Follows `updates` (then nothing more) for at most a second.
    async fn followed(updates: Vec<Update>) -> Result<TestEnvironmentClaim, CiError> {
        let updates = futures::stream::iter(updates).chain(futures::stream::pending());
        follow(updates, "run", Duration::from_secs(1), drop).await
    }

    #[tokio::test]
    async fn a_broken_watch_is_retried_until_the_claim_settles_or_the_deadline_passes() {
        let queued = claim_in(ClaimPhase::Pending, "False", "Queued");
        let bound = claim_in(ClaimPhase::Bound, "True", "Bound");
        let failed = claim_in(ClaimPhase::Failed, "False", "EnvironmentFailed");
        let forbidden = || {
            let status = kube::core::Status::failure("no", "Forbidden").with_code(403);
            watcher::Error::InitialListFailed(kube::Error::Api(Box::new(status)))
        };
        let cases: Vec<(&str, Vec<Update>, &str)> = vec![
            (
                "broken twice, then bound",
                vec![
                    Ok(Some(queued.clone())),
                    Err(unavailable()),
                    Err(unavailable()),
                    Ok(Some(bound)),
                ],
                "bound",
            ),
            (
                "failed",
                vec![Err(unavailable()), Ok(Some(failed))],
                "claim run failed",
            ),
            (
                "deleted",
                vec![Err(unavailable()), Ok(None)],
                "claim run was deleted",
            ),
            (
                "forbidden",
                vec![Err(forbidden())],
                "watching the claim failed",
            ),
            (
                "never settles",
                vec![Ok(Some(queued)), Err(unavailable())],
                "claim run was not Ready within 1s",
            ),
        ];
        for (case, updates, outcome) in cases {
            let shown = match followed(updates).await {
                Ok(claim) => Progress::of(&claim).phase.to_string(),
                Err(error) => error.to_string(),
            };
            assert!(shown.starts_with(outcome), "{case}: {shown}");
        }
    }

    #[test]
    fn a_quiet_wait_is_never_silent_for_longer_than_the_heartbeat() {
        let mut log = ProgressLog::default();
        let mut printed = vec![Duration::ZERO];
        let _ = log.saw(queued(1), Duration::ZERO);
        // The loop sleeps until the next heartbeat is due, then ticks.
        while *printed.last().unwrap() < Duration::from_secs(900) {
            let due = log.next_heartbeat();
            assert!(log.tick(due - Duration::from_millis(1)).is_none());
            assert!(log.tick(due).is_some(), "a heartbeat when due");
            printed.push(due);
        }
        assert!(printed.windows(2).all(|w| w[1] - w[0] <= HEARTBEAT));
    }

    #[test]
    fn only_a_refused_identity_ends_the_wait_before_its_deadline() {
        let api = |code: u16| {
            let status = kube::core::Status::failure("message", "Reason").with_code(code);
            kube::Error::Api(Box::new(status))
        };
        let expired = kube::core::Status::failure("too old", "Expired").with_code(410);
        let cases = [
            (
                "unauthorized",
                watcher::Error::InitialListFailed(api(401)),
                true,
            ),
            (
                "forbidden",
                watcher::Error::WatchStartFailed(api(403)),
                true,
            ),
            ("unavailable", watcher::Error::WatchFailed(api(503)), false),
            (
                "throttled",
                watcher::Error::InitialListFailed(api(429)),
                false,
            ),
            (
                "expired",
                watcher::Error::WatchError(Box::new(expired)),
                false,
            ),
            ("no version", watcher::Error::NoResourceVersion, false),
        ];
        for (case, error, refused) in cases {
            assert_eq!(is_refused(&error), refused, "{case}");
        }
        assert_eq!(
            explain(&watcher::Error::InitialListFailed(api(403))),
            "403 Reason: message"
        );
        assert_eq!(
            explain(&watcher::Error::NoResourceVersion),
            watcher::Error::NoResourceVersion.to_string()
        );
    }

    #[test]
    fn time_waited_reads_as_minutes_and_seconds() {
        for (seconds, shown) in [
            (0, "0m00s"),
            (7, "0m07s"),
            (750, "12m30s"),
            (3_725, "1h02m05s"),
        ] {
            assert_eq!(clock(Duration::from_secs(seconds)), shown);
        }
    }

    #[test]
    fn wait_durations_parse() {
        assert_eq!(parse_wait("15m"), Ok(Duration::from_secs(900)));
        assert!(parse_wait("forever").is_err());
    }
}
