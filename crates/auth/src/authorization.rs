//! The authorization-code half of SMART App Launch: an authorization request waiting for the
//! user (sign-in, second factor, patient picker, consent), what the user approved, and the
//! single-use code that carries the approval to the token endpoint.
//!
//! Requests and codes are platform records whose ids are digests of the opaque values the
//! browser and the client hold ([`crate::opaque`]). A request is bound to the user who signed
//! in for it, so a leaked request handle cannot be approved from another browser session.

use serde::{Deserialize, Serialize};
use store::records::{self, Kind, RecordKey, Records, Versioned};

use crate::opaque;
use crate::scope::{Scope, Scopes};
use crate::secret::SecretError;

/// How long a user has to finish signing in and consenting.
pub const REQUEST_LIFETIME: i64 = 30 * 60;
/// How long a code may wait for its exchange (RFC 6749 §4.1.2 recommends at most 10 minutes).
pub const CODE_LIFETIME: i64 = 5 * 60;

/// An authorization request, as validated at the authorization endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingRequest {
    pub environment: String,
    pub client_id: String,
    pub redirect_uri: String,
    /// The scopes requested that the client may be granted.
    pub scope: String,
    #[serde(default)]
    pub state: Option<String>,
    pub code_challenge: String,
    #[serde(default)]
    pub nonce: Option<String>,
    /// The context an EHR launch bound (`launch` parameter).
    #[serde(default)]
    pub launch: Option<LaunchContext>,
    /// The user whose password was accepted and who still owes the second factor.
    #[serde(default)]
    pub awaiting_second_factor: Option<String>,
    /// The user who signed in for this request.
    #[serde(default)]
    pub user: Option<String>,
    /// The patient chosen (picker) or given by the launch.
    #[serde(default)]
    pub patient: Option<String>,
    /// Seconds since the epoch.
    pub expires: i64,
}

/// Patient and encounter bound by an EHR launch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaunchContext {
    pub patient: Option<String>,
    pub encounter: Option<String>,
}

impl Kind for PendingRequest {
    const KIND: &'static str = "authorization_request";

    fn keys(&self) -> Vec<RecordKey> {
        Vec::new()
    }
}

impl PendingRequest {
    /// The requested scopes.
    pub fn scopes(&self) -> Scopes {
        Scopes::parse(&self.scope).unwrap_or_default()
    }

    /// True when the request asks for `scope` (`launch/patient`, `openid`…).
    pub fn asks(&self, scope: &str) -> bool {
        Scope::parse(scope).is_ok_and(|scope| self.scopes().contains(&scope))
    }

    /// True when the app needs a patient chosen: standalone `launch/patient`, or patient-level
    /// scopes in an EHR launch whose context has a patient anyway.
    pub fn needs_patient(&self) -> bool {
        self.asks("launch/patient")
            || self.scopes().resources().any(|scope| scope.context == crate::scope::Context::Patient)
    }
}

/// Stores `request`; returns the handle the pages carry.
pub async fn begin(store: &dyn Records, request: &PendingRequest) -> Result<String, FlowError> {
    let handle = opaque::new_secret()?;
    records::create(store, &opaque::digest(&handle), request, "authorize").await?;
    Ok(handle)
}

/// The live request behind `handle`.
pub async fn pending(store: &dyn Records, handle: &str, now: i64) -> Result<Versioned<PendingRequest>, FlowError> {
    match records::get::<PendingRequest>(store, &opaque::digest(handle)).await? {
        Some(request) if request.value.expires > now => Ok(request),
        _ => Err(FlowError::UnknownRequest),
    }
}

/// Applies `change` to the request behind `handle`.
pub async fn advance(
    store: &dyn Records,
    handle: &str,
    change: impl FnMut(&mut PendingRequest) + Send,
) -> Result<Versioned<PendingRequest>, FlowError> {
    Ok(records::modify(store, &opaque::digest(handle), "authorize", change).await?)
}

/// Ends the request behind `handle` (approved or denied): its handle cannot be used again.
pub async fn finish(store: &dyn Records, handle: &str, request: &Versioned<PendingRequest>) -> Result<(), FlowError> {
    match records::delete::<PendingRequest>(store, &opaque::digest(handle), request.version, "authorize").await {
        Ok(()) => Ok(()),
        Err(store::Error::RecordConflict { .. } | store::Error::RecordNotFound { .. }) => {
            Err(FlowError::UnknownRequest)
        }
        Err(error) => Err(error.into()),
    }
}

/// What the user approved, carried from consent to every token of the grant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    /// The granted scope string.
    pub scope: String,
    /// The user's id (the `sub` of tokens and id_tokens).
    pub user: String,
    pub fhir_user: Option<String>,
    pub patient: Option<String>,
    pub encounter: Option<String>,
    pub nonce: Option<String>,
    /// When the user signed in (seconds since the epoch).
    pub auth_time: i64,
}

/// A code issued to a client, kept under the digest of the code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Code {
    pub environment: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub approval: Approval,
    pub expires: i64,
}

impl Kind for Code {
    const KIND: &'static str = "authorization_code";

    fn keys(&self) -> Vec<RecordKey> {
        Vec::new()
    }
}

/// Issues a code for `approval` of `request`.
pub async fn issue_code(
    store: &dyn Records,
    request: &PendingRequest,
    approval: Approval,
    now: i64,
) -> Result<String, FlowError> {
    let code = opaque::new_secret()?;
    let record = Code {
        environment: request.environment.clone(),
        client_id: request.client_id.clone(),
        redirect_uri: request.redirect_uri.clone(),
        code_challenge: request.code_challenge.clone(),
        approval,
        expires: now + CODE_LIFETIME,
    };
    records::create(store, &opaque::digest(&code), &record, "authorize").await?;
    Ok(code)
}

/// Takes `code` out of the store: a code is good for one exchange only, whether that exchange
/// then succeeds or not, so a replayed or raced code finds nothing.
pub async fn redeem_code(store: &dyn Records, code: &str, now: i64) -> Result<Option<Code>, FlowError> {
    let id = opaque::digest(code);
    let Some(found) = records::get::<Code>(store, &id).await? else { return Ok(None) };
    match records::delete::<Code>(store, &id, found.version, "token").await {
        Ok(()) => Ok(Some(found.value).filter(|code| code.expires > now)),
        Err(store::Error::RecordConflict { .. } | store::Error::RecordNotFound { .. }) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// Why a step of the flow failed.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error("this authorization request is unknown, finished or expired; start again from the app")]
    UnknownRequest,
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Store(#[from] store::Error),
}
