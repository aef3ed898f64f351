//! The TOTP second factor (RFC 6238 with the parameters every authenticator app assumes:
//! HMAC-SHA-1, 6 digits, 30-second steps), and its recovery codes.
//!
//! The seed is stored sealed under the server's [`SecretKey`] (purpose [`PURPOSE`]), never in
//! clear. A code is accepted for the current step or one step either side (clock drift), and
//! only for a step later than the last one accepted, so an overheard code cannot be replayed.
//!
//! Recovery codes are 80 random bits written as 16 base32 characters (`xxxx-xxxx-xxxx-xxxx`),
//! stored as SHA-256 digests. A fast hash suffices because, unlike a password, the code is
//! random: 2^80 guesses are out of reach, whereas ten Argon2 runs per attempt would make every
//! wrong code cost ten password checks.

use std::fmt;

use aws_lc_rs::digest::{SHA256, digest};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use totp_rs::{Algorithm, Builder, Secret, Totp};

use crate::secret::{SecretError, SecretKey, random_bytes};

/// What a sealed TOTP seed is sealed for.
pub const PURPOSE: &str = "totp";
/// The issuer authenticator apps show beside the account.
pub const ISSUER: &str = "Ignis";
/// Seconds per step.
pub const STEP_SECONDS: u64 = 30;
/// Digits of a code.
pub const DIGITS: u8 = 6;
/// The seed's length: 160 bits, as RFC 4226 recommends.
pub const SEED_LEN: usize = 20;
/// How many recovery codes an enrolment makes.
pub const RECOVERY_CODES: usize = 10;

/// The random characters of a recovery code (80 bits).
const RECOVERY_CODE_CHARS: usize = 16;
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// A user's enrolled second factor as stored: the seed sealed, the last step accepted and the
/// digests of the unused recovery codes.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotpState {
    /// The seed, sealed with [`SecretKey::seal`] for [`PURPOSE`].
    pub sealed_secret: String,
    /// The last step (Unix time / 30) a code was accepted for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_step: Option<u64>,
    /// Hex SHA-256 digests of the recovery codes not used yet.
    #[serde(default)]
    pub recovery_codes: Vec<String>,
}

impl fmt::Debug for TotpState {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("TotpState")
            .field("last_step", &self.last_step)
            .field("recovery_codes_left", &self.recovery_codes.len())
            .finish_non_exhaustive()
    }
}

/// What the user is shown once at enrolment, and nowhere kept in clear.
#[derive(Clone, PartialEq, Eq)]
pub struct Enrolment {
    /// `otpauth://totp/Ignis:{username}?secret=…&issuer=Ignis`, for a QR code or an app.
    pub uri: String,
    /// The seed in base32, for typing into an app.
    pub secret: String,
    /// The recovery codes, `xxxx-xxxx-xxxx-xxxx`, each usable once.
    pub recovery_codes: Vec<String>,
}

impl fmt::Debug for Enrolment {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("Enrolment(redacted)")
    }
}

/// Why a second factor was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum TotpError {
    #[error("the one-time code is wrong")]
    WrongCode,
    #[error("the one-time code was already used")]
    Replayed,
    #[error("the recovery code is wrong or was already used")]
    WrongRecoveryCode,
    #[error("the TOTP secret: {0}")]
    Secret(#[from] SecretError),
    #[error("the TOTP secret is not valid: {0}")]
    Invalid(String),
}

/// Which second factor was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// A code for this step.
    Code { step: u64 },
    /// A recovery code, now spent; `left` remain.
    RecoveryCode { left: usize },
}

/// Enrols `username`: a new random seed (sealed into the state) and recovery codes.
pub fn enrol(key: &SecretKey, username: &str) -> Result<(TotpState, Enrolment), TotpError> {
    let mut seed = [0u8; SEED_LEN];
    random_bytes(&mut seed)?;
    let secret = Secret::from(seed).to_base32();
    let mut recovery_codes = Vec::with_capacity(RECOVERY_CODES);
    for _ in 0..RECOVERY_CODES {
        recovery_codes.push(recovery_code()?);
    }
    let state = TotpState {
        sealed_secret: key.seal(&seed, PURPOSE)?,
        last_step: None,
        recovery_codes: recovery_codes.iter().map(|code| recovery_digest(code)).collect(),
    };
    // The username's characters are URI-safe (see `user::validate_username`); `@` is allowed in
    // a path.
    let uri = format!("otpauth://totp/{ISSUER}:{username}?secret={secret}&issuer={ISSUER}");
    Ok((state, Enrolment { uri, secret, recovery_codes }))
}

/// An opened seed, ready to check codes. Its `Debug` shows nothing of the seed.
pub struct Authenticator(Totp);

impl fmt::Debug for Authenticator {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("Authenticator(redacted)")
    }
}

impl Authenticator {
    /// The authenticator of a seed in clear.
    fn new(seed: Vec<u8>) -> Result<Authenticator, TotpError> {
        Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(DIGITS)
            .with_step_duration(STEP_SECONDS)
            // Steps are checked one by one below, to refuse those already used.
            .with_skew(0)
            .with_secret(seed)
            .build()
            .map(Authenticator)
            .map_err(|error| TotpError::Invalid(error.to_string()))
    }

    /// The authenticator of a base32 seed, as an app holds it (for tests and tools).
    pub fn from_base32(secret: &str) -> Result<Authenticator, TotpError> {
        let seed = Secret::try_from_base32(secret).map_err(|error| TotpError::Invalid(error.to_string()))?;
        Authenticator::new(seed.as_bytes().to_vec())
    }

    /// The code an app shows at `time`.
    pub fn code_at(&self, time: OffsetDateTime) -> String {
        self.0.generate(unix_seconds(time)).to_string()
    }

    /// The step `code` is valid for among `time`'s step and its neighbours, if any.
    fn step_of(&self, code: &str, time: OffsetDateTime, after: Option<u64>) -> Result<u64, TotpError> {
        let now = unix_seconds(time) / STEP_SECONDS;
        let mut replayed = false;
        for step in [now.saturating_sub(1), now, now + 1] {
            if self.0.check(code, step * STEP_SECONDS).is_some() {
                if after.is_none_or(|last| step > last) {
                    return Ok(step);
                }
                replayed = true;
            }
        }
        Err(if replayed { TotpError::Replayed } else { TotpError::WrongCode })
    }
}

impl TotpState {
    /// Opens the sealed seed.
    pub fn authenticator(&self, key: &SecretKey) -> Result<Authenticator, TotpError> {
        Authenticator::new(key.open(&self.sealed_secret, PURPOSE)?)
    }

    /// Accepts `code` at `time`: six digits for a step not used before (recorded as used), or
    /// an unused recovery code (removed). The state changes only when the code is accepted.
    pub fn verify(
        &mut self,
        authenticator: &Authenticator,
        code: &str,
        time: OffsetDateTime,
    ) -> Result<Accepted, TotpError> {
        let code: String = code.chars().filter(|c| !c.is_whitespace() && *c != '-').collect();
        if code.len() == usize::from(DIGITS) && code.bytes().all(|b| b.is_ascii_digit()) {
            let step = authenticator.step_of(&code, time, self.last_step)?;
            self.last_step = Some(step);
            return Ok(Accepted::Code { step });
        }
        let digest = recovery_digest(&code);
        // Every stored digest is compared, so the time taken does not say which one matched.
        let mut found = None;
        for (index, stored) in self.recovery_codes.iter().enumerate() {
            if aws_lc_rs::constant_time::verify_slices_are_equal(stored.as_bytes(), digest.as_bytes()).is_ok() {
                found = Some(index);
            }
        }
        match found {
            Some(index) => {
                self.recovery_codes.remove(index);
                Ok(Accepted::RecoveryCode { left: self.recovery_codes.len() })
            }
            None => Err(TotpError::WrongRecoveryCode),
        }
    }
}

/// Seconds since the Unix epoch; instants before it (never a real clock) count as the epoch.
fn unix_seconds(time: OffsetDateTime) -> u64 {
    u64::try_from(time.unix_timestamp()).unwrap_or(0)
}

/// A new recovery code, `xxxx-xxxx-xxxx-xxxx` in lowercase base32.
fn recovery_code() -> Result<String, TotpError> {
    let mut bytes = [0u8; RECOVERY_CODE_CHARS];
    random_bytes(&mut bytes)?;
    let mut code = String::with_capacity(RECOVERY_CODE_CHARS + 3);
    for (index, byte) in bytes.iter().enumerate() {
        if index > 0 && index % 4 == 0 {
            code.push('-');
        }
        // 32 divides 256, so each character is uniform: 5 bits each, 80 in all.
        code.push(char::from(BASE32[usize::from(byte % 32)]));
    }
    Ok(code)
}

/// The stored form of a recovery code: hex SHA-256 of its characters, lowercase, without
/// dashes or spaces (so it may be typed either way).
fn recovery_digest(code: &str) -> String {
    let normalized: String =
        code.chars().filter(|c| !c.is_whitespace() && *c != '-').map(|c| c.to_ascii_lowercase()).collect();
    digest(&SHA256, normalized.as_bytes()).as_ref().iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An instant in the middle of a step, so ±1 step stays within whole steps.
    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(seconds).unwrap()
    }

    fn enrolled() -> (SecretKey, TotpState, Enrolment, Authenticator) {
        let key = SecretKey::generate().unwrap();
        let (state, enrolment) = enrol(&key, "alice@example.org").unwrap();
        let app = Authenticator::from_base32(&enrolment.secret).unwrap();
        (key, state, enrolment, app)
    }

    const NOW: i64 = 1_800_000_015;

    #[test]
    fn enrolment_gives_an_otpauth_uri_a_sealed_seed_and_ten_codes() {
        let (key, state, enrolment, _) = enrolled();
        assert_eq!(enrolment.secret.len(), 32, "160 bits in base32");
        assert_eq!(
            enrolment.uri,
            format!("otpauth://totp/Ignis:alice@example.org?secret={}&issuer=Ignis", enrolment.secret)
        );
        assert_eq!(key.open(&state.sealed_secret, PURPOSE).unwrap().len(), SEED_LEN);
        let stored = serde_json::to_string(&state).unwrap();
        assert!(!stored.contains(&enrolment.secret), "{stored}");
        assert_eq!(enrolment.recovery_codes.len(), RECOVERY_CODES);
        for code in &enrolment.recovery_codes {
            assert_eq!(code.len(), 19, "{code}");
            assert!(code.split('-').all(|group| group.len() == 4 && group.bytes().all(|b| BASE32.contains(&b))));
            assert!(!stored.contains(code.as_str()));
        }
        let shown = format!("{enrolment:?} {state:?}");
        assert!(!shown.contains(&enrolment.secret) && !shown.contains(&state.sealed_secret), "{shown}");
    }

    #[test]
    fn codes_of_the_current_step_and_its_neighbours_are_accepted() {
        for offset in [-1i64, 0, 1] {
            let (key, mut state, _, app) = enrolled();
            let code = app.code_at(at(NOW + offset * 30));
            let step = (NOW as u64) / STEP_SECONDS;
            let accepted = state.verify(&state.authenticator(&key).unwrap(), &code, at(NOW)).unwrap();
            assert_eq!(accepted, Accepted::Code { step: step.wrapping_add_signed(offset) }, "offset {offset}");
            assert_eq!(state.last_step, Some(step.wrapping_add_signed(offset)));
        }
    }

    #[test]
    fn codes_two_steps_away_are_refused() {
        let (key, mut state, _, app) = enrolled();
        let authenticator = state.authenticator(&key).unwrap();
        for offset in [-2i64, 2] {
            let code = app.code_at(at(NOW + offset * 30));
            assert!(matches!(state.verify(&authenticator, &code, at(NOW)), Err(TotpError::WrongCode)), "{offset}");
        }
        assert!(matches!(state.verify(&authenticator, "000000x", at(NOW)), Err(TotpError::WrongRecoveryCode)));
        assert_eq!(state.last_step, None, "nothing accepted, nothing recorded");
    }

    #[test]
    fn a_code_is_accepted_once_and_earlier_steps_after_it_never() {
        let (key, mut state, _, app) = enrolled();
        let authenticator = state.authenticator(&key).unwrap();
        let code = app.code_at(at(NOW));
        assert!(state.verify(&authenticator, &code, at(NOW)).is_ok());
        assert!(matches!(state.verify(&authenticator, &code, at(NOW)), Err(TotpError::Replayed)));
        assert!(matches!(state.verify(&authenticator, &code, at(NOW + 30)), Err(TotpError::Replayed)));
        let previous = app.code_at(at(NOW - 30));
        assert!(state.verify(&authenticator, &previous, at(NOW)).is_err(), "older than the last accepted");
        let next = app.code_at(at(NOW + 30));
        assert!(state.verify(&authenticator, &next, at(NOW + 30)).is_ok(), "the next step still works");
    }

    #[test]
    fn a_recovery_code_works_once_typed_any_way() {
        let (key, mut state, enrolment, _) = enrolled();
        let authenticator = state.authenticator(&key).unwrap();
        let code = &enrolment.recovery_codes[3];
        let typed = code.to_uppercase().replace('-', " ");
        assert_eq!(state.verify(&authenticator, &typed, at(NOW)).unwrap(), Accepted::RecoveryCode { left: 9 });
        assert!(matches!(state.verify(&authenticator, code, at(NOW)), Err(TotpError::WrongRecoveryCode)));
        assert_eq!(
            state.verify(&authenticator, &enrolment.recovery_codes[0], at(NOW)).unwrap(),
            Accepted::RecoveryCode { left: 8 }
        );
    }

    #[test]
    fn the_seed_opens_only_under_its_key() {
        let (_, state, _, _) = enrolled();
        let other = SecretKey::generate().unwrap();
        assert!(matches!(state.authenticator(&other), Err(TotpError::Secret(SecretError::Unsealable))));
    }

    #[test]
    fn rfc_6238_test_vector() {
        // RFC 6238 appendix B, SHA-1 seed "12345678901234567890", T = 59 s → 94287082 (8 digits);
        // the 6-digit code is its last six digits.
        let app = Authenticator::new(b"12345678901234567890".to_vec()).unwrap();
        assert_eq!(app.code_at(at(59)), "287082");
        assert_eq!(app.code_at(at(1_111_111_109)), "081804");
    }
}
