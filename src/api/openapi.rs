//! The API's OpenAPI 3.0 document. Bodies, answers and query parameters are generated
//! from the very Rust types the handlers use (schemars), so the document cannot drift from
//! the code; only the list of operations is written out here.

use axum::Json;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::{JsonSchema, Schema};
use serde_json::{Map, Value, json};

use super::claims::{self, ClaimList};
use super::environments;
use super::error::ErrorBody;
use super::events::EnvironmentEventList;
use super::generator::{self, GeneratorRequest, GeneratorResponse};
use super::model::{
    Claim, Environment, EnvironmentChanges, EnvironmentList, NewClaim, NewEnvironment,
};
use super::permissions::Permissions;
use super::workspaces::WorkspaceList;
use super::{OPENAPI_PATH, WaitFor};

pub async fn serve() -> Json<Value> {
    Json(document())
}

/// The whole document.
pub fn document() -> Value {
    let mut schemas = Schemas(SchemaSettings::openapi3().into_generator());
    let environment = schemas.of::<Environment>();
    let environment_list = schemas.of::<EnvironmentList>();
    let new_environment = schemas.of::<NewEnvironment>();
    let environment_changes = schemas.of::<EnvironmentChanges>();
    let claim = schemas.of::<Claim>();
    let claim_list = schemas.of::<ClaimList>();
    let new_claim = schemas.of::<NewClaim>();
    let event_list = schemas.of::<EnvironmentEventList>();
    let permissions = schemas.of::<Permissions>();
    let workspace_list = schemas.of::<WorkspaceList>();
    let error = schemas.of::<ErrorBody>();
    let generator_request = schemas.of::<GeneratorRequest>();
    let generator_response = schemas.of::<GeneratorResponse>();
    let environment_query = schemas.query::<environments::GetQuery>();
    let claim_query = schemas.query::<claims::GetQuery>();

    let failures = |codes: &[u16]| -> Map<String, Value> {
        codes
            .iter()
            .map(|code| {
                let description = match code {
                    400 => "Invalid input; `error.field` names the field",
                    401 => "No or invalid bearer token",
                    403 => "The token may not do this in this workspace",
                    404 => "No such environment or claim",
                    409 => "An object with this id exists, or (PATCH) the environment is being destroyed",
                    _ => "Error",
                };
                (code.to_string(), json_answer(description, &error))
            })
            .collect()
    };
    let answers = |ok: (&str, Value), codes: &[u16]| -> Value {
        let mut all = failures(codes);
        all.insert(ok.0.to_owned(), ok.1);
        Value::Object(all)
    };
    let workspace = [workspace_parameter()];
    let object = [workspace_parameter(), id_parameter()];
    let with = |base: &[Value], extra: &[Value]| -> Value {
        Value::Array(base.iter().chain(extra).cloned().collect())
    };

    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "TestMesh API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Test environments per context, over HTTP. Every request is made to Kubernetes with the caller's bearer token: Kubernetes RBAC decides what a caller may do. `workspace_id` is the Kubernetes namespace holding the objects; `id` is the object's name."
        },
        "security": [{"kubernetesToken": []}],
        "paths": {
            "/api/v1/workspaces": {
                "get": {
                    "operationId": "listWorkspaces",
                    "summary": "The workspaces holding environments, with how many each; needs `list` on testenvironments in every namespace (403 otherwise)",
                    "responses": answers(("200", json_answer("The workspaces", &workspace_list)), &[401, 403]),
                },
            },
            "/api/v1/workspaces/{workspace_id}/permissions": {
                "get": {
                    "operationId": "getPermissions",
                    "summary": "What the caller may do in the workspace, from SelfSubjectAccessReviews made with the caller's token (a hint for display: each request is still authorized)",
                    "parameters": with(&workspace, &[]),
                    "responses": answers(("200", json_answer("The caller's permissions", &permissions)), &[400, 401, 403]),
                },
            },
            "/api/v1/workspaces/{workspace_id}/test-environments": {
                "get": {
                    "operationId": "listTestEnvironments",
                    "summary": "The workspace's environments, sorted by id",
                    "parameters": with(&workspace, &[]),
                    "responses": answers(("200", json_answer("The environments", &environment_list)), &[400, 401, 403]),
                },
                "post": {
                    "operationId": "createTestEnvironment",
                    "summary": "Create an environment; provisioning begins at once",
                    "parameters": with(&workspace, &[]),
                    "requestBody": {"required": true, "content": {"application/json": {"schema": new_environment}}},
                    "responses": answers(("201", json_answer("Created; `Location` names it", &environment)), &[400, 401, 403, 409]),
                },
            },
            "/api/v1/workspaces/{workspace_id}/test-environments/{id}": {
                "get": {
                    "operationId": "getTestEnvironment",
                    "summary": "One environment with its state, services and routing policy; `wait` long-polls",
                    "parameters": with(&object, &environment_query),
                    "responses": answers(("200", json_answer("The environment", &environment)), &[400, 401, 403, 404]),
                },
                "patch": {
                    "operationId": "changeTestEnvironment",
                    "summary": "Change the fields given (e.g. `ttl_minutes` to extend its life); the rest stay",
                    "parameters": with(&object, &[]),
                    "requestBody": {"required": true, "content": {"application/json": {"schema": environment_changes}}},
                    "responses": answers(("200", json_answer("The environment as changed", &environment)), &[400, 401, 403, 404, 409]),
                },
                "delete": {
                    "operationId": "destroyTestEnvironment",
                    "summary": "Destroy asynchronously; the record stays and its state moves to `destroyed`",
                    "parameters": with(&object, &[]),
                    "responses": answers(("202", json_answer("Destroy requested", &environment)), &[400, 401, 403, 404]),
                },
            },
            "/api/v1/workspaces/{workspace_id}/test-environments/{id}/events": {
                "get": {
                    "operationId": "listTestEnvironmentEvents",
                    "summary": "The Kubernetes Events about the environment (its phase changes with reasons), oldest first; needs `list` on events.k8s.io events in the workspace",
                    "parameters": with(&object, &[]),
                    "responses": answers(("200", json_answer("The events", &event_list)), &[400, 401, 403, 404]),
                },
            },
            "/api/v1/watch/workspaces/{workspace_id}/test-environments": {
                "get": {
                    "operationId": "watchTestEnvironments",
                    "summary": "Server-sent events: `event: snapshot` with the whole list now and after every change",
                    "parameters": with(&workspace, &[]),
                    "responses": answers(("200", json!({
                        "description": "An event stream; each `data:` is a TestEnvironment list",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}}
                    })), &[400, 401, 403]),
                },
            },
            "/api/v1/workspaces/{workspace_id}/claims": {
                "get": {
                    "operationId": "listClaims",
                    "summary": "The workspace's claims, sorted by id",
                    "parameters": with(&workspace, &[]),
                    "responses": answers(("200", json_answer("The claims", &claim_list)), &[400, 401, 403]),
                },
                "post": {
                    "operationId": "acquireClaim",
                    "summary": "Claim an environment for a context: a warm one is reused, else one is provisioned from `template`",
                    "parameters": with(&workspace, &[]),
                    "requestBody": {"required": true, "content": {"application/json": {"schema": new_claim}}},
                    "responses": answers(("201", json_answer("Claimed; wait for `ready` with GET ?wait=ready", &claim)), &[400, 401, 403, 409]),
                },
            },
            "/api/v1/watch/workspaces/{workspace_id}/claims": {
                "get": {
                    "operationId": "watchClaims",
                    "summary": "Server-sent events: `event: snapshot` with the whole claim list now and after every change",
                    "parameters": with(&workspace, &[]),
                    "responses": answers(("200", json!({
                        "description": "An event stream; each `data:` is a claim list",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}}
                    })), &[400, 401, 403]),
                },
            },
            "/api/v1/workspaces/{workspace_id}/claims/{id}": {
                "get": {
                    "operationId": "getClaim",
                    "summary": "One claim: its environment, namespace and routing policy once bound; `wait=ready` long-polls",
                    "parameters": with(&object, &claim_query),
                    "responses": answers(("200", json_answer("The claim", &claim)), &[400, 401, 403, 404]),
                },
                "delete": {
                    "operationId": "releaseClaim",
                    "summary": "Release: the environment goes to the next run and stays warm until its TTL runs out",
                    "parameters": with(&object, &[]),
                    "responses": answers(("204", json!({"description": "Released"})), &[400, 401, 403, 404]),
                },
            },
            generator::PATH: {
                "post": {
                    "operationId": "generateApplicationSetParameters",
                    "summary": "Argo CD ApplicationSet plugin generator: one parameter set per environment of `input.parameters.workspace` that should be deployed (provisioning until its teardown begins); the bearer token must be allowed to list testenvironments there (Kubernetes RBAC)",
                    "requestBody": {"required": true, "content": {"application/json": {"schema": generator_request}}},
                    "responses": answers(("200", json_answer("The parameter sets", &generator_response)), &[400, 401, 403]),
                },
            },
            OPENAPI_PATH: {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "security": [],
                    "responses": {"200": {"description": "OpenAPI 3.0", "content": {"application/json": {"schema": {"type": "object"}}}}},
                },
            },
        },
        "components": {
            "schemas": schemas.0.take_definitions(true),
            "securitySchemes": {
                "kubernetesToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A Kubernetes bearer token, e.g. from `kubectl create token <serviceaccount>`",
                },
            },
        },
    })
}

/// The generator, collecting every named schema under `components/schemas`.
struct Schemas(SchemaGenerator);

impl Schemas {
    fn of<T: JsonSchema>(&mut self) -> Value {
        self.0.subschema_for::<T>().to_value()
    }

    /// A query struct's fields as OpenAPI query parameters.
    fn query<T: JsonSchema>(&mut self) -> Vec<Value> {
        let schema: Schema = self.0.root_schema_for::<T>();
        let value = schema.to_value();
        let required: Vec<&str> = value["required"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let Some(properties) = value["properties"].as_object() else {
            return Vec::new();
        };
        properties
            .iter()
            .map(|(name, property)| {
                let mut property = property.clone();
                let description = property
                    .as_object_mut()
                    .and_then(|p| p.remove("description"))
                    .unwrap_or(Value::Null);
                if name == "timeout_seconds" {
                    property["minimum"] = json!(1);
                    property["maximum"] = json!(WaitFor::MAX_SECONDS);
                }
                json!({
                    "name": name,
                    "in": "query",
                    "required": required.contains(&name.as_str()),
                    "description": description,
                    "schema": property,
                })
            })
            .collect()
    }
}

fn json_answer(description: &str, schema: &Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

fn workspace_parameter() -> Value {
    json!({
        "name": "workspace_id",
        "in": "path",
        "required": true,
        "description": "The Kubernetes namespace holding the objects",
        "schema": {"type": "string", "minLength": 1, "maxLength": 63, "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
    })
}

fn id_parameter() -> Value {
    json!({
        "name": "id",
        "in": "path",
        "required": true,
        "description": "The object's name",
        "schema": {"type": "string", "minLength": 1, "maxLength": 253},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_with_its_types() {
        let document = document();
        let paths = document["paths"].as_object().expect("paths");
        assert_eq!(paths.len(), 11);
        for schema in [
            "Environment",
            "EnvironmentList",
            "NewEnvironment",
            "Claim",
            "NewClaim",
            "EnvironmentEventList",
            "Permissions",
            "WorkspaceList",
            "ErrorBody",
        ] {
            assert!(
                document["components"]["schemas"][schema].is_object(),
                "{schema}"
            );
        }
        let create =
            &document["paths"]["/api/v1/workspaces/{workspace_id}/test-environments"]["post"];
        assert_eq!(
            create["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/NewEnvironment"
        );
        let new_environment = &document["components"]["schemas"]["NewEnvironment"];
        assert_eq!(new_environment["additionalProperties"], false);
        let required = new_environment["required"].as_array().expect("required");
        for field in ["context", "provider", "provider_app_name", "namespace"] {
            assert!(required.contains(&json!(field)), "{field}");
        }
        let get =
            &document["paths"]["/api/v1/workspaces/{workspace_id}/test-environments/{id}"]["get"];
        let names: Vec<&str> = get["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert_eq!(names, ["workspace_id", "id", "timeout_seconds", "wait"]);
    }

    #[test]
    fn an_environment_documents_when_it_is_expiring_soon() {
        let document = document();
        let environment = &document["components"]["schemas"]["Environment"];
        let properties = &environment["properties"];
        assert_eq!(properties["expiring_soon"]["type"], "boolean");
        assert!(
            properties["expiring_soon"]["description"]
                .as_str()
                .is_some_and(|d| d.contains("ExpiringSoon")),
            "{properties}"
        );
        let warning_at = properties["expiry_warning_at"].to_string();
        assert!(warning_at.contains("string"), "{warning_at}");
        let required = environment["required"].as_array().expect("required");
        assert!(required.contains(&json!("expiring_soon")));
    }

    #[test]
    fn a_change_is_documented_with_only_the_mutable_fields() {
        let document = document();
        let patch =
            &document["paths"]["/api/v1/workspaces/{workspace_id}/test-environments/{id}"]["patch"];
        assert_eq!(
            patch["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/EnvironmentChanges"
        );
        for status in ["200", "400", "403", "404", "409"] {
            assert!(patch["responses"][status].is_object(), "{status}");
        }
        let changes = &document["components"]["schemas"]["EnvironmentChanges"];
        assert_eq!(changes["additionalProperties"], false);
        assert_eq!(changes.get("required"), None, "every field is optional");
        let mut fields: Vec<&str> = changes["properties"]
            .as_object()
            .expect("properties")
            .keys()
            .map(String::as_str)
            .collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            [
                "name",
                "provider_app_name",
                "provider_app_namespace",
                "routing",
                "services",
                "ttl_minutes"
            ]
        );
        let ttl = &changes["properties"]["ttl_minutes"];
        assert_eq!(
            (&ttl["minimum"], &ttl["maximum"]),
            (&json!(1), &json!(43_200))
        );
    }
}
