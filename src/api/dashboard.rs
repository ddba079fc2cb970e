//! The dashboard at `/test-environments`: three static files compiled into the binary,
//! which read and change environments only through the REST API, with the token a person
//! signs in with.
//!
//! They are served under a strict Content-Security-Policy: the page runs only its own
//! script and stylesheet and talks only to this server, so text from an environment can
//! never become code, and no form can be submitted anywhere (the token stays in the tab).

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// Where the dashboard is served.
pub const PATH: &str = "/test-environments";

const INDEX: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/dashboard.js");
const STYLE: &str = include_str!("dashboard/dashboard.css");

const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The dashboard's routes, for any router state.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(PATH, get(index))
        .route("/test-environments/", get(index))
        .route("/test-environments/dashboard.js", get(script))
        .route("/test-environments/dashboard.css", get(style))
}

async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            // Small files: revalidating costs little and a new release shows at once.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::{Body, to_bytes};
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    async fn fetch(path: &str) -> (StatusCode, axum::http::HeaderMap, String) {
        let response = routes::<()>()
            .oneshot(Request::get(path).body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        let (parts, body) = response.into_parts();
        let body = to_bytes(body, 1 << 20).await.expect("body");
        (
            parts.status,
            parts.headers,
            String::from_utf8(body.to_vec()).expect("utf-8"),
        )
    }

    #[tokio::test]
    async fn serves_the_page_and_its_two_files_under_a_strict_policy() {
        for (path, content_type, body) in [
            (PATH, "text/html; charset=utf-8", INDEX),
            ("/test-environments/", "text/html; charset=utf-8", INDEX),
            (
                "/test-environments/dashboard.js",
                "text/javascript; charset=utf-8",
                SCRIPT,
            ),
            (
                "/test-environments/dashboard.css",
                "text/css; charset=utf-8",
                STYLE,
            ),
        ] {
            let (status, headers, text) = fetch(path).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert_eq!(headers[header::CONTENT_TYPE], content_type, "{path}");
            assert_eq!(
                headers[header::CONTENT_SECURITY_POLICY],
                CONTENT_SECURITY_POLICY
            );
            assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert_eq!(text, body, "{path}");
        }
    }

    /// The policy allows no inline code, so the page must need none.
    #[test]
    fn the_page_has_no_inline_script_or_style_and_loads_what_is_served() {
        assert!(INDEX.contains(r#"<script src="/test-environments/dashboard.js" defer></script>"#));
        assert!(
            INDEX.contains(r#"<link rel="stylesheet" href="/test-environments/dashboard.css">"#)
        );
        assert_eq!(INDEX.matches("<script").count(), 1);
        for inline in [
            "<style",
            " style=",
            " onclick=",
            " onsubmit=",
            "javascript:",
        ] {
            assert!(!INDEX.contains(inline), "{inline}");
        }
        // Without a name, an input is never sent anywhere, even if the script failed.
        assert!(!INDEX.contains(" name=\"token\""));
    }

    #[test]
    fn the_script_keeps_the_token_out_of_storage() {
        for storage in [
            "localStorage",
            "sessionStorage",
            "document.cookie",
            "indexedDB",
        ] {
            assert!(!SCRIPT.contains(storage), "{storage}");
        }
    }
}
