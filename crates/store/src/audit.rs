//! The audit log: an append-only record of every FHIR interaction, sign-in, token event and
//! platform change, kept in hash chains that show any later edit.
//!
//! An [`Event`] says who did what to which resources and patients, with what outcome. The
//! store appends events to a **chain**: each entry's hash is an HMAC-SHA256, under a key
//! derived from the server's secret key ([`ChainKey`]), over the previous entry's hash and
//! the entry's own columns, so altering, deleting, reordering or inserting a row breaks the
//! chain at that row, and nobody without the key can forge a chain again. Each process writes
//! through **lanes**: a write transaction takes a free lane (its own chain) and gives it back
//! after, so concurrent writers never wait on one row; each chain's head (last sequence
//! number and hash) is updated with its entries, so a removed last entry is found too.
//!
//! FHIR writes are audited in their own transaction (a store made by [`Audit::audited`]
//! appends its event, completed with what the write wrote, before committing), and so is
//! every change to a platform record; other events (reads, refusals) are appended by
//! [`Audit::append_audit`]. [`verify`] walks every chain.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::Error;

/// The key every chain hash is computed with.
#[derive(Clone)]
pub struct ChainKey(hmac::Key);

impl ChainKey {
    /// The key of 32 secret bytes (derived from the server's secret key).
    pub fn new(bytes: &[u8; 32]) -> ChainKey {
        ChainKey(hmac::Key::new(hmac::HMAC_SHA256, bytes))
    }

    /// The hash a chain starts from.
    pub(crate) fn genesis(&self, chain: &str) -> String {
        self.mac(&[b"ignis audit chain", chain.as_bytes()])
    }

    /// The hash of `entry`, after the entry whose hash is `previous`: over every column but
    /// the hash itself.
    pub(crate) fn entry(&self, previous: &str, entry: &Entry) -> String {
        let (seq, recorded) = (entry.seq.to_be_bytes(), crate::clock::micros(entry.recorded).to_be_bytes());
        let kind = [entry.category.as_bytes(), entry.action.as_bytes(), entry.outcome.as_bytes()];
        let [category, action, outcome] = kind;
        self.mac(&[
            previous.as_bytes(),
            entry.chain.as_bytes(),
            &seq,
            &recorded,
            category,
            action,
            outcome,
            entry.body.as_bytes(),
        ])
    }

    /// The MAC of `parts`, each length-prefixed so no two sequences of parts collide.
    fn mac(&self, parts: &[&[u8]]) -> String {
        let mut context = hmac::Context::with_key(&self.0);
        for part in parts {
            context.update(&(part.len() as u64).to_be_bytes());
            context.update(part);
        }
        URL_SAFE_NO_PAD.encode(context.sign().as_ref())
    }
}

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("ChainKey(…)")
    }
}

/// The outcome of an event, as `AuditEvent.outcome` codes it; ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    #[default]
    Success,
    /// The request was refused or failed for the caller's reasons (4xx).
    Minor,
    /// The server failed (5xx).
    Serious,
}

impl Outcome {
    /// The `AuditEvent.outcome` code: 0, 4 or 8.
    pub fn code(self) -> &'static str {
        match self {
            Outcome::Success => "0",
            Outcome::Minor => "4",
            Outcome::Serious => "8",
        }
    }

    /// The outcome of an `AuditEvent.outcome` code.
    pub fn of_code(code: &str) -> Option<Outcome> {
        match code {
            "0" => Some(Outcome::Success),
            "4" => Some(Outcome::Minor),
            "8" => Some(Outcome::Serious),
            _ => None,
        }
    }

    /// The outcome of an HTTP status.
    pub fn of_status(status: u16) -> Outcome {
        match status {
            500.. => Outcome::Serious,
            400.. => Outcome::Minor,
            _ => Outcome::Success,
        }
    }
}

/// Who acted: each of them that is known.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    /// A user (username), or `system` for a process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The OAuth client the user acted through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The device whose credential was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// The account the client or device belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
}

/// One audited event. Never holds a secret: tokens, passwords and codes are never put in it.
/// Its category, action and outcome are columns of its entry, not repeated in the JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// `rest` (a FHIR interaction), `security` (sign-in, second factor, tokens), `api` (the
    /// access program's API), `record` (a change to a platform record), `admin` (an
    /// operator command).
    #[serde(default, skip_serializing)]
    pub category: String,
    /// The interaction or step: `read`, `search-type`, `create`, `token`, `sign-in`…
    #[serde(default, skip_serializing)]
    pub action: String,
    #[serde(default, skip_serializing)]
    pub outcome: Outcome,
    /// Why it failed, or what it did, in a few words (never a secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The environment (data partition), for FHIR interactions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    #[serde(default)]
    pub agent: Agent,
    /// The network address the request came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The HTTP method and path (no query: it may hold search values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// The HTTP status of the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The resources or records acted on: `Type/id/_history/version`, or `Type/id`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entities: Vec<String>,
    /// The ids of the patients whose data was touched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patients: Vec<String>,
}

impl Event {
    /// Who and what the entry can be searched by, each once: `agent:` (`user:`, `client:`,
    /// `device:` prefixed), `account:`, `entity:` (`Type/id`, versionless) and `patient:`
    /// terms. (Its category, action and outcome are columns of the entry.)
    pub fn terms(&self) -> BTreeSet<String> {
        let mut terms = BTreeSet::new();
        let agent = &self.agent;
        for (kind, value) in [("user", &agent.user), ("client", &agent.client), ("device", &agent.device)] {
            if let Some(value) = value {
                terms.insert(format!("agent:{kind}:{value}"));
            }
        }
        if let Some(account) = &agent.account {
            terms.insert(format!("account:{account}"));
        }
        for entity in &self.entities {
            let versionless = entity.split("/_history/").next().unwrap_or(entity);
            terms.insert(format!("entity:{versionless}"));
        }
        for patient in &self.patients {
            terms.insert(format!("patient:{patient}"));
        }
        terms
    }

    /// Notes a resource the event acted on, and the patients its body (compact JSON) is about.
    pub fn note_resource(&mut self, resource_type: &str, id: &str, version: Option<u64>, body: &str) {
        self.entities.push(match version {
            Some(version) => format!("{resource_type}/{id}/_history/{version}"),
            None => format!("{resource_type}/{id}"),
        });
        for patient in fhir::references::patients_in_text(resource_type, id, body) {
            if !self.patients.contains(&patient) {
                self.patients.push(patient);
            }
        }
    }
}

/// One entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub chain: String,
    pub seq: u64,
    pub recorded: OffsetDateTime,
    /// The event's category, action and outcome code, as columns searches filter on.
    pub category: String,
    pub action: String,
    pub outcome: String,
    /// The [`Event`] as JSON.
    pub body: String,
    pub hash: String,
}

impl Entry {
    /// The event the entry holds.
    pub fn event(&self) -> Result<Event, Error> {
        let event: Event = serde_json::from_str(&self.body)
            .map_err(|error| Error::Database(format!("audit entry {}#{}: {error}", self.chain, self.seq)))?;
        let outcome = Outcome::of_code(&self.outcome).unwrap_or(Outcome::Serious);
        Ok(Event { category: self.category.clone(), action: self.action.clone(), outcome, ..event })
    }
}

/// A chain's head: its last entry's sequence number and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub chain: String,
    pub created: OffsetDateTime,
    pub last_seq: u64,
    pub last_hash: String,
}

/// An audit search: entries recorded in `[since, until)` that carry every one of `terms` and
/// have the category, action and outcome asked for, newest first, `count` at most,
/// continuing below `before` (the last entry of the previous page).
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    pub terms: Vec<String>,
    pub category: Option<String>,
    pub action: Option<String>,
    /// An outcome code (0, 4, 8).
    pub outcome: Option<String>,
    pub count: usize,
    pub before: Option<Position>,
}

/// Where an entry sits in the newest-first order of searches: (recorded, chain, seq).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub recorded: i64,
    pub chain: String,
    pub seq: u64,
}

impl Position {
    /// The position of `entry`.
    pub fn of(entry: &Entry) -> Position {
        Position { recorded: crate::clock::micros(entry.recorded), chain: entry.chain.clone(), seq: entry.seq }
    }
}

/// The audit log of a store; every [`crate::Store`] is one.
#[async_trait]
pub trait Audit: Send + Sync {
    /// Sets the key chains are hashed with. Until it is set, nothing can be audited: audited
    /// writes and appends fail, and record changes are not recorded (stores used without a
    /// server, in tests).
    fn set_audit_key(&self, key: ChainKey);

    /// The same store, whose every FHIR write also appends `event` in the write's own
    /// transaction, with the resources written (and their patients) added to it.
    fn audited(&self, event: Event) -> Arc<dyn crate::Store>;

    /// Appends `events` in one transaction, each stamped with the store's clock.
    async fn append_audit(&self, events: Vec<Event>) -> Result<(), Error>;

    /// Every chain's head.
    async fn audit_heads(&self) -> Result<Vec<Head>, Error>;

    /// Up to `limit` entries of `chain` after sequence number `after`, in order.
    async fn audit_chain(&self, chain: &str, after: u64, limit: usize) -> Result<Vec<Entry>, Error>;

    /// Moves up to `limit` pending search terms into the term index, sorted; how many.
    /// Searches see pending terms too: folding only makes them cheaper to find and to write.
    async fn fold_audit_terms(&self, limit: usize) -> Result<u64, Error>;

    /// The chains that have entries but no head.
    async fn audit_chains_without_head(&self) -> Result<Vec<String>, Error>;

    /// A page of an audit search.
    async fn search_audit(&self, query: Query) -> Result<Vec<Entry>, Error>;
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub chains: usize,
    pub entries: u64,
    /// The first break found, if any.
    pub problem: Option<Problem>,
}

/// A break in a chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("audit entry {chain}#{seq} does not match its hash: it was altered, or moved from another position")]
    Altered { chain: String, seq: u64 },
    #[error("audit entry {chain}#{seq} is missing: it was deleted")]
    Missing { chain: String, seq: u64 },
    #[error("audit entry {chain}#{seq} is not part of its chain (the chain ends at #{last}): it was inserted")]
    Inserted { chain: String, seq: u64, last: u64 },
    #[error("the head of audit chain {chain} does not match its last entry #{seq}")]
    Head { chain: String, seq: u64 },
    #[error("audit chain {chain} has entries but no head: its head was deleted")]
    Headless { chain: String },
}

/// Entries read per page while verifying.
const VERIFY_PAGE: usize = 1_000;

/// Walks every chain of `store` with `key`, and returns the first break, if any. Runs on a
/// live database: heads are read first, and entries appended after them are left for the
/// next run.
pub async fn verify(store: &dyn Audit, key: &ChainKey) -> Result<Verification, Error> {
    let heads = store.audit_heads().await?;
    let mut verification = Verification { chains: heads.len(), entries: 0, problem: None };
    for head in &heads {
        if let Some(problem) = verify_chain(store, key, head, &mut verification.entries).await? {
            verification.problem = Some(problem);
            return Ok(verification);
        }
    }
    // A chain created after the heads were read has a head now; only a deleted one has none.
    if let Some(chain) = store.audit_chains_without_head().await?.into_iter().next() {
        verification.problem = Some(Problem::Headless { chain });
    }
    Ok(verification)
}

/// The first break in the chain of `head`, counting the entries read.
async fn verify_chain(
    store: &dyn Audit,
    key: &ChainKey,
    head: &Head,
    entries: &mut u64,
) -> Result<Option<Problem>, Error> {
    let chain = head.chain.clone();
    let (mut previous, mut seq) = (key.genesis(&chain), 0_u64);
    loop {
        let page = store.audit_chain(&chain, seq, VERIFY_PAGE).await?;
        let full = page.len() == VERIFY_PAGE;
        for entry in page {
            let expected = seq + 1;
            if entry.seq > head.last_seq {
                if expected <= head.last_seq {
                    return Ok(Some(Problem::Missing { chain, seq: expected }));
                }
                // Appended after the head was read, or inserted past the end: the head, read
                // again, covers an appended entry.
                let last =
                    store.audit_heads().await?.into_iter().find(|now| now.chain == chain).map_or(0, |now| now.last_seq);
                if entry.seq > last {
                    return Ok(Some(Problem::Inserted { chain, seq: entry.seq, last }));
                }
                return Ok(None);
            }
            if entry.seq != expected {
                return Ok(Some(Problem::Missing { chain, seq: expected }));
            }
            let hash = key.entry(&previous, &entry);
            if hash != entry.hash {
                return Ok(Some(Problem::Altered { chain, seq: entry.seq }));
            }
            *entries += 1;
            (previous, seq) = (hash, entry.seq);
        }
        if !full {
            break;
        }
    }
    if seq < head.last_seq {
        return Ok(Some(Problem::Missing { chain, seq: seq + 1 }));
    }
    if seq > 0 && previous != head.last_hash {
        return Ok(Some(Problem::Head { chain, seq }));
    }
    Ok(None)
}
