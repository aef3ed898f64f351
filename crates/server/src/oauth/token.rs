//! The token endpoint (RFC 6749 §3.2), revocation (RFC 7009) and introspection (RFC 7662).
//! Every answer is JSON that no cache may keep; every error is an RFC 6749 §5.2 error object.

use auth::client::Client;
use auth::issuer::{CodeExchange, Presented, TokenFailure};
use axum::body::Bytes;
use std::net::SocketAddr;

use axum::Extension;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use super::{AuthContext, field, form_pairs, now};
use crate::audit::Note;
use crate::mtls::PeerCertificates;
use store::audit::Agent;

/// `POST …/auth/token`.
pub(crate) async fn token(
    State(context): State<AuthContext>,
    peer: Option<Extension<PeerCertificates>>,
    address: Option<Extension<ConnectInfo<SocketAddr>>>,
    note: Note,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = form_pairs(&body);
    let presented = presented(&headers, &form);
    note_client(&note, &presented);
    if field(&form, "grant_type") == Some("refresh_token") {
        note.action("refresh");
    }
    if let (Some(Extension(peer)), Ok(credentials)) = (peer, &presented)
        && field(&form, "grant_type") == Some("client_credentials")
        && let Some((device, assertion)) = device_of(&context, credentials).await
    {
        let client = address.map(|Extension(ConnectInfo(address))| address.ip());
        let request = DeviceRequest { device: &device, assertion, scope: field(&form, "scope"), peer: &peer, client };
        note.agent(Agent { device: Some(device.clone()), ..Agent::default() });
        return match device_token(&context, request).await {
            Ok(response) => no_store(StatusCode::OK, json!(response)),
            Err(failure) => refused(&note, &failure, false),
        };
    }
    match grant(&context, &presented, &form).await {
        Ok(response) => no_store(StatusCode::OK, json!(response)),
        Err(failure) => refused(&note, &failure, tried_basic(&presented)),
    }
}

/// Tells the audit note which client is asking (as it says: not yet authenticated).
fn note_client(note: &Note, presented: &Result<Presented, TokenFailure>) {
    let client = presented.as_ref().ok().and_then(|presented| {
        presented.basic.as_ref().map(|(id, _)| id.clone()).or_else(|| presented.client_id.clone())
    });
    note.agent(Agent { client, ..Agent::default() });
}

/// The token-endpoint error for `failure`, noted for the audit log.
fn refused(note: &Note, failure: &TokenFailure, basic: bool) -> Response {
    note.refused(format!("{}: {}", failure.code(), failure.description()));
    token_error(failure, basic)
}

fn tried_basic(presented: &Result<Presented, TokenFailure>) -> bool {
    presented.as_ref().is_ok_and(|presented| presented.basic.is_some())
}

async fn grant(
    context: &AuthContext,
    presented: &Result<Presented, TokenFailure>,
    form: &[(String, String)],
) -> Result<auth::issuer::TokenResponse, TokenFailure> {
    let presented = presented.as_ref().map_err(Clone::clone)?;
    let issuer = &context.auth.issuer;
    let grant_type =
        field(form, "grant_type").ok_or_else(|| TokenFailure::InvalidRequest("grant_type is required".into()))?;
    if !matches!(grant_type, "authorization_code" | "refresh_token" | "client_credentials") {
        return Err(TokenFailure::UnsupportedGrantType(format!("grant_type '{grant_type}' is not supported")));
    }
    let client = issuer.authenticate_client(context.store(), context.endpoint(), presented).await?;
    match access::monitoring::client_account(context.store(), &client.client_id).await {
        Ok(Some(access::monitoring::ClientAccount { suspended: Some(reason), .. })) => {
            return Err(TokenFailure::UnauthorizedClient(format!("the account is suspended: {reason}")));
        }
        Ok(_) => {}
        Err(error) => return Err(TokenFailure::Server(error.to_string())),
    }
    let (store, endpoint, now) = (context.store(), context.endpoint(), now());
    match grant_type {
        "authorization_code" => {
            let exchange = CodeExchange {
                code: field(form, "code"),
                redirect_uri: field(form, "redirect_uri"),
                code_verifier: field(form, "code_verifier"),
            };
            issuer.exchange_code(store, endpoint, &client, exchange, now).await
        }
        "refresh_token" => {
            issuer.refresh(store, endpoint, &client, field(form, "refresh_token"), field(form, "scope"), now).await
        }
        _ => issuer.client_credentials(endpoint, &client, field(form, "scope"), now),
    }
}

/// The device a client-credentials request over mutual TLS is for, and its assertion when it
/// authenticates with `private_key_jwt` (else by its certificate alone): `None` when the
/// client is not a device.
async fn device_of<'a>(context: &AuthContext, presented: &'a Presented) -> Option<(String, Option<&'a str>)> {
    let (device, assertion) = match &presented.client_assertion {
        Some(_) => {
            let (assertion, claimed) = auth::issuer::assertion_of(presented).ok()?;
            (claimed, Some(assertion))
        }
        None if presented.basic.is_none() && presented.client_secret.is_none() => (presented.client_id.clone()?, None),
        None => return None,
    };
    access::device::get(context.store(), &device).await.ok().map(|_| (device, assertion))
}

/// A device's client-credentials request.
struct DeviceRequest<'a> {
    device: &'a str,
    /// Its `private_key_jwt` assertion, signed with its certificate's key; `None` for
    /// `tls_client_auth`.
    assertion: Option<&'a str>,
    scope: Option<&'a str>,
    peer: &'a PeerCertificates,
    client: Option<std::net::IpAddr>,
}

/// The client-credentials grant of a device over mutual TLS (RFC 8705), authenticated by its
/// certificate (`tls_client_auth`) or by an assertion signed with that certificate's key
/// (`private_key_jwt`): the token is bound to the certificate (`cnf.x5t#S256`). In production
/// the certificate must pass the checks of `crate::mtls`, the account be certified and the
/// call come from its network paths.
async fn device_token(
    context: &AuthContext,
    request: DeviceRequest<'_>,
) -> Result<auth::issuer::TokenResponse, TokenFailure> {
    let DeviceRequest { device: device_id, assertion, scope, peer, client } = request;
    let store = context.store();
    let refused = |why: &str| TokenFailure::InvalidClient(why.to_owned());
    let unknown = "the client is unknown, or the certificate presented is not its own";
    let device = match access::device::get(store, device_id).await {
        Ok(device) => device.value,
        Err(access::AccessError::NotFound { .. }) => return Err(refused(unknown)),
        Err(error) => return Err(TokenFailure::Server(error.to_string())),
    };
    let own = device.certificate.as_ref().map(|certificate| certificate.thumbprint.as_str());
    if device.environment != context.env || own != Some(&*peer.thumbprint) {
        return Err(refused(unknown));
    }
    if device.revoked_at.is_some() {
        return Err(refused("the device is revoked"));
    }
    match access::account::get(store, &device.account).await {
        Ok(account) => {
            if let Some(suspension) = &account.value.suspended {
                let reason = format!("the account is suspended: {}", suspension.reason);
                return Err(TokenFailure::UnauthorizedClient(reason));
            }
        }
        Err(error) => return Err(TokenFailure::Server(error.to_string())),
    }
    if let Some(assertion) = assertion {
        let certificate = peer.chain.first().map(|first| first.as_ref()).unwrap_or_default();
        let jwk = access::certificate::jwk(certificate)
            .ok_or_else(|| refused("private_key_jwt needs a certificate with an RSA or P-384 key (RS384, ES384)"))?;
        let client = auth::client::Client {
            client_id: device_id.to_owned(),
            client_type: auth::client::ClientType::ConfidentialAsymmetric,
            environment: context.env.as_str().to_owned(),
            secret_hash: None,
            jwks: Some(json!({"keys": [jwk]})),
            jwks_url: None,
            redirect_uris: Vec::new(),
            launch_uris: Vec::new(),
            scopes: device.scope.clone(),
        };
        context.auth.issuer.verify_assertion(store, context.endpoint(), assertion, &client).await?;
    }
    if context.env == store::Environment::Production {
        peer.production.clone().map_err(|reason| refused(&reason))?;
        let paths = access::certification::production_paths(store, &device.account)
            .await
            .map_err(|error| TokenFailure::Server(error.to_string()))?;
        let network = paths.map_err(TokenFailure::UnauthorizedClient)?;
        access::certification::admits(&network, client)
            .map_err(|reason| TokenFailure::UnauthorizedClient(reason.to_owned()))?;
    }
    let allowed = auth::scope::Scopes::parse(&device.scope).unwrap_or_default();
    let endpoint = context.endpoint();
    context.auth.issuer.system_token(endpoint, device_id, &allowed, scope, Some(peer.thumbprint.to_string()), now())
}

/// `POST …/auth/revoke`: the client authenticates as at the token endpoint; the answer is
/// 200 whether or not the token was known (RFC 7009 §2.2).
pub(crate) async fn revoke(
    State(context): State<AuthContext>,
    note: Note,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = form_pairs(&body);
    let presented = presented(&headers, &form);
    note_client(&note, &presented);
    let result = async {
        let client = authenticated(&context, &presented).await?;
        let token = field(&form, "token").ok_or_else(|| TokenFailure::InvalidRequest("token is required".into()))?;
        let issuer = &context.auth.issuer;
        issuer.revoke(context.store(), context.endpoint(), &client, token, now()).await.map_err(TokenFailure::from)
    };
    match result.await {
        Ok(()) => no_store(StatusCode::OK, json!({})),
        Err(failure) => refused(&note, &failure, tried_basic(&presented)),
    }
}

/// `POST …/auth/introspect`: any caller may ask (the token is the secret); an inactive,
/// unknown or malformed token gets exactly `{"active":false}` (RFC 7662 §2.2).
pub(crate) async fn introspect(State(context): State<AuthContext>, body: Bytes) -> Response {
    let form = form_pairs(&body);
    let Some(token) = field(&form, "token").filter(|token| !token.is_empty()) else {
        return token_error(&TokenFailure::InvalidRequest("token is required".into()), false);
    };
    match context.auth.issuer.introspect(context.store(), context.endpoint(), token, now()).await {
        Ok(Some(active)) => no_store(StatusCode::OK, json!(active)),
        Ok(None) => no_store(StatusCode::OK, json!({"active": false})),
        Err(error) => token_error(&TokenFailure::Server(error.to_string()), false),
    }
}

async fn authenticated(
    context: &AuthContext,
    presented: &Result<Presented, TokenFailure>,
) -> Result<Client, TokenFailure> {
    let presented = presented.as_ref().map_err(Clone::clone)?;
    context.auth.issuer.authenticate_client(context.store(), context.endpoint(), presented).await
}

/// The client credentials of the request: `Authorization: Basic` (whose parts are
/// form-urlencoded, RFC 6749 §2.3.1) and the form's `client_id`, `client_secret`,
/// `client_assertion_type` and `client_assertion`.
fn presented(headers: &HeaderMap, form: &[(String, String)]) -> Result<Presented, TokenFailure> {
    let basic = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(value) => Some(basic_credentials(value).ok_or_else(|| {
            TokenFailure::InvalidClient("the Authorization header is not Basic base64(client_id:client_secret)".into())
        })?),
    };
    let text = |name: &str| field(form, name).filter(|value| !value.is_empty()).map(str::to_owned);
    Ok(Presented {
        basic,
        client_id: text("client_id"),
        client_secret: text("client_secret"),
        client_assertion_type: text("client_assertion_type"),
        client_assertion: text("client_assertion"),
    })
}

fn basic_credentials(value: &HeaderValue) -> Option<(String, String)> {
    let (scheme, encoded) = value.to_str().ok()?.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |text: &str| -> Option<String> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&format!("v={text}")).ok()?;
        pairs.into_iter().next().map(|(_, value)| value)
    };
    Some((unescape(id)?, unescape(secret)?))
}

/// A JSON answer with `Cache-Control: no-store` and `Pragma: no-cache` (RFC 6749 §5.1).
fn no_store(status: StatusCode, body: serde_json::Value) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// The RFC 6749 §5.2 error: 401 for `invalid_client` (with a Basic challenge when the client
/// tried Basic), 500 for the server's own failures, 400 otherwise.
fn token_error(failure: &TokenFailure, tried_basic: bool) -> Response {
    let status = match failure {
        TokenFailure::InvalidClient(_) => StatusCode::UNAUTHORIZED,
        TokenFailure::Server(cause) => {
            tracing::error!(error = %cause, "token endpoint failed");
            StatusCode::INTERNAL_SERVER_ERROR
        }
        _ => StatusCode::BAD_REQUEST,
    };
    let description = match failure {
        TokenFailure::Server(_) => "the server could not complete the request",
        other => other.description(),
    };
    let mut response = no_store(status, json!({"error": failure.code(), "error_description": description}));
    if tried_basic && status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"ignis\""));
    }
    response
}
