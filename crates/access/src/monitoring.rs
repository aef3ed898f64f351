//! What keeps an account's use of the platform in bounds: its rate limit, and its suspension.
//!
//! An operator sets an account's limit (requests per minute, for each of its devices and for
//! all of them together), suspends it (every credential of the account is refused) and
//! reinstates it; the server's monitor does the same when an account keeps going past its
//! limit. Each step is a change to the account's record (so it is audited with it) and a
//! notification to the account.

use serde::{Deserialize, Serialize};
use serde_json::json;
use store::Store;
use store::records::{self, Records, Versioned};
use time::OffsetDateTime;

use crate::account::Account;
use crate::{AccessError, rfc3339};

/// Why and since when an account is suspended, and by whom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspension {
    pub reason: String,
    pub by: String,
    #[serde(with = "rfc3339")]
    pub since: OffsetDateTime,
}

/// The longest reason kept.
const MAX_REASON: usize = 500;

/// Suspends the account `id` for `reason`, by `by` (an operator, or `monitor`). An account
/// already suspended stays suspended as it was.
pub async fn suspend(store: &dyn Records, id: &str, reason: &str, by: &str) -> Result<Versioned<Account>, AccessError> {
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > MAX_REASON {
        return Err(AccessError::Invalid(format!("a suspension needs a reason of 1 to {MAX_REASON} characters")));
    }
    let before = crate::account::get(store, id).await?;
    if before.value.suspended.is_some() {
        return Ok(before);
    }
    let suspension = Suspension { reason: reason.to_owned(), by: by.to_owned(), since: crate::now() };
    let suspended = records::modify(store, id, by, |account: &mut Account| {
        account.suspended.get_or_insert_with(|| suspension.clone());
    })
    .await?;
    crate::notification::emit(store, id, "account.suspended", json!({"reason": reason}), by).await?;
    Ok(suspended)
}

/// Lifts the account's suspension, by `by` (an operator): its rate-limit buckets start full,
/// their refusals forgotten. An account not suspended is left as it is.
pub async fn reinstate(store: &dyn Store, id: &str, by: &str) -> Result<Versioned<Account>, AccessError> {
    let before = crate::account::get(store, id).await?;
    if before.value.suspended.is_none() {
        return Ok(before);
    }
    let reinstated = records::modify(store, id, by, |account: &mut Account| account.suspended = None).await?;
    store.reset_buckets(&bucket_prefix(id)).await?;
    crate::notification::emit(store, id, "account.reinstated", json!({}), by).await?;
    Ok(reinstated)
}

/// Sets the account's limit to `per_minute` requests a minute (for each device and for the
/// account), by `by` (an operator); this also lifts a throttle (its buckets start full).
pub async fn set_limit(
    store: &dyn Store,
    id: &str,
    per_minute: u32,
    by: &str,
) -> Result<Versioned<Account>, AccessError> {
    if per_minute == 0 {
        return Err(AccessError::Invalid("a limit is at least 1 request per minute".to_owned()));
    }
    let limited =
        records::modify(store, id, by, |account: &mut Account| account.limit_per_minute = Some(per_minute)).await?;
    store.reset_buckets(&bucket_prefix(id)).await?;
    crate::notification::emit(store, id, "account.limit-set", json!({"per_minute": per_minute}), by).await?;
    Ok(limited)
}

/// The account an OAuth client belongs to — an app's client, or a device taking
/// certificate-bound tokens with its own id — as its requests are judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAccount {
    pub account: String,
    /// How its requests are counted against the account's limit: `client:ID` or `device:ID`.
    pub member: String,
    /// Why the account is suspended, when it is.
    pub suspended: Option<String>,
    /// The account's limit, requests per minute.
    pub limit_per_minute: Option<u32>,
}

/// The account whose app or device `client_id` is; `None` for a client that is neither (the
/// platform's own, a backend service).
pub async fn client_account(store: &dyn Records, client_id: &str) -> Result<Option<ClientAccount>, AccessError> {
    let apps = records::find::<crate::app::App>(store, "client_id", client_id).await?;
    let (account, member) = match apps.into_iter().next() {
        Some(app) => (app.value.account, format!("client:{client_id}")),
        None => match records::get::<crate::Device>(store, client_id).await? {
            Some(device) => (device.value.account, format!("device:{client_id}")),
            None => return Ok(None),
        },
    };
    let found = crate::account::get(store, &account).await?;
    Ok(Some(ClientAccount {
        account,
        member,
        suspended: found.value.suspended.map(|suspension| suspension.reason),
        limit_per_minute: found.value.limit_per_minute,
    }))
}

/// The prefix of the rate-limit buckets of account `id`: `account:{id}` for the account,
/// `account:{id}:device:{device}` for each device.
pub fn bucket_prefix(id: &str) -> String {
    format!("account:{id}")
}
