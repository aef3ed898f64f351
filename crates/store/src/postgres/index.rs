//! Writing index rows: every row of a resource's previous version is replaced in the same
//! transaction as the resource itself.
//!
//! Statements work on many resources at once, so that a single write and a whole import
//! batch cost the same number of round trips: one `DELETE` (all tables, through data-modifying
//! `WITH` clauses) for the resources that had rows, and one `INSERT … SELECT FROM unnest(…)`
//! per table that gets rows. Every statement goes out as a typed query: parse, bind and
//! execute in one round trip, where an untyped one would first ask the server to describe
//! its parameters.

use fhir::search::IndexRows;
use postgres::Transaction;
use postgres::types::{ToSql, Type};

use crate::Error;

/// Removes every index row of each resource row in `row_ids`, in one statement.
pub(crate) fn clear(transaction: &mut Transaction<'_>, row_ids: &[i64]) -> Result<(), Error> {
    if row_ids.is_empty() {
        return Ok(());
    }
    const CLEAR: &str = "WITH t AS (DELETE FROM token_index WHERE resource_row = ANY($1)), \
         s AS (DELETE FROM string_index WHERE resource_row = ANY($1)), \
         d AS (DELETE FROM date_index WHERE resource_row = ANY($1)), \
         n AS (DELETE FROM number_index WHERE resource_row = ANY($1)), \
         q AS (DELETE FROM quantity_index WHERE resource_row = ANY($1)), \
         r AS (DELETE FROM reference_index WHERE resource_row = ANY($1)), \
         u AS (DELETE FROM uri_index WHERE resource_row = ANY($1)) \
         SELECT 1";
    transaction.query_typed(CLEAR, &[(&row_ids, Type::INT8_ARRAY)])?;
    Ok(())
}

/// Replaces the index rows of `row_id` with `rows`; `fresh` says the row is new (or was
/// deleted) and has none.
pub(crate) fn replace(
    transaction: &mut Transaction<'_>,
    row_id: i64,
    rows: &IndexRows,
    fresh: bool,
) -> Result<(), Error> {
    if !fresh {
        clear(transaction, &[row_id])?;
    }
    insert(transaction, &[(row_id, rows)])
}

/// Inserts the index rows of many resources: `(resource row, its rows)` pairs, none of which
/// has rows yet. One `INSERT` per table that gets rows.
pub(crate) fn insert(transaction: &mut Transaction<'_>, resources: &[(i64, &IndexRows)]) -> Result<(), Error> {
    use Type as T;
    let tokens: Vec<_> = each(resources, |rows| &rows.tokens);
    if !tokens.is_empty() {
        let rows: Vec<i64> = tokens.iter().map(|(row_id, _)| *row_id).collect();
        let params: Vec<i64> = tokens.iter().map(|(_, row)| row.param).collect();
        let systems: Vec<Option<&str>> = tokens.iter().map(|(_, row)| row.system.as_deref()).collect();
        let codes: Vec<&str> = tokens.iter().map(|(_, row)| row.code.as_str()).collect();
        execute(
            transaction,
            "INSERT INTO token_index (resource_row, param, system, code) \
             SELECT * FROM unnest($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[])",
            &[(&rows, T::INT8_ARRAY), (&params, T::INT8_ARRAY), (&systems, T::TEXT_ARRAY), (&codes, T::TEXT_ARRAY)],
        )?;
    }
    let strings: Vec<_> = each(resources, |rows| &rows.strings);
    if !strings.is_empty() {
        let rows: Vec<i64> = strings.iter().map(|(row_id, _)| *row_id).collect();
        let params: Vec<i64> = strings.iter().map(|(_, row)| row.param).collect();
        let normalized: Vec<&str> = strings.iter().map(|(_, row)| row.normalized.as_str()).collect();
        let exact: Vec<&str> = strings.iter().map(|(_, row)| row.exact.as_str()).collect();
        execute(
            transaction,
            "INSERT INTO string_index (resource_row, param, normalized, exact) \
             SELECT * FROM unnest($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[])",
            &[(&rows, T::INT8_ARRAY), (&params, T::INT8_ARRAY), (&normalized, T::TEXT_ARRAY), (&exact, T::TEXT_ARRAY)],
        )?;
    }
    let dates: Vec<_> = each(resources, |rows| &rows.dates);
    if !dates.is_empty() {
        let rows: Vec<i64> = dates.iter().map(|(row_id, _)| *row_id).collect();
        let params: Vec<i64> = dates.iter().map(|(_, row)| row.param).collect();
        let low: Vec<i64> = dates.iter().map(|(_, row)| row.low).collect();
        let high: Vec<i64> = dates.iter().map(|(_, row)| row.high).collect();
        execute(
            transaction,
            "INSERT INTO date_index (resource_row, param, low, high) \
             SELECT * FROM unnest($1::BIGINT[], $2::BIGINT[], $3::BIGINT[], $4::BIGINT[])",
            &[(&rows, T::INT8_ARRAY), (&params, T::INT8_ARRAY), (&low, T::INT8_ARRAY), (&high, T::INT8_ARRAY)],
        )?;
    }
    let numbers: Vec<_> = each(resources, |rows| &rows.numbers);
    if !numbers.is_empty() {
        let rows: Vec<i64> = numbers.iter().map(|(row_id, _)| *row_id).collect();
        let params: Vec<i64> = numbers.iter().map(|(_, row)| row.param).collect();
        let values: Vec<f64> = numbers.iter().map(|(_, row)| row.value).collect();
        execute(
            transaction,
            "INSERT INTO number_index (resource_row, param, value) \
             SELECT * FROM unnest($1::BIGINT[], $2::BIGINT[], $3::DOUBLE PRECISION[])",
            &[(&rows, T::INT8_ARRAY), (&params, T::INT8_ARRAY), (&values, T::FLOAT8_ARRAY)],
        )?;
    }
    let quantities: Vec<_> = each(resources, |rows| &rows.quantities);
    if !quantities.is_empty() {
        let rows: Vec<i64> = quantities.iter().map(|(row_id, _)| *row_id).collect();
        let params: Vec<i64> = quantities.iter().map(|(_, row)| row.param).collect();
        let values: Vec<f64> = quantities.iter().map(|(_, row)| row.value).collect();
        let systems: Vec<Option<&str>> = quantities.iter().map(|(_, row)| row.system.as_deref()).collect();
        let codes: Vec<Option<&str>> = quantities.iter().map(|(_, row)| row.code.as_deref()).collect();
        let units: Vec<Option<&str>> = quantities.iter().map(|(_, row)| row.unit.as_deref()).collect();
        execute(
            transaction,
            "INSERT INTO quantity_index (resource_row, param, value, system, code, unit) \
             SELECT * FROM unnest($1::BIGINT[], $2::BIGINT[], $3::DOUBLE PRECISION[], $4::TEXT[], $5::TEXT[], \
             $6::TEXT[])",
            &[
                (&rows, T::INT8_ARRAY),
                (&params, T::INT8_ARRAY),
                (&values, T::FLOAT8_ARRAY),
                (&systems, T::TEXT_ARRAY),
                (&codes, T::TEXT_ARRAY),
                (&units, T::TEXT_ARRAY),
            ],
        )?;
    }
    let references: Vec<_> = each(resources, |rows| &rows.references);
    if !references.is_empty() {
        let rows: Vec<i64> = references.iter().map(|(row_id, _)| *row_id).collect();
        let params: Vec<i64> = references.iter().map(|(_, row)| row.param).collect();
        let types: Vec<Option<&str>> = references.iter().map(|(_, row)| row.target_type.as_deref()).collect();
        let ids: Vec<Option<&str>> = references.iter().map(|(_, row)| row.target_id.as_deref()).collect();
        let urls: Vec<Option<&str>> = references.iter().map(|(_, row)| row.url.as_deref()).collect();
        execute(
            transaction,
            "INSERT INTO reference_index (resource_row, param, target_type, target_id, url) \
             SELECT * FROM unnest($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[])",
            &[
                (&rows, T::INT8_ARRAY),
                (&params, T::INT8_ARRAY),
                (&types, T::TEXT_ARRAY),
                (&ids, T::TEXT_ARRAY),
                (&urls, T::TEXT_ARRAY),
            ],
        )?;
    }
    let uris: Vec<_> = each(resources, |rows| &rows.uris);
    if !uris.is_empty() {
        let rows: Vec<i64> = uris.iter().map(|(row_id, _)| *row_id).collect();
        let params: Vec<i64> = uris.iter().map(|(_, row)| row.param).collect();
        let values: Vec<&str> = uris.iter().map(|(_, row)| row.value.as_str()).collect();
        execute(
            transaction,
            "INSERT INTO uri_index (resource_row, param, value) \
             SELECT * FROM unnest($1::BIGINT[], $2::BIGINT[], $3::TEXT[])",
            &[(&rows, T::INT8_ARRAY), (&params, T::INT8_ARRAY), (&values, T::TEXT_ARRAY)],
        )?;
    }
    Ok(())
}

/// Every row of one kind across `resources`, each with its resource row.
fn each<'a, R>(resources: &[(i64, &'a IndexRows)], kind: impl Fn(&'a IndexRows) -> &'a Vec<R>) -> Vec<(i64, &'a R)> {
    resources.iter().flat_map(|&(row_id, rows)| kind(rows).iter().map(move |row| (row_id, row))).collect()
}

/// Runs one typed statement (one round trip).
fn execute(
    transaction: &mut Transaction<'_>,
    statement: &str,
    params: &[(&(dyn ToSql + Sync), Type)],
) -> Result<(), Error> {
    transaction.execute_typed(statement, params)?;
    Ok(())
}
