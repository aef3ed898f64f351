//! Accounts: the companies that integrate with the platform. An account owns devices and
//! production access requests; its members are users with a role on it.

use serde::{Deserialize, Serialize};
use store::records::{self, Kind, RecordKey, Records, Versioned};

use crate::AccessError;

/// What a member may do on the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberRole {
    /// Everything, members included.
    Owner,
    /// Devices, credentials, access requests.
    Developer,
    /// Reads only.
    Viewer,
}

/// A user's membership of an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The user's username (lowercase).
    pub username: String,
    pub role: MemberRole,
}

/// An account as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub name: String,
    #[serde(default)]
    pub members: Vec<Member>,
    /// Set by a material change to a certified integration; cleared by the next approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recertification: Option<crate::certification::Recertification>,
    /// Days production stays open after a material change (default
    /// [`crate::certification::DEFAULT_GRACE`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_days: Option<u32>,
    /// Where its notifications are delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<crate::notification::Webhook>,
    /// Set while the account is suspended: every credential of it is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended: Option<crate::monitoring::Suspension>,
    /// Requests per minute each of its devices, and all of them together, may make (none:
    /// unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_per_minute: Option<u32>,
}

impl Kind for Account {
    const KIND: &'static str = "account";

    fn keys(&self) -> Vec<RecordKey> {
        self.members.iter().map(|member| RecordKey::shared("member", &member.username)).collect()
    }
}

impl Account {
    /// How long production stays open after a material change.
    pub fn grace(&self) -> time::Duration {
        self.grace_days.map_or(crate::certification::DEFAULT_GRACE, |days| time::Duration::days(days.into()))
    }

    /// The role `username` holds on the account, if a member.
    pub fn role_of(&self, username: &str) -> Option<MemberRole> {
        self.members.iter().find(|member| member.username == username).map(|member| member.role)
    }
}

/// The longest account name accepted.
const MAX_NAME: usize = 200;

/// Creates an account named `name` with `members`, by `by`.
pub async fn create(
    store: &dyn Records,
    name: &str,
    members: Vec<Member>,
    by: &str,
) -> Result<Versioned<Account>, AccessError> {
    create_with_grace(store, name, members, None, by).await
}

/// [`create`] with the days production stays open after a material change.
pub async fn create_with_grace(
    store: &dyn Records,
    name: &str,
    members: Vec<Member>,
    grace_days: Option<u32>,
    by: &str,
) -> Result<Versioned<Account>, AccessError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(AccessError::Invalid(format!(
            "an account name must be 1 to {MAX_NAME} characters without control characters"
        )));
    }
    let account = Account {
        name: name.to_owned(),
        members,
        recertification: None,
        grace_days,
        webhook: None,
        suspended: None,
        limit_per_minute: None,
    };
    Ok(records::create(store, &crate::new_id(), &account, by).await?)
}

/// The account at `id`.
pub async fn get(store: &dyn Records, id: &str) -> Result<Versioned<Account>, AccessError> {
    records::get::<Account>(store, id)
        .await?
        .ok_or_else(|| AccessError::NotFound { what: "account", id: id.to_owned() })
}

/// Gives `username` (an existing user) `role` on the account, or changes the role it has, by
/// `by`. An account keeps at least one owner.
pub async fn set_member(
    store: &dyn Records,
    id: &str,
    username: &str,
    role: Option<MemberRole>,
    by: &str,
) -> Result<Versioned<Account>, AccessError> {
    let username = username.to_ascii_lowercase();
    if role.is_some() {
        let user = auth::user::find_by_username(store, &username).await.map_err(|error| match error {
            auth::user::AuthError::Store(error) => AccessError::from(error),
            other => AccessError::Invalid(other.to_string()),
        })?;
        if user.is_none() {
            return Err(AccessError::NotFound { what: "user", id: username });
        }
    }
    records::try_modify(store, id, by, |account: &mut Account| {
        let mut members = account.members.clone();
        members.retain(|member| member.username != username);
        if let Some(role) = role {
            members.push(Member { username: username.clone(), role });
        }
        if !account.members.is_empty() && !members.iter().any(|member| member.role == MemberRole::Owner) {
            return Err(AccessError::Invalid("an account keeps at least one owner".to_owned()));
        }
        account.members = members;
        Ok(())
    })
    .await
}

/// The accounts `username` is a member of.
pub async fn of_member(store: &dyn Records, username: &str) -> Result<Vec<Versioned<Account>>, AccessError> {
    Ok(records::find::<Account>(store, "member", username).await?)
}
