//! Keys of the `/api/`: a user signs in (password, and the second factor when enrolled) and
//! gets an opaque key that stands for them until it expires. Kept, like other opaque values,
//! only as its digest.

use serde::{Deserialize, Serialize};
use store::records::{self, Kind, Records, Versioned};

use crate::opaque;
use crate::secret::SecretError;
use crate::user::User;

/// How long a key lasts, in seconds.
pub const LIFETIME: i64 = 8 * 60 * 60;

/// A key as stored (under its digest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    /// The user's record id.
    pub user: String,
    /// Seconds since the Unix epoch.
    pub expires: i64,
}

impl Kind for ApiKey {
    const KIND: &'static str = "api-key";
}

/// A new key for the user at record id `user`; returns it and when it expires.
pub async fn issue(store: &dyn Records, user: &str, now: i64) -> Result<(String, i64), IssueError> {
    let value = opaque::new_secret()?;
    let key = ApiKey { user: user.to_owned(), expires: now + LIFETIME };
    records::create(store, &opaque::digest(&value), &key, "api").await?;
    Ok((value, key.expires))
}

/// The user a live key stands for.
pub async fn user_of(store: &dyn Records, value: &str, now: i64) -> Result<Option<Versioned<User>>, store::Error> {
    let Some(key) = records::get::<ApiKey>(store, &opaque::digest(value)).await? else { return Ok(None) };
    if key.value.expires <= now {
        return Ok(None);
    }
    records::get::<User>(store, &key.value.user).await
}

/// Why a key could not be made.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Store(#[from] store::Error),
}
