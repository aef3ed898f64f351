//! Whether an account may use production, and what changes that.
//!
//! An account is certified by its latest approved access request until the contract term's
//! end. A **material change** to a certified integration (a new production device, a
//! certificate from an issuer it did not use, scopes beyond those it had) marks the account
//! `recertification_required` and starts a grace period; after it, production is blocked until
//! a new request is approved. Production calls must also come from the approved network paths.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use store::records::{self, Records};
use time::{Duration, OffsetDateTime};

use crate::account::Account;
use crate::{AccessError, request, rfc3339};

/// How long production stays open after a material change, unless configured otherwise.
pub const DEFAULT_GRACE: Duration = Duration::days(30);

/// A pending re-certification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recertification {
    /// The approved request the change outdated: a later approval is the re-certification.
    pub outdates: String,
    #[serde(with = "rfc3339")]
    pub since: OffsetDateTime,
    #[serde(with = "rfc3339")]
    pub grace_until: OffsetDateTime,
    /// What changed, in words.
    pub changes: Vec<String>,
}

/// Where an account stands for production at an instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// No approved request.
    NotCertified,
    /// Certified until `until`, calls from `network` only.
    Certified { until: OffsetDateTime, network: Vec<IpNet> },
    /// Certified, but a material change needs a new review before `grace_until`.
    RecertificationRequired { until: OffsetDateTime, network: Vec<IpNet>, recertification: Recertification },
    /// The contract term ended.
    Expired { on: OffsetDateTime },
    /// The grace period after a material change ended without a new approval.
    Blocked { recertification: Recertification },
}

impl Status {
    /// The network paths production calls may come from, or why production is closed.
    pub fn production(&self) -> Result<&[IpNet], String> {
        match self {
            Status::Certified { network, .. } | Status::RecertificationRequired { network, .. } => Ok(network),
            Status::NotCertified => Err("the account has no approved production access request".to_owned()),
            Status::Expired { on } => {
                Err(format!("the account's certification ended with its contract term on {}", text(*on)))
            }
            Status::Blocked { recertification } => Err(format!(
                "the account must be re-certified after a material change ({}); the grace period ended on {}",
                recertification.changes.join("; "),
                text(recertification.grace_until)
            )),
        }
    }

    /// The name the API shows.
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::NotCertified => "not_certified",
            Status::Certified { .. } => "certified",
            Status::RecertificationRequired { .. } => "recertification_required",
            Status::Expired { .. } => "expired",
            Status::Blocked { .. } => "blocked",
        }
    }
}

fn text(instant: OffsetDateTime) -> String {
    instant.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// The status of `account` (as read) at `now`.
pub async fn status(
    store: &dyn Records,
    id: &str,
    account: &Account,
    now: OffsetDateTime,
) -> Result<Status, AccessError> {
    let Some(approved) = request::approved(store, id).await? else { return Ok(Status::NotCertified) };
    let approved_at = approved.value.approved_at().unwrap_or(approved.updated);
    let until = approved.value.contract_end.unwrap_or(approved_at + request::DEFAULT_TERM);
    if until <= now {
        return Ok(Status::Expired { on: until });
    }
    let network = approved.value.network();
    match &account.recertification {
        // An approval after the change is the re-certification.
        Some(pending) if pending.outdates == approved.id => {
            if pending.grace_until <= now {
                Ok(Status::Blocked { recertification: pending.clone() })
            } else {
                Ok(Status::RecertificationRequired { until, network, recertification: pending.clone() })
            }
        }
        _ => Ok(Status::Certified { until, network }),
    }
}

/// The network paths account `id` may call production from now, or why it may not.
pub async fn production_paths(store: &dyn Records, id: &str) -> Result<Result<Vec<IpNet>, String>, AccessError> {
    let account = match crate::account::get(store, id).await {
        Ok(account) => account,
        Err(AccessError::NotFound { .. }) => return Ok(Err("the device's account no longer exists".to_owned())),
        Err(error) => return Err(error),
    };
    let status = status(store, id, &account.value, crate::now()).await?;
    Ok(status.production().map(<[IpNet]>::to_vec))
}

/// Whether a production call from `client` comes from the approved `network` paths.
pub fn admits(network: &[IpNet], client: Option<std::net::IpAddr>) -> Result<(), &'static str> {
    match client.map(|address| address.to_canonical()) {
        Some(address) if network.iter().any(|path| path.contains(&address)) => Ok(()),
        _ => Err("the call does not come from the account's approved network paths"),
    }
}

/// Records a material change of a certified account (nothing for one not certified yet): the
/// account then needs re-certification within its grace period, counted from the first change
/// since its last approval.
pub async fn material_change(store: &dyn Records, id: &str, change: String, by: &str) -> Result<(), AccessError> {
    let Some(approved) = request::approved(store, id).await? else { return Ok(()) };
    let now = crate::now();
    let updated = records::modify::<Account>(store, id, by, |account| match &mut account.recertification {
        Some(pending) if pending.outdates == approved.id => {
            if !pending.changes.contains(&change) {
                pending.changes.push(change.clone());
            }
        }
        _ => {
            let grace_until = now + account.grace();
            account.recertification = Some(Recertification {
                outdates: approved.id.clone(),
                since: now,
                grace_until,
                changes: vec![change.clone()],
            });
        }
    })
    .await?;
    if let Some(pending) = &updated.value.recertification {
        let data = serde_json::json!({
            "changes": pending.changes,
            "grace_until": text(pending.grace_until),
            "change": change,
        });
        crate::notification::emit(store, id, "account.recertification-required", data, by).await?;
    }
    Ok(())
}
