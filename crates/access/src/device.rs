//! Devices: the systems of an account that call the FHIR API, each in one environment, with
//! the certificate it presents over mutual TLS and its one live credential (a Device JWT,
//! [`crate::credential`]).

use serde::{Deserialize, Serialize};
use store::Environment;
use store::records::{self, Kind, RecordKey, Records, Versioned};
use time::OffsetDateTime;

use crate::certificate::DeviceCertificate;
use crate::{AccessError, certification, rfc3339};

/// The scopes a device's credential carries unless it is configured otherwise.
pub const DEFAULT_SCOPE: &str = "system/*.rs";

/// A device as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub account: String,
    pub name: String,
    #[serde(default)]
    pub purpose: String,
    pub environment: Environment,
    /// SMART scopes its credential grants (`system/…`).
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<DeviceCertificate>,
    /// How the certificate came to be: presented by the account, signed from its CSR by the
    /// platform CA, or (not recommended) made whole by the platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_source: Option<CertificateSource>,
    /// The `jti` of the one live Device JWT; any other is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

/// Where a device's certificate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CertificateSource {
    Presented,
    SignedCsr,
    PlatformGenerated,
}

impl Kind for Device {
    const KIND: &'static str = "device";

    fn keys(&self) -> Vec<RecordKey> {
        let mut keys = vec![RecordKey::shared("account", &self.account)];
        if let Some(certificate) = &self.certificate {
            keys.push(RecordKey::unique("thumbprint", &certificate.thumbprint));
        }
        keys
    }
}

/// A device to configure.
#[derive(Debug, Clone)]
pub struct NewDevice {
    pub account: String,
    pub name: String,
    pub purpose: String,
    pub environment: Environment,
    pub scope: Option<String>,
    pub certificate: Option<(DeviceCertificate, CertificateSource)>,
}

/// Configures a device of an existing account, by `by`.
pub async fn create(store: &dyn Records, new: NewDevice, by: &str) -> Result<Versioned<Device>, AccessError> {
    crate::account::get(store, &new.account).await?;
    let name = new.name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(AccessError::Invalid("a device name must be 1 to 200 bytes".to_owned()));
    }
    let scope = new.scope.unwrap_or_else(|| DEFAULT_SCOPE.to_owned());
    check_scope(&scope)?;
    let (certificate, certificate_source) = new.certificate.unzip();
    let device = Device {
        account: new.account,
        name: name.to_owned(),
        purpose: new.purpose.trim().to_owned(),
        environment: new.environment,
        scope,
        certificate,
        certificate_source,
        credential: None,
        revoked_at: None,
    };
    let changes = material_changes(store, &device, None).await?;
    let created = match records::create(store, &crate::new_id(), &device, by).await {
        Err(store::Error::RecordKeyTaken { name, .. }) if name == "thumbprint" => {
            return Err(AccessError::Invalid("another device already presents this certificate".to_owned()));
        }
        result => result?,
    };
    for change in changes {
        certification::material_change(store, &created.value.account, change, by).await?;
    }
    Ok(created)
}

/// Replaces the certificate of the device at `id` (a rotation), by `by`: its Device JWT, bound
/// to the old certificate, is revoked with it.
pub async fn rotate_certificate(
    store: &dyn Records,
    id: &str,
    certificate: DeviceCertificate,
    source: CertificateSource,
    by: &str,
) -> Result<Versioned<Device>, AccessError> {
    let current = get(store, id).await?;
    let mut rotated = current.value.clone();
    rotated.certificate = Some(certificate.clone());
    let changes = material_changes(store, &rotated, Some(id)).await?;
    let updated = records::try_modify(store, id, by, |device: &mut Device| {
        if device.revoked_at.is_some() {
            return Err(AccessError::Revoked);
        }
        device.certificate = Some(certificate.clone());
        device.certificate_source = Some(source);
        device.credential = None;
        Ok(())
    })
    .await
    .map_err(|error| match error {
        AccessError::Store(store::Error::RecordKeyTaken { .. }) => {
            AccessError::Invalid("another device already presents this certificate".to_owned())
        }
        other => other,
    })?;
    for change in changes {
        certification::material_change(store, &updated.value.account, change, by).await?;
    }
    let data = serde_json::json!({"device": id, "thumbprint": updated.value.certificate.as_ref().map(|certificate| &certificate.thumbprint)});
    crate::notification::emit(store, &updated.value.account, "device.certificate-rotated", data, by).await?;
    Ok(updated)
}

/// What configuring `device` (replacing the device `replacing`, if any) changes in the
/// account's certified production integration: a new device, a certificate from an issuer none
/// of its other production devices uses, scopes none of them has.
async fn material_changes(
    store: &dyn Records,
    device: &Device,
    replacing: Option<&str>,
) -> Result<Vec<String>, AccessError> {
    if device.environment != Environment::Production {
        return Ok(Vec::new());
    }
    let others: Vec<Device> = of_account(store, &device.account)
        .await?
        .into_iter()
        .filter(|other| Some(other.id.as_str()) != replacing && other.value.environment == Environment::Production)
        .filter(|other| other.value.revoked_at.is_none())
        .map(|other| other.value)
        .collect();
    let mut changes = Vec::new();
    if replacing.is_none() {
        changes.push(format!("a new production device '{}'", device.name));
    }
    if let Some(certificate) = &device.certificate
        && !others
            .iter()
            .any(|other| other.certificate.as_ref().is_some_and(|known| known.issuer == certificate.issuer))
    {
        changes.push(format!("a certificate from a new issuer '{}'", certificate.issuer));
    }
    let known: Vec<&str> = others.iter().flat_map(|other| other.scope.split_whitespace()).collect();
    let new: Vec<&str> = device.scope.split_whitespace().filter(|scope| !known.contains(scope)).collect();
    if replacing.is_none() && !new.is_empty() && !others.is_empty() {
        changes.push(format!("new scopes '{}'", new.join(" ")));
    }
    Ok(changes)
}

/// A device's credential may only carry `system/` scopes.
fn check_scope(scope: &str) -> Result<(), AccessError> {
    auth::scope::Scopes::parse(scope).map_err(|error| AccessError::Invalid(format!("the device's scopes: {error}")))?;
    if scope.split_whitespace().next().is_none() || scope.split_whitespace().any(|one| !one.starts_with("system/")) {
        return Err(AccessError::Invalid(format!("a device's scopes must be system/ scopes, not '{scope}'")));
    }
    Ok(())
}

/// The device at `id`.
pub async fn get(store: &dyn Records, id: &str) -> Result<Versioned<Device>, AccessError> {
    records::get::<Device>(store, id).await?.ok_or_else(|| AccessError::NotFound { what: "device", id: id.to_owned() })
}

/// The devices of `account`.
pub async fn of_account(store: &dyn Records, account: &str) -> Result<Vec<Versioned<Device>>, AccessError> {
    Ok(records::find::<Device>(store, "account", account).await?)
}

/// Revokes the device and with it its credential, by `by`.
pub async fn revoke(store: &dyn Records, id: &str, by: &str) -> Result<Versioned<Device>, AccessError> {
    let now = crate::now();
    let revoked = records::modify::<Device>(store, id, by, |device| {
        device.credential = None;
        device.revoked_at.get_or_insert(now);
    })
    .await?;
    crate::notification::emit(store, &revoked.value.account, "device.revoked", serde_json::json!({"device": id}), by)
        .await?;
    Ok(revoked)
}
