//! Writing a resource's index rows: every row of the previous version is replaced in the same
//! transaction as the resource itself.
//!
//! Rows go in with multi-row `INSERT`s of [`CHUNK`] rows where there are that many: for
//! SQLite, running one statement per row costs about as much as the b-tree insert itself.
//! Imports insert the rows of a whole batch at once to fill those statements.

use fhir::search::IndexRows;
use rusqlite::{Connection, ToSql, params};

use crate::Error;

/// The index tables, each holding rows keyed by `resource_row`.
pub(crate) const INDEX_TABLES: &[&str] =
    &["token_index", "string_index", "date_index", "number_index", "quantity_index", "reference_index", "uri_index"];

/// Rows per multi-row `INSERT`.
const CHUNK: usize = 64;

/// Removes every index row of each resource row in `row_ids`.
pub(crate) fn clear(connection: &Connection, row_ids: &[i64]) -> Result<(), Error> {
    for table in INDEX_TABLES {
        let mut statement = connection.prepare_cached(&format!("DELETE FROM {table} WHERE resource_row = ?1"))?;
        for row_id in row_ids {
            statement.execute(params![row_id])?;
        }
    }
    Ok(())
}

/// Inserts the index rows of each `(resource_row, rows)`, table by table.
pub(crate) fn insert(connection: &Connection, resources: &[(i64, &IndexRows)]) -> Result<(), Error> {
    let tokens = flatten(resources, |rows| &rows.tokens);
    insert_table(connection, "token_index", &["param", "system", "code"], &tokens, |row, values| {
        values.extend([&row.param as &dyn ToSql, &row.system, &row.code]);
    })?;
    let strings = flatten(resources, |rows| &rows.strings);
    insert_table(connection, "string_index", &["param", "normalized", "exact"], &strings, |row, values| {
        values.extend([&row.param as &dyn ToSql, &row.normalized, &row.exact]);
    })?;
    let dates = flatten(resources, |rows| &rows.dates);
    insert_table(connection, "date_index", &["param", "low", "high"], &dates, |row, values| {
        values.extend([&row.param as &dyn ToSql, &row.low, &row.high]);
    })?;
    let numbers = flatten(resources, |rows| &rows.numbers);
    insert_table(connection, "number_index", &["param", "value"], &numbers, |row, values| {
        values.extend([&row.param as &dyn ToSql, &row.value]);
    })?;
    let quantities = flatten(resources, |rows| &rows.quantities);
    let columns = ["param", "value", "system", "code", "unit"];
    insert_table(connection, "quantity_index", &columns, &quantities, |row, values| {
        values.extend([&row.param as &dyn ToSql, &row.value, &row.system, &row.code, &row.unit]);
    })?;
    let references = flatten(resources, |rows| &rows.references);
    let columns = ["param", "target_type", "target_id", "url"];
    insert_table(connection, "reference_index", &columns, &references, |row, values| {
        values.extend([&row.param as &dyn ToSql, &row.target_type, &row.target_id, &row.url]);
    })?;
    let uris = flatten(resources, |rows| &rows.uris);
    insert_table(connection, "uri_index", &["param", "value"], &uris, |row, values| {
        values.extend([&row.param as &dyn ToSql, &row.value]);
    })
}

/// The rows of one table across `resources`, each with its resource row and its position
/// among that resource's rows (the `seq` that makes the table's key unique).
fn flatten<'a, R>(
    resources: &'a [(i64, &'a IndexRows)],
    table: impl Fn(&'a IndexRows) -> &'a Vec<R>,
) -> Vec<(&'a i64, i64, &'a R)> {
    let mut flat = Vec::new();
    for (row_id, rows) in resources {
        flat.extend(table(rows).iter().zip(0_i64..).map(|(row, seq)| (row_id, seq, row)));
    }
    flat
}

/// Inserts `rows` into `table`, whose `columns` follow `resource_row` and `seq`; `bind` pushes
/// a row's values in column order.
fn insert_table<'a, R>(
    connection: &Connection,
    table: &str,
    columns: &[&str],
    rows: &'a [(&'a i64, i64, &'a R)],
    bind: impl Fn(&'a R, &mut Vec<&'a dyn ToSql>),
) -> Result<(), Error> {
    let mut values: Vec<&'a dyn ToSql> = Vec::with_capacity(CHUNK * (columns.len() + 2));
    let push = |values: &mut Vec<&'a dyn ToSql>, (row_id, seq, row): &'a (&'a i64, i64, &'a R)| {
        values.push(*row_id);
        values.push(seq);
        bind(row, values);
    };
    let mut chunks = rows.chunks_exact(CHUNK);
    if chunks.len() > 0 {
        let mut statement = connection.prepare_cached(&insert_sql(table, columns, CHUNK))?;
        for chunk in &mut chunks {
            values.clear();
            chunk.iter().for_each(|row| push(&mut values, row));
            statement.execute(values.as_slice())?;
        }
    }
    if !chunks.remainder().is_empty() {
        let mut statement = connection.prepare_cached(&insert_sql(table, columns, 1))?;
        for row in chunks.remainder() {
            values.clear();
            push(&mut values, row);
            statement.execute(values.as_slice())?;
        }
    }
    Ok(())
}

/// `INSERT INTO table (resource_row, seq, columns…) VALUES (?, …), …` for `rows` rows.
fn insert_sql(table: &str, columns: &[&str], rows: usize) -> String {
    let row = format!("(?, ?{})", ", ?".repeat(columns.len()));
    let values = vec![row; rows].join(", ");
    format!("INSERT INTO {table} (resource_row, seq, {}) VALUES {values}", columns.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_row_insert_sql() {
        assert_eq!(
            insert_sql("uri_index", &["param", "value"], 2),
            "INSERT INTO uri_index (resource_row, seq, param, value) VALUES (?, ?, ?, ?), (?, ?, ?, ?)"
        );
    }
}
