//! The API's errors: one JSON shape, with the status the caller can act on and, for bad
//! input, the field at fault in the API's own (snake_case) names.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::Serialize;

/// An error answer: `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ErrorBody {
    pub error: ApiError,
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ApiError {
    /// The HTTP status code, repeated.
    pub status: u16,
    /// CamelCase category: `Unauthorized`, `Forbidden`, `NotFound`, `BadRequest`,
    /// `Conflict`, `Timeout`, `BadGateway`, `InternalError`.
    pub reason: String,
    /// What happened, for a person (the API server's own message where there is one).
    pub message: String,
    /// The input field at fault, e.g. `ttl_minutes` or `services[1].name`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, reason: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: status.as_u16(),
            reason: reason.to_owned(),
            message: message.into(),
            field: None,
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "Unauthorized", message)
    }

    pub fn bad_request(field: Option<String>, message: impl Into<String>) -> ApiError {
        ApiError {
            field,
            ..ApiError::new(StatusCode::BAD_REQUEST, "BadRequest", message)
        }
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "NotFound", message)
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "Conflict", message)
    }

    /// A fault of this server's own (never the caller's input).
    pub fn internal(error: impl std::fmt::Display) -> ApiError {
        tracing::error!(%error, "API request failed inside the server");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            error.to_string(),
        )
    }

    /// The Kubernetes API server's answer, passed through: its status decides, its
    /// message explains, and a validation failure names the field in the API's terms.
    pub fn from_kube(error: kube::Error) -> ApiError {
        let kube::Error::Api(status) = error else {
            tracing::warn!(%error, "Kubernetes API unreachable");
            return ApiError::new(
                StatusCode::BAD_GATEWAY,
                "BadGateway",
                "the Kubernetes API server could not be reached",
            );
        };
        let message = if status.message.is_empty() {
            status.reason.clone()
        } else {
            status.message.clone()
        };
        let field = status
            .details
            .as_ref()
            .and_then(|d| d.causes.iter().find(|c| !c.field.is_empty()))
            .map(|cause| cause.field.clone())
            .map(|field| api_field(&field));
        match status.code {
            401 => ApiError::unauthorized(message),
            403 => ApiError::new(StatusCode::FORBIDDEN, "Forbidden", message),
            404 => ApiError::not_found(message),
            409 => ApiError::conflict(message),
            400 | 422 => ApiError::bad_request(field, message),
            code => {
                tracing::warn!(code, %message, "Kubernetes API error");
                ApiError::new(StatusCode::BAD_GATEWAY, "BadGateway", message)
            }
        }
    }

    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl From<kube::Error> for ApiError {
    fn from(error: kube::Error) -> ApiError {
        ApiError::from_kube(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status_code(), Json(ErrorBody { error: self })).into_response()
    }
}

/// A custom resource's field path (`spec.ttlMinutes`, `spec.services[1].name`,
/// `spec.displayName`, `metadata.name`) in the API's names (`ttl_minutes`,
/// `services[1].name`, `name`, `id`).
pub fn api_field(path: &str) -> String {
    match path {
        "metadata.name" => return "id".to_owned(),
        "spec.displayName" => return "name".to_owned(),
        "spec.environmentName" => return "environment_id".to_owned(),
        "spec" => return "body".to_owned(),
        _ => {}
    }
    let path = path.strip_prefix("spec.").unwrap_or(path);
    let path = path.strip_prefix("template.").unwrap_or(path);
    let mut snake = String::with_capacity(path.len() + 4);
    for c in path.chars() {
        if c.is_ascii_uppercase() {
            snake.push('_');
            snake.push(c.to_ascii_lowercase());
        } else {
            snake.push(c);
        }
    }
    snake
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    #[test]
    fn resource_fields_become_api_fields() {
        assert_eq!(api_field("spec.ttlMinutes"), "ttl_minutes");
        assert_eq!(api_field("spec.providerAppName"), "provider_app_name");
        assert_eq!(api_field("spec.services[1].name"), "services[1].name");
        assert_eq!(
            api_field("spec.routing.baselineNamespace"),
            "routing.baseline_namespace"
        );
        assert_eq!(api_field("spec.displayName"), "name");
        assert_eq!(api_field("metadata.name"), "id");
        assert_eq!(api_field("spec.template.namespace"), "namespace");
        assert_eq!(api_field("spec.environmentName"), "environment_id");
        assert_eq!(api_field("spec.maxDurationMinutes"), "max_duration_minutes");
    }

    fn api_status(code: u16, field: Option<&str>) -> kube::Error {
        let causes: Vec<_> = field
            .map(|field| serde_json::json!({"field": field, "reason": "FieldValueInvalid"}))
            .into_iter()
            .collect();
        let status: Status = serde_json::from_value(serde_json::json!({
            "status": "Failure",
            "message": "spec.ttlMinutes: Invalid value",
            "reason": "Invalid",
            "code": code,
            "details": {"causes": causes},
        }))
        .expect("status");
        kube::Error::Api(Box::new(status))
    }

    #[test]
    fn the_api_servers_answer_decides_the_status() {
        for (code, expected) in [
            (401, 401),
            (403, 403),
            (404, 404),
            (409, 409),
            (422, 400),
            (400, 400),
            (500, 502),
            (503, 502),
        ] {
            assert_eq!(
                ApiError::from_kube(api_status(code, None)).status,
                expected,
                "{code}"
            );
        }
    }

    #[test]
    fn an_invalid_object_names_the_field_and_keeps_the_message() {
        let error = ApiError::from_kube(api_status(422, Some("spec.ttlMinutes")));
        assert_eq!(error.field.as_deref(), Some("ttl_minutes"));
        assert_eq!(error.message, "spec.ttlMinutes: Invalid value");
        assert_eq!(error.reason, "BadRequest");
    }

    #[test]
    fn an_unreachable_api_server_is_a_bad_gateway() {
        let error = ApiError::from_kube(kube::Error::Service(Box::new(std::io::Error::other(
            "connection refused",
        ))));
        assert_eq!(error.status, 502);
    }
}
