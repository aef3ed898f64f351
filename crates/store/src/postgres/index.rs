//! Writing index rows: every row of a resource's previous version is replaced in the same
//! transaction as the resource itself.
//!
//! Statements work on many resources at once, so that a single write and a whole import
//! batch cost the same two round trips: one `DELETE` for the resources that had rows and one
//! statement of `INSERT … SELECT * FROM unnest(…)` for the tables that get rows, each covering
//! several tables through data-modifying `WITH` clauses. They go out as typed queries: parse,
//! bind and execute in one round trip, where an untyped one would first ask the server to
//! describe its parameters.

use fhir::search::IndexRows;
use postgres::GenericClient;
use postgres::types::{ToSql, Type};

use crate::Error;

/// Removes every index row of each resource row in `row_ids`, in one statement.
pub(crate) fn clear(client: &mut impl GenericClient, row_ids: &[i64]) -> Result<(), Error> {
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
    client.query_typed(CLEAR, &[(&row_ids, Type::INT8_ARRAY)])?;
    Ok(())
}

/// Inserts the index rows of many resources: `(resource row, its rows)` pairs, none of which
/// has rows yet. One statement: an `INSERT` per table that gets rows, all but the last in
/// data-modifying `WITH` clauses.
pub(crate) fn insert(client: &mut impl GenericClient, resources: &[(i64, &IndexRows)]) -> Result<(), Error> {
    use Type as T;
    let tokens = each(resources, |rows| &rows.tokens);
    let token_rows = column(&tokens, |&(row_id, _)| row_id);
    let token_params = column(&tokens, |(_, row)| row.param);
    let token_systems = column(&tokens, |(_, row)| row.system.as_deref());
    let token_codes = column(&tokens, |(_, row)| row.code.as_str());
    let strings = each(resources, |rows| &rows.strings);
    let string_rows = column(&strings, |&(row_id, _)| row_id);
    let string_params = column(&strings, |(_, row)| row.param);
    let string_normalized = column(&strings, |(_, row)| row.normalized.as_str());
    let string_exact = column(&strings, |(_, row)| row.exact.as_str());
    let dates = each(resources, |rows| &rows.dates);
    let date_rows = column(&dates, |&(row_id, _)| row_id);
    let date_params = column(&dates, |(_, row)| row.param);
    let date_low = column(&dates, |(_, row)| row.low);
    let date_high = column(&dates, |(_, row)| row.high);
    let numbers = each(resources, |rows| &rows.numbers);
    let number_rows = column(&numbers, |&(row_id, _)| row_id);
    let number_params = column(&numbers, |(_, row)| row.param);
    let number_values = column(&numbers, |(_, row)| row.value);
    let quantities = each(resources, |rows| &rows.quantities);
    let quantity_rows = column(&quantities, |&(row_id, _)| row_id);
    let quantity_params = column(&quantities, |(_, row)| row.param);
    let quantity_values = column(&quantities, |(_, row)| row.value);
    let quantity_systems = column(&quantities, |(_, row)| row.system.as_deref());
    let quantity_codes = column(&quantities, |(_, row)| row.code.as_deref());
    let quantity_units = column(&quantities, |(_, row)| row.unit.as_deref());
    let references = each(resources, |rows| &rows.references);
    let reference_rows = column(&references, |&(row_id, _)| row_id);
    let reference_params = column(&references, |(_, row)| row.param);
    let reference_types = column(&references, |(_, row)| row.target_type.as_deref());
    let reference_ids = column(&references, |(_, row)| row.target_id.as_deref());
    let reference_urls = column(&references, |(_, row)| row.url.as_deref());
    let uris = each(resources, |rows| &rows.uris);
    let uri_rows = column(&uris, |&(row_id, _)| row_id);
    let uri_params = column(&uris, |(_, row)| row.param);
    let uri_values = column(&uris, |(_, row)| row.value.as_str());

    let mut statement = Inserts::default();
    if !tokens.is_empty() {
        statement.add(
            "token_index (resource_row, param, system, code)",
            [(&token_rows, T::INT8_ARRAY), (&token_params, T::INT8_ARRAY)],
            [(&token_systems, T::TEXT_ARRAY), (&token_codes, T::TEXT_ARRAY)],
        );
    }
    if !strings.is_empty() {
        statement.add(
            "string_index (resource_row, param, normalized, exact)",
            [(&string_rows, T::INT8_ARRAY), (&string_params, T::INT8_ARRAY)],
            [(&string_normalized, T::TEXT_ARRAY), (&string_exact, T::TEXT_ARRAY)],
        );
    }
    if !dates.is_empty() {
        statement.add(
            "date_index (resource_row, param, low, high)",
            [(&date_rows, T::INT8_ARRAY), (&date_params, T::INT8_ARRAY)],
            [(&date_low, T::INT8_ARRAY), (&date_high, T::INT8_ARRAY)],
        );
    }
    if !numbers.is_empty() {
        statement.add(
            "number_index (resource_row, param, value)",
            [(&number_rows, T::INT8_ARRAY), (&number_params, T::INT8_ARRAY)],
            [(&number_values, T::FLOAT8_ARRAY)],
        );
    }
    if !quantities.is_empty() {
        statement.add(
            "quantity_index (resource_row, param, value, system, code, unit)",
            [(&quantity_rows, T::INT8_ARRAY), (&quantity_params, T::INT8_ARRAY)],
            [
                (&quantity_values, T::FLOAT8_ARRAY),
                (&quantity_systems, T::TEXT_ARRAY),
                (&quantity_codes, T::TEXT_ARRAY),
                (&quantity_units, T::TEXT_ARRAY),
            ],
        );
    }
    if !references.is_empty() {
        statement.add(
            "reference_index (resource_row, param, target_type, target_id, url)",
            [(&reference_rows, T::INT8_ARRAY), (&reference_params, T::INT8_ARRAY)],
            [(&reference_types, T::TEXT_ARRAY), (&reference_ids, T::TEXT_ARRAY), (&reference_urls, T::TEXT_ARRAY)],
        );
    }
    if !uris.is_empty() {
        statement.add(
            "uri_index (resource_row, param, value)",
            [(&uri_rows, T::INT8_ARRAY), (&uri_params, T::INT8_ARRAY)],
            [(&uri_values, T::TEXT_ARRAY)],
        );
    }
    statement.execute(client)
}

/// A typed array parameter.
type Column<'a> = (&'a (dyn ToSql + Sync), Type);

/// One statement of `INSERT … SELECT * FROM unnest(…)`, one per table.
#[derive(Default)]
struct Inserts<'a> {
    inserts: Vec<String>,
    params: Vec<Column<'a>>,
}

impl<'a> Inserts<'a> {
    /// Adds the insert into `target` (`table (columns)`) of the rows whose columns are `keys`
    /// (resource rows and parameter ids) then `values`.
    fn add<const N: usize>(&mut self, target: &str, keys: [Column<'a>; 2], values: [Column<'a>; N]) {
        let first = self.params.len() + 1;
        self.params.extend(keys);
        self.params.extend(values);
        let placeholders: Vec<String> = (first..=self.params.len()).map(|index| format!("${index}")).collect();
        self.inserts.push(format!("INSERT INTO {target} SELECT * FROM unnest({})", placeholders.join(", ")));
    }

    fn execute(self, client: &mut impl GenericClient) -> Result<(), Error> {
        let Some((last, others)) = self.inserts.split_last() else { return Ok(()) };
        let mut text = String::new();
        for (index, insert) in others.iter().enumerate() {
            text.push_str(if index == 0 { "WITH " } else { ", " });
            text.push_str(&format!("i{index} AS ({insert})"));
        }
        if !others.is_empty() {
            text.push(' ');
        }
        text.push_str(last);
        client.execute_typed(&text, &self.params)?;
        Ok(())
    }
}

/// One column of `rows`.
fn column<'a, R, T>(rows: &[(i64, &'a R)], value: impl Fn(&(i64, &'a R)) -> T) -> Vec<T> {
    rows.iter().map(value).collect()
}

/// Every row of one kind across `resources`, each with its resource row.
fn each<'a, R>(resources: &[(i64, &'a IndexRows)], kind: impl Fn(&'a IndexRows) -> &'a Vec<R>) -> Vec<(i64, &'a R)> {
    resources.iter().flat_map(|&(row_id, rows)| kind(rows).iter().map(move |row| (row_id, row))).collect()
}
