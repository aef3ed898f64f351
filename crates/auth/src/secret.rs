//! The server's secret key, which encrypts secrets kept at rest (TOTP seeds, signing keys), so
//! that a copy of the database alone reveals none of them.
//!
//! The key file holds the 32 key bytes in standard base64 on one line (what `openssl rand
//! -base64 32` prints), so an operator can provide one. It must be readable by its owner only:
//! a key file others can read is refused rather than used. A missing file is generated and
//! published atomically, and never over a key another process published first, since values
//! sealed under one key cannot be opened with another.
//!
//! A sealed value is `base64url(version ‖ nonce ‖ AES-256-GCM(plaintext))`, with a random
//! 96-bit nonce and the version and purpose as associated data: a value sealed for one purpose
//! does not open as another.

use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

/// The key length in bytes (AES-256).
pub const KEY_LEN: usize = 32;

/// The first byte of every sealed value: which format follows.
const VERSION: u8 = 1;

/// The longest key file read: base64 of 32 bytes and some whitespace.
const MAX_FILE_LEN: u64 = 256;

/// Why the key cannot be loaded or a sealed value cannot be opened. No variant carries key
/// material or plaintext.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot {action} the secret key file {}: {source}", path.display())]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error(
        "the secret key file {} can be read by others (mode {mode:o}); allow its owner only: chmod 600 {}",
        path.display(),
        path.display()
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("the secret key file {} does not hold {KEY_LEN} bytes in base64: {reason}", path.display())]
    Malformed { path: PathBuf, reason: String },
    #[error("the random source failed")]
    Random,
    /// Tampered with, sealed under another key or for another purpose: deliberately one case.
    #[error("the sealed value cannot be opened (altered, or sealed under another key or for another purpose)")]
    Unsealable,
}

/// The server's secret key. Its `Debug` shows nothing of the key.
pub struct SecretKey {
    key: RandomizedNonceKey,
    /// HMAC-SHA-256 under the same bytes, for keys derived per purpose ([`SecretKey::derive`]).
    derivation: hmac::Key,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("SecretKey(redacted)")
    }
}

impl SecretKey {
    /// A key from its bytes.
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> Result<SecretKey, SecretError> {
        // Only a key of the wrong length is refused, and this one has the right length.
        let key = RandomizedNonceKey::new(&AES_256_GCM, bytes).map_err(|_| SecretError::Random)?;
        Ok(SecretKey { key, derivation: hmac::Key::new(hmac::HMAC_SHA256, bytes) })
    }

    /// A new random key, kept in memory only (tests, throw-away servers).
    pub fn generate() -> Result<SecretKey, SecretError> {
        SecretKey::from_bytes(&random_key()?)
    }

    /// The key in the file at `path`, or a new one written there (mode 0600) when the file does
    /// not exist. Refused: a file group or others may read, or one that does not hold 32 bytes
    /// in base64.
    pub fn load_or_create(path: &Path) -> Result<SecretKey, SecretError> {
        match std::fs::File::open(path) {
            Ok(file) => SecretKey::read(path, file),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => SecretKey::create(path),
            Err(source) => Err(SecretError::Io { action: "open", path: path.to_owned(), source }),
        }
    }

    /// Reads the key from the open `file`; permissions are checked on the open file itself,
    /// so the file checked is the file read.
    fn read(path: &Path, file: std::fs::File) -> Result<SecretKey, SecretError> {
        let io = |action| move |source| SecretError::Io { action, path: path.to_owned(), source };
        let metadata = file.metadata().map_err(io("inspect"))?;
        if !metadata.is_file() {
            return Err(SecretError::Malformed { path: path.to_owned(), reason: "not a regular file".into() });
        }
        check_owner_only(path, &metadata)?;
        let mut text = String::new();
        file.take(MAX_FILE_LEN).read_to_string(&mut text).map_err(io("read"))?;
        let malformed = |reason: String| SecretError::Malformed { path: path.to_owned(), reason };
        let bytes = STANDARD.decode(text.trim()).map_err(|error| malformed(error.to_string()))?;
        let bytes: [u8; KEY_LEN] =
            bytes.try_into().map_err(|bytes: Vec<u8>| malformed(format!("it holds {} bytes", bytes.len())))?;
        SecretKey::from_bytes(&bytes)
    }

    /// Generates a key into a temporary file (mode 0600) beside `path`, then links it at
    /// `path` only if nothing is there yet: of two processes starting at once, one key wins
    /// and both use it.
    fn create(path: &Path) -> Result<SecretKey, SecretError> {
        let io = |action| move |source| SecretError::Io { action, path: path.to_owned(), source };
        let folder = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let bytes = random_key()?;
        // tempfile creates the file with mode 0600 on Unix.
        let mut file = tempfile::NamedTempFile::new_in(folder).map_err(io("create"))?;
        let mut text = STANDARD.encode(bytes);
        text.push('\n');
        file.write_all(text.as_bytes()).map_err(io("write"))?;
        file.as_file().sync_all().map_err(io("write"))?;
        match file.persist_noclobber(path) {
            Ok(_) => SecretKey::from_bytes(&bytes),
            Err(error) if error.error.kind() == std::io::ErrorKind::AlreadyExists => {
                // Another process published its key first: use that one.
                let file = std::fs::File::open(path).map_err(io("open"))?;
                SecretKey::read(path, file)
            }
            Err(error) => Err(SecretError::Io { action: "create", path: path.to_owned(), source: error.error }),
        }
    }

    /// A 32-byte key for `purpose` (e.g. `"access-token"`), the same in every process that
    /// holds this secret key, and unrelated to the key of any other purpose (HMAC-SHA-256 of
    /// the purpose under the secret key, as HKDF-Expand does for one block).
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        let tag = hmac::sign(&self.derivation, format!("ignis derived key: {purpose}").as_bytes());
        let mut derived = [0u8; 32];
        derived.copy_from_slice(&tag.as_ref()[..32]);
        derived
    }

    /// `plaintext` encrypted and authenticated for `purpose` (e.g. `"totp"`), as base64url text.
    pub fn seal(&self, plaintext: &[u8], purpose: &str) -> Result<String, SecretError> {
        let mut in_out = plaintext.to_vec();
        let nonce = self
            .key
            .seal_in_place_append_tag(associated_data(purpose), &mut in_out)
            .map_err(|_| SecretError::Random)?;
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + in_out.len());
        sealed.push(VERSION);
        sealed.extend_from_slice(nonce.as_ref());
        sealed.extend_from_slice(&in_out);
        Ok(URL_SAFE_NO_PAD.encode(sealed))
    }

    /// The plaintext `sealed` was made from, if it was sealed under this key for `purpose` and
    /// not altered since.
    pub fn open(&self, sealed: &str, purpose: &str) -> Result<Vec<u8>, SecretError> {
        let bytes = URL_SAFE_NO_PAD.decode(sealed).map_err(|_| SecretError::Unsealable)?;
        let (version, rest) = bytes.split_first().ok_or(SecretError::Unsealable)?;
        if *version != VERSION || rest.len() < NONCE_LEN {
            return Err(SecretError::Unsealable);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SecretError::Unsealable)?;
        let mut in_out = ciphertext.to_vec();
        let plaintext = self
            .key
            .open_in_place(nonce, associated_data(purpose), &mut in_out)
            .map_err(|_| SecretError::Unsealable)?;
        Ok(plaintext.to_vec())
    }
}

/// The version byte and the purpose, authenticated with every sealed value.
fn associated_data(purpose: &str) -> Aad<Vec<u8>> {
    let mut data = Vec::with_capacity(1 + purpose.len());
    data.push(VERSION);
    data.extend_from_slice(purpose.as_bytes());
    Aad::from(data)
}

fn random_key() -> Result<[u8; KEY_LEN], SecretError> {
    let mut bytes = [0u8; KEY_LEN];
    random_bytes(&mut bytes)?;
    Ok(bytes)
}

/// Fills `bytes` from the operating system's random source (through aws-lc).
pub fn random_bytes(bytes: &mut [u8]) -> Result<(), SecretError> {
    aws_lc_rs::rand::fill(bytes).map_err(|_| SecretError::Random)
}

#[cfg(unix)]
fn check_owner_only(path: &Path, metadata: &std::fs::Metadata) -> Result<(), SecretError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SecretError::Permissions { path: path.to_owned(), mode });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_owner_only(_: &Path, _: &std::fs::Metadata) -> Result<(), SecretError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_for_its_purpose_only() {
        let key = SecretKey::generate().unwrap();
        let sealed = key.seal(b"seed bytes", "totp").unwrap();
        assert!(!sealed.contains("seed"), "{sealed}");
        assert_eq!(key.open(&sealed, "totp").unwrap(), b"seed bytes");
        assert_ne!(key.seal(b"seed bytes", "totp").unwrap(), sealed, "a fresh nonce each time");
        assert!(matches!(key.open(&sealed, "signing-key"), Err(SecretError::Unsealable)));
        assert!(matches!(key.open(&sealed, ""), Err(SecretError::Unsealable)));
        assert_eq!(key.open(&key.seal(b"", "totp").unwrap(), "totp").unwrap(), b"");
    }

    #[test]
    fn derived_keys_depend_on_the_key_and_the_purpose() {
        let bytes = [9u8; KEY_LEN];
        let key = SecretKey::from_bytes(&bytes).unwrap();
        let again = SecretKey::from_bytes(&bytes).unwrap();
        assert_eq!(key.derive("access-token"), again.derive("access-token"), "the same in every process");
        assert_ne!(key.derive("access-token"), key.derive("session"));
        assert_ne!(key.derive("access-token"), SecretKey::from_bytes(&[8; KEY_LEN]).unwrap().derive("access-token"));
        assert_ne!(key.derive("access-token"), bytes);
    }

    #[test]
    fn tampering_and_another_key_are_refused() {
        let key = SecretKey::generate().unwrap();
        let sealed = key.seal(b"seed bytes", "totp").unwrap();
        let bytes = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        for index in 0..bytes.len() {
            let mut altered = bytes.clone();
            altered[index] ^= 0x01;
            let altered = URL_SAFE_NO_PAD.encode(&altered);
            assert!(matches!(key.open(&altered, "totp"), Err(SecretError::Unsealable)), "byte {index}");
        }
        let truncated = URL_SAFE_NO_PAD.encode(&bytes[..bytes.len() - 1]);
        assert!(matches!(key.open(&truncated, "totp"), Err(SecretError::Unsealable)));
        for garbage in ["", "AQ", "not base64!", "AQAAAAAAAAAAAAAAAA"] {
            assert!(matches!(key.open(garbage, "totp"), Err(SecretError::Unsealable)), "{garbage}");
        }
        let other = SecretKey::generate().unwrap();
        assert!(matches!(other.open(&sealed, "totp"), Err(SecretError::Unsealable)));
        let message = other.open(&sealed, "totp").unwrap_err().to_string();
        assert!(message.contains("cannot be opened"), "{message}");
    }

    #[test]
    fn debug_shows_no_key_material() {
        let bytes = [7u8; KEY_LEN];
        let key = SecretKey::from_bytes(&bytes).unwrap();
        let shown = format!("{key:?}");
        assert_eq!(shown, "SecretKey(redacted)");
        assert!(!shown.contains(&STANDARD.encode(bytes)));
    }

    #[cfg(unix)]
    #[test]
    fn a_new_key_file_is_owner_only_and_loads_again() {
        use std::os::unix::fs::PermissionsExt;
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("secret.key");
        let key = SecretKey::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(STANDARD.decode(text.trim()).unwrap().len(), KEY_LEN);
        let sealed = key.seal(b"seed", "totp").unwrap();
        let again = SecretKey::load_or_create(&path).unwrap();
        assert_eq!(again.open(&sealed, "totp").unwrap(), b"seed", "the same key");
        let leftovers: Vec<_> = std::fs::read_dir(folder.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("secret.key");
        SecretKey::load_or_create(&path).unwrap();
        for mode in [0o640, 0o604, 0o644] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let error = SecretKey::load_or_create(&path).unwrap_err();
            assert!(matches!(error, SecretError::Permissions { .. }), "{mode:o}: {error}");
            let message = error.to_string();
            assert!(message.contains(&path.display().to_string()) && message.contains("others"), "{message}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(SecretKey::load_or_create(&path).is_ok(), "read-only for its owner is fine");
    }

    #[cfg(unix)]
    #[test]
    fn a_provided_key_file_is_read_and_a_malformed_one_refused() {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let folder = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = folder.path().join(name);
            let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).unwrap();
            file.write_all(text.as_bytes()).unwrap();
            path
        };
        let bytes = [42u8; KEY_LEN];
        let provided = write("provided.key", &format!("  {}\n", STANDARD.encode(bytes)));
        let sealed = SecretKey::from_bytes(&bytes).unwrap().seal(b"x", "p").unwrap();
        assert_eq!(SecretKey::load_or_create(&provided).unwrap().open(&sealed, "p").unwrap(), b"x");
        for (name, text) in [("short.key", STANDARD.encode([1u8; 16])), ("text.key", "not base64 at all".into())] {
            let path = write(name, &text);
            let error = SecretKey::load_or_create(&path).unwrap_err();
            assert!(matches!(error, SecretError::Malformed { .. }), "{name}: {error}");
            assert!(error.to_string().contains(name), "{error}");
        }
        let folder_path = folder.path().join("a-folder");
        std::fs::create_dir(&folder_path).unwrap();
        std::fs::set_permissions(&folder_path, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(SecretKey::load_or_create(&folder_path).is_err());
        let missing_folder = folder.path().join("missing").join("secret.key");
        let error = SecretKey::load_or_create(&missing_folder).unwrap_err();
        assert!(matches!(error, SecretError::Io { .. }), "{error}");
    }
}
