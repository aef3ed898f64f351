//! Discovery: `[base]/.well-known/smart-configuration` (SMART App Launch §2.1),
//! `[base]/.well-known/openid-configuration` (OpenID Connect Discovery; the FHIR base is the
//! issuer), the signing keys, and the style sheet `smart_style_url` names.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AuthContext;
use crate::state::FhirContext;

/// What the server can do, as SMART capability names.
const CAPABILITIES: &[&str] = &[
    "launch-ehr",
    "launch-standalone",
    "authorize-post",
    "client-public",
    "client-confidential-symmetric",
    "client-confidential-asymmetric",
    "sso-openid-connect",
    "context-banner",
    "context-style",
    "context-ehr-patient",
    "context-ehr-encounter",
    "context-standalone-patient",
    "permission-offline",
    "permission-online",
    "permission-patient",
    "permission-user",
    "permission-v1",
    "permission-v2",
];

/// The non-resource scopes the server grants.
const SCOPES: &[&str] =
    &["openid", "fhirUser", "launch", "launch/patient", "launch/encounter", "offline_access", "online_access"];

/// `GET [base]/.well-known/smart-configuration`.
pub(crate) async fn smart_configuration(State(context): State<FhirContext>) -> Response {
    let Some(urls) = Urls::of(&context) else { return not_enabled() };
    let mut scopes: Vec<Value> = SCOPES.iter().map(|scope| json!(scope)).collect();
    let resources = ["patient/*.rs", "user/*.rs", "system/*.rs", "patient/*.read", "user/*.read", "system/*.read"];
    scopes.extend(resources.map(|scope| json!(scope)));
    json_response(json!({
        "issuer": &*context.base,
        "jwks_uri": urls.jwks,
        "authorization_endpoint": urls.authorize,
        "token_endpoint": urls.token,
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "tls_client_auth"],
        "tls_client_certificate_bound_access_tokens": true,
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "response_types_supported": ["code"],
        "scopes_supported": scopes,
        "code_challenge_methods_supported": ["S256"],
        "introspection_endpoint": urls.introspect,
        "revocation_endpoint": urls.revoke,
        "capabilities": CAPABILITIES,
    }))
}

/// `GET [base]/.well-known/openid-configuration`.
pub(crate) async fn openid_configuration(State(context): State<FhirContext>) -> Response {
    let Some(urls) = Urls::of(&context) else { return not_enabled() };
    json_response(json!({
        "issuer": &*context.base,
        "authorization_endpoint": urls.authorize,
        "token_endpoint": urls.token,
        "jwks_uri": urls.jwks,
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": SCOPES,
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "fhirUser", "nonce"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "tls_client_auth"],
        "tls_client_certificate_bound_access_tokens": true,
        "code_challenge_methods_supported": ["S256"],
    }))
}

/// `GET …/auth/jwks`: the public keys id_tokens are signed with.
pub(crate) async fn jwks(State(context): State<AuthContext>) -> Response {
    match context.auth.issuer.signing_keys(context.store(), super::now()).await {
        Ok(keys) => json_response(keys.jwks().clone()),
        Err(error) => {
            tracing::error!(%error, "cannot load the signing keys");
            let body = json!({"error": "server_error", "error_description": "the signing keys cannot be loaded"});
            (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response()
        }
    }
}

/// `GET …/auth/style.json`: the `smart_style_url` document (SMART App Launch §"Styling").
pub(crate) async fn style(State(_context): State<AuthContext>) -> Response {
    json_response(json!({
        "color_background": "#f6f7f9",
        "color_error": "#b3261e",
        "color_highlight": "#c2410c",
        "color_modal_backdrop": "",
        "color_success": "#1b7f3b",
        "color_text": "#1f2328",
        "dim_border_radius": "6px",
        "dim_font_size": "16px",
        "dim_spacing_size": "16px",
        "font_family_body": "system-ui, sans-serif",
        "font_family_heading": "system-ui, sans-serif",
    }))
}

/// The endpoint URLs of a FHIR base's authorization server.
pub(crate) struct Urls {
    pub(crate) authorize: String,
    pub(crate) token: String,
    pub(crate) revoke: String,
    pub(crate) introspect: String,
    pub(crate) jwks: String,
}

impl Urls {
    /// The URLs for `context`'s base, when the server runs with authorization.
    pub(crate) fn of(context: &FhirContext) -> Option<Urls> {
        context.app.auth.as_ref()?;
        Urls::for_base(&context.base)
    }

    /// The URLs of the authorization server of the FHIR base `base` (`…/fhir`).
    pub(crate) fn for_base(base: &str) -> Option<Urls> {
        let auth_base = base.strip_suffix("/fhir").map(|root| format!("{root}/auth"))?;
        let url = |path: &str| format!("{auth_base}/{path}");
        Some(Urls {
            authorize: url("authorize"),
            token: url("token"),
            revoke: url("revoke"),
            introspect: url("introspect"),
            jwks: url("jwks"),
        })
    }
}

/// The CapabilityStatement's `rest.security`: SMART on FHIR, with the `oauth-uris` extension.
pub(crate) fn capability_security(base: &str) -> Option<Value> {
    let urls = Urls::for_base(base)?;
    let uri = |name: &str, url: &str| json!({"url": name, "valueUri": url});
    Some(json!({
        "cors": true,
        "service": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
            "code": "SMART-on-FHIR",
        }]}],
        "extension": [{
            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
            "extension": [
                uri("authorize", &urls.authorize),
                uri("token", &urls.token),
                uri("revoke", &urls.revoke),
                uri("introspect", &urls.introspect),
            ],
        }],
    }))
}

fn json_response(body: Value) -> Response {
    let mut response = axum::Json(body).into_response();
    response.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    response
}

/// Discovery of a server that runs without authorization: there is nothing to discover.
fn not_enabled() -> Response {
    let body = json!({"error": "not_found", "error_description": "this server runs without authorization (--insecure-no-auth)"});
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}
