//! `ignis serve`: open the store, bind, serve until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use auth::secret::SecretKey;
use store::postgres::PostgresStore;
use store::sqlite::SqliteStore;
use store::{Environment, HistoryQuery, HistoryScope};
use tokio::net::TcpListener;

use crate::cli::{ServeArgs, StorageArgs};
use crate::import;

pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<()> {
    check_exposure(&args)?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(Arc::new(server::Tls::load(cert, key)?)),
        _ => None,
    };
    let started = std::time::Instant::now();
    let definitions = fhir::Definitions::get();
    tracing::info!(
        resource_types = definitions.resource_types().count(),
        elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
        "FHIR definitions loaded"
    );
    let store = open_store(&args.storage)?;
    let listener = TcpListener::bind(args.listen).await.with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let base_url = args.base_url.clone().unwrap_or_else(|| format!("{scheme}://{address}"));
    let mut config = server::Config::new(base_url.clone());
    config.max_body_bytes = args.max_body_bytes;
    config.search_limits.time = std::time::Duration::from_millis(args.search_time_limit_ms);
    config.search_limits.page_bytes = args.search_page_bytes;
    config.max_concurrent_searches = args.max_concurrent_searches;
    config.rules.suspend_after = args.suspend_after_refusals;
    config.export = args.export.settings(&args.storage.data_dir)?;
    if !args.no_demo {
        load_demo(store.as_ref(), &args.demo_data).await?;
    }
    let secret = Arc::new(load_secret_key(&args.storage)?);
    let mut state = server::AppState::new(store, config, &secret).context("cannot use the export store")?;
    if !args.insecure_no_auth {
        state = state.with_authorization(authorization(&args, secret));
    }
    tracing::info!(%address, fhir_base = %format!("{base_url}/fhir"), tls = tls.is_some(), "ignis is serving");
    match tls {
        Some(tls) => {
            reload_on_hangup(Arc::clone(&tls));
            let mutual = match args.mtls_listen {
                Some(address) => Some(serve_mutual(&args, address, &state, &tls).await?),
                None => None,
            };
            server::serve_tls(listener, state, tls, shutdown_signal()).await?;
            if let Some(mutual) = mutual {
                mutual.await.context("the mutual-TLS listener")??;
            }
        }
        None => server::serve(listener, state, shutdown_signal()).await?,
    }
    tracing::info!("ignis stopped");
    Ok(())
}

/// Starts the mutual-TLS listener at `address` beside the main one; it stops on the same
/// signals.
async fn serve_mutual(
    args: &ServeArgs,
    address: std::net::SocketAddr,
    state: &server::AppState,
    tls: &Arc<server::Tls>,
) -> anyhow::Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    let store = Arc::clone(&state.store);
    let trust = server::ClientTrust::load(args.trust_anchors.as_deref(), args.crl_dir.as_deref(), store)
        .await
        .context("cannot load the client certificate trust")?;
    let trust = Arc::new(trust);
    trust.watch();
    let listener = TcpListener::bind(address).await.with_context(|| format!("cannot listen on {address}"))?;
    tracing::info!(mtls_address = %listener.local_addr()?, "mutual TLS listener ready");
    let (state, tls) = (state.clone(), Arc::clone(tls));
    Ok(tokio::spawn(server::serve_mtls(listener, state, tls, trust, shutdown_signal())))
}

/// The authorization server: its keys derive from the secret key.
fn authorization(args: &ServeArgs, secret: Arc<SecretKey>) -> server::Authorization {
    let mut authorization = server::Authorization::new(secret);
    authorization.session_idle = std::time::Duration::from_secs(args.session_idle_minutes.saturating_mul(60));
    authorization
}

/// The secret key of `--secret-key-file`, or of `<data-dir>/secret.key` (created, owner-only,
/// when missing).
pub(crate) fn load_secret_key(storage: &StorageArgs) -> anyhow::Result<SecretKey> {
    let path = match &storage.secret_key_file {
        Some(path) => path.clone(),
        None => {
            std::fs::create_dir_all(&storage.data_dir)
                .with_context(|| format!("cannot create the data folder {}", storage.data_dir.display()))?;
            storage.data_dir.join("secret.key")
        }
    };
    Ok(SecretKey::load_or_create(&path)?)
}

/// Imports the demo data into both partitions when neither holds anything yet (a first
/// start). Resources the validator refuses are logged and left out.
async fn load_demo(store: &dyn store::Store, folder: &std::path::Path) -> anyhow::Result<()> {
    for env in [Environment::Production, Environment::Sandbox] {
        let query = HistoryQuery { scope: HistoryScope::System, since: None, at: None, count: 1, before: None };
        if !store.history(env, query).await?.entries.is_empty() {
            return Ok(());
        }
    }
    let Ok(folder) = folder.canonicalize() else {
        tracing::warn!(folder = %folder.display(), "demo data folder not found; starting empty");
        return Ok(());
    };
    for env in [Environment::Production, Environment::Sandbox] {
        tracing::info!(environment = env.as_str(), folder = %folder.display(), "first start: importing demo data");
        let options = import::Options { env, strict: false, batch_size: 2000, progress: false };
        let summary = import::import(store, std::slice::from_ref(&folder), options).await?;
        for problem in &summary.problems {
            tracing::warn!(location = %problem.location, "demo resource left out: {}", problem.message);
        }
        tracing::info!(
            environment = env.as_str(),
            resources = summary.counts.total(),
            left_out = summary.problems.len(),
            seconds = summary.elapsed.as_secs_f64(),
            "demo data imported"
        );
    }
    Ok(())
}

/// Tokens and passwords must not cross a network in clear: without TLS only loopback addresses
/// are allowed, and the open mode only ever on loopback. The open mode says so loudly.
fn check_exposure(args: &ServeArgs) -> anyhow::Result<()> {
    let loopback = args.listen.ip().is_loopback();
    if !loopback && args.tls_cert.is_none() {
        bail!("refusing to listen on {} without TLS: pass --tls-cert and --tls-key", args.listen);
    }
    if !loopback && args.insecure_no_auth {
        bail!("refusing to listen on {} with --insecure-no-auth: the open mode is for loopback only", args.listen);
    }
    if args.insecure_no_auth {
        tracing::warn!("--insecure-no-auth: the FHIR API accepts requests without tokens; for local experiments only");
    }
    Ok(())
}

/// The database the storage flags name.
pub(crate) enum Database {
    /// A SQLite file (its folder exists).
    Sqlite(PathBuf),
    /// A `postgres://…` URL.
    Postgres(String),
}

impl Database {
    /// The database for `storage`: SQLite in the data folder by default (the folder is
    /// created), or the one a `sqlite://PATH` or `postgres://…` URL names.
    pub(crate) fn from_args(storage: &StorageArgs) -> anyhow::Result<Database> {
        match storage.database_url.as_deref() {
            None => {
                std::fs::create_dir_all(&storage.data_dir)
                    .with_context(|| format!("cannot create the data folder {}", storage.data_dir.display()))?;
                Ok(Database::Sqlite(storage.data_dir.join("ignis.db")))
            }
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(Database::Postgres(url.to_owned()))
            }
            Some(url) => Ok(Database::Sqlite(sqlite_path(url)?)),
        }
    }

    /// How messages name the database (without a password).
    pub(crate) fn describe(&self) -> String {
        match self {
            Database::Sqlite(path) => path.display().to_string(),
            Database::Postgres(url) => redact(url),
        }
    }
}

/// Runs blocking database work (the PostgreSQL client blocks) off the async runtime's threads.
pub(crate) fn blocking<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(_) => tokio::task::block_in_place(work),
        Err(_) => work(),
    }
}

/// Opens the store the storage flags name (see [`Database::from_args`]).
pub(crate) fn open_store(storage: &StorageArgs) -> anyhow::Result<Arc<dyn store::Store>> {
    let database = Database::from_args(storage)?;
    let store: Arc<dyn store::Store> = match &database {
        Database::Postgres(url) => Arc::new(
            blocking(|| PostgresStore::open(url))
                .with_context(|| format!("cannot open the PostgreSQL database {}", database.describe()))?,
        ),
        Database::Sqlite(path) => Arc::new(
            SqliteStore::open(path).with_context(|| format!("cannot open the database {}", database.describe()))?,
        ),
    };
    // Whatever a command changes is audited, with the chains' key.
    store.set_audit_key(server::audit_key(&load_secret_key(storage)?));
    Ok(store)
}

fn sqlite_path(url: &str) -> anyhow::Result<PathBuf> {
    match url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
        Some(path) if !path.is_empty() => Ok(PathBuf::from(path)),
        _ => bail!("unsupported database URL '{}': expected sqlite://PATH or postgres://…", redact(url)),
    }
}

/// `url` without its password, for messages.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Reloads the TLS certificate and key on every SIGHUP; a failed reload keeps the old ones.
fn reload_on_hangup(tls: Arc<server::Tls>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            return tracing::warn!("cannot listen for SIGHUP: the TLS certificate will not be reloaded");
        };
        while hangups.recv().await.is_some() {
            match tls.reload() {
                Ok(()) => tracing::info!("TLS certificate reloaded"),
                Err(error) => tracing::error!(%error, "TLS certificate not reloaded; keeping the previous one"),
            }
        }
    });
    #[cfg(not(unix))]
    drop(tls);
}

async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: finishing requests in flight");
}
