//! Writing a resource's index rows: every row of the previous version is replaced in the same
//! transaction as the resource itself.

use fhir::search::IndexRows;
use rusqlite::{Transaction, params};

use crate::Error;

/// The index tables, each holding rows keyed by `resource_row`.
pub(crate) const INDEX_TABLES: &[&str] =
    &["token_index", "string_index", "date_index", "number_index", "quantity_index", "reference_index", "uri_index"];

/// Removes every index row of `row_id`.
pub(crate) fn clear(transaction: &Transaction<'_>, row_id: i64) -> Result<(), Error> {
    for table in INDEX_TABLES {
        transaction
            .prepare_cached(&format!("DELETE FROM {table} WHERE resource_row = ?1"))?
            .execute(params![row_id])?;
    }
    Ok(())
}

/// Replaces the index rows of `row_id` with `rows`; `fresh` (a row just inserted) skips
/// clearing rows that cannot exist.
pub(crate) fn replace(transaction: &Transaction<'_>, row_id: i64, rows: &IndexRows, fresh: bool) -> Result<(), Error> {
    if !fresh {
        clear(transaction, row_id)?;
    }
    let mut insert = transaction
        .prepare_cached("INSERT INTO token_index (resource_row, param, system, code) VALUES (?1, ?2, ?3, ?4)")?;
    for row in &rows.tokens {
        insert.execute(params![row_id, row.param, row.system, row.code])?;
    }
    let mut insert = transaction
        .prepare_cached("INSERT INTO string_index (resource_row, param, normalized, exact) VALUES (?1, ?2, ?3, ?4)")?;
    for row in &rows.strings {
        insert.execute(params![row_id, row.param, row.normalized, row.exact])?;
    }
    let mut insert = transaction
        .prepare_cached("INSERT INTO date_index (resource_row, param, low, high) VALUES (?1, ?2, ?3, ?4)")?;
    for row in &rows.dates {
        insert.execute(params![row_id, row.param, row.low, row.high])?;
    }
    let mut insert =
        transaction.prepare_cached("INSERT INTO number_index (resource_row, param, value) VALUES (?1, ?2, ?3)")?;
    for row in &rows.numbers {
        insert.execute(params![row_id, row.param, row.value])?;
    }
    let mut insert = transaction.prepare_cached(
        "INSERT INTO quantity_index (resource_row, param, value, system, code, unit) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for row in &rows.quantities {
        insert.execute(params![row_id, row.param, row.value, row.system, row.code, row.unit])?;
    }
    let mut insert = transaction.prepare_cached(
        "INSERT INTO reference_index (resource_row, param, target_type, target_id, url) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for row in &rows.references {
        insert.execute(params![row_id, row.param, row.target_type, row.target_id, row.url])?;
    }
    let mut insert =
        transaction.prepare_cached("INSERT INTO uri_index (resource_row, param, value) VALUES (?1, ?2, ?3)")?;
    for row in &rows.uris {
        insert.execute(params![row_id, row.param, row.value])?;
    }
    Ok(())
}
