//! Delivers the access program's notifications (`access::notification`) to accounts'
//! webhooks: every server runs this loop; each notification due is taken under a lease (so
//! one server sends it), POSTed as JSON with `X-Ignis-Signature` (HMAC-SHA256 over
//! `X-Ignis-Timestamp` and the body, with the account's webhook secret), and recorded as
//! delivered on a 2xx answer, or tried again later.

use std::time::Duration;

use access::AccessError;
use access::notification::{self, Notification};
use store::records::Versioned;

use crate::state::AppState;

/// How long a server holds a notification while it sends it.
const HOLD: time::Duration = time::Duration::seconds(30);
/// How long a webhook has to answer.
const ANSWER: Duration = Duration::from_secs(10);

/// Delivers due notifications until the task is aborted.
pub(crate) async fn deliver_forever(state: AppState) {
    let Some(auth) = state.auth.clone() else { return };
    let owner = uuid::Uuid::new_v4().to_string();
    let client = match reqwest::Client::builder().timeout(ANSWER).redirect(reqwest::redirect::Policy::none()).build() {
        Ok(client) => client,
        Err(error) => {
            return tracing::error!(%error, "cannot build the webhook client; notifications stay in the outbox");
        }
    };
    let delivery = Delivery { state: &state, key: &auth.secret_key, owner: &owner, client: &client };
    loop {
        if let Err(error) = delivery.deliver_due().await {
            tracing::warn!(%error, "delivering notifications failed; trying again");
        }
        tokio::time::sleep(state.config.notification_poll).await;
    }
}

struct Delivery<'a> {
    state: &'a AppState,
    key: &'a auth::secret::SecretKey,
    owner: &'a str,
    client: &'a reqwest::Client,
}

impl Delivery<'_> {
    async fn deliver_due(&self) -> Result<(), AccessError> {
        let store = self.state.store.as_ref();
        let now = time::OffsetDateTime::now_utc();
        for due in notification::due(store, now).await? {
            let lease = format!("notification:{}", due.id);
            if !store.claim(&lease, self.owner, now + HOLD, now).await? {
                continue;
            }
            let outcome = self.send(&due).await;
            if let Err(reason) = &outcome {
                tracing::info!(notification = %due.id, event = %due.value.event, %reason, "a webhook delivery failed");
            }
            let retry =
                time::Duration::try_from(self.state.config.notification_retry).unwrap_or(time::Duration::MINUTE);
            notification::attempted(store, &due.id, outcome, retry).await?;
            store.release(&lease, self.owner).await?;
        }
        Ok(())
    }

    /// One attempt: `Err` says why it failed (never the secret or the body).
    async fn send(&self, due: &Versioned<Notification>) -> Result<(), String> {
        let store = self.state.store.as_ref();
        let webhook = match notification::webhook_of(store, &due.value.account).await {
            Ok(Some(webhook)) => webhook,
            Ok(None) => return Err("the account has no webhook any more".to_owned()),
            Err(error) => return Err(error.to_string()),
        };
        let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
        let (signature, body) = notification::signed(self.key, &webhook, &due.id, &due.value, timestamp)
            .map_err(|error| error.to_string())?;
        let response = self
            .client
            .post(&webhook.url)
            .header("content-type", "application/json")
            .header("x-ignis-event", &due.value.event)
            .header("x-ignis-delivery", &due.id)
            .header("x-ignis-timestamp", timestamp.to_string())
            .header("x-ignis-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(|error| format!("the webhook could not be reached: {}", without_url(&error)))?;
        match response.status() {
            status if status.is_success() => Ok(()),
            status => Err(format!("the webhook answered {status}")),
        }
    }
}

/// A request error's description without its URL (which may carry a token of the receiver).
fn without_url(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    kind.to_owned()
}
