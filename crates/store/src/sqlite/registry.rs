//! Custom search parameters: `SearchParameter` resources in the database join the official
//! definitions in the store's `fhir::search::Registry`. It is loaded at open and again after
//! any write that touches a `SearchParameter`; existing resources gain index rows for a new
//! parameter when they are reindexed ([`reindex`]).

use std::sync::Arc;

use fhir::search::{IndexRows, Registry, index_rows};
use rusqlite::{Connection, TransactionBehavior, params};
use serde_json::Value;

use crate::registry::Registries;
use crate::{Environment, Error};

/// The registry of one partition: the official parameters plus every live `SearchParameter`
/// resource of that partition that search can use.
pub(crate) fn load(connection: &Connection, env: Environment) -> Result<Arc<Registry>, Error> {
    let mut statement = connection
        .prepare("SELECT body FROM resources WHERE type = 'SearchParameter' AND deleted = 0 AND partition = ?1")?;
    let bodies = statement.query_map([env.as_str()], |row| row.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;
    Ok(crate::registry::from_bodies(bodies))
}

/// Both partitions' registries.
pub(crate) fn load_all(connection: &Connection) -> Result<Registries, Error> {
    Registries::load(|env| load(connection, env))
}

/// Recomputes the index rows of up to `limit` live resources with row ids above `after`, in
/// one transaction. Returns the last row id done, or `None` when there were none left.
pub(crate) fn reindex(
    connection: &mut Connection,
    registries: &Registries,
    after: i64,
    limit: usize,
) -> Result<Option<i64>, Error> {
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let rows: Vec<(i64, String, String, String)> = {
        let mut statement = transaction.prepare(
            "SELECT row_id, type, body, partition FROM resources WHERE row_id > ?1 AND deleted = 0 \
             ORDER BY row_id LIMIT ?2",
        )?;
        let rows = statement.query_map(params![after, i64::try_from(limit).unwrap_or(i64::MAX)], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })?;
        rows.collect::<Result<_, _>>()?
    };
    let Some(last) = rows.last().map(|row| row.0) else { return Ok(None) };
    let (production, sandbox) = (registries.get(Environment::Production), registries.get(Environment::Sandbox));
    for (row_id, resource_type, body, partition) in &rows {
        let resource: Value = serde_json::from_str(body).map_err(|error| Error::Database(error.to_string()))?;
        let registry = if partition == Environment::Sandbox.as_str() { &sandbox } else { &production };
        let index: IndexRows = index_rows(registry, resource_type, &resource);
        crate::sqlite::index::replace(&transaction, *row_id, &index, false)?;
    }
    transaction.commit()?;
    Ok(Some(last))
}
