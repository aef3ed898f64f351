//! Search: a page of matches in a stable order, keyset-paged, with its includes.
//!
//! The order is the `_sort` keys then the row id. A page ends at a cursor (the sort values
//! and row id of its last row), and the next page starts strictly after it, so pages stay
//! stable while data changes and no page ever costs an OFFSET scan. Cursors are opaque to
//! clients: base64 of a small JSON array.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fhir::definitions::SearchParamType;
use fhir::search::{Include, SortField, SortKey, Total};
use serde_json::Value;

use crate::sql::criteria::push_matching;
use crate::sql::db::{Db, stored_resource_at};
use crate::sql::{Bind, Dialect, Sql};
use crate::{Environment, Error, SearchPage, SearchRequest, StoredResource};

/// What search needs from a database connection.
pub(crate) trait SearchConnection {
    /// The dialect statements are built for.
    fn dialect(&self) -> Dialect;

    /// The single integer a `SELECT COUNT(*) …` returns.
    fn count(&mut self, sql: &Sql) -> Result<i64, Error>;

    /// Rows of `row_id, type, logical_id, version, last_updated, deleted, body` followed by
    /// `keys` sort keys (each an integer, a real or a text). Reading stops once the bodies
    /// read exceed `budget` bytes and at least two rows were read (see [`within_budget`]).
    fn rows(&mut self, sql: &Sql, keys: usize, budget: usize) -> Result<Vec<Found>, Error>;
}

/// True while [`SearchConnection::rows`] should read on: under `budget` bytes so far, or fewer
/// than two rows (the second tells whether a page cut after the first has more).
fn keep_reading(rows: usize, bytes: usize, budget: usize) -> bool {
    rows < 2 || bytes <= budget
}

/// One row of a page: its stored resource and its position.
pub(crate) struct Found {
    pub(crate) row_id: i64,
    pub(crate) keys: Vec<Bind>,
    pub(crate) resource: StoredResource,
}

/// Rounds of `:iterate` includes at most.
const INCLUDE_ROUNDS: usize = 4;
/// Resources included per page at most.
const MAX_INCLUDED: usize = 2000;

/// The position a page starts after (or, going backward, before).
struct Cursor {
    backward: bool,
    keys: Vec<Bind>,
    row_id: i64,
}

/// How a sort key is computed and compared.
struct SortColumn {
    /// SQL over the `resources r` row giving the key (never NULL: missing values sort last).
    expression: String,
    /// The sentinel for resources without a value.
    missing: Bind,
    descending: bool,
}

/// A page of search results, under the request's time limit: `db` stops whichever statement
/// runs past it.
pub(crate) fn search_within_limit(
    db: &mut dyn Db,
    env: Environment,
    request: &SearchRequest,
) -> Result<SearchPage, Error> {
    db.limit_time(Some(request.limits.time))?;
    let mut connection = Limited(db);
    search(&mut connection, env, request).map_err(|error| name_time_limit(error, request))
}

/// A connection under a search's time limit, lifted however the search ends: a pooled
/// connection must not keep an old deadline.
struct Limited<'a>(&'a mut dyn Db);

impl Drop for Limited<'_> {
    fn drop(&mut self) {
        if let Err(error) = self.0.limit_time(None) {
            tracing::warn!(%error, "cannot lift a search's time limit");
        }
    }
}

impl SearchConnection for Limited<'_> {
    fn dialect(&self) -> Dialect {
        self.0.dialect()
    }

    fn count(&mut self, sql: &Sql) -> Result<i64, Error> {
        self.0.integer(sql)
    }

    fn rows(&mut self, sql: &Sql, keys: usize, budget: usize) -> Result<Vec<Found>, Error> {
        let (mut found, mut bytes) = (Vec::new(), 0usize);
        // Past the budget the rest are left unread.
        self.0.query(sql, &mut |row| {
            let keys = (7..7 + keys).map(|column| row.key(column)).collect::<Result<_, Error>>()?;
            let resource = stored_resource_at(row, 1)?;
            bytes = bytes.saturating_add(resource.body.len());
            found.push(Found { row_id: row.int(0)?, keys, resource });
            Ok(keep_reading(found.len(), bytes, budget))
        })?;
        Ok(found)
    }
}

pub(crate) fn search(
    connection: &mut impl SearchConnection,
    env: Environment,
    request: &SearchRequest,
) -> Result<SearchPage, Error> {
    let query = &request.query;
    let budget = request.limits.page_bytes;
    // The digest costs microseconds: only pages that read or write a cursor compute it.
    let mut digest = query.cursor.as_ref().map(|_| fingerprint(request));
    let cursor = query.cursor.as_deref().zip(digest).map(|(text, digest)| decode_cursor(text, digest)).transpose()?;
    let columns: Vec<SortColumn> = query.sort.iter().map(sort_column).collect();
    let total = match (query.total, &cursor) {
        (Total::Accurate | Total::Estimate, _) => Some(count(&mut *connection, env, request)?),
        _ if request.count == 0 && query.total != Total::None => Some(count(&mut *connection, env, request)?),
        _ => None,
    };
    if request.count == 0 {
        let (matches, included) = (Vec::new(), Vec::new());
        return Ok(SearchPage { matches, included, total, next: None, previous: None, cut: false });
    }
    let backward = cursor.as_ref().is_some_and(|cursor| cursor.backward);
    let mut found = fetch(&mut *connection, env, request, &columns, cursor.as_ref())?;
    let within = within_budget(found.iter().map(|row| row.resource.body.len()), budget).min(request.count);
    let mut cut = within < request.count && within < found.len();
    let more = found.len() > within;
    found.truncate(within);
    if backward {
        found.reverse();
    }
    let (has_next, has_previous) = if backward { (true, more) } else { (more, cursor.is_some()) };
    if has_next || has_previous {
        digest = digest.or_else(|| Some(fingerprint(request)));
    }
    let encode = |backward: bool, row: &Found| encode_cursor(digest.unwrap_or(0), backward, &row.keys, row.row_id);
    let next = has_next.then(|| found.last().map(|row| encode(false, row))).flatten();
    let previous = has_previous.then(|| found.first().map(|row| encode(true, row))).flatten();
    let total =
        total.or_else(|| (cursor.is_none() && !more && query.total != Total::None).then_some(found.len() as u64));
    let left = budget.saturating_sub(found.iter().map(|row| row.resource.body.len()).sum());
    let (included, includes_cut) = includes(&mut *connection, env, &found, &query.includes, &query.revincludes, left)?;
    cut |= includes_cut;
    let matches = found.into_iter().map(|row| row.resource).collect();
    Ok(SearchPage { matches, included, total, next, previous, cut })
}

/// A statement stopped at its time limit ([`Error::TooCostly`]), told as the search's limit.
fn name_time_limit(error: Error, request: &SearchRequest) -> Error {
    match error {
        Error::TooCostly(_) => Error::TooCostly(format!(
            "the search ran past its time limit of {} ms (search-time-limit); narrow its criteria",
            request.limits.time.as_millis()
        )),
        other => other,
    }
}

/// How many of the first rows, whose bodies have `sizes`, fit in `budget` bytes: at least one,
/// so that a page always moves on.
fn within_budget(sizes: impl Iterator<Item = usize>, budget: usize) -> usize {
    let mut total = 0usize;
    let mut count = 0;
    for size in sizes {
        total = total.saturating_add(size);
        if total > budget && count > 0 {
            break;
        }
        count += 1;
    }
    count
}

/// The base query: live resources of the requested types in `env` matching every clause.
fn push_base(sql: &mut Sql, env: Environment, request: &SearchRequest) {
    push_matching(sql, &request.query.clauses, env.as_str());
    sql.push(" AND r.type IN (");
    for (index, resource_type) in request.types.iter().enumerate() {
        if index > 0 {
            sql.push(", ");
        }
        sql.bind(resource_type.as_str().to_owned());
    }
    sql.push(")");
}

fn count(connection: &mut impl SearchConnection, env: Environment, request: &SearchRequest) -> Result<u64, Error> {
    let mut sql = Sql::new(connection.dialect());
    sql.push("SELECT COUNT(*)");
    push_base(&mut sql, env, request);
    Ok(u64::try_from(connection.count(&sql)?).unwrap_or(0))
}

fn fetch(
    connection: &mut impl SearchConnection,
    env: Environment,
    request: &SearchRequest,
    columns: &[SortColumn],
    cursor: Option<&Cursor>,
) -> Result<Vec<Found>, Error> {
    let backward = cursor.is_some_and(|cursor| cursor.backward);
    let mut sql = Sql::new(connection.dialect());
    sql.push(
        "SELECT * FROM (SELECT r.row_id AS row_id, r.type, r.logical_id, r.version, r.last_updated, r.deleted, r.body",
    );
    for (index, column) in columns.iter().enumerate() {
        sql.push(&format!(", COALESCE({}, ", column.expression));
        sql.bind(column.missing.clone());
        sql.push(&format!(") AS k{index}"));
    }
    push_base(&mut sql, env, request);
    sql.push(") AS page");
    if let Some(cursor) = cursor {
        let same_kinds = cursor.keys.len() == columns.len()
            && cursor.keys.iter().zip(columns).all(|(key, column)| same_kind(key, &column.missing));
        if !same_kinds {
            return Err(Error::InvalidQuery("the _cursor does not belong to this search".into()));
        }
        sql.push(" WHERE ");
        push_keyset(&mut sql, columns, cursor);
    }
    sql.push(" ORDER BY ");
    for (index, column) in columns.iter().enumerate() {
        let descending = column.descending != backward;
        sql.push(&format!("k{index} {}, ", if descending { "DESC" } else { "ASC" }));
    }
    sql.push(if backward { "row_id DESC LIMIT " } else { "row_id ASC LIMIT " });
    sql.bind(i64::try_from(request.count + 1).unwrap_or(i64::MAX));
    connection.rows(&sql, columns.len(), request.limits.page_bytes)
}

/// Rows strictly after the cursor in the sort order (strictly before it going backward):
/// `k0 > c0 OR (k0 = c0 AND k1 > c1) OR … OR (all equal AND row_id > c)`, with `<` for
/// descending keys.
fn push_keyset(sql: &mut Sql, columns: &[SortColumn], cursor: &Cursor) {
    sql.push("(");
    for depth in 0..=columns.len() {
        if depth > 0 {
            sql.push(" OR ");
        }
        sql.push("(");
        for (index, key) in cursor.keys.iter().enumerate().take(depth) {
            sql.push(&format!("k{index} = "));
            sql.bind(key.clone());
            sql.push(" AND ");
        }
        let (name, value, descending) = match columns.get(depth) {
            Some(column) => (format!("k{depth}"), cursor.keys[depth].clone(), column.descending),
            None => ("row_id".to_owned(), Bind::Integer(cursor.row_id), false),
        };
        let after = descending == cursor.backward;
        sql.push(&format!("{name} {} ", if after { ">" } else { "<" }));
        sql.bind(value);
        sql.push(")");
    }
    sql.push(")");
}

fn sort_column(key: &SortKey) -> SortColumn {
    let aggregate = if key.descending { "MAX" } else { "MIN" };
    let text_missing = if key.descending { String::new() } else { "\u{10FFFF}".to_owned() };
    let (expression, missing) = match &key.field {
        SortField::Id => ("r.logical_id".to_owned(), Bind::Text(text_missing)),
        SortField::LastUpdated => ("r.last_updated".to_owned(), Bind::Integer(0)),
        SortField::Param { rows, kind } => {
            let (table, column, missing) = match kind {
                SearchParamType::Token => ("token_index", "code", Bind::Text(text_missing)),
                SearchParamType::String => ("string_index", "normalized", Bind::Text(text_missing)),
                SearchParamType::Date if key.descending => ("date_index", "high", Bind::Integer(i64::MIN)),
                SearchParamType::Date => ("date_index", "low", Bind::Integer(i64::MAX)),
                SearchParamType::Number => ("number_index", "value", real_missing(key.descending)),
                SearchParamType::Quantity => ("quantity_index", "value", real_missing(key.descending)),
                SearchParamType::Reference => ("reference_index", "target_id", Bind::Text(text_missing)),
                _ => ("uri_index", "value", Bind::Text(text_missing)),
            };
            let expression = format!(
                "(SELECT {aggregate}(s.{column}) FROM {table} s WHERE s.resource_row = r.row_id AND s.param = {rows})"
            );
            (expression, missing)
        }
    };
    SortColumn { expression, missing, descending: key.descending }
}

/// True when a cursor's key can be compared with a column whose sentinel is `column`: a
/// forged key of another kind would otherwise be a type error in PostgreSQL.
fn same_kind(key: &Bind, column: &Bind) -> bool {
    std::mem::discriminant(key) == std::mem::discriminant(column)
}

fn real_missing(descending: bool) -> Bind {
    Bind::Real(if descending { f64::MIN } else { f64::MAX })
}

/// A digest of what decides a search's rows and order (types, criteria, sort), carried in its
/// cursors so that a cursor only ever continues the search that issued it. Not a secret: a
/// cursor forged with the right digest only moves within results the client may query anyway.
fn fingerprint(request: &SearchRequest) -> u64 {
    use std::fmt::Write;
    use std::hash::Hasher;
    struct Digest(fnv::FnvHasher);
    impl Write for Digest {
        fn write_str(&mut self, text: &str) -> std::fmt::Result {
            self.0.write(text.as_bytes());
            Ok(())
        }
    }
    let mut digest = Digest(fnv::FnvHasher::default());
    let query = &request.query;
    // Writing into a hasher cannot fail.
    let _ = write!(digest, "{:?}{:?}{:?}", request.types, query.clauses, query.sort);
    digest.0.finish()
}

fn encode_cursor(fingerprint: u64, backward: bool, keys: &[Bind], row_id: i64) -> String {
    // The digest as text: JSON numbers past 2^53 do not survive every parser.
    let mut items = vec![Value::from(format!("{fingerprint:x}")), Value::from(u8::from(backward)), Value::from(row_id)];
    items.extend(keys.iter().map(|key| match key {
        Bind::Integer(number) => serde_json::json!({"i": number}),
        Bind::Real(number) => serde_json::json!({"r": number}),
        Bind::Text(text) => serde_json::json!({"t": text}),
    }));
    URL_SAFE_NO_PAD.encode(Value::Array(items).to_string())
}

fn decode_cursor(text: &str, fingerprint: u64) -> Result<Cursor, Error> {
    let shown = text.get(..64).unwrap_or("the _cursor");
    let invalid = || Error::InvalidQuery(format!("'{shown}' is not a cursor this server issued"));
    let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| invalid())?;
    let items: Vec<Value> = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    let [digest, backward, row_id, keys @ ..] = items.as_slice() else { return Err(invalid()) };
    if digest.as_str() != Some(format!("{fingerprint:x}").as_str()) {
        return Err(Error::InvalidQuery("the _cursor does not belong to this search".into()));
    }
    let keys = keys
        .iter()
        .map(|key| match (key.get("i").and_then(Value::as_i64), key.get("r").and_then(Value::as_f64), key.get("t")) {
            (Some(number), _, _) => Some(Bind::Integer(number)),
            (_, Some(number), _) => Some(Bind::Real(number)),
            (_, _, Some(Value::String(text))) => Some(Bind::Text(text.clone())),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(invalid)?;
    Ok(Cursor { backward: backward.as_u64() == Some(1), keys, row_id: row_id.as_i64().ok_or_else(invalid)? })
}

/// `_include` and `_revinclude` resources of a page, iterating where asked, without the
/// page's own matches or duplicates, within `budget` bytes (true when some were left out).
fn includes(
    connection: &mut impl SearchConnection,
    env: Environment,
    page: &[Found],
    includes: &[Include],
    revincludes: &[Include],
    budget: usize,
) -> Result<(Vec<StoredResource>, bool), Error> {
    if includes.is_empty() && revincludes.is_empty() {
        return Ok((Vec::new(), false));
    }
    let mut left = budget;
    let mut cut = false;
    let mut seen: std::collections::HashSet<i64> = page.iter().map(|row| row.row_id).collect();
    let mut frontier: Vec<(i64, String, String)> =
        page.iter().map(|row| (row.row_id, row.resource.resource_type.clone(), row.resource.id.clone())).collect();
    let mut included = Vec::new();
    for round in 0..INCLUDE_ROUNDS {
        let mut added = Vec::new();
        for include in includes.iter().filter(|include| round == 0 || include.iterate) {
            added.extend(forward_include(&mut *connection, env, &frontier, include, left)?);
        }
        for include in revincludes.iter().filter(|include| round == 0 || include.iterate) {
            added.extend(reverse_include(&mut *connection, env, &frontier, include, left)?);
        }
        frontier.clear();
        for (row_id, resource) in added {
            if !seen.insert(row_id) {
                continue;
            }
            if included.len() >= MAX_INCLUDED || resource.body.len() > left {
                cut = true;
                continue;
            }
            left -= resource.body.len();
            frontier.push((row_id, resource.resource_type.clone(), resource.id.clone()));
            included.push(resource);
        }
        if frontier.is_empty() {
            break;
        }
    }
    Ok((included, cut))
}

fn forward_include(
    connection: &mut impl SearchConnection,
    env: Environment,
    sources: &[(i64, String, String)],
    include: &Include,
    budget: usize,
) -> Result<Vec<(i64, StoredResource)>, Error> {
    let rows: Vec<i64> = sources.iter().filter(|(_, kind, _)| *kind == include.source_type).map(|row| row.0).collect();
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = Sql::new(connection.dialect());
    sql.push(
        "SELECT DISTINCT t.row_id, t.type, t.logical_id, t.version, t.last_updated, t.deleted, t.body \
         FROM reference_index l JOIN resources t ON t.type = l.target_type AND t.logical_id = l.target_id AND t.partition = ",
    );
    sql.bind(env.as_str().to_owned());
    sql.push(&format!(" WHERE t.deleted = 0 AND l.param = {} AND l.resource_row IN (", include.reference_id));
    push_list(&mut sql, rows.into_iter().map(Bind::Integer));
    sql.push(")");
    if let Some(target) = &include.target_type {
        sql.push(" AND t.type = ");
        sql.bind(target.clone());
    }
    query_resources(connection, sql, budget)
}

fn reverse_include(
    connection: &mut impl SearchConnection,
    env: Environment,
    targets: &[(i64, String, String)],
    include: &Include,
    budget: usize,
) -> Result<Vec<(i64, StoredResource)>, Error> {
    let targets: Vec<&(i64, String, String)> = targets
        .iter()
        .filter(|(_, kind, _)| include.target_type.as_ref().is_none_or(|target| target == kind))
        .collect();
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = Sql::new(connection.dialect());
    sql.push(
        "SELECT DISTINCT s.row_id, s.type, s.logical_id, s.version, s.last_updated, s.deleted, s.body \
         FROM reference_index l JOIN resources s ON s.row_id = l.resource_row WHERE s.deleted = 0 AND s.partition = ",
    );
    sql.bind(env.as_str().to_owned());
    sql.push(" AND s.type = ");
    sql.bind(include.source_type.clone());
    sql.push(&format!(" AND l.param = {} AND (l.target_type, l.target_id) IN (VALUES ", include.reference_id));
    for (index, (_, kind, id)) in targets.iter().enumerate() {
        sql.push(if index > 0 { ", (" } else { "(" });
        sql.bind(kind.clone());
        sql.push(", ");
        sql.bind(id.clone());
        sql.push(")");
    }
    sql.push(")");
    query_resources(connection, sql, budget)
}

fn push_list(sql: &mut Sql, values: impl Iterator<Item = Bind>) {
    for (index, value) in values.enumerate() {
        if index > 0 {
            sql.push(", ");
        }
        sql.bind(value);
    }
}

fn query_resources(
    connection: &mut impl SearchConnection,
    sql: Sql,
    budget: usize,
) -> Result<Vec<(i64, StoredResource)>, Error> {
    Ok(connection.rows(&sql, 0, budget)?.into_iter().map(|row| (row.row_id, row.resource)).collect())
}
