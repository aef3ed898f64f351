//! What the platform reads of a device's certificate: the thumbprint a Device JWT binds
//! (`x5t#S256`, RFC 8705 §3.1), the issuer (a certificate from another issuer is a material
//! change), the validity period and whether it is self-signed. Parsed with `x509-parser`.

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::{AccessError, rfc3339};

/// A device certificate as the device record keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCertificate {
    /// The certificate, PEM.
    pub pem: String,
    /// base64url SHA-256 of the DER: the JWT confirmation claim `x5t#S256`.
    pub thumbprint: String,
    /// The issuer's distinguished name (RFC 4514 text).
    pub issuer: String,
    pub subject: String,
    #[serde(with = "rfc3339")]
    pub not_after: OffsetDateTime,
    pub self_signed: bool,
}

impl DeviceCertificate {
    /// Reads the first certificate of `pem`.
    pub fn from_pem(pem: &str) -> Result<DeviceCertificate, AccessError> {
        let der = CertificateDer::from_pem_slice(pem.as_bytes())
            .map_err(|_| AccessError::Invalid("the certificate is not a PEM 'CERTIFICATE' block".to_owned()))?;
        DeviceCertificate::from_der(&der)
    }

    /// Reads a DER certificate.
    pub fn from_der(der: &CertificateDer<'_>) -> Result<DeviceCertificate, AccessError> {
        let (_, parsed) = X509Certificate::from_der(der.as_ref())
            .map_err(|error| AccessError::Invalid(format!("the certificate cannot be read: {error}")))?;
        let not_after = OffsetDateTime::from_unix_timestamp(parsed.validity().not_after.timestamp())
            .map_err(|_| AccessError::Invalid("the certificate's validity is out of range".to_owned()))?;
        let issuer = parsed.issuer().to_string();
        let subject = parsed.subject().to_string();
        Ok(DeviceCertificate {
            pem: pem_of(der.as_ref()),
            thumbprint: thumbprint(der.as_ref()),
            self_signed: issuer == subject,
            issuer,
            subject,
            not_after,
        })
    }
}

/// The `x5t#S256` of a DER certificate: base64url of its SHA-256.
pub fn thumbprint(der: &[u8]) -> String {
    crate::sha256_base64url(der)
}

/// The certificate's public key as a JWK with `kid` = its thumbprint, for the algorithms of
/// client assertions (an RSA key, or an EC key on P-384); `None` for other keys.
pub fn jwk(der: &[u8]) -> Option<serde_json::Value> {
    use base64::Engine;
    use x509_parser::public_key::PublicKey;
    let encode = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let (_, parsed) = X509Certificate::from_der(der).ok()?;
    let kid = thumbprint(der);
    match parsed.public_key().parsed().ok()? {
        // An uncompressed P-384 point: 0x04, then x and y of 48 bytes each.
        PublicKey::EC(point) if point.data().len() == 97 && point.data()[0] == 4 => {
            let (x, y) = point.data()[1..].split_at(48);
            Some(serde_json::json!({"kty": "EC", "crv": "P-384", "x": encode(x), "y": encode(y), "kid": kid}))
        }
        PublicKey::RSA(key) => {
            let trim = |bytes: &[u8]| {
                bytes.iter().position(|byte| *byte != 0).map_or(Vec::new(), |start| bytes[start..].to_vec())
            };
            Some(
                serde_json::json!({"kty": "RSA", "n": encode(&trim(key.modulus)), "e": encode(&trim(key.exponent)), "kid": kid}),
            )
        }
        _ => None,
    }
}

/// The PEM text of a DER certificate.
pub fn pem_of(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_self_signed_certificate() {
        let key = rcgen::KeyPair::generate().unwrap();
        let certificate =
            rcgen::CertificateParams::new(vec!["device-1".to_owned()]).unwrap().self_signed(&key).unwrap();
        let read = DeviceCertificate::from_pem(&certificate.pem()).unwrap();
        assert!(read.self_signed);
        assert_eq!(read.thumbprint, thumbprint(certificate.der()));
        assert_eq!(read.thumbprint.len(), 43);
        assert_eq!(DeviceCertificate::from_pem(&read.pem).unwrap(), read);
        assert!(DeviceCertificate::from_pem("not a certificate").is_err());
    }
}
