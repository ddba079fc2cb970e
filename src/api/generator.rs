//! `POST /api/v1/getparams.execute`: TestMesh as an Argo CD ApplicationSet plugin
//! generator ([`crate::lifecycle::generator`] decides what is listed).
//!
//! Argo CD's applicationset-controller calls it with the bearer token of the plugin's
//! ConfigMap. That token is a Kubernetes token like any other caller's: the workspace's
//! environments are listed with it, so Kubernetes RBAC decides what an ApplicationSet
//! sees — it never sees an environment its token may not list — and there is no second
//! authority to configure.

use axum::Json;
use axum::body::Bytes;
use kube::api::{Api, ListParams};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::caller::Caller;
use super::checked_workspace;
use super::error::ApiError;
use super::model::parse_body;
use crate::lifecycle::generator::{self, Request};
use crate::resources::TestEnvironment;

/// Where Argo CD's plugin generator posts (`{baseUrl}/api/v1/getparams.execute`).
pub const PATH: &str = "/api/v1/getparams.execute";

/// What the applicationset-controller sends.
#[derive(Deserialize, JsonSchema, Debug)]
#[serde(rename_all = "camelCase")]
pub struct GeneratorRequest {
    /// The ApplicationSet asking (for logs).
    #[serde(default)]
    pub application_set_name: Option<String>,
    /// The generator's `input`.
    pub input: GeneratorInput,
}

/// The plugin generator's `input` in the ApplicationSet.
#[derive(Deserialize, JsonSchema, Debug)]
pub struct GeneratorInput {
    /// `workspace` (required): the namespace whose environments are listed; `context`
    /// (optional): only that context's environments. Other keys are ignored.
    pub parameters: Value,
}

/// The answer: one parameter set per environment to deploy.
#[derive(Serialize, JsonSchema, Debug)]
pub struct GeneratorResponse {
    pub output: GeneratorOutput,
}

#[derive(Serialize, JsonSchema, Debug)]
pub struct GeneratorOutput {
    /// Per environment, ordered by name: `name`, `workspace`, `context`, `namespace`,
    /// `appName`, `environmentUid`, `services` (each `name`, `image`, `repo`,
    /// `sourceRef`).
    pub parameters: Vec<Value>,
}

pub async fn execute(
    Caller(client): Caller,
    body: Bytes,
) -> Result<Json<GeneratorResponse>, ApiError> {
    let request: GeneratorRequest = parse_body(&body)?;
    let wanted = Request::from_parameters(&request.input.parameters)
        .map_err(|bad| ApiError::bad_request(Some(bad.field.to_owned()), bad.to_string()))?;
    let workspace = checked_workspace(wanted.workspace.clone())
        .map_err(|_| {
            ApiError::bad_request(
                Some("input.parameters.workspace".to_owned()),
                format!(
                    "input.parameters.workspace {:?} is not a namespace name (lowercase DNS label, at most 63 characters)",
                    wanted.workspace
                ),
            )
        })?;
    let api: Api<TestEnvironment> = Api::namespaced(client, &workspace);
    let listed = api.list(&ListParams::default()).await?;
    let parameters = generator::parameter_sets(&wanted, &listed.items);
    tracing::debug!(
        application_set = request.application_set_name.as_deref().unwrap_or_default(),
        %workspace,
        listed = parameters.len(),
        "generator listed environments"
    );
    Ok(Json(GeneratorResponse {
        output: GeneratorOutput { parameters },
    }))
}
