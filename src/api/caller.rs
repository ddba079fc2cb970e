//! Who is calling: the bearer token of the request becomes the Kubernetes client every
//! call on the caller's behalf is made with. The operator's own credentials are never
//! used here — the cluster connection is copied without them — so the API can do for a
//! caller exactly what the caller's Kubernetes identity may do.

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::{AUTHORIZATION, HeaderValue, USER_AGENT};
use axum::http::request::Parts;
use kube::Client;
use kube::config::AuthInfo;

use super::error::ApiError;

/// The cluster to talk to, without anyone's credentials.
#[derive(Clone)]
pub struct Cluster {
    config: Arc<kube::Config>,
}

impl Cluster {
    /// Keeps `config`'s address, CA and timeouts and drops its credentials (token, client
    /// certificate, exec plugin, impersonation).
    pub fn without_credentials(mut config: kube::Config, user_agent: &str) -> Cluster {
        config.auth_info = AuthInfo::default();
        config.headers.retain(|(name, _)| name != AUTHORIZATION);
        if let Ok(agent) = HeaderValue::from_str(user_agent) {
            config.headers.retain(|(name, _)| name != USER_AGENT);
            config.headers.push((USER_AGENT, agent));
        }
        Cluster {
            config: Arc::new(config),
        }
    }

    /// A client that authenticates as the bearer of `token`.
    fn client_for(&self, token: &str) -> Result<Client, ApiError> {
        let mut config = (*self.config).clone();
        config.auth_info.token = Some(token.to_owned().into());
        Client::try_from(config).map_err(ApiError::from_kube)
    }
}

/// The caller's Kubernetes client, from `Authorization: Bearer <token>`.
pub struct Caller(pub Client);

impl<S> FromRequestParts<S> for Caller
where
    Cluster: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let cluster = Cluster::from_ref(state);
        let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
            ApiError::unauthorized("send a Kubernetes bearer token: Authorization: Bearer <token>")
        })?;
        let token = bearer_token(header).ok_or_else(|| {
            ApiError::unauthorized("the Authorization header must be `Bearer <token>`")
        })?;
        cluster.client_for(token).map(Caller)
    }
}

/// The token of a `Bearer` authorization header: visible ASCII, nothing else.
fn bearer_token(header: &HeaderValue) -> Option<&str> {
    let value = header.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    let visible = |c: char| c.is_ascii_graphic();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && token.chars().all(visible))
        .then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_of(value: &str) -> Option<String> {
        bearer_token(&HeaderValue::from_str(value).expect("header")).map(str::to_owned)
    }

    #[test]
    fn only_a_bearer_token_is_accepted() {
        assert_eq!(
            token_of("Bearer abc.def-123"),
            Some("abc.def-123".to_owned())
        );
        assert_eq!(token_of("bearer abc"), Some("abc".to_owned()));
        assert_eq!(token_of("Bearer "), None);
        assert_eq!(token_of("Basic YWxpY2U6cHc="), None);
        assert_eq!(token_of("Bearer two words"), None);
        assert_eq!(token_of("abc"), None);
    }

    #[test]
    fn the_operators_credentials_are_never_passed_on() {
        let mut config = kube::Config::new("https://127.0.0.1:6443".parse().expect("url"));
        config.auth_info.token = Some("operator-token".to_owned().into());
        config.auth_info.client_certificate_data = Some("cert".to_owned());
        config.auth_info.impersonate = Some("system:admin".to_owned());
        config.headers.push((
            AUTHORIZATION,
            HeaderValue::from_static("Bearer operator-token"),
        ));
        let cluster = Cluster::without_credentials(config, "testmesh-api/test");
        let auth = &cluster.config.auth_info;
        assert!(auth.token.is_none() && auth.token_file.is_none());
        assert!(auth.client_certificate_data.is_none() && auth.client_key_data.is_none());
        assert!(auth.impersonate.is_none() && auth.exec.is_none());
        assert!(
            cluster
                .config
                .headers
                .iter()
                .all(|(name, _)| name != AUTHORIZATION)
        );
        assert_eq!(
            cluster.config.cluster_url.to_string(),
            "https://127.0.0.1:6443/"
        );
    }
}
