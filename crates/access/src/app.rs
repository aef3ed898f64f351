//! Patient-access apps: SMART apps that a patient authorizes. Registration is self-service and
//! gives a sandbox client at once; production needs only that an operator verifies the
//! developer's identity and then enables the app. ONC sets the clocks (45 CFR 170.404): the
//! verification within 10 business days of the request, the enablement within 5 business days
//! of the verification; [`Deadlines`] says when each is due and whether it is overdue.
//! Business days are Monday to Friday (public holidays are not counted out).

use auth::client::{self, Client, ClientType, NewClient};
use serde::{Deserialize, Serialize};
use store::records::{self, Kind, RecordKey, Records, Versioned};
use time::{Duration, OffsetDateTime, Weekday};

use crate::{AccessError, rfc3339};

/// Business days an operator has to verify the developer after the request.
pub const VERIFY_WITHIN: u32 = 10;
/// Business days an operator has to enable the app after the verification.
pub const ENABLE_WITHIN: u32 = 5;

/// An app as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    pub account: String,
    pub name: String,
    /// The client id, the same in both environments.
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub production: Option<Track>,
}

/// The app's way to production.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Track {
    #[serde(with = "rfc3339")]
    pub requested: OffsetDateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<Step>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<Step>,
}

/// A step an operator took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub by: String,
    #[serde(with = "rfc3339")]
    pub at: OffsetDateTime,
}

impl Kind for App {
    const KIND: &'static str = "app";

    fn keys(&self) -> Vec<RecordKey> {
        let mut keys =
            vec![RecordKey::shared("account", &self.account), RecordKey::unique("client_id", &self.client_id)];
        if let Some(waiting) = self.production.as_ref().and_then(Track::waiting_for) {
            keys.push(RecordKey::shared("waiting", waiting));
        }
        keys
    }
}

impl Track {
    /// What the track waits for: `verification` or `enablement`, or nothing once enabled.
    pub fn waiting_for(&self) -> Option<&'static str> {
        match (&self.verified, &self.enabled) {
            (None, _) => Some("verification"),
            (Some(_), None) => Some("enablement"),
            (Some(_), Some(_)) => None,
        }
    }

    /// The regulatory deadlines at `now`.
    pub fn deadlines(&self, now: OffsetDateTime) -> Deadlines {
        let verify_by = add_business_days(self.requested, VERIFY_WITHIN);
        let enable_by = self.verified.as_ref().map(|verified| add_business_days(verified.at, ENABLE_WITHIN));
        let verification_overdue = match &self.verified {
            Some(verified) => verified.at > verify_by,
            None => now > verify_by,
        };
        let enablement_overdue = match (enable_by, &self.enabled) {
            (Some(due), Some(enabled)) => enabled.at > due,
            (Some(due), None) => now > due,
            (None, _) => false,
        };
        Deadlines { verify_by, enable_by, verification_overdue, enablement_overdue }
    }
}

/// When the operator's steps are due, and whether they are (or were) late.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deadlines {
    pub verify_by: OffsetDateTime,
    pub enable_by: Option<OffsetDateTime>,
    pub verification_overdue: bool,
    pub enablement_overdue: bool,
}

/// `start` plus `days` business days (Saturdays and Sundays skipped).
pub fn add_business_days(start: OffsetDateTime, days: u32) -> OffsetDateTime {
    let mut at = start;
    let mut left = days;
    while left > 0 {
        at += Duration::days(1);
        if !matches!(at.weekday(), Weekday::Saturday | Weekday::Sunday) {
            left -= 1;
        }
    }
    at
}

/// An app to register.
#[derive(Debug, Clone)]
pub struct NewApp {
    pub name: String,
    /// A public app (PKCE only) or a confidential one with a secret.
    pub confidential: bool,
    pub redirect_uris: Vec<String>,
    pub launch_uris: Vec<String>,
    pub scopes: String,
}

/// Registers an app of `account` and its sandbox client; returns the app and, for a
/// confidential app, the client secret (shown once).
pub async fn register(
    store: &dyn Records,
    account: &str,
    new: NewApp,
    by: &str,
) -> Result<(Versioned<App>, Option<String>), AccessError> {
    crate::account::get(store, account).await?;
    let name = new.name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(AccessError::Invalid("an app name must be 1 to 200 bytes".to_owned()));
    }
    let client_id = crate::new_id();
    let secret = if new.confidential { Some(auth::opaque::new_secret()?) } else { None };
    let client = NewClient {
        client_id: client_id.clone(),
        client_type: if new.confidential { ClientType::ConfidentialSymmetric } else { ClientType::Public },
        environment: store::Environment::Sandbox.as_str().to_owned(),
        secret: secret.clone(),
        jwks: None,
        jwks_url: None,
        redirect_uris: new.redirect_uris,
        launch_uris: new.launch_uris,
        scopes: new.scopes,
    };
    client::register(store, client, by).await.map_err(client_error)?;
    let app = App { account: account.to_owned(), name: name.to_owned(), client_id, production: None };
    Ok((records::create(store, &crate::new_id(), &app, by).await?, secret))
}

fn client_error(error: client::ClientError) -> AccessError {
    match error {
        client::ClientError::Invalid(reason) => AccessError::Invalid(reason),
        client::ClientError::Store(error) => AccessError::Store(error),
    }
}

/// The app at `id`.
pub async fn get(store: &dyn Records, id: &str) -> Result<Versioned<App>, AccessError> {
    records::get::<App>(store, id).await?.ok_or_else(|| AccessError::NotFound { what: "app", id: id.to_owned() })
}

/// The apps of `account`.
pub async fn of_account(store: &dyn Records, account: &str) -> Result<Vec<Versioned<App>>, AccessError> {
    Ok(records::find::<App>(store, "account", account).await?)
}

/// The apps waiting for `step` (`verification` or `enablement`).
pub async fn waiting_for(store: &dyn Records, step: &str) -> Result<Vec<Versioned<App>>, AccessError> {
    Ok(records::find::<App>(store, "waiting", step).await?)
}

/// The account asks for production: the ONC clocks start.
pub async fn request_production(store: &dyn Records, id: &str, by: &str) -> Result<Versioned<App>, AccessError> {
    let at = crate::now();
    let app = records::try_modify(store, id, by, |app: &mut App| match &app.production {
        Some(_) => Err(AccessError::Invalid("production was already requested for this app".to_owned())),
        None => {
            app.production = Some(Track { requested: at, verified: None, enabled: None });
            Ok(())
        }
    })
    .await?;
    notify(store, &app, "app.production-requested", by).await?;
    Ok(app)
}

/// An operator verified the developer's identity.
pub async fn verify(store: &dyn Records, id: &str, by: &str) -> Result<Versioned<App>, AccessError> {
    let at = crate::now();
    let app = records::try_modify(store, id, by, |app: &mut App| match app.production.as_mut() {
        Some(track) if track.verified.is_none() => {
            track.verified = Some(Step { by: by.to_owned(), at });
            Ok(())
        }
        Some(_) => Err(AccessError::Invalid("the developer of this app is already verified".to_owned())),
        None => Err(AccessError::Invalid("production was not requested for this app".to_owned())),
    })
    .await?;
    notify(store, &app, "app.verified", by).await?;
    Ok(app)
}

/// An operator enables the verified app in production: its client is registered there with
/// the sandbox client's settings (and secret).
pub async fn enable(store: &dyn Records, id: &str, by: &str) -> Result<Versioned<App>, AccessError> {
    let current = get(store, id).await?;
    match current.value.production.as_ref().map(Track::waiting_for) {
        Some(Some("enablement")) => {}
        Some(None) => return Err(AccessError::Invalid("the app is already enabled in production".to_owned())),
        _ => return Err(AccessError::Invalid("the developer must be verified before the app is enabled".to_owned())),
    }
    let sandbox = client::client_key(store::Environment::Sandbox.as_str(), &current.value.client_id);
    let Some(sandbox_client) = records::get::<Client>(store, &sandbox).await? else {
        return Err(AccessError::NotFound { what: "sandbox client", id: current.value.client_id.clone() });
    };
    let production = Client { environment: store::Environment::Production.as_str().to_owned(), ..sandbox_client.value };
    let key = client::client_key(&production.environment, &production.client_id);
    match records::create(store, &key, &production, by).await {
        Ok(_) | Err(store::Error::RecordExists { .. }) => {}
        Err(error) => return Err(error.into()),
    }
    let at = crate::now();
    let app = records::try_modify(store, id, by, |app: &mut App| match app.production.as_mut() {
        Some(track) if track.verified.is_some() && track.enabled.is_none() => {
            track.enabled = Some(Step { by: by.to_owned(), at });
            Ok(())
        }
        _ => Err(AccessError::Invalid("the app is not waiting for enablement".to_owned())),
    })
    .await?;
    notify(store, &app, "app.enabled", by).await?;
    Ok(app)
}

/// New redirect URIs and scopes of an app, applied to its client in each environment it is
/// registered in. Once the app is in production, URIs or scopes it did not have are a material
/// change of its account.
pub async fn update(
    store: &dyn Records,
    id: &str,
    redirect_uris: Vec<String>,
    scopes: String,
    by: &str,
) -> Result<Versioned<App>, AccessError> {
    let app = get(store, id).await?;
    let mut changes = Vec::new();
    for environment in [store::Environment::Sandbox, store::Environment::Production] {
        let key = client::client_key(environment.as_str(), &app.value.client_id);
        let Some(current) = records::get::<Client>(store, &key).await? else { continue };
        let new_uris: Vec<&String> =
            redirect_uris.iter().filter(|uri| !current.value.redirect_uris.contains(uri)).collect();
        let known: Vec<&str> = current.value.scopes.split_whitespace().collect();
        let new_scopes: Vec<&str> = scopes.split_whitespace().filter(|scope| !known.contains(scope)).collect();
        if environment == store::Environment::Production {
            if !new_uris.is_empty() {
                changes.push(format!("new redirect URIs of the app '{}'", app.value.name));
            }
            if !new_scopes.is_empty() {
                changes.push(format!("new scopes '{}' of the app '{}'", new_scopes.join(" "), app.value.name));
            }
        }
        let changed = NewClient {
            client_id: current.value.client_id.clone(),
            client_type: current.value.client_type,
            environment: current.value.environment.clone(),
            secret: None,
            jwks: current.value.jwks.clone(),
            jwks_url: current.value.jwks_url.clone(),
            redirect_uris: redirect_uris.clone(),
            launch_uris: current.value.launch_uris.clone(),
            scopes: scopes.clone(),
        };
        let updated = client::changed(&current.value, changed).map_err(client_error)?;
        records::update(store, &key, &updated, current.version, by).await?;
    }
    for change in changes {
        crate::certification::material_change(store, &app.value.account, change, by).await?;
    }
    Ok(app)
}

async fn notify(store: &dyn Records, app: &Versioned<App>, event: &str, by: &str) -> Result<(), AccessError> {
    let data = serde_json::json!({"app": app.id, "client_id": app.value.client_id, "by": by});
    crate::notification::emit(store, &app.value.account, event, data, by).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn business_days_skip_weekends() {
        // A Thursday: ten business days later is the Thursday two weeks on.
        let thursday = datetime!(2026-12-03 10:00 UTC);
        assert_eq!(add_business_days(thursday, 10), datetime!(2026-12-17 10:00 UTC));
        assert_eq!(add_business_days(thursday, 1), datetime!(2026-12-04 10:00 UTC));
        assert_eq!(add_business_days(thursday, 2), datetime!(2026-12-07 10:00 UTC));
        let saturday = datetime!(2026-12-05 10:00 UTC);
        assert_eq!(add_business_days(saturday, 5), datetime!(2026-12-11 10:00 UTC));
    }

    #[test]
    fn deadlines_follow_each_step() {
        let requested = datetime!(2026-12-03 10:00 UTC);
        let mut track = Track { requested, verified: None, enabled: None };
        let deadlines = track.deadlines(datetime!(2026-12-10 10:00 UTC));
        assert_eq!((deadlines.verify_by, deadlines.enable_by), (datetime!(2026-12-17 10:00 UTC), None));
        assert!(!deadlines.verification_overdue);
        assert!(track.deadlines(datetime!(2026-12-18 10:00 UTC)).verification_overdue);
        track.verified = Some(Step { by: "op".into(), at: datetime!(2026-12-16 10:00 UTC) });
        let deadlines = track.deadlines(datetime!(2026-12-30 10:00 UTC));
        assert_eq!(deadlines.enable_by, Some(datetime!(2026-12-23 10:00 UTC)));
        assert!(!deadlines.verification_overdue && deadlines.enablement_overdue);
        track.enabled = Some(Step { by: "op".into(), at: datetime!(2026-12-22 10:00 UTC) });
        assert!(!track.deadlines(datetime!(2027-01-30 10:00 UTC)).enablement_overdue);
        assert_eq!(track.waiting_for(), None);
    }
}
