//! Opaque secrets handed to browsers and clients: authorization codes, refresh tokens, launch
//! ids and session cookies. Each is 256 random bits in base64url; the database keeps only its
//! SHA-256 digest as the record id, so a copy of the database holds nothing a caller could
//! present.

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::secret::{SecretError, random_bytes};

/// A fresh secret: 32 random bytes, base64url without padding (43 characters).
pub fn new_secret() -> Result<String, SecretError> {
    let mut bytes = [0u8; 32];
    random_bytes(&mut bytes)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// The record id under which `secret` is kept: its SHA-256 in lowercase hex.
pub fn digest(secret: &str) -> String {
    let hash = digest::digest(&digest::SHA256, secret.as_bytes());
    hash.as_ref().iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_fresh_and_kept_as_digests() {
        let (one, two) = (new_secret().unwrap(), new_secret().unwrap());
        assert_eq!(one.len(), 43);
        assert_ne!(one, two);
        assert_eq!(digest(&one), digest(&one));
        assert_ne!(digest(&one), digest(&two));
        assert_eq!(digest("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
