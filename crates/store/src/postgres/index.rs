//! Writing a resource's index rows: every row of the previous version is replaced in the same
//! transaction as the resource itself. Each table gets one `INSERT … SELECT FROM unnest(…)`
//! of all its rows, not one statement per row.

use fhir::search::IndexRows;
use postgres::Transaction;

use crate::Error;

/// The index tables, each holding rows keyed by `resource_row`.
const INDEX_TABLES: &[&str] =
    &["token_index", "string_index", "date_index", "number_index", "quantity_index", "reference_index", "uri_index"];

/// Removes every index row of `row_id`.
pub(crate) fn clear(transaction: &mut Transaction<'_>, row_id: i64) -> Result<(), Error> {
    for table in INDEX_TABLES {
        transaction.execute(&format!("DELETE FROM {table} WHERE resource_row = $1"), &[&row_id])?;
    }
    Ok(())
}

/// Replaces the index rows of `row_id` with `rows`; `fresh` says the row is new and has none.
pub(crate) fn replace(
    transaction: &mut Transaction<'_>,
    row_id: i64,
    rows: &IndexRows,
    fresh: bool,
) -> Result<(), Error> {
    if !fresh {
        clear(transaction, row_id)?;
    }
    if !rows.tokens.is_empty() {
        let params: Vec<i64> = rows.tokens.iter().map(|row| row.param).collect();
        let systems: Vec<Option<&str>> = rows.tokens.iter().map(|row| row.system.as_deref()).collect();
        let codes: Vec<&str> = rows.tokens.iter().map(|row| row.code.as_str()).collect();
        transaction.execute(
            "INSERT INTO token_index (resource_row, param, system, code) \
             SELECT $1, * FROM unnest($2::BIGINT[], $3::TEXT[], $4::TEXT[])",
            &[&row_id, &params, &systems, &codes],
        )?;
    }
    if !rows.strings.is_empty() {
        let params: Vec<i64> = rows.strings.iter().map(|row| row.param).collect();
        let normalized: Vec<&str> = rows.strings.iter().map(|row| row.normalized.as_str()).collect();
        let exact: Vec<&str> = rows.strings.iter().map(|row| row.exact.as_str()).collect();
        transaction.execute(
            "INSERT INTO string_index (resource_row, param, normalized, exact) \
             SELECT $1, * FROM unnest($2::BIGINT[], $3::TEXT[], $4::TEXT[])",
            &[&row_id, &params, &normalized, &exact],
        )?;
    }
    if !rows.dates.is_empty() {
        let params: Vec<i64> = rows.dates.iter().map(|row| row.param).collect();
        let low: Vec<i64> = rows.dates.iter().map(|row| row.low).collect();
        let high: Vec<i64> = rows.dates.iter().map(|row| row.high).collect();
        transaction.execute(
            "INSERT INTO date_index (resource_row, param, low, high) \
             SELECT $1, * FROM unnest($2::BIGINT[], $3::BIGINT[], $4::BIGINT[])",
            &[&row_id, &params, &low, &high],
        )?;
    }
    if !rows.numbers.is_empty() {
        let params: Vec<i64> = rows.numbers.iter().map(|row| row.param).collect();
        let values: Vec<f64> = rows.numbers.iter().map(|row| row.value).collect();
        transaction.execute(
            "INSERT INTO number_index (resource_row, param, value) \
             SELECT $1, * FROM unnest($2::BIGINT[], $3::DOUBLE PRECISION[])",
            &[&row_id, &params, &values],
        )?;
    }
    if !rows.quantities.is_empty() {
        let params: Vec<i64> = rows.quantities.iter().map(|row| row.param).collect();
        let values: Vec<f64> = rows.quantities.iter().map(|row| row.value).collect();
        let systems: Vec<Option<&str>> = rows.quantities.iter().map(|row| row.system.as_deref()).collect();
        let codes: Vec<Option<&str>> = rows.quantities.iter().map(|row| row.code.as_deref()).collect();
        let units: Vec<Option<&str>> = rows.quantities.iter().map(|row| row.unit.as_deref()).collect();
        transaction.execute(
            "INSERT INTO quantity_index (resource_row, param, value, system, code, unit) \
             SELECT $1, * FROM unnest($2::BIGINT[], $3::DOUBLE PRECISION[], $4::TEXT[], $5::TEXT[], $6::TEXT[])",
            &[&row_id, &params, &values, &systems, &codes, &units],
        )?;
    }
    if !rows.references.is_empty() {
        let params: Vec<i64> = rows.references.iter().map(|row| row.param).collect();
        let types: Vec<Option<&str>> = rows.references.iter().map(|row| row.target_type.as_deref()).collect();
        let ids: Vec<Option<&str>> = rows.references.iter().map(|row| row.target_id.as_deref()).collect();
        let urls: Vec<Option<&str>> = rows.references.iter().map(|row| row.url.as_deref()).collect();
        transaction.execute(
            "INSERT INTO reference_index (resource_row, param, target_type, target_id, url) \
             SELECT $1, * FROM unnest($2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[])",
            &[&row_id, &params, &types, &ids, &urls],
        )?;
    }
    if !rows.uris.is_empty() {
        let params: Vec<i64> = rows.uris.iter().map(|row| row.param).collect();
        let values: Vec<&str> = rows.uris.iter().map(|row| row.value.as_str()).collect();
        transaction.execute(
            "INSERT INTO uri_index (resource_row, param, value) SELECT $1, * FROM unnest($2::BIGINT[], $3::TEXT[])",
            &[&row_id, &params, &values],
        )?;
    }
    Ok(())
}
