//! Bulk imports: many resources at their own ids in the caller's `SERIALIZABLE` transaction,
//! written a batch at a time rather than a resource at a time.
//!
//! A batch costs a handful of statements whatever its size: one lookup of the current rows
//! of all its resources, one statement writing every new current row and history row, one
//! `DELETE` of the old index rows of the resources that had some, and one `INSERT` per index
//! table. The outcome is the single-resource path's: a resource whose stored body equals its
//! new body stamped with the stored version and instant is left alone (unchanged); any other
//! gets the next version, at the write clock's next instant but always after the version it
//! replaces (which another process may have written).
//!
//! A batch may hold one resource more than once (a resource repeated across files, or an
//! NDJSON file with two versions of it). Its n-th occurrence goes into the n-th round, and
//! rounds run one after another, each seeing what the one before wrote: the same versions
//! and counts as writing the batch one resource at a time, later occurrences winning.

use std::collections::HashMap;

use fhir::search::IndexRows;
use postgres::Transaction;
use postgres::types::Type;

use crate::clock::{WriteContext, from_micros};
use crate::postgres::index;
use crate::postgres::write::{Current, next_instant};
use crate::{Environment, Error, ImportCounts, ImportResource};

/// Upserts `resources` in the caller's transaction, skipping those whose content is unchanged.
pub(crate) fn import(
    transaction: &mut Transaction<'_>,
    context: &WriteContext<'_>,
    env: Environment,
    resources: &[ImportResource],
) -> Result<ImportCounts, Error> {
    let mut counts = ImportCounts::default();
    for round in rounds(resources) {
        counts.add(import_round(transaction, context, env, &round)?);
    }
    Ok(counts)
}

/// A resource's current row and, when it is live, its stored body.
struct Stored {
    current: Current,
    body: String,
}

/// One version to write.
struct Write<'a> {
    resource: &'a ImportResource,
    version: i64,
    last_updated: i64,
    body: String,
}

/// `resources` split so that no round holds one resource twice: the n-th occurrence of a
/// resource is in round n, and every round keeps the batch's order.
fn rounds(resources: &[ImportResource]) -> Vec<Vec<&ImportResource>> {
    let mut occurrences: HashMap<(&str, &str), usize> = HashMap::with_capacity(resources.len());
    let mut rounds: Vec<Vec<&ImportResource>> = Vec::new();
    for resource in resources {
        let seen = occurrences.entry((resource.resource_type.as_str(), resource.id.as_str())).or_insert(0);
        if rounds.len() <= *seen {
            rounds.push(Vec::with_capacity(if rounds.is_empty() { resources.len() } else { 0 }));
        }
        rounds[*seen].push(resource);
        *seen += 1;
    }
    rounds
}

/// Imports resources that are all distinct.
fn import_round(
    transaction: &mut Transaction<'_>,
    context: &WriteContext<'_>,
    env: Environment,
    resources: &[&ImportResource],
) -> Result<ImportCounts, Error> {
    let stored = current_rows(transaction, env, resources)?;
    let mut counts = ImportCounts::default();
    let mut writes = Vec::with_capacity(resources.len());
    // The rows of updated resources, whose old index rows must go.
    let mut stale = Vec::new();
    for (&resource, stored) in resources.iter().zip(stored) {
        let current = match stored {
            Some(Stored { current, body }) if !current.deleted => {
                let last_updated = fhir::instant::format(from_micros(current.last_updated));
                if resource.body.stamp(current.version, &last_updated) == body {
                    counts.unchanged += 1;
                    continue;
                }
                counts.updated += 1;
                stale.push(current.row_id);
                Some(current)
            }
            // A tombstone has no index rows: its resource comes back as created.
            other => {
                counts.created += 1;
                other.map(|stored| stored.current)
            }
        };
        context.note_write(resource.resource_type.as_str());
        let version = current.as_ref().map_or(0, |current| current.version) + 1;
        let last_updated = next_instant(context, current.as_ref());
        let body = resource.body.stamp(version, &fhir::instant::format(from_micros(last_updated)));
        let version = i64::try_from(version).map_err(|_| Error::Database("version overflow".into()))?;
        writes.push(Write { resource, version, last_updated, body });
    }
    if writes.is_empty() {
        return Ok(counts);
    }
    let row_ids = write_rows(transaction, env, &writes)?;
    index::clear(transaction, &stale)?;
    let rows: Vec<(i64, &IndexRows)> =
        writes.iter().zip(row_ids).map(|(write, row_id)| (row_id, &write.resource.index)).collect();
    index::insert(transaction, &rows)?;
    Ok(counts)
}

/// The stored row of each of `resources` (in their order), locked until the transaction ends.
fn current_rows(
    transaction: &mut Transaction<'_>,
    env: Environment,
    resources: &[&ImportResource],
) -> Result<Vec<Option<Stored>>, Error> {
    const LOOKUP: &str = "SELECT k.position, r.row_id, r.version, r.last_updated, r.deleted, r.body \
         FROM unnest($2::TEXT[], $3::TEXT[]) WITH ORDINALITY AS k (type, logical_id, position) \
         JOIN resources r ON r.partition = $1 AND r.type = k.type AND r.logical_id = k.logical_id \
         FOR UPDATE OF r";
    let types: Vec<&str> = resources.iter().map(|resource| resource.resource_type.as_str()).collect();
    let ids: Vec<&str> = resources.iter().map(|resource| resource.id.as_str()).collect();
    let rows = transaction
        .query_typed(LOOKUP, &[(&env.as_str(), Type::TEXT), (&types, Type::TEXT_ARRAY), (&ids, Type::TEXT_ARRAY)])?;
    let mut stored: Vec<Option<Stored>> = resources.iter().map(|_| None).collect();
    for row in rows {
        let position: i64 = row.try_get(0)?;
        let version: i64 = row.try_get(2)?;
        let deleted: i16 = row.try_get(4)?;
        let current = Current {
            row_id: row.try_get(1)?,
            version: u64::try_from(version).unwrap_or(0),
            last_updated: row.try_get(3)?,
            deleted: deleted != 0,
        };
        let slot = usize::try_from(position - 1)
            .ok()
            .and_then(|index| stored.get_mut(index))
            .ok_or_else(|| Error::Database(format!("the import lookup returned position {position}")))?;
        *slot = Some(Stored { current, body: row.try_get(5)? });
    }
    Ok(stored)
}

/// Writes every version in `writes` as the current row and as a history row (the `PUT` of
/// an import), in one statement; returns the current rows' ids in the order of `writes`.
fn write_rows(transaction: &mut Transaction<'_>, env: Environment, writes: &[Write<'_>]) -> Result<Vec<i64>, Error> {
    // `input` is read twice, so PostgreSQL materializes it once, in the order of the arrays.
    const WRITE: &str = "WITH input AS (SELECT * FROM unnest($2::TEXT[], $3::TEXT[], $4::BIGINT[], $5::BIGINT[], \
         $6::TEXT[]) AS i (type, logical_id, version, last_updated, body)), \
         history AS (INSERT INTO resource_history \
         (partition, type, logical_id, version, last_updated, method, deleted, body) \
         SELECT $1, type, logical_id, version, last_updated, 'PUT', 0, body FROM input) \
         INSERT INTO resources (partition, type, logical_id, version, last_updated, deleted, body) \
         SELECT $1, type, logical_id, version, last_updated, 0, body FROM input \
         ON CONFLICT (partition, type, logical_id) DO UPDATE SET version = excluded.version, \
         last_updated = excluded.last_updated, deleted = excluded.deleted, body = excluded.body \
         RETURNING row_id, type, logical_id";
    let types: Vec<&str> = writes.iter().map(|write| write.resource.resource_type.as_str()).collect();
    let ids: Vec<&str> = writes.iter().map(|write| write.resource.id.as_str()).collect();
    let versions: Vec<i64> = writes.iter().map(|write| write.version).collect();
    let instants: Vec<i64> = writes.iter().map(|write| write.last_updated).collect();
    let bodies: Vec<&str> = writes.iter().map(|write| write.body.as_str()).collect();
    let rows = transaction.query_typed(
        WRITE,
        &[
            (&env.as_str(), Type::TEXT),
            (&types, Type::TEXT_ARRAY),
            (&ids, Type::TEXT_ARRAY),
            (&versions, Type::INT8_ARRAY),
            (&instants, Type::INT8_ARRAY),
            (&bodies, Type::TEXT_ARRAY),
        ],
    )?;
    // `RETURNING` promises no order: match the rows back by key.
    let mut row_ids: HashMap<(String, String), i64> = HashMap::with_capacity(rows.len());
    for row in rows {
        row_ids.insert((row.try_get(1)?, row.try_get(2)?), row.try_get(0)?);
    }
    writes
        .iter()
        .map(|write| {
            let key = (write.resource.resource_type.to_string(), write.resource.id.to_string());
            row_ids.get(&key).copied().ok_or_else(|| {
                Error::Database(format!(
                    "the import wrote no row for {}/{}",
                    write.resource.resource_type, write.resource.id
                ))
            })
        })
        .collect()
}
