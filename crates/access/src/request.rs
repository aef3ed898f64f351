//! Production access requests and their certification review.
//!
//! A request moves `draft → submitted → in_review → changes_requested ↔ submitted →
//! approved | rejected` ([`State::after`] is the whole table). Its checklist must be complete
//! before approval; a rejection or a request for changes says why; every transition is kept
//! with who made it and when. An approved request certifies its account for production.

use std::fmt;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use store::records::{self, Kind, RecordKey, Records, Versioned};
use time::OffsetDateTime;

use crate::{AccessError, rfc3339};

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Draft,
    Submitted,
    InReview,
    ChangesRequested,
    Approved,
    Rejected,
}

/// What moves a request from one state to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// The account hands the request in (again, after changes).
    Submit,
    /// An operator takes it into review.
    Review,
    /// An operator sends it back with what to change.
    RequestChanges,
    Approve,
    Reject,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Draft => "draft",
            State::Submitted => "submitted",
            State::InReview => "in_review",
            State::ChangesRequested => "changes_requested",
            State::Approved => "approved",
            State::Rejected => "rejected",
        }
    }

    /// The state `action` leads to from this one, if it is allowed here.
    pub fn after(self, action: Action) -> Option<State> {
        use Action::*;
        use State::*;
        match (self, action) {
            (Draft | ChangesRequested, Submit) => Some(Submitted),
            (Submitted, Review) => Some(InReview),
            (Submitted | InReview, RequestChanges) => Some(ChangesRequested),
            (InReview, Approve) => Some(Approved),
            (Submitted | InReview, Reject) => Some(Rejected),
            _ => None,
        }
    }

    /// Every action allowed from this state, with where it leads.
    pub fn allowed(self) -> Vec<(Action, State)> {
        Action::ALL.iter().filter_map(|&action| self.after(action).map(|to| (action, to))).collect()
    }

    /// Whether the request is decided for good.
    pub fn is_final(self) -> bool {
        matches!(self, State::Approved | State::Rejected)
    }
}

impl fmt::Display for State {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl Action {
    pub const ALL: [Action; 5] =
        [Action::Submit, Action::Review, Action::RequestChanges, Action::Approve, Action::Reject];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Submit => "submit",
            Action::Review => "review",
            Action::RequestChanges => "request-changes",
            Action::Approve => "approve",
            Action::Reject => "reject",
        }
    }

    pub(crate) fn past_tense(self) -> &'static str {
        match self {
            Action::Submit => "submitted",
            Action::Review => "taken into review",
            Action::RequestChanges => "sent back for changes",
            Action::Approve => "approved",
            Action::Reject => "rejected",
        }
    }

    /// Only operators review, approve and reject; the account submits.
    pub fn needs_operator(self) -> bool {
        !matches!(self, Action::Submit)
    }

    /// A rejection or a request for changes must say why.
    fn needs_reason(self) -> bool {
        matches!(self, Action::RequestChanges | Action::Reject)
    }
}

impl FromStr for Action {
    type Err = AccessError;

    fn from_str(text: &str) -> Result<Action, AccessError> {
        Action::ALL.into_iter().find(|action| action.as_str() == text).ok_or_else(|| {
            AccessError::Invalid(format!(
                "unknown action '{text}': one of {}",
                Action::ALL.map(Action::as_str).join(", ")
            ))
        })
    }
}

/// An item of the review checklist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Item {
    /// The legal agreements signed (BAA, terms): the recorded entry keeps signer and time.
    Legal,
    /// Answers on the integration's architecture.
    Architecture,
    /// Answers on its security.
    Security,
    /// The network paths production calls come from, as comma-separated CIDRs.
    Network,
    /// The recorded demo's reference.
    Demo,
}

impl Item {
    pub const ALL: [Item; 5] = [Item::Legal, Item::Architecture, Item::Security, Item::Network, Item::Demo];

    pub fn as_str(self) -> &'static str {
        match self {
            Item::Legal => "legal",
            Item::Architecture => "architecture",
            Item::Security => "security",
            Item::Network => "network",
            Item::Demo => "demo",
        }
    }
}

impl FromStr for Item {
    type Err = AccessError;

    fn from_str(text: &str) -> Result<Item, AccessError> {
        Item::ALL.into_iter().find(|item| item.as_str() == text).ok_or_else(|| {
            AccessError::Invalid(format!(
                "unknown checklist item '{text}': one of {}",
                Item::ALL.map(Item::as_str).join(", ")
            ))
        })
    }
}

/// A filled-in checklist item: its value, who recorded it and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub value: String,
    pub by: String,
    #[serde(with = "rfc3339")]
    pub at: OffsetDateTime,
}

/// A step of a request's life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub action: Action,
    pub from: State,
    pub to: State,
    pub by: String,
    #[serde(with = "rfc3339")]
    pub at: OffsetDateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A production access request as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRequest {
    pub account: String,
    pub state: State,
    /// The checklist items recorded so far, by item.
    #[serde(default)]
    pub checklist: Vec<(Item, Entry)>,
    #[serde(default)]
    pub transitions: Vec<Transition>,
    /// Set on approval: the contract term's end, when the certification ends.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "rfc3339::option")]
    pub contract_end: Option<OffsetDateTime>,
}

/// How long a certification lasts when the approval names no contract end.
pub const DEFAULT_TERM: time::Duration = time::Duration::days(365);

impl Kind for AccessRequest {
    const KIND: &'static str = "access-request";

    fn keys(&self) -> Vec<RecordKey> {
        vec![RecordKey::shared("account", &self.account), RecordKey::shared("state", self.state.as_str())]
    }
}

impl AccessRequest {
    /// The entry recorded for `item`.
    pub fn entry(&self, item: Item) -> Option<&Entry> {
        self.checklist.iter().find(|(recorded, _)| *recorded == item).map(|(_, entry)| entry)
    }

    /// The checklist items not yet recorded.
    pub fn missing(&self) -> Vec<&'static str> {
        Item::ALL.into_iter().filter(|item| self.entry(*item).is_none()).map(Item::as_str).collect()
    }

    /// The approved network paths.
    pub fn network(&self) -> Vec<IpNet> {
        self.entry(Item::Network).map(|entry| parse_cidrs(&entry.value).unwrap_or_default()).unwrap_or_default()
    }

    /// When it was approved, if it was.
    pub fn approved_at(&self) -> Option<OffsetDateTime> {
        self.transitions.iter().rev().find(|step| step.to == State::Approved).map(|step| step.at)
    }

    /// Applies `action` by `by` at `at`, or says why it is not allowed.
    fn apply(&mut self, action: Action, reason: Option<&str>, by: &str, at: OffsetDateTime) -> Result<(), AccessError> {
        let from = self.state;
        let to = from.after(action).ok_or_else(|| AccessError::IllegalTransition {
            from,
            action,
            allowed: from.allowed(),
        })?;
        let reason = reason.map(str::trim).filter(|reason| !reason.is_empty());
        if action.needs_reason() && reason.is_none() {
            return Err(AccessError::Invalid(format!("a request cannot be {} without a reason", action.past_tense())));
        }
        if action == Action::Approve {
            let missing = self.missing();
            if !missing.is_empty() {
                return Err(AccessError::ChecklistIncomplete { missing });
            }
        }
        if action == Action::Approve {
            self.contract_end = Some(self.contract_end.unwrap_or(at + DEFAULT_TERM));
        }
        self.state = to;
        self.transitions.push(Transition {
            action,
            from,
            to,
            by: by.to_owned(),
            at,
            reason: reason.map(str::to_owned),
        });
        Ok(())
    }

    /// Records `value` for `item` by `by` at `at` (replacing an earlier entry).
    fn record(&mut self, item: Item, value: &str, by: &str, at: OffsetDateTime) -> Result<(), AccessError> {
        if self.state.is_final() {
            return Err(AccessError::Closed(self.state));
        }
        let value = match item {
            Item::Network => parse_cidrs(value)?.iter().map(IpNet::to_string).collect::<Vec<_>>().join(","),
            _ => value.trim().to_owned(),
        };
        if value.is_empty() || value.len() > MAX_VALUE {
            return Err(AccessError::Invalid(format!(
                "the checklist item '{}' needs a value of 1 to {MAX_VALUE} bytes",
                item.as_str()
            )));
        }
        let entry = Entry { value, by: by.to_owned(), at };
        match self.checklist.iter_mut().find(|(recorded, _)| *recorded == item) {
            Some((_, existing)) => *existing = entry,
            None => self.checklist.push((item, entry)),
        }
        Ok(())
    }
}

/// The longest checklist value accepted.
const MAX_VALUE: usize = 16 * 1024;

/// Comma-separated CIDRs (`203.0.113.0/24, 2001:db8::/32`); a bare address is its own /32 or
/// /128.
pub fn parse_cidrs(text: &str) -> Result<Vec<IpNet>, AccessError> {
    let cidrs: Vec<IpNet> = text
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            part.parse::<IpNet>()
                .or_else(|_| part.parse::<std::net::IpAddr>().map(IpNet::from))
                .map(|net| net.trunc())
                .map_err(|_| AccessError::Invalid(format!("'{part}' is not a CIDR (e.g. 203.0.113.0/24)")))
        })
        .collect::<Result<_, _>>()?;
    if cidrs.is_empty() {
        return Err(AccessError::Invalid("the network paths need at least one CIDR".to_owned()));
    }
    Ok(cidrs)
}

/// Opens a draft request for `account`, by `by`.
pub async fn create(store: &dyn Records, account: &str, by: &str) -> Result<Versioned<AccessRequest>, AccessError> {
    crate::account::get(store, account).await?;
    let request = AccessRequest {
        account: account.to_owned(),
        state: State::Draft,
        checklist: Vec::new(),
        transitions: Vec::new(),
        contract_end: None,
    };
    Ok(records::create(store, &crate::new_id(), &request, by).await?)
}

/// The request at `id`.
pub async fn get(store: &dyn Records, id: &str) -> Result<Versioned<AccessRequest>, AccessError> {
    records::get::<AccessRequest>(store, id)
        .await?
        .ok_or_else(|| AccessError::NotFound { what: "access request", id: id.to_owned() })
}

/// The requests of `account`.
pub async fn of_account(store: &dyn Records, account: &str) -> Result<Vec<Versioned<AccessRequest>>, AccessError> {
    Ok(records::find::<AccessRequest>(store, "account", account).await?)
}

/// The requests in `state`, of every account (the operators' queue).
pub async fn in_state(store: &dyn Records, state: State) -> Result<Vec<Versioned<AccessRequest>>, AccessError> {
    Ok(records::find::<AccessRequest>(store, "state", state.as_str()).await?)
}

/// The account's latest approved request, if it has one: what certifies it for production.
pub async fn approved(store: &dyn Records, account: &str) -> Result<Option<Versioned<AccessRequest>>, AccessError> {
    Ok(of_account(store, account)
        .await?
        .into_iter()
        .filter(|request| request.value.state == State::Approved)
        .max_by_key(|request| request.value.approved_at()))
}

/// Applies `action` to the request at `id`, by `by`.
pub async fn transition(
    store: &dyn Records,
    id: &str,
    action: Action,
    reason: Option<&str>,
    by: &str,
) -> Result<Versioned<AccessRequest>, AccessError> {
    transition_with(store, id, action, reason, None, by).await
}

/// [`transition`], with the contract term's end for an approval (default a year on).
pub async fn transition_with(
    store: &dyn Records,
    id: &str,
    action: Action,
    reason: Option<&str>,
    contract_end: Option<OffsetDateTime>,
    by: &str,
) -> Result<Versioned<AccessRequest>, AccessError> {
    let now = crate::now();
    if contract_end.is_some_and(|end| end <= now) {
        return Err(AccessError::Invalid("the contract end must be in the future".to_owned()));
    }
    let changed = records::try_modify(store, id, by, |request: &mut AccessRequest| {
        if action == Action::Approve && request.state.after(action).is_some() {
            request.contract_end = contract_end.or(request.contract_end);
        }
        request.apply(action, reason, by, now)
    })
    .await?;
    let data = serde_json::json!({
        "request": id,
        "action": action.as_str(),
        "state": changed.value.state.as_str(),
        "reason": reason,
        "by": by,
    });
    let event = format!("access-request.{}", changed.value.state.as_str());
    crate::notification::emit(store, &changed.value.account, &event, data, by).await?;
    Ok(changed)
}

/// Records a checklist item of the request at `id`, by `by`.
pub async fn record(
    store: &dyn Records,
    id: &str,
    item: Item,
    value: &str,
    by: &str,
) -> Result<Versioned<AccessRequest>, AccessError> {
    records::try_modify(store, id, by, |request: &mut AccessRequest| request.record(item, value, by, crate::now()))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH
    }

    fn request() -> AccessRequest {
        AccessRequest {
            account: "a".into(),
            state: State::Draft,
            checklist: Vec::new(),
            transitions: Vec::new(),
            contract_end: None,
        }
    }

    #[test]
    fn the_whole_table_of_transitions() {
        let allowed = |state: State| {
            state.allowed().into_iter().map(|(action, to)| (action.as_str(), to.as_str())).collect::<Vec<_>>()
        };
        assert_eq!(allowed(State::Draft), [("submit", "submitted")]);
        assert_eq!(
            allowed(State::Submitted),
            [("review", "in_review"), ("request-changes", "changes_requested"), ("reject", "rejected")]
        );
        assert_eq!(
            allowed(State::InReview),
            [("request-changes", "changes_requested"), ("approve", "approved"), ("reject", "rejected")]
        );
        assert_eq!(allowed(State::ChangesRequested), [("submit", "submitted")]);
        assert!(allowed(State::Approved).is_empty());
        assert!(allowed(State::Rejected).is_empty());
    }

    #[test]
    fn an_illegal_transition_names_what_is_allowed() {
        let mut request = request();
        let Err(AccessError::IllegalTransition { from, allowed, .. }) =
            request.apply(Action::Approve, None, "op", at())
        else {
            panic!("approving a draft must be refused");
        };
        assert_eq!(from, State::Draft);
        assert_eq!(allowed, [(Action::Submit, State::Submitted)]);
    }

    #[test]
    fn approval_needs_a_complete_checklist_and_changes_need_a_reason() {
        let mut request = request();
        request.apply(Action::Submit, None, "dev", at()).unwrap();
        request.apply(Action::Review, None, "op", at()).unwrap();
        assert!(matches!(request.apply(Action::RequestChanges, Some("  "), "op", at()), Err(AccessError::Invalid(_))));
        let Err(AccessError::ChecklistIncomplete { missing }) = request.apply(Action::Approve, None, "op", at()) else {
            panic!("approval with an empty checklist must be refused");
        };
        assert_eq!(missing, ["legal", "architecture", "security", "network", "demo"]);
        for item in Item::ALL {
            let value = if item == Item::Network { "203.0.113.7, 2001:db8::/32" } else { "done" };
            request.record(item, value, "op", at()).unwrap();
        }
        assert_eq!(request.entry(Item::Network).unwrap().value, "203.0.113.7/32,2001:db8::/32");
        request.apply(Action::Approve, None, "op", at()).unwrap();
        assert_eq!(request.state, State::Approved);
        assert_eq!(request.transitions.len(), 3);
        assert!(matches!(request.record(Item::Demo, "x", "op", at()), Err(AccessError::Closed(State::Approved))));
    }

    #[test]
    fn network_paths_must_be_cidrs() {
        assert!(parse_cidrs("10.0.0.0/8,192.168.1.0/24").is_ok());
        assert!(
            matches!(parse_cidrs("10.0.0.0/33"), Err(AccessError::Invalid(message)) if message.contains("10.0.0.0/33"))
        );
        assert!(parse_cidrs(" , ").is_err());
        assert!(parse_cidrs("example.com").is_err());
    }
}
