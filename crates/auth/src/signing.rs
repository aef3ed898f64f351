//! OpenID Connect signing keys: RSA 2048 keys that sign id_tokens with RS256, generated on first
//! use, kept in one platform record with each private key sealed under the server's secret
//! key, and rotatable. A rotated-out key stays in the published JWKS until the tokens it signed
//! have expired, so clients that cached it keep verifying them.
//!
//! The whole key set is one record: a rotation (or two processes creating the first key at
//! once) is one optimistic write, so there is never more than one active key.

use std::fmt;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use store::records::{self, Kind, RecordKey, Records};

use crate::secret::{SecretError, SecretKey};

/// The record holding the key set.
const RECORD_ID: &str = "oidc";
/// What the private keys are sealed for.
const PURPOSE: &str = "oidc-signing-key";

/// Why the keys cannot be loaded, made or used. Carries no key material.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("cannot generate an RSA key")]
    Generate,
    #[error("a stored signing key cannot be opened with this secret key: {0}")]
    Secret(#[from] SecretError),
    #[error("a stored signing key is malformed")]
    Malformed,
    #[error("cannot sign the id_token: {0}")]
    Sign(String),
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// The stored key set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct KeySet {
    keys: Vec<StoredKey>,
}

impl Kind for KeySet {
    const KIND: &'static str = "signing_keys";

    fn keys(&self) -> Vec<RecordKey> {
        Vec::new()
    }
}

/// One key as stored: its public half in clear, its private half sealed.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
struct StoredKey {
    kid: String,
    /// base64url modulus and exponent (the JWK's `n` and `e`).
    n: String,
    e: String,
    /// The PKCS#8 private key, sealed under the secret key.
    sealed: String,
    created: i64,
    /// When a rotated-out key leaves the JWKS; `None` while it is the active key.
    #[serde(default)]
    published_until: Option<i64>,
}

impl fmt::Debug for StoredKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("StoredKey")
            .field("kid", &self.kid)
            .field("created", &self.created)
            .field("published_until", &self.published_until)
            .finish_non_exhaustive()
    }
}

/// The claims of an id_token (OpenID Connect Core §2, plus SMART's `fhirUser`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdTokenClaims {
    pub iss: String,
    pub sub: String,
    /// The client id.
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    /// The user's FHIR resource as an absolute URL, when the `fhirUser` scope was granted.
    #[serde(rename = "fhirUser", default, skip_serializing_if = "Option::is_none")]
    pub fhir_user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
}

/// The loaded keys: the active one ready to sign, and the JWKS to publish.
pub struct SigningKeys {
    kid: String,
    encoding: EncodingKey,
    jwks: Value,
}

impl fmt::Debug for SigningKeys {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_struct("SigningKeys").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl SigningKeys {
    /// The stored keys, or a first key made and stored now.
    pub async fn load_or_create(
        store: &dyn Records,
        secret: &SecretKey,
        now: i64,
    ) -> Result<SigningKeys, SigningError> {
        if let Some(set) = records::get::<KeySet>(store, RECORD_ID).await? {
            return SigningKeys::from_set(&set.value, secret, now);
        }
        let set = KeySet { keys: vec![generate(secret, now)?] };
        match records::create(store, RECORD_ID, &set, "signing-keys").await {
            Ok(created) => SigningKeys::from_set(&created.value, secret, now),
            // Another process made the first key at the same moment: use that one.
            Err(store::Error::RecordExists { .. }) => match records::get::<KeySet>(store, RECORD_ID).await? {
                Some(set) => SigningKeys::from_set(&set.value, secret, now),
                None => Err(SigningError::Malformed),
            },
            Err(error) => Err(error.into()),
        }
    }

    /// Makes a new active key; the old one stays published for `keep_for` seconds (the longest
    /// lifetime of a token it signed), and keys past their time are dropped.
    pub async fn rotate(
        store: &dyn Records,
        secret: &SecretKey,
        now: i64,
        keep_for: i64,
    ) -> Result<SigningKeys, SigningError> {
        SigningKeys::load_or_create(store, secret, now).await?;
        let fresh = generate(secret, now)?;
        let set = records::modify::<KeySet>(store, RECORD_ID, "signing-keys", |set| {
            for key in &mut set.keys {
                key.published_until.get_or_insert(now + keep_for);
            }
            set.keys.retain(|key| key.published_until.is_none_or(|until| until > now));
            set.keys.push(fresh.clone());
        })
        .await?;
        SigningKeys::from_set(&set.value, secret, now)
    }

    fn from_set(set: &KeySet, secret: &SecretKey, now: i64) -> Result<SigningKeys, SigningError> {
        let active = set.keys.iter().rev().find(|key| key.published_until.is_none()).ok_or(SigningError::Malformed)?;
        let pkcs8 = secret.open(&active.sealed, PURPOSE)?;
        let encoding = EncodingKey::from_rsa_pem(pem(&pkcs8).as_bytes()).map_err(|_| SigningError::Malformed)?;
        let published: Vec<Value> = set
            .keys
            .iter()
            .filter(|key| key.published_until.is_none_or(|until| until > now))
            .map(|key| json!({"kty": "RSA", "alg": "RS256", "use": "sig", "kid": key.kid, "n": key.n, "e": key.e}))
            .collect();
        Ok(SigningKeys { kid: active.kid.clone(), encoding, jwks: json!({"keys": published}) })
    }

    /// The id of the key that signs.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public keys, as a JWK Set.
    pub fn jwks(&self) -> &Value {
        &self.jwks
    }

    /// The id_token for `claims`, signed RS256 with the active key (its `kid` in the header).
    pub fn sign(&self, claims: &IdTokenClaims) -> Result<String, SigningError> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|error| SigningError::Sign(error.to_string()))
    }
}

/// A new RSA 2048 key, its private half sealed.
fn generate(secret: &SecretKey, now: i64) -> Result<StoredKey, SigningError> {
    let pair = KeyPair::generate(KeySize::Rsa2048).map_err(|_| SigningError::Generate)?;
    let pkcs8 = pair.as_der().map_err(|_| SigningError::Generate)?;
    let public = aws_lc_rs::signature::KeyPair::public_key(&pair);
    let n = URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero());
    let e = URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero());
    Ok(StoredKey {
        kid: thumbprint(&n, &e),
        sealed: secret.seal(pkcs8.as_ref(), PURPOSE)?,
        n,
        e,
        created: now,
        published_until: None,
    })
}

/// The RFC 7638 JWK thumbprint of an RSA key: base64url(SHA-256) of its canonical JSON.
fn thumbprint(n: &str, e: &str) -> String {
    let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes()))
}

/// PKCS#8 DER as PEM, the form jsonwebtoken reads an RSA private key from.
fn pem(der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut text = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in body.as_bytes().chunks(64) {
        text.push_str(&String::from_utf8_lossy(line));
        text.push('\n');
    }
    text.push_str("-----END PRIVATE KEY-----\n");
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation, jwk::JwkSet};

    async fn open_store() -> (tempfile::TempDir, store::sqlite::SqliteStore) {
        let folder = tempfile::tempdir().unwrap();
        let store = store::sqlite::SqliteStore::open(&folder.path().join("keys.db")).unwrap();
        (folder, store)
    }

    fn claims(now: i64) -> IdTokenClaims {
        IdTokenClaims {
            iss: "https://ignis.example/fhir".into(),
            sub: "user-1".into(),
            aud: "app".into(),
            exp: now + 300,
            iat: now,
            fhir_user: Some("https://ignis.example/fhir/Patient/85".into()),
            nonce: Some("n-1".into()),
            auth_time: None,
        }
    }

    /// Verifies `token` against `jwks` as a client would: by `kid`, RS256 only.
    fn verify(jwks: &Value, token: &str, audience: &str) -> Result<IdTokenClaims, jsonwebtoken::errors::Error> {
        let set: JwkSet = serde_json::from_value(jwks.clone()).unwrap();
        let kid = jsonwebtoken::decode_header(token)?.kid.unwrap();
        let jwk = set.find(&kid).ok_or(jsonwebtoken::errors::ErrorKind::InvalidKeyFormat)?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[audience]);
        validation.set_issuer(&["https://ignis.example/fhir"]);
        Ok(jsonwebtoken::decode::<IdTokenClaims>(token, &DecodingKey::from_jwk(jwk)?, &validation)?.claims)
    }

    fn now() -> i64 {
        time::OffsetDateTime::now_utc().unix_timestamp()
    }

    #[tokio::test]
    async fn an_id_token_verifies_against_the_published_keys_only() {
        let (_folder, store) = open_store().await;
        let secret = SecretKey::generate().unwrap();
        let keys = SigningKeys::load_or_create(&store, &secret, now()).await.unwrap();
        let again = SigningKeys::load_or_create(&store, &secret, now()).await.unwrap();
        assert_eq!(keys.kid, again.kid, "loaded, not made again");
        let at = now();
        let token = keys.sign(&claims(at)).unwrap();
        assert_eq!(verify(keys.jwks(), &token, "app").unwrap(), claims(at));
        assert!(verify(keys.jwks(), &token, "another-app").is_err());
        let (_other_folder, other_store) = open_store().await;
        let other = SigningKeys::load_or_create(&other_store, &secret, now()).await.unwrap();
        assert!(verify(other.jwks(), &token, "app").is_err(), "another key set does not verify it");
        let expired = keys.sign(&IdTokenClaims { exp: now() - 3600, ..claims(now()) }).unwrap();
        assert!(verify(keys.jwks(), &expired, "app").is_err());
        let jwk = &keys.jwks()["keys"][0];
        assert_eq!((jwk["kty"].as_str(), jwk["alg"].as_str()), (Some("RSA"), Some("RS256")));
        assert!(jwk.get("d").is_none(), "public parts only");
    }

    #[tokio::test]
    async fn private_keys_are_sealed_at_rest() {
        let (_folder, store) = open_store().await;
        let secret = SecretKey::generate().unwrap();
        SigningKeys::load_or_create(&store, &secret, now()).await.unwrap();
        let record = store.record("signing_keys", RECORD_ID).await.unwrap().unwrap();
        let text = record.body.to_string();
        let set: KeySet = serde_json::from_str(&text).unwrap();
        let pkcs8 = secret.open(&set.keys[0].sealed, PURPOSE).unwrap();
        for clear in [STANDARD.encode(&pkcs8), URL_SAFE_NO_PAD.encode(&pkcs8), pem(&pkcs8)] {
            assert!(!text.contains(&clear[..64]), "the private key is in clear");
        }
        let other = SecretKey::generate().unwrap();
        assert!(matches!(SigningKeys::load_or_create(&store, &other, now()).await, Err(SigningError::Secret(_))));
    }

    #[tokio::test]
    async fn a_rotated_key_stays_published_until_its_tokens_expire() {
        let (_folder, store) = open_store().await;
        let secret = SecretKey::generate().unwrap();
        let start = now();
        let old = SigningKeys::load_or_create(&store, &secret, start).await.unwrap();
        let old_token = old.sign(&claims(start)).unwrap();
        let new = SigningKeys::rotate(&store, &secret, start, 3600).await.unwrap();
        assert_ne!(old.kid, new.kid);
        assert_eq!(new.jwks()["keys"].as_array().unwrap().len(), 2);
        assert!(verify(new.jwks(), &old_token, "app").is_ok(), "the old key still verifies");
        let signed = new.sign(&claims(start)).unwrap();
        assert_eq!(jsonwebtoken::decode_header(&signed).unwrap().kid.as_deref(), Some(new.kid.as_str()));
        let later = SigningKeys::load_or_create(&store, &secret, start + 3601).await.unwrap();
        assert_eq!(later.jwks()["keys"].as_array().unwrap().len(), 1, "dropped after an hour");
        assert_eq!(later.kid, new.kid);
    }

    #[tokio::test]
    async fn concurrent_first_starts_end_with_one_key() {
        let (_folder, store) = open_store().await;
        let secret = SecretKey::generate().unwrap();
        let (one, two) = tokio::join!(
            SigningKeys::load_or_create(&store, &secret, now()),
            SigningKeys::load_or_create(&store, &secret, now())
        );
        assert_eq!(one.unwrap().kid, two.unwrap().kid);
    }
}
