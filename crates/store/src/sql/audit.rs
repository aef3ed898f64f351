//! The audit log ([`crate::audit`]) over [`Db`]: `audit_chains` (each chain's head),
//! `audit_entries` (the entries) and `audit_terms` (what each entry is searched by).

use std::sync::Mutex;

use crate::Error;
use crate::audit::{Agent, ChainKey, Entry, Event, Head, Query};
use crate::clock::{WriteClock, from_micros};
use crate::records::Record;
use crate::sql::db::{Db, Row};
use crate::sql::{Bind, Dialect, Sql};

/// The audit chains of this process that no write is using: a write takes one and gives it
/// back after, so no two of this process's transactions append to one chain at once (and
/// wait on its head). A chain is made on first use; its head is read inside each
/// transaction, so a rolled-back write leaves nothing to undo here.
#[derive(Debug, Default)]
pub(crate) struct Lanes {
    free: Mutex<Vec<String>>,
}

impl Lanes {
    /// A free chain, or a new one.
    pub(crate) fn take(&self) -> String {
        let free = self.free.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).pop();
        // 64 random bits: every term row repeats the chain, so it is kept short.
        free.unwrap_or_else(|| format!("{:016x}", uuid::Uuid::new_v4().as_u64_pair().0))
    }

    /// Gives `chain` back.
    pub(crate) fn give(&self, chain: String) {
        self.free.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(chain);
    }
}

/// The event of a change to a platform record.
pub(crate) fn record_event(record: &Record) -> Event {
    let action = match (record.deleted, record.version) {
        (true, _) => "delete",
        (false, 1) => "create",
        (false, _) => "update",
    };
    Event {
        category: "record".to_owned(),
        action: action.to_owned(),
        agent: Agent { user: Some(record.updated_by.clone()), ..Agent::default() },
        entities: vec![format!("{}/{}/_history/{}", record.kind, record.id, record.version)],
        ..Event::default()
    }
}

/// Appends `events` to `chain` (made when it does not exist yet), each stamped with `clock`,
/// and moves the chain's head; inside the caller's transaction.
pub(crate) fn append(
    db: &mut dyn Db,
    key: &ChainKey,
    clock: &WriteClock,
    chain: &str,
    events: &[Event],
) -> Result<(), Error> {
    if events.is_empty() {
        return Ok(());
    }
    let dialect = db.dialect();
    let head = Sql::fixed(
        dialect,
        &format!("SELECT last_seq, last_hash FROM audit_chains WHERE chain = {{}}{}", dialect.lock_rows()),
        [chain.into()],
    );
    let head = db.first(&head, |row| Ok((row.int(0)?, row.text(1)?)))?;
    let exists = head.is_some();
    let (mut seq, mut previous) = match head {
        Some((seq, hash)) => (u64::try_from(seq).unwrap_or(0), hash),
        None => (0, key.genesis(chain)),
    };
    let mut terms: Vec<(String, i64, u64)> = Vec::new();
    for event in events {
        seq += 1;
        let recorded = clock.next();
        let mut entry = Entry {
            chain: chain.to_owned(),
            seq,
            recorded: from_micros(recorded),
            category: event.category.clone(),
            action: event.action.clone(),
            outcome: event.outcome.code().to_owned(),
            body: serde_json::to_string(event).map_err(|error| Error::Database(format!("audit event: {error}")))?,
            hash: String::new(),
        };
        entry.hash = key.entry(&previous, &entry);
        let insert = Sql::fixed(
            dialect,
            "INSERT INTO audit_entries (chain, seq, recorded, category, action, outcome, body, hash) \
             VALUES ({}, {}, {}, {}, {}, {}, {}, {})",
            [
                chain.into(),
                seq_column(seq)?,
                recorded.into(),
                entry.category.into(),
                entry.action.into(),
                entry.outcome.into(),
                entry.body.into(),
                entry.hash.clone().into(),
            ],
        );
        db.execute(&insert)?;
        terms.extend(event.terms().into_iter().map(|term| (term, recorded, seq)));
        previous = entry.hash;
    }
    insert_terms(db, chain, &terms)?;
    let head = if exists {
        Sql::fixed(
            dialect,
            "UPDATE audit_chains SET last_seq = {}, last_hash = {} WHERE chain = {}",
            [seq_column(seq)?, previous.into(), chain.into()],
        )
    } else {
        Sql::fixed(
            dialect,
            "INSERT INTO audit_chains (chain, created, last_seq, last_hash) VALUES ({}, {}, {}, {})",
            [chain.into(), clock.next().into(), seq_column(seq)?, previous.into()],
        )
    };
    db.execute(&head)?;
    Ok(())
}

fn seq_column(seq: u64) -> Result<Bind, Error> {
    i64::try_from(seq).map(Bind::from).map_err(|_| Error::Database("audit sequence overflow".into()))
}

/// Inserts `(term, recorded, seq)` rows of `chain` into the pending terms (see [`fold`]).
/// SQLite runs one fixed statement per row,
/// which it keeps prepared (a many-row statement of varying length would be parsed every
/// time); PostgreSQL, where each statement is a round trip, gets them all in one.
fn insert_terms(db: &mut dyn Db, chain: &str, terms: &[(String, i64, u64)]) -> Result<(), Error> {
    const INSERT: &str = "INSERT INTO audit_pending_terms (term, recorded, chain, seq) VALUES ";
    if db.dialect() == Dialect::Sqlite {
        for (term, recorded, seq) in terms {
            let values = [term.as_str().into(), (*recorded).into(), chain.into(), seq_column(*seq)?];
            let sql = "INSERT INTO audit_pending_terms (term, recorded, chain, seq) VALUES ({}, {}, {}, {})";
            db.execute(&Sql::fixed(Dialect::Sqlite, sql, values))?;
        }
        return Ok(());
    }
    for batch in terms.chunks(TERMS_PER_STATEMENT) {
        let mut sql = Sql::new(db.dialect());
        sql.push(INSERT);
        for (index, (term, recorded, seq)) in batch.iter().enumerate() {
            sql.push(if index == 0 { "(" } else { ", (" });
            sql.bind(term.as_str());
            sql.push(", ");
            sql.bind(*recorded);
            sql.push(", ");
            sql.bind(chain);
            sql.push(", ");
            sql.bind(seq_column(*seq)?);
            sql.push(")");
        }
        db.execute(&sql)?;
    }
    Ok(())
}

/// Terms inserted per PostgreSQL statement (four values each).
const TERMS_PER_STATEMENT: usize = 1_000;

/// Moves up to `limit` of the oldest pending terms into `audit_terms`, sorted, in the caller's
/// transaction; how many it moved. Two servers folding at once copy the same rows: the second
/// copy is skipped, and the loser of the deletes is retried (PostgreSQL) or waits (SQLite). A term row inserted once per event would write a random
/// page of the term index per event; folded many at a time, each page written holds many.
pub(crate) fn fold(db: &mut dyn Db, limit: usize) -> Result<u64, Error> {
    let dialect = db.dialect();
    let bounds = Sql::fixed(dialect, "SELECT MIN(id), MAX(id) FROM audit_pending_terms", []);
    let Some((Some(first), Some(last))) = db.first(&bounds, |row| Ok((row.int(0).ok(), row.int(1).ok())))? else {
        return Ok(0);
    };
    if limit == 0 {
        return Ok(0);
    }
    let last = last.min(first.saturating_add(i64::try_from(limit - 1).unwrap_or(i64::MAX)));
    let copy = Sql::fixed(
        dialect,
        "INSERT INTO audit_terms (term, recorded, chain, seq) \
         SELECT term, recorded, chain, seq FROM audit_pending_terms WHERE id <= {} ORDER BY term, recorded \
         ON CONFLICT DO NOTHING",
        [last.into()],
    );
    db.execute(&copy)?;
    db.execute(&Sql::fixed(dialect, "DELETE FROM audit_pending_terms WHERE id <= {}", [last.into()]))
}

/// Every chain's head.
pub(crate) fn heads(db: &mut dyn Db) -> Result<Vec<Head>, Error> {
    let sql = Sql::fixed(
        db.dialect(),
        "SELECT chain, created, last_seq, last_hash FROM audit_chains ORDER BY created, chain",
        [],
    );
    db.rows(&sql, |row| {
        Ok(Head {
            chain: row.text(0)?,
            created: from_micros(row.int(1)?),
            last_seq: u64::try_from(row.int(2)?).unwrap_or(0),
            last_hash: row.text(3)?,
        })
    })
}

/// The columns [`entry_at`] reads, of the entries table aliased `e`.
const COLUMNS: &str = "e.chain, e.seq, e.recorded, e.category, e.action, e.outcome, e.body, e.hash";

fn entry_at(row: &dyn Row) -> Result<Entry, Error> {
    Ok(Entry {
        chain: row.text(0)?,
        seq: u64::try_from(row.int(1)?).unwrap_or(0),
        recorded: from_micros(row.int(2)?),
        category: row.text(3)?,
        action: row.text(4)?,
        outcome: row.text(5)?,
        body: row.text(6)?,
        hash: row.text(7)?,
    })
}

/// Up to `limit` entries of `chain` after `after`, in order.
pub(crate) fn chain(db: &mut dyn Db, chain: &str, after: u64, limit: usize) -> Result<Vec<Entry>, Error> {
    let sql = Sql::fixed(
        db.dialect(),
        &format!(
            "SELECT {COLUMNS} FROM audit_entries e WHERE e.chain = {{}} AND e.seq > {{}} ORDER BY e.seq LIMIT {{}}"
        ),
        [chain.into(), seq_column(after)?, i64::try_from(limit).unwrap_or(i64::MAX).into()],
    );
    db.rows(&sql, entry_at)
}

/// The chains with entries but no head.
pub(crate) fn headless(db: &mut dyn Db) -> Result<Vec<String>, Error> {
    let sql = Sql::fixed(
        db.dialect(),
        "SELECT DISTINCT e.chain FROM audit_entries e \
         WHERE NOT EXISTS (SELECT 1 FROM audit_chains c WHERE c.chain = e.chain) ORDER BY e.chain",
        [],
    );
    db.rows(&sql, |row| row.text(0))
}

/// The terms, folded and pending, as one table.
const TERMS: &str = "(SELECT term, recorded, chain, seq FROM audit_terms \
     UNION ALL SELECT term, recorded, chain, seq FROM audit_pending_terms)";

/// A page of `query`: driven by its first term's rows when it has terms (newest first per
/// term), by the entries' time index otherwise; every other term must be present too.
pub(crate) fn search(db: &mut dyn Db, query: &Query) -> Result<Vec<Entry>, Error> {
    let mut sql = Sql::new(db.dialect());
    let mut terms = query.terms.iter();
    let time = match terms.next() {
        Some(first) => {
            sql.push(&format!(
                "SELECT {COLUMNS} FROM {TERMS} t JOIN audit_entries e ON e.chain = t.chain AND e.seq = t.seq WHERE t.term = "
            ));
            sql.bind(first.as_str());
            "t"
        }
        None => {
            sql.push(&format!("SELECT {COLUMNS} FROM audit_entries e WHERE 1 = 1"));
            "e"
        }
    };
    if let Some(since) = query.since {
        sql.push(&format!(" AND {time}.recorded >= "));
        sql.bind(crate::clock::micros(since));
    }
    if let Some(until) = query.until {
        sql.push(&format!(" AND {time}.recorded < "));
        sql.bind(crate::clock::micros(until));
    }
    if let Some(before) = &query.before {
        sql.push(&format!(" AND ({time}.recorded < "));
        sql.bind(before.recorded);
        sql.push(&format!(" OR ({time}.recorded = "));
        sql.bind(before.recorded);
        sql.push(&format!(" AND ({time}.chain < "));
        sql.bind(before.chain.as_str());
        sql.push(&format!(" OR ({time}.chain = "));
        sql.bind(before.chain.as_str());
        sql.push(&format!(" AND {time}.seq < "));
        sql.bind(seq_column(before.seq)?);
        sql.push("))))");
    }
    for (column, value) in [("category", &query.category), ("action", &query.action), ("outcome", &query.outcome)] {
        if let Some(value) = value {
            sql.push(&format!(" AND e.{column} = "));
            sql.bind(value.as_str());
        }
    }
    for term in terms {
        let alias = sql.fresh_alias("o");
        sql.push(&format!(" AND EXISTS (SELECT 1 FROM {TERMS} {alias} WHERE {alias}.term = "));
        sql.bind(term.as_str());
        sql.push(&format!(" AND {alias}.recorded = e.recorded AND {alias}.chain = e.chain AND {alias}.seq = e.seq)"));
    }
    sql.push(&format!(" ORDER BY {time}.recorded DESC, {time}.chain DESC, {time}.seq DESC LIMIT "));
    sql.bind(i64::try_from(query.count).unwrap_or(i64::MAX));
    db.rows(&sql, entry_at)
}
