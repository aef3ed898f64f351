//! The platform's client-auth CA. Public CAs are dropping the client-auth usage from their
//! certificates (2026), so the platform runs its own, trusted for production: it signs a
//! device's certificate signing request, and the device's private key never leaves the device.
//! The not-recommended path, where the platform makes the key too and hands it over once,
//! exists only behind an explicit flag and is recorded on the device as such.
//!
//! The CA is one platform record: its certificate, and its private key sealed under the
//! server's secret key. Certificates are made with `rcgen`.

use std::fmt;

use auth::secret::SecretKey;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use serde::{Deserialize, Serialize};
use store::records::{self, Kind, Records};
use time::Duration;

use crate::AccessError;
use crate::certificate::DeviceCertificate;
use crate::device::CertificateSource;

/// The record holding the CA.
const RECORD_ID: &str = "platform";
/// What the CA's private key is sealed for.
const PURPOSE: &str = "client-auth-ca-key";
/// How long the CA's own certificate lasts.
const CA_LIFETIME: Duration = Duration::days(10 * 365);
/// How long a device certificate it signs lasts.
pub const DEVICE_LIFETIME: Duration = Duration::days(365);

/// The CA as stored.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
struct StoredCa {
    certificate: String,
    /// PKCS#8, sealed.
    sealed_key: String,
}

impl fmt::Debug for StoredCa {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_struct("StoredCa").finish_non_exhaustive()
    }
}

impl Kind for StoredCa {
    const KIND: &'static str = "client-ca";
}

fn failed(what: &str, error: impl fmt::Display) -> AccessError {
    AccessError::Key(format!("{what}: {error}"))
}

/// Creates the platform CA, or returns the one that exists; its certificate, PEM.
pub async fn init(store: &dyn Records, secret: &SecretKey, by: &str) -> Result<String, AccessError> {
    if let Some(existing) = certificate(store).await? {
        return Ok(existing);
    }
    let key = KeyPair::generate().map_err(|error| failed("cannot generate the CA key", error))?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "Ignis");
    name.push(DnType::CommonName, "Ignis platform client-auth CA");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + CA_LIFETIME;
    params.serial_number = Some(serial()?);
    let signed = params.self_signed(&key).map_err(|error| failed("cannot sign the CA certificate", error))?;
    let stored = StoredCa { certificate: signed.pem(), sealed_key: secret.seal(key.serialized_der(), PURPOSE)? };
    match records::create(store, RECORD_ID, &stored, by).await {
        Ok(created) => Ok(created.value.certificate),
        // Another process made it at the same moment: that one is the CA.
        Err(store::Error::RecordExists { .. }) => {
            certificate(store).await?.ok_or_else(|| AccessError::Key("the CA vanished".to_owned()))
        }
        Err(error) => Err(error.into()),
    }
}

/// The CA's certificate, PEM, if it was made.
pub async fn certificate(store: &dyn Records) -> Result<Option<String>, AccessError> {
    Ok(records::get::<StoredCa>(store, RECORD_ID).await?.map(|stored| stored.value.certificate))
}

/// Signs a device's certificate signing request (PEM) as a client-auth certificate.
pub async fn sign_csr(store: &dyn Records, secret: &SecretKey, csr: &str) -> Result<DeviceCertificate, AccessError> {
    let request = CertificateSigningRequestParams::from_pem(csr)
        .map_err(|error| AccessError::Invalid(format!("the certificate signing request cannot be used: {error}")))?;
    let params = device_params(request.params)?;
    sign(store, secret, |issuer| {
        CertificateSigningRequestParams { params, public_key: request.public_key }.signed_by(issuer)
    })
    .await
}

/// What a device's certificate is given as.
#[derive(Debug, Clone, Copy)]
pub enum Given<'a> {
    /// The PEM certificate it will present.
    Certificate(&'a str),
    /// Its PEM certificate signing request, for the platform CA to sign.
    Csr(&'a str),
}

impl<'a> Given<'a> {
    /// The one of `certificate` and `csr` given; an error when both are.
    pub fn of(certificate: Option<&'a str>, csr: Option<&'a str>) -> Result<Option<Given<'a>>, AccessError> {
        match (certificate, csr) {
            (Some(_), Some(_)) => Err(AccessError::Invalid("give either a certificate or a CSR, not both".to_owned())),
            (Some(pem), None) => Ok(Some(Given::Certificate(pem))),
            (None, Some(csr)) => Ok(Some(Given::Csr(csr))),
            (None, None) => Ok(None),
        }
    }
}

/// The certificate a device is configured with, read or signed, and where it came from.
pub async fn device_certificate(
    store: &dyn Records,
    secret: &SecretKey,
    given: Given<'_>,
) -> Result<(DeviceCertificate, CertificateSource), AccessError> {
    match given {
        Given::Certificate(pem) => Ok((DeviceCertificate::from_pem(pem)?, CertificateSource::Presented)),
        Given::Csr(csr) => Ok((sign_csr(store, secret, csr).await?, CertificateSource::SignedCsr)),
    }
}

/// Makes a key and a client-auth certificate for a device named `name`: the not-recommended
/// path, where the private key (returned, PEM) exists outside the device.
pub async fn generate_for_device(
    store: &dyn Records,
    secret: &SecretKey,
    name: &str,
) -> Result<(DeviceCertificate, String), AccessError> {
    let key = KeyPair::generate().map_err(|error| failed("cannot generate a device key", error))?;
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    let params = device_params(params)?;
    let certificate = sign(store, secret, |issuer| params.signed_by(&key, issuer)).await?;
    Ok((certificate, key.serialize_pem()))
}

/// A device certificate's parameters: what the CSR asked for as to names, and the platform's
/// own validity, serial and usages whatever it asked.
fn device_params(mut params: CertificateParams) -> Result<CertificateParams, AccessError> {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + DEVICE_LIFETIME;
    params.serial_number = Some(serial()?);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

/// Signs with the CA what `make` builds.
async fn sign(
    store: &dyn Records,
    secret: &SecretKey,
    make: impl FnOnce(&Issuer<'_, KeyPair>) -> Result<rcgen::Certificate, rcgen::Error>,
) -> Result<DeviceCertificate, AccessError> {
    let stored = records::get::<StoredCa>(store, RECORD_ID)
        .await?
        .ok_or_else(|| AccessError::Invalid("the platform CA does not exist yet (ignis admin ca init)".to_owned()))?
        .value;
    let key = KeyPair::try_from(secret.open(&stored.sealed_key, PURPOSE)?)
        .map_err(|error| failed("the stored CA key", error))?;
    let issuer = Issuer::from_ca_cert_pem(&stored.certificate, key)
        .map_err(|error| failed("the stored CA certificate", error))?;
    let certificate = make(&issuer).map_err(|error| failed("cannot sign the device certificate", error))?;
    DeviceCertificate::from_der(certificate.der())
}

/// A random positive serial number of 16 bytes.
fn serial() -> Result<SerialNumber, AccessError> {
    let mut bytes = [0u8; 16];
    auth::secret::random_bytes(&mut bytes)?;
    bytes[0] &= 0x7f;
    Ok(SerialNumber::from_slice(&bytes))
}
