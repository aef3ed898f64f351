//! Bulk imports: many resources at their own ids in the store's write transaction, written a
//! batch at a time rather than a resource at a time.
//!
//! A batch goes to the database in four steps whatever its size: the current rows of all its
//! resources, every new current row and history row, the old index rows of the resources
//! that had some, and the new index rows. On PostgreSQL each step is one statement over
//! `unnest` arrays; SQLite's one writer runs cached statements (see each [`Db`]). The outcome is the single-resource path's: a resource whose stored body equals its
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

use crate::clock::{WriteContext, from_micros};
use crate::sql::db::{Current, Db, Stored, VersionRow};
use crate::sql::write::next_instant;
use crate::{Environment, Error, ImportCounts, ImportResource, Method};

/// Upserts `resources` in the caller's transaction, skipping those whose content is unchanged.
pub(crate) fn import(
    db: &mut dyn Db,
    context: &WriteContext<'_>,
    env: Environment,
    resources: &[ImportResource],
) -> Result<ImportCounts, Error> {
    let mut counts = ImportCounts::default();
    for round in rounds(resources) {
        counts.add(import_round(db, context, env, &round)?);
    }
    Ok(counts)
}

/// One version to write.
struct Write<'a> {
    resource: &'a ImportResource,
    version: u64,
    last_updated: i64,
    body: String,
    replaced: Option<Current>,
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
    db: &mut dyn Db,
    context: &WriteContext<'_>,
    env: Environment,
    resources: &[&ImportResource],
) -> Result<ImportCounts, Error> {
    let keys: Vec<(&str, &str)> =
        resources.iter().map(|resource| (resource.resource_type.as_str(), resource.id.as_str())).collect();
    let stored = db.current_rows(env, &keys)?;
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
        let version = current.as_ref().map_or(0, |current| current.version) + 1;
        let last_updated = next_instant(context, current.as_ref());
        let body = resource.body.stamp(version, &fhir::instant::format(from_micros(last_updated)));
        context.note_write(resource.resource_type.as_str(), resource.id.as_str(), version, &body);
        writes.push(Write { resource, version, last_updated, body, replaced: current });
    }
    if writes.is_empty() {
        return Ok(counts);
    }
    let versions: Vec<VersionRow<'_>> = writes
        .iter()
        .map(|write| VersionRow {
            resource_type: write.resource.resource_type.as_str(),
            id: write.resource.id.as_str(),
            version: write.version,
            last_updated: write.last_updated,
            method: Method::Put,
            deleted: false,
            body: &write.body,
            replaced: write.replaced.as_ref(),
        })
        .collect();
    let row_ids = db.write_versions(env, &versions)?;
    db.clear_index(&stale)?;
    let rows: Vec<(i64, &IndexRows)> =
        writes.iter().zip(row_ids).map(|(write, row_id)| (row_id, &write.resource.index)).collect();
    db.insert_index(&rows)?;
    Ok(counts)
}
