//! Custom search parameters: `SearchParameter` resources in the database join the official
//! definitions in the store's `fhir::search::Registry`. Loaded at open, after this process
//! writes a `SearchParameter`, and when the newest `SearchParameter` history row differs from
//! the one the registry was loaded at (another process wrote one; see
//! `PostgresStore`'s watcher).

use std::sync::Arc;

use fhir::search::{IndexRows, Registry, index_rows};
use postgres::types::Type;
use postgres::{GenericClient, Transaction};
use serde_json::Value;

use crate::registry::Registries;
use crate::{Environment, Error};

/// The newest `SearchParameter` history row (0 for none): changes whenever one is written.
pub(crate) fn mark(client: &mut impl GenericClient) -> Result<i64, Error> {
    let row = client.query_typed_one(
        "SELECT COALESCE(MAX(history_id), 0) FROM resource_history WHERE type = 'SearchParameter'",
        &[],
    )?;
    Ok(row.try_get(0)?)
}

/// The registries of this database's partitions (the official parameters plus every live
/// `SearchParameter` resource of the partition that search can use) and the [`mark`] they
/// reflect; `apply` receives each partition's registry.
pub(crate) fn load(
    client: &mut impl GenericClient,
    apply: impl FnOnce(&mut dyn FnMut(Environment) -> Result<Arc<Registry>, Error>) -> Result<(), Error>,
) -> Result<i64, Error> {
    let mut transaction = client.transaction()?;
    let mark = mark(&mut transaction)?;
    let rows = transaction
        .query("SELECT partition, body FROM resources WHERE type = 'SearchParameter' AND deleted = 0", &[])?;
    transaction.commit()?;
    let mut bodies: Vec<(String, String)> =
        rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).collect::<Result<_, Error>>()?;
    apply(&mut |env| {
        let (mine, others) = bodies.drain(..).partition(|(partition, _)| partition == env.as_str());
        bodies = others;
        Ok(crate::registry::from_bodies(mine.into_iter().map(|(_, body)| body)))
    })?;
    Ok(mark)
}

/// Recomputes the index rows of up to `limit` live resources with row ids above `after`, in
/// the caller's transaction. Returns the last row id done, or `None` when there were none left.
pub(crate) fn reindex(
    transaction: &mut Transaction<'_>,
    registries: &Registries,
    after: i64,
    limit: usize,
) -> Result<Option<i64>, Error> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = transaction.query_typed(
        "SELECT row_id, type, body, partition FROM resources WHERE row_id > $1 AND deleted = 0 \
         ORDER BY row_id LIMIT $2 FOR UPDATE",
        &[(&after, Type::INT8), (&limit, Type::INT8)],
    )?;
    let Some(last) = rows.last().map(|row| row.try_get::<_, i64>(0)).transpose()? else { return Ok(None) };
    let (production, sandbox) = (registries.get(Environment::Production), registries.get(Environment::Sandbox));
    let mut indexed: Vec<(i64, IndexRows)> = Vec::with_capacity(rows.len());
    for row in &rows {
        let (row_id, resource_type, body): (i64, String, String) = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        let partition: String = row.try_get(3)?;
        let registry = if partition == Environment::Sandbox.as_str() { &sandbox } else { &production };
        let resource: Value = serde_json::from_str(&body).map_err(|error| Error::Database(error.to_string()))?;
        indexed.push((row_id, index_rows(registry, &resource_type, &resource)));
    }
    // The whole batch in a few statements: its old rows go, then its new rows come.
    let row_ids: Vec<i64> = indexed.iter().map(|(row_id, _)| *row_id).collect();
    crate::postgres::index::clear(transaction, &row_ids)?;
    let resources: Vec<(i64, &IndexRows)> = indexed.iter().map(|(row_id, index)| (*row_id, index)).collect();
    crate::postgres::index::insert(transaction, &resources)?;
    Ok(Some(last))
}
