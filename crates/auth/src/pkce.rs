//! Proof Key for Code Exchange (RFC 7636), S256 only: SMART App Launch 2 requires it for every
//! client and forbids `plain`, whose challenge is the verifier itself.

use aws_lc_rs::{constant_time, digest};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Why a code verifier was refused; each names the check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PkceError {
    #[error("code_verifier is required (PKCE)")]
    Missing,
    #[error("code_verifier must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~")]
    Malformed,
    #[error("code_verifier does not match the code_challenge")]
    Mismatch,
}

/// The S256 challenge of `verifier`: base64url(SHA-256(verifier)).
pub fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()))
}

/// True when `challenge` has the form of an S256 challenge (43 base64url characters).
pub fn is_challenge(challenge: &str) -> bool {
    challenge.len() == 43 && challenge.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_'))
}

/// Checks `verifier` against the `challenge` the authorization request carried.
pub fn verify(challenge_sent: &str, verifier: Option<&str>) -> Result<(), PkceError> {
    let verifier = verifier.filter(|verifier| !verifier.is_empty()).ok_or(PkceError::Missing)?;
    let unreserved = |byte: u8| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~');
    if !(43..=128).contains(&verifier.len()) || !verifier.bytes().all(unreserved) {
        return Err(PkceError::Malformed);
    }
    constant_time::verify_slices_are_equal(challenge(verifier).as_bytes(), challenge_sent.as_bytes())
        .map_err(|_| PkceError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_7636_example_verifies() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let sent = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert_eq!(challenge(verifier), sent);
        assert!(is_challenge(sent));
        assert_eq!(verify(sent, Some(verifier)), Ok(()));
    }

    #[test]
    fn the_four_bad_verifiers_are_refused() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let sent = challenge(verifier);
        assert_eq!(verify(&sent, None), Err(PkceError::Missing));
        assert_eq!(verify(&sent, Some("")), Err(PkceError::Missing));
        assert_eq!(verify(&sent, Some(&"x".repeat(64))), Err(PkceError::Mismatch));
        // The challenge sent back as the verifier: `plain` misuse.
        assert_eq!(verify(&sent, Some(&sent)), Err(PkceError::Mismatch));
        assert_eq!(verify(&sent, Some("short")), Err(PkceError::Malformed));
        assert_eq!(verify(&sent, Some(&format!("{verifier} "))), Err(PkceError::Malformed));
        assert!(!is_challenge("plain-text"));
    }
}
