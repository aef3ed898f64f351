//! Custom search parameters: `SearchParameter` resources in the database join the official
//! definitions, one registry per partition (a `SearchParameter` written in the sandbox
//! changes nothing in production). A write that touches a `SearchParameter` notes it in its
//! [`crate::clock::WriteContext`]; the store then reloads the registries ([`load`]), and
//! existing resources gain index rows for a new parameter when they are reindexed
//! ([`reindex`]). Other processes sharing a PostgreSQL database notice the change through
//! [`Registries::mark`].

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use fhir::search::{IndexRows, Registry, custom_from_resource, index_rows};
use serde_json::Value;

use crate::sql::Sql;
use crate::sql::db::Db;
use crate::{Environment, Error};

/// The newest `SearchParameter` history row (0 for none): it changes whenever one is written.
pub(crate) fn mark(db: &mut dyn Db) -> Result<i64, Error> {
    let sql = Sql::fixed(
        db.dialect(),
        "SELECT COALESCE(MAX(history_id), 0) FROM resource_history WHERE type = 'SearchParameter'",
        [],
    );
    db.integer(&sql)
}

/// Loads (or reloads) `registries` from the live `SearchParameter` resources of each partition.
pub(crate) fn load(db: &mut dyn Db, registries: &Registries) -> Result<(), Error> {
    // The mark first: a parameter written in between makes it stale, and the next check
    // loads again, never the other way round.
    let mark = mark(db)?;
    let sql = Sql::fixed(
        db.dialect(),
        "SELECT partition, body FROM resources WHERE type = 'SearchParameter' AND deleted = 0",
        [],
    );
    let mut bodies = db.rows(&sql, |row| Ok((row.text(0)?, row.text(1)?)))?;
    registries.replace(|env| {
        let (mine, others) =
            std::mem::take(&mut bodies).into_iter().partition(|(partition, _)| partition == env.as_str());
        bodies = others;
        from_bodies(mine.into_iter().map(|(_, body): (String, String)| body))
    });
    registries.mark.store(mark, Ordering::Relaxed);
    Ok(())
}

/// Recomputes the index rows of up to `limit` live resources with row ids above `after`
/// (across partitions, each with its own partition's registry), in the caller's
/// transaction. Returns the last row id done, or `None` when there were none left.
pub(crate) fn reindex(
    db: &mut dyn Db,
    registries: &Registries,
    after: i64,
    limit: usize,
) -> Result<Option<i64>, Error> {
    let dialect = db.dialect();
    let sql = Sql::fixed(
        dialect,
        &format!(
            "SELECT row_id, type, body, partition FROM resources WHERE row_id > {{}} AND deleted = 0 \
             ORDER BY row_id LIMIT {{}}{}",
            dialect.lock_rows()
        ),
        [after.into(), i64::try_from(limit).unwrap_or(i64::MAX).into()],
    );
    let rows = db.rows(&sql, |row| Ok((row.int(0)?, row.text(1)?, row.text(2)?, row.text(3)?)))?;
    let Some(last) = rows.last().map(|row| row.0) else { return Ok(None) };
    let (production, sandbox) = (registries.get(Environment::Production), registries.get(Environment::Sandbox));
    let mut indexed: Vec<(i64, IndexRows)> = Vec::with_capacity(rows.len());
    for (row_id, resource_type, body, partition) in &rows {
        let registry = if partition == Environment::Sandbox.as_str() { &sandbox } else { &production };
        let resource: Value = serde_json::from_str(body).map_err(|error| Error::Database(error.to_string()))?;
        indexed.push((*row_id, index_rows(registry, resource_type, &resource)));
    }
    // The whole batch at once: its old rows go, then its new rows come.
    let row_ids: Vec<i64> = indexed.iter().map(|(row_id, _)| *row_id).collect();
    db.clear_index(&row_ids)?;
    let resources: Vec<(i64, &IndexRows)> = indexed.iter().map(|(row_id, index)| (*row_id, index)).collect();
    db.insert_index(&resources)?;
    Ok(Some(last))
}

/// The official parameters plus those of `bodies` (stored `SearchParameter` JSON) that
/// search can use; the others are logged and skipped.
fn from_bodies(bodies: impl IntoIterator<Item = String>) -> Arc<Registry> {
    let mut custom = Vec::new();
    for body in bodies {
        match serde_json::from_str::<Value>(&body).ok().as_ref().and_then(custom_from_resource) {
            Some(parameter) => custom.push(parameter),
            None => tracing::warn!(
                "a SearchParameter resource cannot be used for search (no url, code, base, type or valid expression)"
            ),
        }
    }
    tracing::debug!(count = custom.len(), "custom search parameters registered");
    Registry::with_custom(custom)
}

/// A store's registries, one per partition; each is replaced (never edited) when a
/// `SearchParameter` changes.
pub(crate) struct Registries {
    production: RwLock<Arc<Registry>>,
    sandbox: RwLock<Arc<Registry>>,
    /// The [`mark`] of the database the registries were last loaded at.
    pub(crate) mark: AtomicI64,
}

impl Registries {
    /// Registries of the official parameters only, until [`load`]ed.
    pub(crate) fn official() -> Registries {
        Registries {
            production: RwLock::new(Registry::with_custom(Vec::new())),
            sandbox: RwLock::new(Registry::with_custom(Vec::new())),
            mark: AtomicI64::new(0),
        }
    }

    fn slot(&self, env: Environment) -> &RwLock<Arc<Registry>> {
        match env {
            Environment::Production => &self.production,
            Environment::Sandbox => &self.sandbox,
        }
    }

    /// The registry in effect for `env`.
    pub(crate) fn get(&self, env: Environment) -> Arc<Registry> {
        // A poisoned lock still holds a whole registry: it is only ever replaced.
        Arc::clone(&self.slot(env).read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Replaces both registries with what `build` builds.
    fn replace(&self, mut build: impl FnMut(Environment) -> Arc<Registry>) {
        for env in [Environment::Production, Environment::Sandbox] {
            let registry = build(env);
            *self.slot(env).write().unwrap_or_else(std::sync::PoisonError::into_inner) = registry;
        }
    }
}
