//! What the store's test files share: a throw-away database, SQLite or a PostgreSQL schema.

use std::sync::Arc;

use store::Store;
use store::postgres::PostgresStore;
use store::sqlite::SqliteStore;

/// Where a test's stores live; dropped at the end of the test.
pub(crate) enum Database {
    Sqlite(tempfile::TempDir),
    Postgres { url: String, schema: String },
}

impl Database {
    pub(crate) fn sqlite() -> Database {
        Database::Sqlite(tempfile::tempdir().expect("temporary folder"))
    }

    /// A fresh schema, named after `prefix`, of the database `IGNIS_TEST_POSTGRES_URL` names.
    pub(crate) fn postgres(prefix: &str) -> Database {
        let url = std::env::var("IGNIS_TEST_POSTGRES_URL").expect("IGNIS_TEST_POSTGRES_URL is not set");
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        Database::Postgres { url, schema: format!("{prefix}_{nanos:x}_{}", std::process::id()) }
    }

    /// A store on this database: each call is another process's view of it.
    pub(crate) async fn open(&self) -> Arc<dyn Store> {
        match self {
            Database::Sqlite(folder) => Arc::new(SqliteStore::open(&folder.path().join("store.db")).expect("open")),
            Database::Postgres { url, schema } => {
                let (url, schema) = (url.clone(), schema.clone());
                let store = tokio::task::spawn_blocking(move || PostgresStore::open_in_schema(&url, &schema))
                    .await
                    .expect("open task")
                    .expect("open");
                Arc::new(store)
            }
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Database::Postgres { url, schema } = self {
            let (url, schema) = (url.clone(), schema.clone());
            // Off the runtime: the synchronous client blocks.
            let _ = std::thread::spawn(move || PostgresStore::drop_schema(&url, &schema)).join();
        }
    }
}
