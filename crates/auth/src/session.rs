//! Browser sessions of signed-in users: an opaque cookie, kept as a record under its digest,
//! that ends after a configurable idle time (ONC 170.315(d)(5) automatic access time-out) or
//! when the user signs out.

use serde::{Deserialize, Serialize};
use store::records::{self, Kind, RecordKey, Records, Versioned};

use crate::authorization::FlowError;
use crate::opaque;
use crate::user::User;

/// A session as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// The user's record id.
    pub user: String,
    /// When the user signed in (seconds since the epoch).
    pub started: i64,
    /// The last request made with the session.
    pub last_seen: i64,
}

impl Kind for Session {
    const KIND: &'static str = "session";

    fn keys(&self) -> Vec<RecordKey> {
        vec![RecordKey::shared("user", &self.user)]
    }
}

/// Starts a session for `user`; returns the cookie value.
pub async fn start(store: &dyn Records, user: &str, now: i64) -> Result<String, FlowError> {
    let cookie = opaque::new_secret()?;
    let session = Session { user: user.to_owned(), started: now, last_seen: now };
    records::create(store, &opaque::digest(&cookie), &session, "sign-in").await?;
    Ok(cookie)
}

/// The session behind `cookie` and its user, when it has not been idle for `idle` seconds or
/// more; marks it seen at `now`. An idle session is ended.
pub async fn resume(
    store: &dyn Records,
    cookie: &str,
    idle: i64,
    now: i64,
) -> Result<Option<(Session, Versioned<User>)>, FlowError> {
    let id = opaque::digest(cookie);
    let Some(found) = records::get::<Session>(store, &id).await? else { return Ok(None) };
    if found.value.last_seen + idle <= now {
        end_record(store, &id, found.version).await?;
        return Ok(None);
    }
    let Some(user) = records::get::<User>(store, &found.value.user).await? else { return Ok(None) };
    let mut session = found.value;
    // A session seen within the last minute is not rewritten: each page would otherwise write.
    if now - session.last_seen >= 60 {
        session = records::modify::<Session>(store, &id, "session", |session| session.last_seen = now).await?.value;
    }
    Ok(Some((session, user)))
}

/// Ends the session behind `cookie` (sign-out).
pub async fn end(store: &dyn Records, cookie: &str) -> Result<(), FlowError> {
    let id = opaque::digest(cookie);
    match records::get::<Session>(store, &id).await? {
        Some(found) => end_record(store, &id, found.version).await,
        None => Ok(()),
    }
}

async fn end_record(store: &dyn Records, id: &str, version: u64) -> Result<(), FlowError> {
    match records::delete::<Session>(store, id, version, "session").await {
        Ok(()) | Err(store::Error::RecordConflict { .. } | store::Error::RecordNotFound { .. }) => Ok(()),
        Err(error) => Err(error.into()),
    }
}
