//! The token endpoint's logic (RFC 6749 §4.1.3 and §6, SMART App Launch): client
//! authentication, the authorization-code and refresh-token grants, and the token response;
//! plus introspection (RFC 7662) and revocation (RFC 7009). The server crate only parses the
//! form and writes the JSON.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use store::Store;
use store::records::Records;

use crate::assertion::{ASSERTION_TYPE, AssertionError, JwksCache, JwksFetcher, claimed_client_id};
use crate::authorization::{self, Approval, FlowError};
use crate::client::{self, Client, ClientType};
use crate::pkce;
use crate::refresh;
use crate::scope::{Context, Scope, Scopes};
use crate::secret::SecretKey;
use crate::signing::{IdTokenClaims, SigningError, SigningKeys};
use crate::token::{Grant, TokenError, TokenKey, new_token_id};

/// Access tokens live an hour; refresh tokens renew them.
pub const ACCESS_LIFETIME: i64 = 60 * 60;
/// Backend Services tokens live five minutes, as SMART recommends; the client asks again.
pub const BACKEND_LIFETIME: i64 = 5 * 60;

/// Signs and checks access tokens and runs the grants.
#[derive(Debug)]
pub struct Issuer {
    key: TokenKey,
    verified: crate::token::VerifiedTokens,
    revoked: refresh::RevocationList,
    /// Seals the id_token signing keys.
    secret: Arc<SecretKey>,
    /// The signing keys as last loaded, and when.
    signing: RwLock<Option<(Arc<SigningKeys>, Instant)>>,
    /// Client JWKS fetched by URL.
    client_keys: JwksCache,
}

/// How long loaded signing keys are used before they are read again (another process may
/// have rotated them).
const SIGNING_KEYS_RELOAD: Duration = Duration::from_secs(60);

/// The endpoint a request came to: which environment, and its FHIR base (the tokens'
/// audience and issuer).
#[derive(Debug, Clone, Copy)]
pub struct Endpoint<'a> {
    pub environment: &'a str,
    pub fhir_base: &'a str,
    /// The style sheet apps are pointed at (`smart_style_url`).
    pub style_url: &'a str,
    /// The token endpoint's URL, the `aud` of client assertions.
    pub token_url: &'a str,
}

/// The client credentials a token request presented.
#[derive(Debug, Default, Clone)]
pub struct Presented {
    /// `Authorization: Basic` (client_secret_basic).
    pub basic: Option<(String, String)>,
    pub client_id: Option<String>,
    /// In the form (client_secret_post).
    pub client_secret: Option<String>,
    pub client_assertion_type: Option<String>,
    pub client_assertion: Option<String>,
}

/// The parameters of an authorization-code exchange, as the form sent them.
#[derive(Debug, Clone, Copy, Default)]
pub struct CodeExchange<'a> {
    pub code: Option<&'a str>,
    pub redirect_uri: Option<&'a str>,
    pub code_verifier: Option<&'a str>,
}

/// A successful token response (SMART App Launch §"Response to Access Token request").
#[derive(Debug, Clone, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encounter: Option<String>,
    pub need_patient_banner: bool,
    pub smart_style_url: String,
}

/// A token-endpoint error (RFC 6749 §5.2); the description names the check that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenFailure {
    InvalidRequest(String),
    InvalidClient(String),
    InvalidGrant(String),
    InvalidScope(String),
    UnauthorizedClient(String),
    UnsupportedGrantType(String),
    /// Not the client's fault (database, random source).
    Server(String),
}

impl TokenFailure {
    /// The RFC 6749 `error` code.
    pub fn code(&self) -> &'static str {
        match self {
            TokenFailure::InvalidRequest(_) => "invalid_request",
            TokenFailure::InvalidClient(_) => "invalid_client",
            TokenFailure::InvalidGrant(_) => "invalid_grant",
            TokenFailure::InvalidScope(_) => "invalid_scope",
            TokenFailure::UnauthorizedClient(_) => "unauthorized_client",
            TokenFailure::UnsupportedGrantType(_) => "unsupported_grant_type",
            TokenFailure::Server(_) => "server_error",
        }
    }

    /// The `error_description`.
    pub fn description(&self) -> &str {
        match self {
            TokenFailure::InvalidRequest(text)
            | TokenFailure::InvalidClient(text)
            | TokenFailure::InvalidGrant(text)
            | TokenFailure::InvalidScope(text)
            | TokenFailure::UnauthorizedClient(text)
            | TokenFailure::UnsupportedGrantType(text)
            | TokenFailure::Server(text) => text,
        }
    }
}

impl From<FlowError> for TokenFailure {
    fn from(error: FlowError) -> TokenFailure {
        TokenFailure::Server(error.to_string())
    }
}

impl From<client::ClientError> for TokenFailure {
    fn from(error: client::ClientError) -> TokenFailure {
        TokenFailure::Server(error.to_string())
    }
}

/// What introspection says of an active token (RFC 7662 §2.2, with SMART's context).
#[derive(Debug, Clone, Serialize)]
pub struct Introspection {
    pub active: bool,
    pub client_id: String,
    pub scope: String,
    pub exp: i64,
    pub iat: i64,
    pub sub: String,
    pub iss: String,
    pub token_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encounter: Option<String>,
    #[serde(rename = "fhirUser", skip_serializing_if = "Option::is_none")]
    pub fhir_user: Option<String>,
}

impl Issuer {
    /// The issuer whose access tokens `key` signs, whose id_token keys `secret` seals, and
    /// which fetches clients' JWKS with `fetcher`.
    pub fn new(key: TokenKey, secret: Arc<SecretKey>, fetcher: Arc<dyn JwksFetcher>) -> Issuer {
        Issuer {
            key,
            verified: Default::default(),
            revoked: Default::default(),
            secret,
            signing: RwLock::new(None),
            client_keys: JwksCache::new(fetcher),
        }
    }

    /// The id_token signing keys, made on first use.
    pub async fn signing_keys(&self, store: &dyn Records, now: i64) -> Result<Arc<SigningKeys>, SigningError> {
        let cached = self.signing.read().ok().and_then(|loaded| loaded.clone());
        if let Some((keys, at)) = cached
            && at.elapsed() < SIGNING_KEYS_RELOAD
        {
            return Ok(keys);
        }
        let keys = Arc::new(SigningKeys::load_or_create(store, &self.secret, now).await?);
        if let Ok(mut loaded) = self.signing.write() {
            *loaded = Some((Arc::clone(&keys), Instant::now()));
        }
        Ok(keys)
    }

    /// The key that checks access tokens on FHIR requests.
    pub fn token_key(&self) -> &TokenKey {
        &self.key
    }

    /// The grant of the access token `token` for the FHIR base `audience`, unless it is forged,
    /// expired or revoked.
    pub async fn authenticate(
        &self,
        store: &dyn Store,
        token: &str,
        audience: &str,
        now: i64,
    ) -> Result<std::sync::Arc<Grant>, TokenError> {
        let grant = self.verified.verify(&self.key, token, audience, now)?;
        match self.revoked.contains(store, &grant.token_id, now).await {
            Ok(false) => Ok(grant),
            Ok(true) => Err(TokenError::Revoked),
            Err(error) => Err(TokenError::Unavailable(error.to_string())),
        }
    }

    /// True when the access token `id` has been revoked.
    pub async fn is_revoked(&self, store: &dyn Store, id: &str, now: i64) -> Result<bool, FlowError> {
        self.revoked.contains(store, id, now).await
    }

    /// The registered client the request authenticates as: `private_key_jwt` (a client
    /// assertion), client_secret_basic, client_secret_post, or a public client's bare
    /// `client_id`.
    pub async fn authenticate_client(
        &self,
        store: &dyn Store,
        endpoint: Endpoint<'_>,
        presented: &Presented,
    ) -> Result<Client, TokenFailure> {
        if presented.client_assertion.is_some() || presented.client_assertion_type.is_some() {
            return self.authenticate_assertion(store, endpoint, presented).await;
        }
        let unknown = || TokenFailure::InvalidClient("the client is unknown or its credentials are wrong".into());
        let (client_id, secret) = match (&presented.basic, &presented.client_secret) {
            (Some((id, secret)), _) => (id.as_str(), Some(secret.as_str())),
            (None, secret) => match &presented.client_id {
                Some(id) => (id.as_str(), secret.as_deref()),
                None => {
                    return Err(TokenFailure::InvalidClient("no client authentication (client_id) was sent".into()));
                }
            },
        };
        if presented.client_id.as_deref().is_some_and(|body_id| body_id != client_id) {
            return Err(TokenFailure::InvalidRequest("client_id differs from the authenticated client".into()));
        }
        // Client ids are not secret: an unknown one is answered at once.
        let Some(client) = client::find(store, endpoint.environment, client_id).await? else { return Err(unknown()) };
        match (client.client_type, secret) {
            (ClientType::Public, None) => Ok(client),
            (ClientType::Public, Some(_)) => Err(TokenFailure::InvalidClient("a public client has no secret".into())),
            (ClientType::ConfidentialSymmetric, Some(secret)) if client.secret_matches(secret) => Ok(client),
            (ClientType::ConfidentialSymmetric, Some(_)) => Err(unknown()),
            (ClientType::ConfidentialSymmetric, None) => {
                Err(TokenFailure::InvalidClient("this client must authenticate with its secret".into()))
            }
            (ClientType::ConfidentialAsymmetric, _) => {
                Err(TokenFailure::InvalidClient("this client must authenticate with private_key_jwt".into()))
            }
        }
    }

    /// `private_key_jwt` (RFC 7523 §2.2): the assertion, signed by a key the client registered.
    async fn authenticate_assertion(
        &self,
        store: &dyn Store,
        endpoint: Endpoint<'_>,
        presented: &Presented,
    ) -> Result<Client, TokenFailure> {
        let (assertion, client_id) = assertion_of(presented)?;
        let Some(client) = client::find(store, endpoint.environment, &client_id).await? else {
            return Err(TokenFailure::InvalidClient("the client is unknown".into()));
        };
        self.verify_assertion(store, endpoint, assertion, &client).await?;
        Ok(client)
    }

    /// Verifies `assertion` as `client`'s authentication (its `jti` then used up).
    pub async fn verify_assertion(
        &self,
        store: &dyn Store,
        endpoint: Endpoint<'_>,
        assertion: &str,
        client: &Client,
    ) -> Result<(), TokenFailure> {
        let now = time::OffsetDateTime::now_utc();
        let keys = &self.client_keys;
        crate::assertion::verify(assertion, client, endpoint.token_url, keys, store, now).await.map_err(refused)?;
        Ok(())
    }

    /// The authorization-code grant: redeems `code` for `client`.
    pub async fn exchange_code(
        &self,
        store: &dyn Records,
        endpoint: Endpoint<'_>,
        client: &Client,
        exchange: CodeExchange<'_>,
        now: i64,
    ) -> Result<TokenResponse, TokenFailure> {
        let CodeExchange { code, redirect_uri, code_verifier } = exchange;
        let code = code.filter(|code| !code.is_empty()).ok_or_else(|| missing("code"))?;
        let invalid =
            || TokenFailure::InvalidGrant("the authorization code is invalid, expired or already used".into());
        let code = authorization::redeem_code(store, code, now).await?.ok_or_else(invalid)?;
        if code.environment != endpoint.environment || code.client_id != client.client_id {
            return Err(invalid());
        }
        if redirect_uri != Some(code.redirect_uri.as_str()) {
            return Err(TokenFailure::InvalidGrant(
                "redirect_uri differs from the one in the authorization request".into(),
            ));
        }
        pkce::verify(&code.code_challenge, code_verifier)
            .map_err(|error| TokenFailure::InvalidGrant(format!("PKCE: {error}")))?;
        self.respond(store, endpoint, client, &code.approval, None, None, now).await
    }

    /// The client-credentials grant of SMART Backend Services: a confidential-asymmetric client
    /// (authenticated by its assertion) gets a short-lived token for the `system/` scopes it asks
    /// and may have; nothing else, and no refresh token.
    pub fn client_credentials(
        &self,
        endpoint: Endpoint<'_>,
        client: &Client,
        scope: Option<&str>,
        now: i64,
    ) -> Result<TokenResponse, TokenFailure> {
        if client.client_type != ClientType::ConfidentialAsymmetric {
            return Err(TokenFailure::UnauthorizedClient(
                "client_credentials is for clients that authenticate with private_key_jwt".into(),
            ));
        }
        self.system_token(endpoint, &client.client_id, &client.allowed_scopes(), scope, None, now)
    }

    /// A short-lived token for the `system/` scopes `scope` asks of those `allowed` to
    /// `client_id`, bound to the certificate `cnf` (an `x5t#S256`) when given (RFC 8705): the
    /// client-credentials grant of backend services and of devices over mutual TLS.
    pub fn system_token(
        &self,
        endpoint: Endpoint<'_>,
        client_id: &str,
        allowed: &Scopes,
        scope: Option<&str>,
        cnf: Option<String>,
        now: i64,
    ) -> Result<TokenResponse, TokenFailure> {
        let asked = scope.filter(|scope| !scope.trim().is_empty()).ok_or_else(|| missing("scope"))?;
        let asked = Scopes::parse(asked).map_err(|error| TokenFailure::InvalidScope(error.to_string()))?;
        let system = |scope: &Scope| matches!(scope, Scope::Resource(resource) if resource.context == Context::System);
        if !asked.iter().all(system) {
            return Err(TokenFailure::InvalidScope("client_credentials grants system/ scopes only".into()));
        }
        if !allowed.covers(&asked) {
            return Err(TokenFailure::InvalidScope("a requested scope is not allowed for this client".into()));
        }
        let grant = Grant {
            token_id: new_token_id(),
            client_id: client_id.to_owned(),
            subject: client_id.to_owned(),
            scopes: asked.clone(),
            patient: None,
            encounter: None,
            fhir_user: None,
            issued_at: now,
            expires_at: now + BACKEND_LIFETIME,
            cnf,
        };
        let access_token = self
            .key
            .issue(&grant, endpoint.fhir_base, endpoint.fhir_base)
            .map_err(|error| TokenFailure::Server(error.to_string()))?;
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: BACKEND_LIFETIME,
            scope: asked.to_string(),
            refresh_token: None,
            id_token: None,
            patient: None,
            encounter: None,
            need_patient_banner: false,
            smart_style_url: endpoint.style_url.to_owned(),
        })
    }

    /// The refresh-token grant: a new access token for the same approval, with `scope` when
    /// it asks for less; the refresh token is renewed and returned again.
    pub async fn refresh(
        &self,
        store: &dyn Records,
        endpoint: Endpoint<'_>,
        client: &Client,
        token: Option<&str>,
        scope: Option<&str>,
        now: i64,
    ) -> Result<TokenResponse, TokenFailure> {
        let token = token.filter(|token| !token.is_empty()).ok_or_else(|| missing("refresh_token"))?;
        let invalid = || TokenFailure::InvalidGrant("the refresh token is invalid, expired or revoked".into());
        let record = refresh::find(store, token, now).await?.ok_or_else(invalid)?;
        if record.environment != endpoint.environment || record.client_id != client.client_id {
            return Err(invalid());
        }
        let granted = Scopes::parse(&record.approval.scope).map_err(|_| invalid())?;
        let scopes = match scope.filter(|scope| !scope.trim().is_empty()) {
            None => granted,
            Some(asked) => {
                let asked = Scopes::parse(asked).map_err(|error| TokenFailure::InvalidScope(error.to_string()))?;
                if !granted.covers(&asked) {
                    return Err(TokenFailure::InvalidScope("a refresh may not ask for more than was granted".into()));
                }
                asked
            }
        };
        self.respond(store, endpoint, client, &record.approval, Some(scopes), Some(token), now).await
    }

    /// Issues the access token (and a refresh token for `offline_access`/`online_access`, or
    /// renews `renewing`) of `approval`, narrowed to `scopes` when given.
    #[allow(clippy::too_many_arguments)] // Each is one fact of the grant; a struct would only rename them.
    async fn respond(
        &self,
        store: &dyn Records,
        endpoint: Endpoint<'_>,
        client: &Client,
        approval: &Approval,
        scopes: Option<Scopes>,
        renewing: Option<&str>,
        now: i64,
    ) -> Result<TokenResponse, TokenFailure> {
        let scopes = match scopes {
            Some(scopes) => scopes,
            None => Scopes::parse(&approval.scope).map_err(|error| TokenFailure::Server(error.to_string()))?,
        };
        let grant = Grant {
            token_id: new_token_id(),
            client_id: client.client_id.clone(),
            subject: approval.user.clone(),
            scopes: scopes.clone(),
            patient: approval.patient.clone(),
            encounter: approval.encounter.clone(),
            fhir_user: approval.fhir_user.clone(),
            issued_at: now,
            expires_at: now + ACCESS_LIFETIME,
            cnf: None,
        };
        let access_token = self
            .key
            .issue(&grant, endpoint.fhir_base, endpoint.fhir_base)
            .map_err(|error| TokenFailure::Server(error.to_string()))?;
        let issued = (grant.token_id.clone(), grant.expires_at);
        let refresh_token = match renewing {
            Some(token) => {
                refresh::renew(store, token, issued, now).await?;
                Some(token.to_owned())
            }
            None if asks_offline(&scopes) => {
                Some(refresh::issue(store, endpoint.environment, &client.client_id, approval, issued, now).await?)
            }
            None => None,
        };
        let id_token = match asks(&scopes, "openid") {
            true => Some(self.id_token(store, endpoint, client, approval, &scopes, now).await?),
            false => None,
        };
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: ACCESS_LIFETIME,
            scope: scopes.to_string(),
            refresh_token,
            id_token,
            patient: approval.patient.clone(),
            encounter: approval.encounter.clone(),
            // Inside an EHR (a `launch` context) the EHR shows the patient; a standalone app must.
            need_patient_banner: !asks(&scopes, "launch"),
            smart_style_url: endpoint.style_url.to_owned(),
        })
    }

    /// The OpenID Connect id_token of `approval` for `client`: issued by the FHIR base, about
    /// the user, with `fhirUser` as an absolute URL when that scope was granted.
    async fn id_token(
        &self,
        store: &dyn Records,
        endpoint: Endpoint<'_>,
        client: &Client,
        approval: &Approval,
        scopes: &Scopes,
        now: i64,
    ) -> Result<String, TokenFailure> {
        let fhir_user = approval
            .fhir_user
            .as_ref()
            .filter(|_| asks(scopes, "fhirUser"))
            .map(|fhir_user| format!("{}/{fhir_user}", endpoint.fhir_base));
        let claims = IdTokenClaims {
            iss: endpoint.fhir_base.to_owned(),
            sub: approval.user.clone(),
            aud: client.client_id.clone(),
            exp: now + ACCESS_LIFETIME,
            iat: now,
            fhir_user,
            nonce: approval.nonce.clone(),
            auth_time: Some(approval.auth_time),
        };
        let failed = |error: SigningError| TokenFailure::Server(error.to_string());
        self.signing_keys(store, now).await.map_err(failed)?.sign(&claims).map_err(failed)
    }

    /// What `token` (an access or a refresh token of `endpoint`) is, or `None` when it is not
    /// an active token: expired, revoked, forged or of another environment.
    pub async fn introspect(
        &self,
        store: &dyn Store,
        endpoint: Endpoint<'_>,
        token: &str,
        now: i64,
    ) -> Result<Option<Introspection>, FlowError> {
        if let Ok(grant) = self.key.verify(token, endpoint.fhir_base, now) {
            if self.revoked.contains(store, &grant.token_id, now).await? {
                return Ok(None);
            }
            return Ok(Some(Introspection {
                active: true,
                client_id: grant.client_id,
                scope: grant.scopes.to_string(),
                exp: grant.expires_at,
                iat: grant.issued_at,
                sub: grant.subject,
                iss: endpoint.fhir_base.to_owned(),
                token_type: "Bearer",
                patient: grant.patient,
                encounter: grant.encounter,
                fhir_user: grant.fhir_user,
            }));
        }
        let Some(record) = refresh::find(store, token, now).await? else { return Ok(None) };
        if record.environment != endpoint.environment {
            return Ok(None);
        }
        Ok(Some(Introspection {
            active: true,
            client_id: record.client_id,
            scope: record.approval.scope,
            exp: record.expires,
            iat: record.approval.auth_time,
            sub: record.approval.user,
            iss: endpoint.fhir_base.to_owned(),
            token_type: "refresh_token",
            patient: record.approval.patient,
            encounter: record.approval.encounter,
            fhir_user: record.approval.fhir_user,
        }))
    }

    /// The apps `user` has granted lasting access (refresh tokens), by grant id.
    pub async fn grants(
        &self,
        store: &dyn Records,
        user: &str,
        now: i64,
    ) -> Result<Vec<(String, refresh::RefreshToken)>, FlowError> {
        refresh::grants_of(store, user, now).await
    }

    /// Revokes `user`'s grant `grant` and every token issued from it; false when `user` has no
    /// such grant.
    pub async fn revoke_grant(&self, store: &dyn Store, user: &str, grant: &str, now: i64) -> Result<bool, FlowError> {
        let theirs = refresh::grants_of(store, user, now).await?.iter().any(|(id, _)| id == grant);
        if !theirs {
            return Ok(false);
        }
        refresh::revoke_grant(store, &self.revoked, grant, now).await
    }

    /// Revokes `token` for `client` (RFC 7009): a refresh token with every access token issued
    /// from it, or one access token. Unknown tokens and other clients' tokens are ignored, as
    /// the RFC asks, so the answer reveals nothing.
    pub async fn revoke(
        &self,
        store: &dyn Store,
        endpoint: Endpoint<'_>,
        client: &Client,
        token: &str,
        now: i64,
    ) -> Result<(), FlowError> {
        match self.key.verify(token, endpoint.fhir_base, now) {
            Ok(grant) if grant.client_id == client.client_id => {
                self.revoked.revoke(store, &grant.token_id, grant.expires_at, now).await
            }
            Ok(_) | Err(TokenError::Expired) => Ok(()),
            Err(_) => match refresh::find(store, token, now).await? {
                Some(record) if record.client_id == client.client_id && record.environment == endpoint.environment => {
                    refresh::revoke(store, &self.revoked, token, now).await.map(drop)
                }
                _ => Ok(()),
            },
        }
    }
}

fn missing(parameter: &str) -> TokenFailure {
    TokenFailure::InvalidRequest(format!("{parameter} is required"))
}

fn asks(scopes: &Scopes, scope: &str) -> bool {
    Scope::parse(scope).is_ok_and(|scope| scopes.contains(&scope))
}

fn asks_offline(scopes: &Scopes) -> bool {
    asks(scopes, "offline_access") || asks(scopes, "online_access")
}

/// The assertion of a `private_key_jwt` authentication and the client it is for (`client_id`,
/// else the assertion's `iss`), once the request uses that method alone.
pub fn assertion_of(presented: &Presented) -> Result<(&str, String), TokenFailure> {
    if presented.client_assertion_type.as_deref() != Some(ASSERTION_TYPE) {
        return Err(TokenFailure::InvalidClient(format!("client_assertion_type must be {ASSERTION_TYPE}")));
    }
    if presented.basic.is_some() || presented.client_secret.is_some() {
        return Err(TokenFailure::InvalidRequest("use one client authentication method, not several".into()));
    }
    let assertion = presented
        .client_assertion
        .as_deref()
        .ok_or_else(|| TokenFailure::InvalidClient("client_assertion is required".into()))?;
    let client_id = match &presented.client_id {
        Some(id) => id.clone(),
        None => claimed_client_id(assertion).map_err(refused)?,
    };
    Ok((assertion, client_id))
}

/// An assertion's refusal as the token endpoint reports it.
fn refused(error: AssertionError) -> TokenFailure {
    match error {
        AssertionError::Store(error) => TokenFailure::Server(error.to_string()),
        error => TokenFailure::InvalidClient(error.to_string()),
    }
}
