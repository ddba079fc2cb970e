//! TestMesh as an Argo CD ApplicationSet generator: which environments an ApplicationSet
//! should deploy, and with which parameters.
//!
//! The environments that are alive decide which Applications exist; Argo CD still
//! authors them from the ApplicationSet's template and syncs them. An environment is
//! listed once it has created its namespace (so nothing syncs into a namespace that is
//! not there yet) until its teardown begins: then it drops out, the ApplicationSet
//! deletes its Application, Argo CD prunes, and only then does TestMesh delete the
//! namespace. Nothing fights anybody: TestMesh never deletes a generated Application,
//! and the ApplicationSet never re-creates one for an environment that is going.
//!
//! Each parameter set is documented in the README ("ApplicationSet generator"); the
//! Application's template carries [`crate::resources::ENVIRONMENT_UID_ANNOTATION`] from
//! `environmentUid`,
//! which is how the environment knows the Application was generated for it.

use kube::ResourceExt;
use serde_json::{Value, json};

use super::Phase;
use crate::resources::{Provider, TestEnvironment, TestEnvironmentStatus};

/// What an ApplicationSet asks for (its plugin generator's `input.parameters`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The workspace whose environments are listed.
    pub workspace: String,
    /// Only environments of this context, when given.
    pub context: Option<String>,
}

/// Why an ApplicationSet's input parameters cannot be served; names the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct BadInput {
    pub field: &'static str,
    pub problem: &'static str,
}

impl Request {
    /// The request from a plugin generator's `input.parameters` (any JSON: Argo CD
    /// passes what the ApplicationSet says through unchecked).
    pub fn from_parameters(parameters: &Value) -> Result<Request, BadInput> {
        let field = |field: &'static str, problem| BadInput { field, problem };
        let Some(parameters) = parameters.as_object() else {
            return Err(field("input.parameters", "must be an object"));
        };
        let workspace = match parameters.get("workspace") {
            Some(Value::String(workspace)) if !workspace.is_empty() => workspace.clone(),
            Some(Value::String(_)) | None | Some(Value::Null) => {
                return Err(field(
                    "input.parameters.workspace",
                    "is required: the namespace whose TestEnvironments are listed",
                ));
            }
            Some(_) => return Err(field("input.parameters.workspace", "must be a string")),
        };
        let context = match parameters.get("context") {
            None | Some(Value::Null) => None,
            Some(Value::String(context)) if !context.is_empty() => Some(context.clone()),
            Some(_) => {
                return Err(field(
                    "input.parameters.context",
                    "must be a non-empty string",
                ));
            }
        };
        Ok(Request { workspace, context })
    }
}

/// The parameter sets for `request`, from the workspace's environments, ordered by
/// environment name.
pub fn parameter_sets(request: &Request, environments: &[TestEnvironment]) -> Vec<Value> {
    let mut listed: Vec<(&str, Value)> = environments
        .iter()
        .filter(|environment| {
            request
                .context
                .as_deref()
                .is_none_or(|context| environment.spec.context == context)
        })
        .filter_map(|environment| {
            let status = environment.status.clone().unwrap_or_default();
            Some((
                environment.metadata.name.as_deref()?,
                parameters(environment, &status)?,
            ))
        })
        .collect();
    listed.sort_by(|a, b| a.0.cmp(b.0));
    listed.into_iter().map(|(_, set)| set).collect()
}

/// The parameter set of `environment` were its status `status`; `None` while it is not
/// to be deployed by a generated Application (it has not created its namespace, its
/// teardown has begun, or Flux deploys it). From the status alone: a teardown asked
/// for drops the environment when the status records it, which is when the
/// ApplicationSets are asked to list again ([`listing_changes`]).
pub fn parameters(environment: &TestEnvironment, status: &TestEnvironmentStatus) -> Option<Value> {
    let awake = listed_awake(environment, status)?;
    let template = &environment.spec.template;
    let services: Vec<Value> = template
        .services
        .iter()
        .map(|service| {
            json!({
                "name": service.name,
                "image": service.image,
                "repo": service.repo,
                "sourceRef": service.source_ref,
            })
        })
        .collect();
    Some(json!({
        "name": environment.name_any(),
        "workspace": environment.namespace().unwrap_or_default(),
        "context": environment.spec.context,
        "namespace": template.namespace,
        "appName": template.provider_app_name,
        "environmentUid": environment.uid().unwrap_or_default(),
        "services": services,
        "awake": awake,
        "replicas": if awake { 1 } else { 0 },
    }))
}

/// What of an environment's parameter set its status decides: whether it is listed at
/// all and, if so, whether awake. The rest comes from its spec alone.
fn listed_awake(environment: &TestEnvironment, status: &TestEnvironmentStatus) -> Option<bool> {
    let phase = status.phase.unwrap_or(Phase::Cold);
    // Provisioning began when the environment created its namespace; an environment
    // that failed before (a namespace someone else owns, or one the policy refuses) is
    // never listed, so nothing is ever deployed into a namespace that is not its own.
    let deployed = status.provisioning_started_at.is_some()
        && !matches!(phase, Phase::Cold | Phase::Destroying | Phase::Destroyed);
    (environment.spec.template.provider == Provider::Argocd && deployed)
        .then_some(phase != Phase::Sleeping)
}

/// Whether TestMesh's generator lists `environment` were its status `status`.
pub fn listed(environment: &TestEnvironment, status: &TestEnvironmentStatus) -> bool {
    listed_awake(environment, status).is_some()
}

/// Whether the ApplicationSets generating from TestMesh should list again: what they
/// would list for `environment` changes from status `before` to `after`.
pub fn listing_changes(
    environment: &TestEnvironment,
    before: &TestEnvironmentStatus,
    after: &TestEnvironmentStatus,
) -> bool {
    // The parameter sets differ only in what the status decides, or with the spec: a
    // spec change the status has not caught up with (a status never written before has
    // nothing to catch up with). Decided on every pass, so no set is built to compare.
    let listed = |status| listed_awake(environment, status);
    let respecified = before.observed_generation.is_some()
        && after.observed_generation != before.observed_generation;
    listed(before) != listed(after) || (respecified && listed(after).is_some())
}

#[cfg(test)]
mod tests;
