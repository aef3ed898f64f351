//! Secrets people or operators choose (passwords, client secrets), stored as Argon2id hashes
//! in PHC form; verification is constant-time in the argon2 crate.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// The longest secret accepted: Argon2 hashes any length, but an unbounded input is work an
/// attacker chooses.
pub const MAX_LEN: usize = 1024;

/// Why a secret cannot be hashed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("the secret is empty")]
    Empty,
    #[error("the secret is longer than {MAX_LEN} bytes")]
    TooLong,
    #[error("the secret cannot be hashed: {0}")]
    Hashing(String),
}

/// The Argon2id hash of `secret`, with a random salt, in PHC string form.
pub fn hash(secret: &str) -> Result<String, PasswordError> {
    if secret.is_empty() {
        return Err(PasswordError::Empty);
    }
    if secret.len() > MAX_LEN {
        return Err(PasswordError::TooLong);
    }
    // A salt need only be unique: 16 bytes from the OS random source (through uuid v4).
    let salt = SaltString::encode_b64(uuid::Uuid::new_v4().as_bytes())
        .map_err(|error| PasswordError::Hashing(error.to_string()))?;
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| PasswordError::Hashing(error.to_string()))
}

/// True when `secret` is the one `hash` was made from. A malformed hash verifies nothing.
pub fn verify(hash: &str, secret: &str) -> bool {
    if secret.len() > MAX_LEN {
        return false;
    }
    PasswordHash::new(hash)
        .map(|parsed| Argon2::default().verify_password(secret.as_bytes(), &parsed).is_ok())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_secret_only() {
        let stored = hash("correct horse").unwrap();
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        assert!(!stored.contains("correct horse"));
        assert!(verify(&stored, "correct horse"));
        assert!(!verify(&stored, "correct horsf"));
        assert!(!verify("not a hash", "correct horse"));
        assert_ne!(hash("correct horse").unwrap(), stored, "salted");
    }

    #[test]
    fn empty_and_oversized_secrets_are_refused() {
        assert_eq!(hash(""), Err(PasswordError::Empty));
        assert_eq!(hash(&"x".repeat(MAX_LEN + 1)), Err(PasswordError::TooLong));
    }
}
