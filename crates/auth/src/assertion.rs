//! `private_key_jwt` client authentication: the `client_assertion` a confidential-asymmetric
//! client sends to the token endpoint (RFC 7523 §2.2 and §3, SMART App Launch 2
//! "asymmetric client authentication", SMART Backend Services).
//!
//! The assertion is a JWT the client signs with one of the keys it registered (inline, or at a
//! JWKS URL): RS384 or ES384 as SMART requires, `kid` naming the key, `iss` = `sub` = the
//! client id, `aud` = the token endpoint, `exp` at most five minutes ahead, and a `jti` never
//! seen before (remembered in the store's `jti` list until the assertion could no longer be
//! accepted). Keys at a URL are fetched by the server crate ([`JwksFetcher`]: this crate does
//! no HTTP) and cached as `Cache-Control` allows ([`JwksCache`]); an unknown `kid` fetches the
//! set again once, for clients that rotated their keys.
//!
//! No refusal echoes the assertion or anything taken from it: messages name the check.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;
use store::expiring::Expiring;
use time::OffsetDateTime;

use crate::client::{Client, ClientType};

/// The `client_assertion_type` of a JWT client assertion.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The expiring list that remembers the `jti`s of accepted assertions.
pub const JTI_LIST: &str = "jti";

/// How far ahead of now an assertion's `exp` may be (SMART: "no more than five minutes in the
/// future"), so a `jti` need only be remembered that long.
pub const MAX_LIFETIME: Duration = Duration::from_secs(5 * 60);

/// The clock skew allowed between the client and the server, on `exp` and `nbf`.
pub const LEEWAY: Duration = Duration::from_secs(60);

/// An assertion longer than this is refused before it is decoded.
const MAX_ASSERTION_BYTES: usize = 16 * 1024;

/// The longest `jti` remembered; a longer one is refused rather than stored.
const MAX_JTI_CHARS: usize = 256;

/// How long a fetched JWKS is reused when its response says nothing of caching.
pub const DEFAULT_JWKS_MAX_AGE: Duration = Duration::from_secs(5 * 60);

/// The longest a fetched JWKS is reused, whatever its `max-age`: a key the client removed
/// from its set stops being trusted within this time.
pub const MAX_JWKS_MAX_AGE: Duration = Duration::from_secs(60 * 60);

/// An unknown `kid` fetches a cached JWKS again only if the cached copy is at least this old,
/// so assertions naming made-up keys cannot make the server hammer a client's JWKS host.
pub const JWKS_REFETCH_FLOOR: Duration = Duration::from_secs(10);

/// Why a client assertion was refused; each message names the check that failed.
#[derive(Debug, thiserror::Error)]
pub enum AssertionError {
    #[error("the client assertion is not a well-formed JWT: {0}")]
    Malformed(&'static str),
    #[error("the client assertion's alg must be RS384 or ES384 (none, HS* and others are refused)")]
    Algorithm,
    #[error("the client assertion's typ must be JWT when present")]
    Type,
    #[error("the client assertion carries critical header extensions this server does not understand")]
    Critical,
    #[error("the client assertion's header has no kid")]
    MissingKid,
    #[error("the client is not registered for private_key_jwt authentication (not confidential-asymmetric)")]
    NotAsymmetric,
    #[error("the client has no registered JWKS or JWKS URL")]
    NoKeys,
    #[error("the client's JWKS cannot be fetched: {0}")]
    JwksUnavailable(String),
    #[error("the client's JWKS is not a JSON object with a \"keys\" array")]
    JwksInvalid,
    #[error("no key in the client's JWKS has the assertion's kid (the JWKS was fetched again)")]
    UnknownKidAfterRefetch,
    #[error("no key in the client's JWKS has the assertion's kid")]
    UnknownKid,
    #[error("the client's key for the assertion's kid cannot verify it: {0}")]
    KeyUnusable(&'static str),
    #[error("the client assertion's signature does not verify")]
    Signature,
    #[error("the client assertion's iss is not the client id")]
    Issuer,
    #[error("the client assertion's sub is not the client id")]
    Subject,
    #[error("the client assertion's aud is not this token endpoint")]
    Audience,
    #[error("the client assertion has no exp")]
    MissingExpiry,
    #[error("the client assertion has expired")]
    Expired,
    #[error("the client assertion's exp is more than five minutes ahead")]
    TooLongLived,
    #[error("the client assertion is not valid yet (nbf)")]
    NotYetValid,
    #[error("the client assertion has no jti")]
    MissingJti,
    #[error("the client assertion's jti is longer than 256 characters")]
    JtiTooLong,
    #[error("the client assertion's jti was already used")]
    Replayed,
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// A JWKS as fetched from a URL.
#[derive(Debug, Clone)]
pub struct FetchedJwks {
    /// The JSON document.
    pub jwks: Value,
    /// How long it may be reused ([`cache_lifetime`] of the response's `Cache-Control`);
    /// `None` when it may not be reused at all.
    pub max_age: Option<Duration>,
}

/// Fetches a JWKS over HTTP; the server crate implements it (this crate does no HTTP).
#[async_trait]
pub trait JwksFetcher: Send + Sync {
    /// The JWKS at `url`, or why it could not be fetched (a message for the client and the
    /// log: no secrets in it).
    async fn fetch(&self, url: &str) -> Result<FetchedJwks, String>;
}

/// How long a response with this `Cache-Control` header may be reused: `None` for
/// `no-store`, `no-cache` or `max-age=0`; `max-age` capped at [`MAX_JWKS_MAX_AGE`]; and
/// [`DEFAULT_JWKS_MAX_AGE`] when the header is absent or names no lifetime.
pub fn cache_lifetime(cache_control: Option<&str>) -> Option<Duration> {
    let Some(header) = cache_control else {
        return Some(DEFAULT_JWKS_MAX_AGE);
    };
    let mut max_age = None;
    for directive in header.split(',').map(str::trim) {
        let (name, value) = directive.split_once('=').map_or((directive, None), |(name, value)| (name, Some(value)));
        let name = name.trim().to_ascii_lowercase();
        match name.as_str() {
            "no-store" | "no-cache" => return None,
            "max-age" => {
                // An unreadable max-age is treated as 0 (RFC 9111 §4.2.1: stale).
                let seconds = value.and_then(|value| value.trim().trim_matches('"').parse::<u64>().ok()).unwrap_or(0);
                max_age = Some(seconds);
            }
            _ => {}
        }
    }
    match max_age {
        Some(0) => None,
        Some(seconds) => Some(Duration::from_secs(seconds).min(MAX_JWKS_MAX_AGE)),
        None => Some(DEFAULT_JWKS_MAX_AGE),
    }
}

/// Fetched JWKS by URL, reused while their `Cache-Control` allows.
pub struct JwksCache {
    fetcher: Arc<dyn JwksFetcher>,
    entries: Mutex<HashMap<String, CachedJwks>>,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwksCache")
    }
}

#[derive(Clone)]
struct CachedJwks {
    jwks: Arc<Value>,
    fetched: OffsetDateTime,
    fresh_until: OffsetDateTime,
}

impl JwksCache {
    pub fn new(fetcher: Arc<dyn JwksFetcher>) -> JwksCache {
        JwksCache { fetcher, entries: Mutex::new(HashMap::new()) }
    }

    /// The JWKS at `url`, and whether it was fetched by this call: the cached copy while it
    /// is fresh at `now`, otherwise (or with `refresh`) a new fetch.
    async fn get(&self, url: &str, now: OffsetDateTime, refresh: bool) -> Result<(Arc<Value>, bool), AssertionError> {
        if !refresh && let Some(cached) = self.cached(url).filter(|cached| now < cached.fresh_until) {
            return Ok((cached.jwks, false));
        }
        let fetched = self.fetcher.fetch(url).await.map_err(AssertionError::JwksUnavailable)?;
        if !fetched.jwks.get("keys").is_some_and(Value::is_array) {
            return Err(AssertionError::JwksInvalid);
        }
        let jwks = Arc::new(fetched.jwks);
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        match fetched.max_age.filter(|max_age| !max_age.is_zero()) {
            Some(max_age) => {
                let max_age = max_age.min(MAX_JWKS_MAX_AGE);
                let fresh_until = now + max_age;
                entries.insert(url.to_owned(), CachedJwks { jwks: Arc::clone(&jwks), fetched: now, fresh_until });
            }
            None => {
                entries.remove(url);
            }
        }
        Ok((jwks, true))
    }

    fn cached(&self, url: &str) -> Option<CachedJwks> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).get(url).cloned()
    }

    /// The key `kid` of the set at `url`: from the cached copy, or fetched again (once) when
    /// that copy lacks it and is older than [`JWKS_REFETCH_FLOOR`].
    async fn key(&self, url: &str, kid: &str, now: OffsetDateTime) -> Result<Value, AssertionError> {
        let (jwks, fetched) = self.get(url, now, false).await?;
        if let Some(key) = find_key(&jwks, kid) {
            return Ok(key);
        }
        let recent = self.cached(url).is_some_and(|cached| now - cached.fetched < JWKS_REFETCH_FLOOR);
        if fetched || recent {
            return Err(AssertionError::UnknownKid);
        }
        let (jwks, _) = self.get(url, now, true).await?;
        find_key(&jwks, kid).ok_or(AssertionError::UnknownKidAfterRefetch)
    }
}

/// The key of `jwks` whose `kid` is `kid`.
fn find_key(jwks: &Value, kid: &str) -> Option<Value> {
    jwks.get("keys")?.as_array()?.iter().find(|key| key.get("kid").and_then(Value::as_str) == Some(kid)).cloned()
}

/// An accepted assertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAssertion {
    pub client_id: String,
    pub jti: String,
    /// The assertion's `exp`, in seconds since the Unix epoch.
    pub expires_at: i64,
    /// The `kid` of the key that signed it.
    pub key_id: String,
}

/// The header fields looked at; parsed here rather than by `jsonwebtoken`, so that an
/// algorithm it does not know (`none`) is refused with a message naming the check.
#[derive(Deserialize)]
struct Header {
    alg: Option<String>,
    kid: Option<String>,
    typ: Option<String>,
    crit: Option<Value>,
}

/// The claims looked at; each is checked here, so that each refusal names its claim.
#[derive(Deserialize)]
struct Claims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<Value>,
    exp: Option<Value>,
    nbf: Option<Value>,
    jti: Option<String>,
}

/// The client id an assertion claims (`iss`, else `sub`), read without verifying it: what
/// the token endpoint looks the client up by when the request names none, before
/// [`verify`].
pub fn claimed_client_id(assertion: &str) -> Result<String, AssertionError> {
    let (_, payload, _) = split(assertion)?;
    let claims: Claims = decode_part(payload, "its claims are not base64url JSON")?;
    claims.iss.or(claims.sub).ok_or(AssertionError::Issuer)
}

/// Verifies `assertion` as `client`'s authentication at `token_endpoint` (the URL the client
/// posted to) at `now`: its header, the key it names, its signature, its claims, and last its
/// `jti`, remembered in `lists` so the assertion cannot be used again. Nothing is remembered
/// for a refused assertion.
pub async fn verify(
    assertion: &str,
    client: &Client,
    token_endpoint: &str,
    keys: &JwksCache,
    lists: &dyn Expiring,
    now: OffsetDateTime,
) -> Result<VerifiedAssertion, AssertionError> {
    let (header, _, signature) = split(assertion)?;
    let header: Header = decode_part(header, "its header is not base64url JSON")?;
    let algorithm = match header.alg.as_deref() {
        Some("RS384") => Algorithm::RS384,
        Some("ES384") => Algorithm::ES384,
        _ => return Err(AssertionError::Algorithm),
    };
    if signature.is_empty() {
        return Err(AssertionError::Malformed("it has no signature"));
    }
    if header.typ.as_deref().is_some_and(|typ| !typ.eq_ignore_ascii_case("JWT")) {
        return Err(AssertionError::Type);
    }
    if header.crit.is_some() {
        return Err(AssertionError::Critical);
    }
    let kid = header.kid.filter(|kid| !kid.is_empty()).ok_or(AssertionError::MissingKid)?;
    if client.client_type != ClientType::ConfidentialAsymmetric {
        return Err(AssertionError::NotAsymmetric);
    }
    let jwk = client_key(client, &kid, keys, now).await?;
    let key = decoding_key(&jwk, algorithm)?;
    let claims = signed_claims(assertion, &key, algorithm)?;
    check_claims(&claims, &client.client_id, token_endpoint, now)?;
    let expires_at = claims.exp.as_ref().and_then(numeric_date).ok_or(AssertionError::MissingExpiry)?;
    let jti = claims.jti.filter(|jti| !jti.is_empty()).ok_or(AssertionError::MissingJti)?;
    if jti.chars().count() > MAX_JTI_CHARS {
        return Err(AssertionError::JtiTooLong);
    }
    // Kept as long as the assertion could still be accepted: its exp plus the leeway. The
    // client id (which has no spaces) scopes the jti to its issuer, as RFC 7519 defines it.
    let remember_until = from_seconds(expires_at) + LEEWAY;
    if !lists.remember(JTI_LIST, &format!("{} {jti}", client.client_id), remember_until, now).await? {
        return Err(AssertionError::Replayed);
    }
    Ok(VerifiedAssertion { client_id: client.client_id.clone(), jti, expires_at, key_id: kid })
}

/// The three parts of a compact JWS (the signature may be empty: `verify` refuses that after
/// the algorithm, so that `alg: none` is refused as such).
fn split(assertion: &str) -> Result<(&str, &str, &str), AssertionError> {
    if assertion.len() > MAX_ASSERTION_BYTES {
        return Err(AssertionError::Malformed("it is longer than 16 KiB"));
    }
    let mut parts = assertion.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(header), Some(payload), Some(signature), None) => Ok((header, payload, signature)),
        _ => Err(AssertionError::Malformed("it is not three base64url parts separated by dots")),
    }
}

fn decode_part<T: for<'de> Deserialize<'de>>(part: &str, problem: &'static str) -> Result<T, AssertionError> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| AssertionError::Malformed(problem))?;
    serde_json::from_slice(&bytes).map_err(|_| AssertionError::Malformed(problem))
}

/// The registered key `kid` of `client`: from its inline JWKS, else from its JWKS URL.
async fn client_key(
    client: &Client,
    kid: &str,
    keys: &JwksCache,
    now: OffsetDateTime,
) -> Result<Value, AssertionError> {
    if let Some(key) = client.jwks.as_ref().and_then(|jwks| find_key(jwks, kid)) {
        return Ok(key);
    }
    match (&client.jwks_url, &client.jwks) {
        (Some(url), _) => keys.key(url, kid, now).await,
        (None, Some(_)) => Err(AssertionError::UnknownKid),
        (None, None) => Err(AssertionError::NoKeys),
    }
}

/// The verifying key for `jwk`, once its type, curve, `alg`, `use` and `key_ops` allow
/// `algorithm`.
fn decoding_key(jwk: &Value, algorithm: Algorithm) -> Result<DecodingKey, AssertionError> {
    let text = |name: &str| jwk.get(name).and_then(Value::as_str);
    let (kty, alg) = match algorithm {
        Algorithm::ES384 => ("EC", "ES384"),
        _ => ("RSA", "RS384"),
    };
    if text("kty") != Some(kty) {
        return Err(AssertionError::KeyUnusable("its kty does not match the assertion's alg"));
    }
    if algorithm == Algorithm::ES384 && text("crv") != Some("P-384") {
        return Err(AssertionError::KeyUnusable("ES384 needs a P-384 key"));
    }
    if text("alg").is_some_and(|key_alg| key_alg != alg) {
        return Err(AssertionError::KeyUnusable("the key is registered for another alg"));
    }
    if text("use").is_some_and(|key_use| key_use != "sig") {
        return Err(AssertionError::KeyUnusable("the key's use is not sig"));
    }
    if let Some(operations) = jwk.get("key_ops").and_then(Value::as_array)
        && !operations.iter().any(|operation| operation.as_str() == Some("verify"))
    {
        return Err(AssertionError::KeyUnusable("the key's key_ops do not include verify"));
    }
    let jwk: Jwk = serde_json::from_value(jwk.clone())
        .map_err(|_| AssertionError::KeyUnusable("it is not a JWK this server can read"))?;
    DecodingKey::from_jwk(&jwk).map_err(|_| AssertionError::KeyUnusable("its parameters are not a valid public key"))
}

/// The claims of `assertion` once its signature verifies under `key`.
fn signed_claims(assertion: &str, key: &DecodingKey, algorithm: Algorithm) -> Result<Claims, AssertionError> {
    let mut validation = Validation::new(algorithm);
    // Every claim is checked by `check_claims`, against the given clock.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    match jsonwebtoken::decode::<Claims>(assertion, key, &validation) {
        Ok(data) => Ok(data.claims),
        Err(error) => Err(match error.kind() {
            ErrorKind::InvalidSignature => AssertionError::Signature,
            ErrorKind::InvalidRsaKey(_) | ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidKeyFormat => {
                AssertionError::KeyUnusable("its parameters are not a valid public key")
            }
            ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
                AssertionError::Malformed("its claims are not base64url JSON")
            }
            _ => AssertionError::Signature,
        }),
    }
}

/// The claim checks, in the order their refusals are most useful to a client developer.
fn check_claims(
    claims: &Claims,
    client_id: &str,
    token_endpoint: &str,
    now: OffsetDateTime,
) -> Result<(), AssertionError> {
    if claims.iss.as_deref() != Some(client_id) {
        return Err(AssertionError::Issuer);
    }
    if claims.sub.as_deref() != Some(client_id) {
        return Err(AssertionError::Subject);
    }
    // RFC 7519 allows one audience or several; the token endpoint must be among them.
    let audience_matches = match &claims.aud {
        Some(Value::String(aud)) => aud == token_endpoint,
        Some(Value::Array(auds)) => auds.iter().any(|aud| aud.as_str() == Some(token_endpoint)),
        _ => false,
    };
    if !audience_matches {
        return Err(AssertionError::Audience);
    }
    let exp = claims.exp.as_ref().and_then(numeric_date).map(from_seconds).ok_or(AssertionError::MissingExpiry)?;
    if exp + LEEWAY <= now {
        return Err(AssertionError::Expired);
    }
    if exp > now + MAX_LIFETIME + LEEWAY {
        return Err(AssertionError::TooLongLived);
    }
    if let Some(nbf) = &claims.nbf {
        let nbf = numeric_date(nbf).map(from_seconds).ok_or(AssertionError::Malformed("its nbf is not a number"))?;
        if nbf > now + LEEWAY {
            return Err(AssertionError::NotYetValid);
        }
    }
    Ok(())
}

/// A JWT NumericDate (seconds, maybe with a fraction) as whole seconds.
fn numeric_date(value: &Value) -> Option<i64> {
    value.as_i64().or_else(|| value.as_f64().filter(|seconds| seconds.is_finite()).map(|seconds| seconds as i64))
}

fn from_seconds(seconds: i64) -> OffsetDateTime {
    // Out of range dates are far past or far future; clamp to what `time` represents.
    OffsetDateTime::from_unix_timestamp(seconds.clamp(-377_705_116_800, 253_402_300_799))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests;
