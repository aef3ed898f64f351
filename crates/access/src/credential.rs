//! Device JWTs: the one live credential of a device. Signed by the platform with ES256 (a P-256
//! key made on first use, its private half sealed under the server's secret key in one platform
//! record), carrying the device, its account and environment, its scopes and, for a device with
//! a certificate, `cnf.x5t#S256` (RFC 8705 §3.1): the JWT is only good with that certificate.
//!
//! A device record names the `jti` of its live JWT: issuing a new one replaces it, revoking the
//! device clears it. Verification checks the signature once per token (then caches it) and the
//! device's record at most [`FRESH`] old, so a revocation written by any process sharing the
//! database is refused within a second, and at once by the process that wrote it.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use auth::scope::Scopes;
use auth::secret::SecretKey;
use auth::token::Grant;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ipnet::IpNet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use store::Environment;
use store::records::{self, Kind, Records};

use crate::device::{self, Device};
use crate::{AccessError, certification};

/// The `iss` of every Device JWT.
pub const ISSUER: &str = "urn:ignis:device-credentials";
/// How old a device's record may be when a JWT is checked against it.
pub const FRESH: Duration = Duration::from_secs(1);

/// The record holding the signing key.
const RECORD_ID: &str = "device-jwt";
/// What the private key is sealed for.
const PURPOSE: &str = "device-jwt-signing-key";

/// The signing key as stored.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
struct StoredKey {
    kid: String,
    /// The public point, uncompressed, base64url.
    public: String,
    /// The PKCS#8 private key, sealed under the secret key.
    sealed: String,
}

impl fmt::Debug for StoredKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_struct("StoredKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl Kind for StoredKey {
    const KIND: &'static str = "device-signing-key";
}

/// The confirmation claim (RFC 7800): the certificate the JWT is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    #[serde(rename = "x5t#S256")]
    pub thumbprint: String,
}

/// The claims of a Device JWT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceClaims {
    pub iss: String,
    /// The device id.
    pub sub: String,
    pub account: String,
    pub environment: Environment,
    pub scope: String,
    pub iat: i64,
    pub jti: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
}

/// A verified Device JWT: its claims, and the grant they make (the device's `system/` scopes;
/// a Device JWT lasts until it is replaced or revoked).
#[derive(Debug)]
pub struct DeviceGrant {
    pub claims: DeviceClaims,
    pub grant: Arc<Grant>,
}

impl DeviceGrant {
    fn new(claims: DeviceClaims) -> Result<DeviceGrant, CredentialError> {
        let scopes = Scopes::parse(&claims.scope).map_err(|error| CredentialError::Invalid(error.to_string()))?;
        let grant = Grant {
            token_id: claims.jti.clone(),
            client_id: claims.sub.clone(),
            subject: claims.sub.clone(),
            scopes,
            patient: None,
            encounter: None,
            fhir_user: None,
            issued_at: claims.iat,
            expires_at: i64::MAX,
            cnf: None,
        };
        Ok(DeviceGrant { claims, grant: Arc::new(grant) })
    }
}

/// Why a Device JWT is refused. Names the check, never the token.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("the Device JWT is not valid: {0}")]
    Invalid(String),
    #[error("the Device JWT was replaced by a newer one or revoked")]
    Superseded,
    #[error("the device is revoked")]
    Revoked,
    #[error("the Device JWT is for the {0} environment")]
    WrongEnvironment(&'static str),
    /// The credential is good, but the account may not use production now.
    #[error("{0}")]
    NotCertified(Arc<str>),
    /// The credential is good, but its account is suspended.
    #[error("{0}")]
    Suspended(Arc<str>),
    #[error("device credentials are unavailable: {0}")]
    Unavailable(#[from] store::Error),
}

/// A device's state as last read.
#[derive(Debug, Clone)]
struct Seen {
    read: Instant,
    credential: Option<String>,
    revoked: bool,
    /// For a production device: the network paths its account's certification allows, or why
    /// production is closed to it.
    production: Result<Arc<[IpNet]>, Arc<str>>,
    /// Why its account is suspended, when it is.
    suspended: Option<Arc<str>>,
    /// Its account's limit, requests per minute.
    limit_per_minute: Option<u32>,
}

/// A Device JWT that may be used now.
#[derive(Debug, Clone)]
pub struct Verified {
    pub grant: Arc<DeviceGrant>,
    /// The network paths calls must come from (`None` in the sandbox: anywhere).
    pub network: Option<Arc<[IpNet]>>,
    /// The requests per minute the device, and its account, may make (`None`: unlimited).
    pub limit_per_minute: Option<u32>,
}

/// The platform's device signing key, and what it has verified.
pub struct DeviceCredentials {
    kid: String,
    /// The encoded header every Device JWT of this key starts with, and its `.`: telling a
    /// Device JWT from an access token is then a prefix comparison, not a decode.
    prefix: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    verified: RwLock<HashMap<Box<str>, Arc<DeviceGrant>>>,
    devices: RwLock<HashMap<String, Seen>>,
}

impl fmt::Debug for DeviceCredentials {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_struct("DeviceCredentials").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl DeviceCredentials {
    /// Tokens whose signature check is remembered at most; a cleared cache costs re-checking.
    const CAPACITY: usize = 10_000;

    /// The stored key, or a first key made and stored now.
    pub async fn load_or_create(store: &dyn Records, secret: &SecretKey) -> Result<DeviceCredentials, AccessError> {
        let stored = match records::get::<StoredKey>(store, RECORD_ID).await? {
            Some(stored) => stored.value,
            None => match records::create(store, RECORD_ID, &generate(secret)?, "device-credentials").await {
                Ok(created) => created.value,
                // Another process made it at the same moment: use that one.
                Err(store::Error::RecordExists { .. }) => {
                    records::get::<StoredKey>(store, RECORD_ID)
                        .await?
                        .ok_or_else(|| AccessError::Key("the stored key vanished".to_owned()))?
                        .value
                }
                Err(error) => return Err(error.into()),
            },
        };
        let private = secret.open(&stored.sealed, PURPOSE)?;
        let public = URL_SAFE_NO_PAD.decode(&stored.public).map_err(|_| AccessError::Key("malformed".to_owned()))?;
        let mut validation = Validation::new(Algorithm::ES256);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims = ["iss", "sub"].map(str::to_owned).into_iter().collect();
        validation.set_issuer(&[ISSUER]);
        let encoding = EncodingKey::from_ec_der(&private);
        let sample = jsonwebtoken::encode(&device_header(&stored.kid), &serde_json::json!({}), &encoding)
            .map_err(|error| AccessError::Key(error.to_string()))?;
        let prefix = sample.split_inclusive('.').next().unwrap_or_default().to_owned();
        Ok(DeviceCredentials {
            kid: stored.kid,
            prefix,
            encoding,
            decoding: DecodingKey::from_ec_der(&public),
            validation,
            verified: RwLock::default(),
            devices: RwLock::default(),
        })
    }

    /// Whether `token` claims to be a Device JWT (signed with this platform's device key), as
    /// opposed to an access token: only then is it checked here.
    pub fn is_device_jwt(&self, token: &str) -> bool {
        token.starts_with(&self.prefix)
    }

    /// Issues the device's one live credential, replacing any earlier one. A production device
    /// needs a certificate and an account whose access request is approved.
    pub async fn issue(&self, store: &dyn Records, device_id: &str, by: &str) -> Result<String, AccessError> {
        let device = device::get(store, device_id).await?;
        check_issuable(store, &device.value).await?;
        let jti = uuid::Uuid::new_v4().simple().to_string();
        let updated = records::try_modify(store, device_id, by, |device: &mut Device| {
            if device.revoked_at.is_some() {
                return Err(AccessError::Revoked);
            }
            device.credential = Some(jti.clone());
            Ok(())
        })
        .await?;
        self.forget(device_id);
        let data = serde_json::json!({"device": device_id, "environment": updated.value.environment});
        crate::notification::emit(store, &updated.value.account, "device.credential-issued", data, by).await?;
        let claims = DeviceClaims {
            iss: ISSUER.to_owned(),
            sub: updated.id,
            account: updated.value.account,
            environment: updated.value.environment,
            scope: updated.value.scope,
            iat: crate::now().unix_timestamp(),
            jti,
            cnf: updated.value.certificate.map(|certificate| Confirmation { thumbprint: certificate.thumbprint }),
        };
        jsonwebtoken::encode(&device_header(&self.kid), &claims, &self.encoding)
            .map_err(|error| AccessError::Key(error.to_string()))
    }

    /// The grant of a Device JWT presented to `environment`, if its signature holds and it is
    /// its device's live credential. The certificate binding is the caller's to check
    /// ([`DeviceClaims::cnf`]), against the connection's certificate.
    pub async fn verify(
        &self,
        store: &dyn Records,
        token: &str,
        environment: Environment,
    ) -> Result<Verified, CredentialError> {
        let verified = self.verified(token)?;
        let claims = &verified.claims;
        if claims.environment != environment {
            return Err(CredentialError::WrongEnvironment(claims.environment.as_str()));
        }
        let seen = self.device_state(store, &claims.sub).await?;
        if seen.revoked {
            return Err(CredentialError::Revoked);
        }
        if let Some(reason) = &seen.suspended {
            return Err(CredentialError::Suspended(Arc::clone(reason)));
        }
        if seen.credential.as_deref() != Some(claims.jti.as_str()) {
            return Err(CredentialError::Superseded);
        }
        let network = match environment {
            Environment::Sandbox => None,
            Environment::Production => Some(seen.production.map_err(CredentialError::NotCertified)?),
        };
        Ok(Verified { grant: verified, network, limit_per_minute: seen.limit_per_minute })
    }

    /// Forgets what this process read of every device, after it changed an account (its
    /// suspension, its limit): the next request reads them again.
    pub fn forget_all(&self) {
        if let Ok(mut devices) = self.devices.write() {
            devices.clear();
        }
    }

    /// Forgets what this process read of a device, after it changed it.
    pub fn forget(&self, device_id: &str) {
        if let Ok(mut devices) = self.devices.write() {
            devices.remove(device_id);
        }
    }

    /// The token's grant if its signature and claims hold, checked once per token.
    fn verified(&self, token: &str) -> Result<Arc<DeviceGrant>, CredentialError> {
        if let Some(verified) = self.verified.read().ok().and_then(|map| map.get(token).cloned()) {
            return Ok(verified);
        }
        let claims = jsonwebtoken::decode::<DeviceClaims>(token, &self.decoding, &self.validation)
            .map_err(|error| CredentialError::Invalid(error.to_string()))?
            .claims;
        let verified = Arc::new(DeviceGrant::new(claims)?);
        if let Ok(mut map) = self.verified.write() {
            if map.len() >= Self::CAPACITY {
                map.clear();
            }
            map.insert(token.into(), Arc::clone(&verified));
        }
        Ok(verified)
    }

    /// The device's state, read again when what this process saw is older than [`FRESH`].
    async fn device_state(&self, store: &dyn Records, device_id: &str) -> Result<Seen, CredentialError> {
        let cached = self.devices.read().ok().and_then(|devices| devices.get(device_id).cloned());
        if let Some(seen) = cached.filter(|seen| seen.read.elapsed() < FRESH) {
            return Ok(seen);
        }
        let read = Instant::now();
        let device = records::get::<Device>(store, device_id).await?;
        let production = match &device {
            Some(device) if device.value.environment == Environment::Production => {
                production_status(store, &device.value.account).await?
            }
            _ => Err(Arc::from("not a production device")),
        };
        let account = match &device {
            Some(device) => records::get::<crate::Account>(store, &device.value.account).await?,
            None => None,
        };
        let account = account.as_ref().map(|account| &account.value);
        let seen = Seen {
            read,
            credential: device.as_ref().and_then(|device| device.value.credential.clone()),
            revoked: device.is_none_or(|device| device.value.revoked_at.is_some()),
            production,
            suspended: account
                .and_then(|account| account.suspended.as_ref())
                .map(|suspension| Arc::from(format!("the account is suspended: {}", suspension.reason))),
            limit_per_minute: account.and_then(|account| account.limit_per_minute),
        };
        if let Ok(mut devices) = self.devices.write() {
            if devices.len() >= Self::CAPACITY {
                devices.clear();
            }
            devices.insert(device_id.to_owned(), seen.clone());
        }
        Ok(seen)
    }
}

/// The network paths `account` may call production from now, or why it may not.
async fn production_status(
    store: &dyn Records,
    account: &str,
) -> Result<Result<Arc<[IpNet]>, Arc<str>>, CredentialError> {
    let paths = certification::production_paths(store, account).await.map_err(|error| match error {
        AccessError::Store(error) => CredentialError::Unavailable(error),
        other => CredentialError::NotCertified(other.to_string().into()),
    })?;
    Ok(paths.map(Arc::from).map_err(Arc::from))
}

/// The header of every Device JWT signed with the key `kid`.
fn device_header(kid: &str) -> Header {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    header
}

/// Whether `device` may get a credential now.
async fn check_issuable(store: &dyn Records, device: &Device) -> Result<(), AccessError> {
    if device.revoked_at.is_some() {
        return Err(AccessError::Revoked);
    }
    if device.environment == Environment::Production {
        if device.certificate.is_none() {
            return Err(AccessError::Invalid(
                "a production device needs a certificate before it gets a credential".to_owned(),
            ));
        }
        let account = crate::account::get(store, &device.account).await?;
        let status = certification::status(store, &device.account, &account.value, crate::now()).await?;
        status.production().map_err(AccessError::NotCertified)?;
    }
    Ok(())
}

/// A new P-256 key, its private half sealed.
fn generate(secret: &SecretKey) -> Result<StoredKey, AccessError> {
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
        .map_err(|_| AccessError::Key("cannot generate a P-256 key".to_owned()))?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
        .map_err(|_| AccessError::Key("cannot read the generated key".to_owned()))?;
    let public = pair.public_key().as_ref().to_vec();
    let kid = crate::sha256_base64url(&public);
    Ok(StoredKey { kid, public: URL_SAFE_NO_PAD.encode(public), sealed: secret.seal(pkcs8.as_ref(), PURPOSE)? })
}
