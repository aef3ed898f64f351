//! Access tokens: what a token grants ([`Grant`]), and its form on the wire, a JWT signed
//! with HMAC-SHA-256 under a key only the server holds ([`TokenKey`]).
//!
//! Self-contained tokens keep the check on every FHIR request cheap (a MAC and a JSON parse,
//! a few microseconds, no database read); revocation is a list of the token ids revoked
//! before they expire, checked beside it. The audience is the FHIR base the token was
//! issued for, so a sandbox token is refused by production and the other way round.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::scope::{ScopeError, Scopes};

/// What an access token lets its bearer do.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    /// The token's own id (`jti`), for revocation and introspection.
    pub token_id: String,
    pub client_id: String,
    /// The user (or, for a backend service, the client) the token acts for.
    pub subject: String,
    pub scopes: Scopes,
    /// The patient in context, for `patient/` scopes.
    pub patient: Option<String>,
    pub encounter: Option<String>,
    /// The user's FHIR resource (`Practitioner/12`).
    pub fhir_user: Option<String>,
    /// Seconds since the Unix epoch.
    pub issued_at: i64,
    pub expires_at: i64,
    /// For a certificate-bound token (RFC 8705): the `x5t#S256` of the client certificate it
    /// must be presented with.
    pub cnf: Option<String>,
}

/// The claims on the wire.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    sub: String,
    exp: i64,
    iat: i64,
    jti: String,
    client_id: String,
    scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    patient: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    encounter: Option<String>,
    #[serde(default, rename = "fhirUser", skip_serializing_if = "Option::is_none")]
    fhir_user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cnf: Option<Confirmation>,
}

/// The confirmation claim of a certificate-bound token (RFC 8705 §3.1).
#[derive(Debug, Serialize, Deserialize)]
struct Confirmation {
    #[serde(rename = "x5t#S256")]
    thumbprint: String,
}

/// Why a bearer token was refused; each names the check that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the access token is malformed or its signature does not verify")]
    Invalid,
    #[error("the access token has expired")]
    Expired,
    #[error("the access token was issued for another FHIR server or environment")]
    WrongAudience,
    #[error("the access token has been revoked")]
    Revoked,
    #[error("the access token's scopes are malformed: {0}")]
    Scopes(#[from] ScopeError),
    #[error("the access token cannot be signed: {0}")]
    Signing(String),
    /// The revocation list could not be read: not the token's fault.
    #[error("the access token cannot be checked now: {0}")]
    Unavailable(String),
}

/// The key that signs and checks access tokens.
pub struct TokenKey {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(<redacted>)")
    }
}

impl TokenKey {
    /// A key from 32 or more secret bytes.
    pub fn new(secret: &[u8]) -> TokenKey {
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry and audience are checked below, against a given clock and base.
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        TokenKey { encoding: EncodingKey::from_secret(secret), decoding: DecodingKey::from_secret(secret), validation }
    }

    /// The signed token for `grant`, issued by `issuer` for the FHIR base `audience`.
    pub fn issue(&self, grant: &Grant, issuer: &str, audience: &str) -> Result<String, TokenError> {
        let claims = Claims {
            iss: issuer.to_owned(),
            aud: audience.to_owned(),
            sub: grant.subject.clone(),
            exp: grant.expires_at,
            iat: grant.issued_at,
            jti: grant.token_id.clone(),
            client_id: grant.client_id.clone(),
            scope: grant.scopes.to_string(),
            patient: grant.patient.clone(),
            encounter: grant.encounter.clone(),
            fhir_user: grant.fhir_user.clone(),
            cnf: grant.cnf.clone().map(|thumbprint| Confirmation { thumbprint }),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|error| TokenError::Signing(error.to_string()))
    }

    /// The grant of `token` if it is ours, for `audience`, and unexpired at `now` (seconds).
    pub fn verify(&self, token: &str, audience: &str, now: i64) -> Result<Grant, TokenError> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| TokenError::Invalid)?
            .claims;
        if claims.aud != audience {
            return Err(TokenError::WrongAudience);
        }
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        Ok(Grant {
            token_id: claims.jti,
            client_id: claims.client_id,
            subject: claims.sub,
            scopes: Scopes::parse(&claims.scope)?,
            patient: claims.patient,
            encounter: claims.encounter,
            fhir_user: claims.fhir_user,
            issued_at: claims.iat,
            expires_at: claims.exp,
            cnf: claims.cnf.map(|cnf| cnf.thumbprint),
        })
    }
}

/// Access tokens already verified, so that a client presenting the same token on every request
/// pays for the signature check and the claims' parsing once. Keyed by the whole token text and
/// its audience; expiry is still checked on every use against the grant. Bounded: when full,
/// it starts over.
#[derive(Debug, Default)]
pub struct VerifiedTokens {
    map: std::sync::RwLock<std::collections::HashMap<Box<str>, Verified>>,
}

/// A verified token's audience and grant.
type Verified = (Box<str>, std::sync::Arc<Grant>);

impl VerifiedTokens {
    /// Tokens remembered at most; a cleared cache only costs re-verification.
    const CAPACITY: usize = 10_000;

    /// The grant of `token` for `audience` at `now`, verified with `key` unless it already was.
    pub fn verify(
        &self,
        key: &TokenKey,
        token: &str,
        audience: &str,
        now: i64,
    ) -> Result<std::sync::Arc<Grant>, TokenError> {
        let cached = self.map.read().ok().and_then(|map| map.get(token).cloned());
        if let Some((verified_for, grant)) = cached {
            if &*verified_for != audience {
                return Err(TokenError::WrongAudience);
            }
            return if grant.expires_at <= now { Err(TokenError::Expired) } else { Ok(grant) };
        }
        let grant = std::sync::Arc::new(key.verify(token, audience, now)?);
        if let Ok(mut map) = self.map.write() {
            if map.len() >= Self::CAPACITY {
                map.clear();
            }
            map.insert(token.into(), (audience.into(), std::sync::Arc::clone(&grant)));
        }
        Ok(grant)
    }
}

/// A fresh random token id.
pub fn new_token_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "https://ignis.example/fhir";

    fn grant() -> Grant {
        Grant {
            token_id: new_token_id(),
            client_id: "app".into(),
            subject: "alice".into(),
            scopes: Scopes::parse("launch/patient patient/Observation.rs openid").unwrap(),
            patient: Some("85".into()),
            encounter: None,
            fhir_user: Some("Patient/85".into()),
            issued_at: 1_000,
            expires_at: 4_600,
            cnf: None,
        }
    }

    #[test]
    fn a_token_carries_its_grant() {
        let key = TokenKey::new(&[7; 32]);
        let issued = grant();
        let token = key.issue(&issued, "https://ignis.example", BASE).unwrap();
        assert_eq!(key.verify(&token, BASE, 2_000).unwrap(), issued);
    }

    #[test]
    fn each_check_refuses_with_its_own_reason() {
        let key = TokenKey::new(&[7; 32]);
        let token = key.issue(&grant(), "https://ignis.example", BASE).unwrap();
        assert_eq!(key.verify(&token, BASE, 4_600), Err(TokenError::Expired));
        assert_eq!(key.verify(&token, "https://ignis.example/sandbox/fhir", 2_000), Err(TokenError::WrongAudience));
        assert_eq!(TokenKey::new(&[8; 32]).verify(&token, BASE, 2_000), Err(TokenError::Invalid));
        let mut tampered = token.clone();
        tampered.insert(token.len() / 2, 'x');
        assert_eq!(key.verify(&tampered, BASE, 2_000), Err(TokenError::Invalid));
        assert_eq!(key.verify("not a token", BASE, 2_000), Err(TokenError::Invalid));
    }

    #[test]
    fn a_verified_token_is_remembered_with_its_audience_and_expiry() {
        let key = TokenKey::new(&[7; 32]);
        let token = key.issue(&grant(), "https://ignis.example", BASE).unwrap();
        let cache = VerifiedTokens::default();
        assert_eq!(*cache.verify(&key, &token, BASE, 2_000).unwrap(), grant_with(&token, &key));
        assert_eq!(*cache.verify(&key, &token, BASE, 2_001).unwrap(), grant_with(&token, &key));
        assert_eq!(cache.verify(&key, &token, "https://other.example/fhir", 2_000), Err(TokenError::WrongAudience));
        assert_eq!(cache.verify(&key, &token, BASE, 4_600), Err(TokenError::Expired));
        assert_eq!(cache.verify(&TokenKey::new(&[8; 32]), "forged", BASE, 2_000), Err(TokenError::Invalid));
    }

    fn grant_with(token: &str, key: &TokenKey) -> Grant {
        key.verify(token, BASE, 2_000).unwrap()
    }

    #[test]
    fn an_unsigned_token_is_refused() {
        let key = TokenKey::new(&[7; 32]);
        let token = key.issue(&grant(), "https://ignis.example", BASE).unwrap();
        let mut parts: Vec<&str> = token.split('.').collect();
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"; // {"alg":"none","typ":"JWT"}
        parts[0] = none;
        parts[2] = "";
        assert_eq!(key.verify(&parts.join("."), BASE, 2_000), Err(TokenError::Invalid));
    }
}
