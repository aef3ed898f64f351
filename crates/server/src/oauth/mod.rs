//! The SMART App Launch authorization server over HTTP: the authorization endpoint and its
//! pages ([`flow`], [`pages`]), the user's connected apps ([`apps`]), the token, revocation and introspection endpoints ([`token`]),
//! and discovery ([`discovery`]). Each environment has its own endpoints under its prefix
//! (`/auth/…` for production, `/sandbox/auth/…` for the sandbox), and its tokens name its FHIR
//! base as their audience, so neither accepts the other's. The logic lives in the `auth`
//! crate; this module parses requests and writes responses.

mod apps;
mod discovery;
mod flow;
mod pages;
mod token;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, header};
use axum::routing::{get, post};
use store::{Environment, Store};

use crate::state::{AppState, Authorization};

pub(crate) use discovery::{capability_security, openid_configuration, smart_configuration};

/// One environment's authorization server.
#[derive(Clone)]
pub(crate) struct AuthContext {
    pub(crate) app: AppState,
    pub(crate) auth: Arc<Authorization>,
    pub(crate) env: Environment,
    /// The FHIR base these endpoints issue tokens for (also the OpenID issuer).
    pub(crate) fhir_base: Arc<str>,
    /// The public URL of these endpoints, e.g. `https://ignis.example/sandbox/auth`.
    pub(crate) auth_base: Arc<str>,
    /// The path the session cookie is scoped to (`/auth`, `/sandbox/auth`).
    pub(crate) cookie_path: Arc<str>,
    /// `smart_style_url`.
    pub(crate) style_url: Arc<str>,
    /// The token endpoint (the audience of client assertions).
    pub(crate) token_url: Arc<str>,
}

impl AuthContext {
    /// The context of the endpoints under `prefix` (`""` or `"/sandbox"`).
    pub(crate) fn new(app: &AppState, auth: Arc<Authorization>, env: Environment, prefix: &str) -> AuthContext {
        let root = &app.config.base_url;
        AuthContext {
            app: app.clone(),
            auth,
            env,
            fhir_base: format!("{root}{prefix}/fhir").into(),
            auth_base: format!("{root}{prefix}/auth").into(),
            cookie_path: format!("{prefix}/auth").into(),
            style_url: format!("{root}{prefix}/auth/style.json").into(),
            token_url: format!("{root}{prefix}/auth/token").into(),
        }
    }

    pub(crate) fn store(&self) -> &dyn Store {
        self.app.store.as_ref()
    }

    pub(crate) fn endpoint(&self) -> auth::issuer::Endpoint<'_> {
        auth::issuer::Endpoint {
            environment: self.env.as_str(),
            fhir_base: &self.fhir_base,
            style_url: &self.style_url,
            token_url: &self.token_url,
        }
    }

    /// The URL of the endpoint `path` (`"token"`).
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.auth_base)
    }
}

/// The `/auth` routes of one environment, to nest under `{prefix}/auth`.
pub(crate) fn routes(context: AuthContext) -> Router<AppState> {
    Router::new()
        .route("/authorize", get(flow::authorize_get).post(flow::authorize_post))
        .route("/flow", get(flow::show))
        .route("/sign-in", post(flow::sign_in))
        .route("/second-factor", post(flow::second_factor))
        .route("/patient", post(flow::pick_patient))
        .route("/consent", post(flow::consent))
        .route("/apps", get(apps::list))
        .route("/apps/sign-in", post(apps::sign_in))
        .route("/apps/revoke", post(apps::revoke))
        .route("/token", post(token::token))
        .route("/revoke", post(token::revoke))
        .route("/introspect", post(token::introspect))
        .route("/jwks", get(discovery::jwks))
        .route("/style.json", get(discovery::style))
        .with_state(context)
}

/// The name/value pairs of a form body; a body that is not a form has none.
pub(crate) fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(body).unwrap_or_default()
}

/// The first value of `name` in `pairs`.
pub(crate) fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find_map(|(key, value)| (key == name).then_some(value.as_str()))
}

/// The value of the cookie `name`.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(name)?.strip_prefix('='))
        .filter(|value| !value.is_empty())
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> i64 {
    crate::authorize::now()
}
