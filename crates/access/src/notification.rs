//! Notifications: every decision and status change of the access program (a request
//! submitted, approved, sent back…; a credential issued or revoked; a re-certification asked
//! for) becomes a notification record of its account — the outbox — delivered to the account's
//! webhook, if it has one, by every server's delivery loop, with retries and an HMAC-SHA256
//! signature the receiver checks with the secret it was shown when it set the webhook.
//!
//! A notification is written after the change it reports, as its own record: a process that
//! dies between the two loses that notification (the change itself is kept with its history).

use std::fmt;

use auth::secret::SecretKey;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use store::records::{self, Kind, RecordKey, Records, Versioned};
use time::{Duration, OffsetDateTime};

use crate::account::Account;
use crate::{AccessError, rfc3339};

/// What the webhook secret is sealed for.
const PURPOSE: &str = "webhook-secret";
/// Attempts before a notification is given up.
pub const MAX_ATTEMPTS: u32 = 10;

/// An account's webhook.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    pub url: String,
    /// The HMAC key, sealed under the server's secret key.
    pub sealed_secret: String,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_struct("Webhook").field("url", &self.url).finish_non_exhaustive()
    }
}

/// Where a notification's delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Waiting for its (next) attempt.
    Pending,
    Delivered,
    /// The account has no webhook: kept in the outbox, readable through the API.
    NoWebhook,
    /// Every attempt failed.
    Failed,
}

/// A notification as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub account: String,
    /// `access-request.approved`, `device.revoked`…
    pub event: String,
    pub data: Value,
    #[serde(with = "rfc3339")]
    pub created: OffsetDateTime,
    pub delivery: Delivery,
    #[serde(default)]
    pub attempts: u32,
    #[serde(with = "rfc3339")]
    pub next_attempt: OffsetDateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl Kind for Notification {
    const KIND: &'static str = "notification";

    fn keys(&self) -> Vec<RecordKey> {
        let mut keys = vec![RecordKey::shared("account", &self.account)];
        if self.delivery == Delivery::Pending {
            keys.push(RecordKey::shared("pending", "1"));
        }
        keys
    }
}

/// Puts a notification of `event` with `data` in `account`'s outbox.
pub async fn emit(store: &dyn Records, account: &str, event: &str, data: Value, by: &str) -> Result<(), AccessError> {
    let has_webhook = records::get::<Account>(store, account).await?.is_some_and(|found| found.value.webhook.is_some());
    let now = crate::now();
    let notification = Notification {
        account: account.to_owned(),
        event: event.to_owned(),
        data,
        created: now,
        delivery: if has_webhook { Delivery::Pending } else { Delivery::NoWebhook },
        attempts: 0,
        next_attempt: now,
        last_error: None,
    };
    records::create(store, &crate::new_id(), &notification, by).await?;
    Ok(())
}

/// The notifications of `account`, oldest first.
pub async fn of_account(store: &dyn Records, account: &str) -> Result<Vec<Versioned<Notification>>, AccessError> {
    let mut found = records::find::<Notification>(store, "account", account).await?;
    found.sort_by_key(|notification| notification.value.created);
    Ok(found)
}

/// The notifications due for an attempt at `now`.
pub async fn due(store: &dyn Records, now: OffsetDateTime) -> Result<Vec<Versioned<Notification>>, AccessError> {
    let pending = records::find::<Notification>(store, "pending", "1").await?;
    Ok(pending.into_iter().filter(|notification| notification.value.next_attempt <= now).collect())
}

/// Sets `account`'s webhook to `url` with a new secret; returns the secret, shown once.
pub async fn set_webhook(
    store: &dyn Records,
    key: &SecretKey,
    account: &str,
    url: &str,
    by: &str,
) -> Result<String, AccessError> {
    check_url(url)?;
    let secret = auth::opaque::new_secret()?;
    let webhook = Webhook { url: url.to_owned(), sealed_secret: key.seal(secret.as_bytes(), PURPOSE)? };
    crate::account::get(store, account).await?;
    records::modify::<Account>(store, account, by, |account| account.webhook = Some(webhook.clone())).await?;
    Ok(secret)
}

/// A webhook must be HTTPS (plain HTTP only to the machine itself, for development).
fn check_url(url: &str) -> Result<(), AccessError> {
    let local =
        ["http://127.0.0.1:", "http://localhost:", "http://[::1]:"].iter().any(|prefix| url.starts_with(prefix));
    if !(url.starts_with("https://") || local) || url.len() > 2000 || url.chars().any(char::is_whitespace) {
        return Err(AccessError::Invalid(format!("the webhook '{url}' must be an https:// URL")));
    }
    Ok(())
}

/// What a delivery sends: the body, and the signature header's value over `timestamp.body`.
pub fn signed(
    key: &SecretKey,
    webhook: &Webhook,
    id: &str,
    notification: &Notification,
    timestamp: i64,
) -> Result<(String, String), AccessError> {
    let body = serde_json::json!({
        "id": id,
        "event": notification.event,
        "account": notification.account,
        "created": notification.created.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        "data": notification.data,
    })
    .to_string();
    let secret = key.open(&webhook.sealed_secret, PURPOSE)?;
    Ok((signature(&secret, timestamp, &body), body))
}

/// `sha256=<hex>` of HMAC-SHA256 over `timestamp.body` with `secret`.
pub fn signature(secret: &[u8], timestamp: i64, body: &str) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let tag = aws_lc_rs::hmac::sign(&key, format!("{timestamp}.{body}").as_bytes());
    let hex: String = tag.as_ref().iter().map(|byte| format!("{byte:02x}")).collect();
    format!("sha256={hex}")
}

/// Records the outcome of an attempt: delivered, or failed with `error` and tried again after
/// a backoff that doubles from `retry` (given up after [`MAX_ATTEMPTS`]).
pub async fn attempted(
    store: &dyn Records,
    id: &str,
    outcome: Result<(), String>,
    retry: Duration,
) -> Result<(), AccessError> {
    let now = crate::now();
    records::modify::<Notification>(store, id, "notifications", |notification| {
        if notification.delivery != Delivery::Pending {
            return;
        }
        notification.attempts += 1;
        match &outcome {
            Ok(()) => {
                notification.delivery = Delivery::Delivered;
                notification.last_error = None;
            }
            Err(error) => {
                notification.last_error = Some(error.clone());
                if notification.attempts >= MAX_ATTEMPTS {
                    notification.delivery = Delivery::Failed;
                } else {
                    let factor = 1i32 << notification.attempts.min(12);
                    notification.next_attempt = now + (retry * factor).min(Duration::hours(1));
                }
            }
        }
    })
    .await?;
    Ok(())
}

/// The webhook of the account, if it still has one.
pub async fn webhook_of(store: &dyn Records, account: &str) -> Result<Option<Webhook>, AccessError> {
    Ok(records::get::<Account>(store, account).await?.and_then(|found| found.value.webhook))
}
