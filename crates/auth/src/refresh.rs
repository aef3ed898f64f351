//! Refresh tokens and revocation.
//!
//! A refresh token is an opaque value kept as a record under its digest, holding the user's
//! [`Approval`] and the ids of the access tokens issued from it, so that revoking it (RFC 7009)
//! also revokes them. It lives [`LIFETIME`] and each use renews it for as long again, so an app
//! with `offline_access` keeps working without the user signing in again (ONC attestations
//! 11.05 and 11.16: valid at least three months, renewed without re-authentication).
//!
//! Access tokens are self-contained; a revoked one is listed by its id in the store's expiring
//! list until it would have expired anyway.

use serde::{Deserialize, Serialize};
use store::Store;
use store::records::{self, Kind, RecordKey, Records, Versioned};

use crate::authorization::{Approval, FlowError};
use crate::opaque;

/// 100 days: more than the three months ONC requires, renewed on every use.
pub const LIFETIME: i64 = 100 * 24 * 60 * 60;

/// A refresh token as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefreshToken {
    pub environment: String,
    pub client_id: String,
    pub approval: Approval,
    pub expires: i64,
    /// Access tokens issued from this grant that may still be live: `(id, expires)`.
    #[serde(default)]
    pub access_tokens: Vec<(String, i64)>,
}

impl Kind for RefreshToken {
    const KIND: &'static str = "refresh_token";

    fn keys(&self) -> Vec<RecordKey> {
        vec![RecordKey::shared("user", &self.approval.user)]
    }
}

/// Stores a refresh token for `approval` whose first access token is `access`; returns it.
pub async fn issue(
    store: &dyn Records,
    environment: &str,
    client_id: &str,
    approval: &Approval,
    access: (String, i64),
    now: i64,
) -> Result<String, FlowError> {
    let token = opaque::new_secret()?;
    let record = RefreshToken {
        environment: environment.to_owned(),
        client_id: client_id.to_owned(),
        approval: approval.clone(),
        expires: now + LIFETIME,
        access_tokens: vec![access],
    };
    records::create(store, &opaque::digest(&token), &record, "token").await?;
    Ok(token)
}

/// The live refresh token `token`.
pub async fn find(store: &dyn Records, token: &str, now: i64) -> Result<Option<RefreshToken>, FlowError> {
    let found = records::get::<RefreshToken>(store, &opaque::digest(token)).await?;
    Ok(found.map(|found| found.value).filter(|record| record.expires > now))
}

/// Renews `token` for another [`LIFETIME`] and records `access`, issued from it now.
pub async fn renew(
    store: &dyn Records,
    token: &str,
    access: (String, i64),
    now: i64,
) -> Result<Versioned<RefreshToken>, FlowError> {
    Ok(records::modify::<RefreshToken>(store, &opaque::digest(token), "token", |record| {
        record.expires = now + LIFETIME;
        record.access_tokens.retain(|(_, expires)| *expires > now);
        record.access_tokens.push(access.clone());
    })
    .await?)
}

/// Revokes the refresh token `token` and the access tokens issued from it; true when there
/// was one.
pub async fn revoke(store: &dyn Store, list: &RevocationList, token: &str, now: i64) -> Result<bool, FlowError> {
    revoke_grant(store, list, &opaque::digest(token), now).await
}

/// The live grants (refresh tokens) of the user `user`, by record id.
pub async fn grants_of(store: &dyn Records, user: &str, now: i64) -> Result<Vec<(String, RefreshToken)>, FlowError> {
    let found = records::find::<RefreshToken>(store, "user", user).await?;
    Ok(found.into_iter().filter(|grant| grant.value.expires > now).map(|grant| (grant.id, grant.value)).collect())
}

/// Revokes the grant whose record id is `id` (the digest of its refresh token) and the access
/// tokens issued from it; true when there was one.
pub async fn revoke_grant(store: &dyn Store, list: &RevocationList, id: &str, now: i64) -> Result<bool, FlowError> {
    let Some(found) = records::get::<RefreshToken>(store, id).await? else { return Ok(false) };
    for (access, expires) in &found.value.access_tokens {
        list.revoke(store, access, *expires, now).await?;
    }
    match records::delete::<RefreshToken>(store, id, found.version, "revoke").await {
        Ok(()) | Err(store::Error::RecordNotFound { .. } | store::Error::RecordConflict { .. }) => Ok(true),
        Err(error) => Err(error.into()),
    }
}

/// The expiring list of revoked access-token ids, each kept until the token would have expired.
const REVOKED: &str = "revoked-access-tokens";

/// Lists the access token `id` (expiring at `expires`) as revoked.
async fn revoke_access(store: &dyn Store, id: &str, expires: i64, now: i64) -> Result<(), FlowError> {
    if expires <= now {
        return Ok(());
    }
    store.remember(REVOKED, id, instant(expires), instant(now)).await?;
    Ok(())
}

fn instant(seconds: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(seconds).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// The revoked access tokens, held in memory so that checking a token on every FHIR request
/// costs a hash lookup, not a database read. Revocations made through this process count at
/// once; those made by other processes sharing the database are picked up when the list is
/// reloaded, at most [`RevocationList::RELOAD`] after the last load.
#[derive(Debug, Default)]
pub struct RevocationList {
    state: std::sync::RwLock<Loaded>,
    /// Set by the one request that reloads the list; others use the list as it is.
    reloading: std::sync::atomic::AtomicBool,
}

#[derive(Debug, Default)]
struct Loaded {
    /// Token id → expiry (seconds since the epoch).
    revoked: std::collections::HashMap<String, i64>,
    /// When the list was last read from the database; `None` before the first read.
    at: Option<std::time::Instant>,
}

impl RevocationList {
    /// How stale the list may get before a request reloads it.
    pub const RELOAD: std::time::Duration = std::time::Duration::from_secs(2);

    /// True when the access token `id` has been revoked.
    pub async fn contains(&self, store: &dyn Store, id: &str, now: i64) -> Result<bool, FlowError> {
        let fresh = self.read(|loaded| loaded.at.is_some_and(|at| at.elapsed() < Self::RELOAD));
        if !fresh {
            self.reload(store, now).await?;
        }
        Ok(self.read(|loaded| loaded.revoked.get(id).is_some_and(|expires| *expires > now)))
    }

    /// Revokes the access token `id` (expiring at `expires`) here and in the database.
    pub async fn revoke(&self, store: &dyn Store, id: &str, expires: i64, now: i64) -> Result<(), FlowError> {
        revoke_access(store, id, expires, now).await?;
        if let Ok(mut loaded) = self.state.write() {
            loaded.revoked.insert(id.to_owned(), expires);
        }
        Ok(())
    }

    fn read<T>(&self, look: impl FnOnce(&Loaded) -> T) -> T
    where
        T: Default,
    {
        self.state.read().map(|loaded| look(&loaded)).unwrap_or_default()
    }

    async fn reload(&self, store: &dyn Store, now: i64) -> Result<(), FlowError> {
        use std::sync::atomic::Ordering;
        let loaded_once = self.read(|loaded| loaded.at.is_some());
        let claimed = !self.reloading.swap(true, Ordering::AcqRel);
        if !claimed && loaded_once {
            // Another request is reloading: answer from the list as it stands.
            return Ok(());
        }
        let listed = store.listed(REVOKED, instant(now)).await;
        if claimed {
            self.reloading.store(false, Ordering::Release);
        }
        let listed = listed?;
        let revoked = listed.into_iter().map(|(id, expires)| (id, expires.unix_timestamp())).collect();
        if let Ok(mut loaded) = self.state.write() {
            *loaded = Loaded { revoked, at: Some(std::time::Instant::now()) };
        }
        Ok(())
    }
}
