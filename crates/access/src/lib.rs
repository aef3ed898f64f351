//! The production-access program (DESIGN.md, "Environments and the access program"): the
//! companies that integrate with the platform as **accounts**, their **production access
//! requests** and the operator's certification review, and their **devices**, each with one
//! live **Device JWT** bound to the device's certificate.
//!
//! Everything here is platform records ([`store::records`]); the server's `/api/` and the
//! `ignis admin` commands both call these functions, so an operation means the same whichever
//! way it arrives. No HTTP.

pub mod account;
pub mod app;
pub mod ca;
pub mod certificate;
pub mod certification;
pub mod credential;
pub mod device;
pub mod monitoring;
pub mod notification;
pub mod request;
pub mod view;

use time::OffsetDateTime;

pub use account::Account;
pub use credential::{DeviceClaims, DeviceCredentials, DeviceGrant};
pub use device::Device;
pub use request::{AccessRequest, Action, Item, State};

/// Why an access-program operation was refused. Messages name the check that failed and
/// never a secret.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("no {what} with id '{id}'")]
    NotFound { what: &'static str, id: String },
    /// The request's state does not allow the action; `allowed` lists what it does allow.
    #[error("a request that is {} cannot be {}", .from.as_str(), .action.past_tense())]
    IllegalTransition { from: State, action: Action, allowed: Vec<(Action, State)> },
    #[error("the review checklist is incomplete: {} missing", .missing.join(", "))]
    ChecklistIncomplete { missing: Vec<&'static str> },
    /// The request is approved or rejected: nothing about it changes any more.
    #[error("the request is {0}: it can no longer change")]
    Closed(State),
    #[error("{0}")]
    Invalid(String),
    /// A production credential while the account may not use production: no approved
    /// request, the contract term ended, or the grace period after a material change did.
    #[error("{0}")]
    NotCertified(String),
    #[error("the device is revoked")]
    Revoked,
    #[error("the platform's device signing key: {0}")]
    Key(String),
    #[error(transparent)]
    Secret(#[from] auth::secret::SecretError),
    #[error(transparent)]
    Store(store::Error),
}

impl From<store::Error> for AccessError {
    /// A record that is not there is the caller's `NotFound`, not a store failure.
    fn from(error: store::Error) -> AccessError {
        match error {
            store::Error::RecordNotFound { kind, id } => {
                let what = match kind.as_str() {
                    "account" => "account",
                    "access-request" => "access request",
                    "device" => "device",
                    "app" => "app",
                    _ => "record",
                };
                AccessError::NotFound { what, id }
            }
            other => AccessError::Store(other),
        }
    }
}

/// Serde for instants as RFC 3339 text, the form every record and API answer uses.
pub(crate) use time::serde::rfc3339;

/// The current instant (kept to the nanosecond in records, which orders approvals).
pub(crate) fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// A new record id.
pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// base64url (no padding) of the SHA-256 of `bytes`: certificate thumbprints, key ids.
pub(crate) fn sha256_base64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes))
}
