//! The JSON the `/api/` answers and the `ignis admin` commands print: one shape per record,
//! without secrets, with what a client needs next (a request's missing checklist items and
//! allowed actions). Each type is described in the OpenAPI document.

use serde::Serialize;
use store::records::Versioned;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

use crate::account::{Account, MemberRole};
use crate::app::App;
use crate::certification::Status;
use crate::device::{CertificateSource, Device};
use crate::notification::{Delivery, Notification};
use crate::request::{AccessRequest, Action, Item, State};

fn text(instant: OffsetDateTime) -> String {
    instant.format(&Rfc3339).unwrap_or_default()
}

/// An account.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountView {
    pub id: String,
    pub name: String,
    pub members: Vec<MemberView>,
    /// Days production stays open after a material change.
    pub grace_days: i64,
    /// Where the account stands for production (when the answer says).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certification: Option<CertificationView>,
    /// Requests per minute each of its devices, and all of them together, may make.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_per_minute: Option<u32>,
    /// Set while the account is suspended: every credential of it is refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suspended: Option<SuspensionView>,
    pub version: u64,
    pub updated: String,
}

/// Why, since when and by whom an account is suspended.
#[derive(Debug, Serialize, ToSchema)]
pub struct SuspensionView {
    pub reason: String,
    pub by: String,
    pub since: String,
}

/// Where an account stands for production.
#[derive(Debug, Serialize, ToSchema)]
pub struct CertificationView {
    /// not_certified, certified, recertification_required, expired or blocked.
    pub status: &'static str,
    /// When the certification ends (the contract term).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// The network paths production calls must come from.
    pub network: Vec<String>,
    /// The material changes that need a new review, and until when production stays open.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grace_until: Option<String>,
    /// Why production is closed, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed: Option<String>,
}

impl From<&Status> for CertificationView {
    fn from(status: &Status) -> CertificationView {
        let (until, network, pending) = match status {
            Status::Certified { until, network } => (Some(*until), network.clone(), None),
            Status::RecertificationRequired { until, network, recertification } => {
                (Some(*until), network.clone(), Some(recertification))
            }
            Status::Blocked { recertification } => (None, Vec::new(), Some(recertification)),
            Status::Expired { on } => (Some(*on), Vec::new(), None),
            Status::NotCertified => (None, Vec::new(), None),
        };
        CertificationView {
            status: status.as_str(),
            until: until.map(text),
            network: network.iter().map(ToString::to_string).collect(),
            changes: pending.map(|pending| pending.changes.clone()).unwrap_or_default(),
            grace_until: pending.map(|pending| text(pending.grace_until)),
            closed: status.production().err(),
        }
    }
}

impl AccountView {
    /// The view with the account's certification.
    pub fn with(mut self, status: &Status) -> AccountView {
        self.certification = Some(CertificationView::from(status));
        self
    }
}

/// A member of an account.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberView {
    pub username: String,
    #[schema(value_type = String, example = "owner")]
    pub role: MemberRole,
}

impl From<&Versioned<Account>> for AccountView {
    fn from(account: &Versioned<Account>) -> AccountView {
        AccountView {
            id: account.id.clone(),
            name: account.value.name.clone(),
            members: account
                .value
                .members
                .iter()
                .map(|member| MemberView { username: member.username.clone(), role: member.role })
                .collect(),
            grace_days: account.value.grace().whole_days(),
            certification: None,
            limit_per_minute: account.value.limit_per_minute,
            suspended: account.value.suspended.as_ref().map(|suspension| SuspensionView {
                reason: suspension.reason.clone(),
                by: suspension.by.clone(),
                since: text(suspension.since),
            }),
            version: account.version,
            updated: text(account.updated),
        }
    }
}

/// A production access request and its review.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccessRequestView {
    pub id: String,
    pub account: String,
    #[schema(value_type = String, example = "in_review")]
    pub state: State,
    /// The checklist items recorded so far.
    pub checklist: Vec<ChecklistEntryView>,
    /// The items still missing before approval.
    pub missing: Vec<&'static str>,
    /// Set on approval: when the certification ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contract_end: Option<String>,
    /// What may happen next.
    pub allowed: Vec<AllowedView>,
    pub transitions: Vec<TransitionView>,
    pub version: u64,
}

/// A recorded checklist item.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChecklistEntryView {
    #[schema(value_type = String, example = "network")]
    pub item: Item,
    pub value: String,
    pub by: String,
    pub at: String,
}

/// An action allowed from the current state, and the state it leads to.
#[derive(Debug, Serialize, ToSchema)]
pub struct AllowedView {
    #[schema(value_type = String, example = "approve")]
    pub action: Action,
    #[schema(value_type = String, example = "approved")]
    pub to: State,
}

/// A step of the request's life.
#[derive(Debug, Serialize, ToSchema)]
pub struct TransitionView {
    #[schema(value_type = String)]
    pub action: Action,
    #[schema(value_type = String)]
    pub from: State,
    #[schema(value_type = String)]
    pub to: State,
    pub by: String,
    pub at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The allowed actions from `state`.
pub fn allowed(state: State) -> Vec<AllowedView> {
    state.allowed().into_iter().map(|(action, to)| AllowedView { action, to }).collect()
}

impl From<&Versioned<AccessRequest>> for AccessRequestView {
    fn from(request: &Versioned<AccessRequest>) -> AccessRequestView {
        let value = &request.value;
        AccessRequestView {
            id: request.id.clone(),
            account: value.account.clone(),
            state: value.state,
            checklist: value
                .checklist
                .iter()
                .map(|(item, entry)| ChecklistEntryView {
                    item: *item,
                    value: entry.value.clone(),
                    by: entry.by.clone(),
                    at: text(entry.at),
                })
                .collect(),
            missing: value.missing(),
            contract_end: value.contract_end.map(text),
            allowed: allowed(value.state),
            transitions: value
                .transitions
                .iter()
                .map(|step| TransitionView {
                    action: step.action,
                    from: step.from,
                    to: step.to,
                    by: step.by.clone(),
                    at: text(step.at),
                    reason: step.reason.clone(),
                })
                .collect(),
            version: request.version,
        }
    }
}

/// A device.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceView {
    pub id: String,
    pub account: String,
    pub name: String,
    pub purpose: String,
    #[schema(value_type = String, example = "production")]
    pub environment: store::Environment,
    pub scope: String,
    /// The certificate the device presents, PEM.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// Its `x5t#S256`, which the Device JWT's `cnf` carries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thumbprint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_not_after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "signed-csr")]
    pub certificate_source: Option<CertificateSource>,
    /// Whether a Device JWT is live.
    pub credential_live: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    pub version: u64,
}

impl From<&Versioned<Device>> for DeviceView {
    fn from(device: &Versioned<Device>) -> DeviceView {
        let value = &device.value;
        let certificate = value.certificate.as_ref();
        DeviceView {
            id: device.id.clone(),
            account: value.account.clone(),
            name: value.name.clone(),
            purpose: value.purpose.clone(),
            environment: value.environment,
            scope: value.scope.clone(),
            certificate: certificate.map(|certificate| certificate.pem.clone()),
            thumbprint: certificate.map(|certificate| certificate.thumbprint.clone()),
            certificate_issuer: certificate.map(|certificate| certificate.issuer.clone()),
            certificate_not_after: certificate.map(|certificate| text(certificate.not_after)),
            certificate_source: value.certificate_source,
            credential_live: value.credential.is_some(),
            revoked_at: value.revoked_at.map(text),
            version: device.version,
        }
    }
}

/// A notification and its delivery.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationView {
    pub id: String,
    pub event: String,
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    pub created: String,
    /// pending, delivered, no_webhook or failed.
    #[schema(value_type = String, example = "delivered")]
    pub delivery: Delivery,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl From<&Versioned<Notification>> for NotificationView {
    fn from(notification: &Versioned<Notification>) -> NotificationView {
        let value = &notification.value;
        NotificationView {
            id: notification.id.clone(),
            event: value.event.clone(),
            data: value.data.clone(),
            created: text(value.created),
            delivery: value.delivery,
            attempts: value.attempts,
            last_error: value.last_error.clone(),
        }
    }
}

/// A patient-access app and its way to production.
#[derive(Debug, Serialize, ToSchema)]
pub struct AppView {
    pub id: String,
    pub account: String,
    pub name: String,
    /// The SMART client id, the same in the sandbox and in production.
    pub client_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub production: Option<TrackView>,
}

/// Where an app's production request stands, with the ONC deadlines.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrackView {
    pub requested: String,
    /// `verification`, `enablement`, or absent once enabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled_by: Option<String>,
    /// 10 business days after the request.
    pub verify_by: String,
    /// 5 business days after the verification.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_by: Option<String>,
    pub verification_overdue: bool,
    pub enablement_overdue: bool,
}

impl AppView {
    /// The app as it stands at `now`.
    pub fn at(app: &Versioned<App>, now: OffsetDateTime) -> AppView {
        let production = app.value.production.as_ref().map(|track| {
            let deadlines = track.deadlines(now);
            TrackView {
                requested: text(track.requested),
                waiting_for: track.waiting_for(),
                verified: track.verified.as_ref().map(|step| text(step.at)),
                verified_by: track.verified.as_ref().map(|step| step.by.clone()),
                enabled: track.enabled.as_ref().map(|step| text(step.at)),
                enabled_by: track.enabled.as_ref().map(|step| step.by.clone()),
                verify_by: text(deadlines.verify_by),
                enable_by: deadlines.enable_by.map(text),
                verification_overdue: deadlines.verification_overdue,
                enablement_overdue: deadlines.enablement_overdue,
            }
        });
        AppView {
            id: app.id.clone(),
            account: app.value.account.clone(),
            name: app.value.name.clone(),
            client_id: app.value.client_id.clone(),
            production,
        }
    }
}
