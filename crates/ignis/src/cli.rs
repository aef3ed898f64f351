//! Command-line flags. Every flag of `serve` also reads an `IGNIS_*` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The version `--version` prints: the build's, and the FHIR version it serves.
const VERSION: &str =
    concat!(env!("CARGO_PKG_VERSION"), " (FHIR R4 4.0.1, US Core 6.1.0 and 7.0.0, SMART App Launch 2.2)");

/// Ignis: a FHIR R4 server.
#[derive(Debug, Parser)]
#[command(name = "ignis", version = VERSION)]
pub(crate) struct Cli {
    /// Log filter, e.g. `info`, `debug`, `server=debug,tower_http=debug`.
    #[arg(long, env = "IGNIS_LOG", default_value = "info", global = true)]
    pub(crate) log_level: String,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Load resources from transaction or collection Bundles and NDJSON files, folders or `.tgz`.
    Import(ImportArgs),
    /// Recompute every resource's search index rows (after adding a custom SearchParameter).
    Reindex(ReindexArgs),
    /// Write a Bulk Data export (NDJSON files) of the database, as `$export` does, with a
    /// progress bar.
    Export(ExportArgs),
    /// Apply pending database schema migrations and print the schema version before and after.
    Migrate(MigrateArgs),
    /// Measure creates/s and reads/s over HTTP against a throw-away server.
    Bench(BenchArgs),
    /// Operator commands (users, clients, launches, grants, keys), over the same database as a
    /// running server.
    Admin(crate::admin::AdminArgs),
    /// The audit log: verify its hash chains, export a date range as NDJSON AuditEvents.
    #[command(subcommand)]
    Audit(crate::audit::AuditCommand),
    /// Print a shell completion script: `ignis completions bash > /etc/bash_completion.d/ignis`.
    Completions(CompletionsArgs),
    /// The `serve` configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Print the effective `serve` settings (flags, `IGNIS_*` variables, `--config` file,
    /// defaults) as TOML, the database password masked.
    Print(Box<ServeArgs>),
}

#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    #[arg(value_enum)]
    pub(crate) shell: clap_complete::Shell,
}

/// Where the data lives; shared by every command that opens the database.
#[derive(Debug, Args)]
pub(crate) struct StorageArgs {
    /// The data folder (SQLite database, bulk files).
    #[arg(long, env = "IGNIS_DATA_DIR", default_value = "./ignis-data")]
    pub(crate) data_dir: PathBuf,
    /// Database URL: `sqlite://PATH` or `postgres://USER:PASSWORD@HOST:PORT/DATABASE`; default
    /// SQLite inside the data folder (`sqlite://<data-dir>/ignis.db`).
    #[arg(long, env = "IGNIS_DATABASE_URL")]
    pub(crate) database_url: Option<String>,
    /// The server's secret key: every key of the authorization server derives from it, it
    /// seals secrets at rest, and it keys the audit log's hash chains. 32 bytes in base64,
    /// readable by its owner only (default `<data-dir>/secret.key`, created when missing).
    #[arg(long, env = "IGNIS_SECRET_KEY_FILE")]
    pub(crate) secret_key_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// A TOML file of `serve` settings, keyed by flag name (`listen = "127.0.0.1:8080"`); flags
    /// and `IGNIS_*` variables take precedence over it.
    #[arg(long, env = "IGNIS_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "IGNIS_LISTEN", default_value = "127.0.0.1:8080")]
    pub(crate) listen: SocketAddr,
    #[command(flatten)]
    pub(crate) storage: StorageArgs,
    /// Public address used in links and `Location` headers (default `http://<listen>`).
    #[arg(long, env = "IGNIS_BASE_URL")]
    pub(crate) base_url: Option<String>,
    /// Start without demo data.
    #[arg(long, env = "IGNIS_NO_DEMO")]
    pub(crate) no_demo: bool,
    /// The demo data imported into both partitions when the database holds no resources.
    #[arg(long, env = "IGNIS_DEMO_DATA", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/demo"))]
    pub(crate) demo_data: PathBuf,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key); reloaded on SIGHUP.
    #[arg(long, env = "IGNIS_TLS_CERT", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "IGNIS_TLS_KEY", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Also listen here with mutual TLS (the certificate of --tls-cert; a client certificate
    /// required): the address devices call production through.
    #[arg(long, env = "IGNIS_MTLS_LISTEN", requires = "tls_cert")]
    pub(crate) mtls_listen: Option<SocketAddr>,
    /// A folder of PEM CA certificates whose client certificates production accepts (the
    /// approved-CA list; the platform CA of `ignis admin ca init` is always among them).
    #[arg(long, env = "IGNIS_TRUST_ANCHORS", requires = "mtls_listen")]
    pub(crate) trust_anchors: Option<PathBuf>,
    /// A folder of CRLs (PEM or DER) checked for production client certificates; re-read when
    /// it changes.
    #[arg(long, env = "IGNIS_CRL_DIR", requires = "mtls_listen")]
    pub(crate) crl_dir: Option<PathBuf>,
    /// Leave the FHIR API open without tokens (loopback only; for local experiments).
    #[arg(long, env = "IGNIS_INSECURE_NO_AUTH")]
    pub(crate) insecure_no_auth: bool,
    /// A signed-in browser session idle this long ends (ONC 170.315(d)(5)).
    #[arg(long, env = "IGNIS_SESSION_IDLE_MINUTES", default_value_t = 15)]
    pub(crate) session_idle_minutes: u64,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "IGNIS_MAX_BODY_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub(crate) max_body_bytes: usize,
    /// A search's database work stops after this many milliseconds (400 `too-costly`).
    #[arg(long, env = "IGNIS_SEARCH_TIME_LIMIT_MS", default_value_t = store::SearchLimits::DEFAULT_TIME.as_millis() as u64)]
    pub(crate) search_time_limit_ms: u64,
    /// Resource bytes one search page may hold; a larger page is cut and says so.
    #[arg(long, env = "IGNIS_SEARCH_PAGE_BYTES", default_value_t = store::SearchLimits::DEFAULT_PAGE_BYTES)]
    pub(crate) search_page_bytes: usize,
    /// Searches that may run at once; more wait briefly, then get 503 with `Retry-After`.
    #[arg(long, env = "IGNIS_MAX_CONCURRENT_SEARCHES", default_value_t = server::Config::DEFAULT_MAX_CONCURRENT_SEARCHES)]
    pub(crate) max_concurrent_searches: usize,
    /// Requests past its rate limit after which an account is suspended (the first one
    /// notifies it, each one is answered 429); 0 never suspends.
    #[arg(long, env = "IGNIS_SUSPEND_AFTER_REFUSALS", default_value_t = server::Rules::default().suspend_after)]
    pub(crate) suspend_after_refusals: u64,
    #[command(flatten)]
    pub(crate) export: ExportSettingsArgs,
}

/// Where and how the server writes Bulk Data exports.
#[derive(Debug, Clone, Args)]
pub(crate) struct ExportSettingsArgs {
    /// Where export files go: `file://DIR` (default `<data-dir>/exports`) or
    /// `s3://BUCKET/PREFIX` (S3-compatible object storage, configured by the standard `AWS_*`
    /// variables: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
    /// `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`).
    #[arg(long, env = "IGNIS_EXPORT_STORE")]
    pub(crate) export_store: Option<String>,
    /// An export file is closed, and the next begun, once it holds this many bytes.
    #[arg(long, env = "IGNIS_EXPORT_FILE_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub(crate) export_file_bytes: u64,
    /// How long a complete export's files are kept, in minutes.
    #[arg(long, env = "IGNIS_EXPORT_RETENTION_MINUTES", default_value_t = 24 * 60)]
    pub(crate) export_retention_minutes: u64,
    /// How long a server's hold on a running export lasts unrenewed: when a server dies,
    /// another takes its export over after this many seconds.
    #[arg(long, env = "IGNIS_EXPORT_LEASE_SECONDS", default_value_t = 30)]
    pub(crate) export_lease_seconds: u64,
}

impl ExportSettingsArgs {
    /// The export settings, with files under the data folder unless `--export-store` says.
    pub(crate) fn settings(&self, data_dir: &std::path::Path) -> anyhow::Result<export::Settings> {
        let location = match self.export_store.as_deref() {
            None => export::Location::Folder(data_dir.join("exports")),
            Some(store) => {
                export::Location::parse(store).map_err(|problem| anyhow::anyhow!("--export-store {problem}"))?
            }
        };
        let mut settings = export::Settings::new(location);
        settings.max_file_bytes = self.export_file_bytes.max(1);
        settings.retention = std::time::Duration::from_secs(self.export_retention_minutes.saturating_mul(60));
        settings.lease = std::time::Duration::from_secs(self.export_lease_seconds.max(1));
        Ok(settings)
    }
}

#[derive(Debug, Clone, Args)]
pub(crate) struct BenchArgs {
    /// Resources to create (and then read) per resource type.
    #[arg(long, default_value_t = 5000)]
    pub(crate) count: usize,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 4)]
    pub(crate) clients: usize,
    /// Instead of single creates and reads, measure loading these Bundles (a `.tgz`, folder or
    /// files): with `ignis import`, then posted as transactions over HTTP by 1 and by
    /// `--clients` clients.
    #[arg(long)]
    pub(crate) bundles: Option<PathBuf>,
    /// Instead, validate every resource of these Bundles several times and print the time per
    /// resource.
    #[arg(long)]
    pub(crate) validate: Option<PathBuf>,
    /// Instead, load these Bundles (copied with new ids until `--resources` is reached) and
    /// measure a fixed mix of US Core searches over HTTP.
    #[arg(long)]
    pub(crate) search: Option<PathBuf>,
    /// Instead, load these Bundles (copied with new ids) once per `--export-sizes` entry and
    /// measure a system `$export` of each through a real `ignis serve` process: MB/s,
    /// resources/s and the server's peak memory.
    #[arg(long)]
    pub(crate) export: Option<PathBuf>,
    /// With `--export`: the export sizes to measure, in resources (each rounded up to whole
    /// copies of the Bundles).
    #[arg(long, value_delimiter = ',', default_values_t = [30_000, 120_000])]
    pub(crate) export_sizes: Vec<usize>,
    /// Instead, send `--requests` mixed valid and malformed requests from `--clients` clients
    /// and fail on any 5xx other than a deliberate 503 (a soak test of the hardening).
    #[arg(long)]
    pub(crate) soak: bool,
    /// With `--search`: how many resources to load at least.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) resources: usize,
    /// With `--search`: how many searches to run; with `--soak`: how many requests.
    #[arg(long, default_value_t = 5000)]
    pub(crate) requests: usize,
    /// With `--search`: an empty database to use instead of a throw-away SQLite file (e.g. a
    /// `postgres://` URL). Otherwise: a PostgreSQL database in which each run gets a
    /// throw-away schema of its own, instead of a throw-away SQLite file.
    #[arg(long)]
    pub(crate) database_url: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// Files (`.json` Bundles or resources, `.ndjson`), folders (searched recursively) and
    /// `.tgz` archives to load.
    #[arg(required = true)]
    pub(crate) paths: Vec<PathBuf>,
    #[command(flatten)]
    pub(crate) storage: StorageArgs,
    /// The partition to load into.
    #[arg(long, value_enum, default_value_t = EnvironmentArg::Production)]
    pub(crate) environment: EnvironmentArg,
    /// Stop at the first bad file or resource instead of reporting it and going on.
    #[arg(long)]
    pub(crate) strict: bool,
    /// Resources written per database transaction.
    #[arg(long, default_value_t = 2000)]
    pub(crate) batch_size: usize,
}

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    #[command(flatten)]
    pub(crate) storage: StorageArgs,
    /// The partition to export.
    #[arg(long, value_enum, default_value_t = EnvironmentArg::Production)]
    pub(crate) environment: EnvironmentArg,
    /// Only these resource types (comma-separated, as `_type`).
    #[arg(long = "type", value_delimiter = ',')]
    pub(crate) types: Vec<String>,
    /// Only resources last updated at or after this FHIR instant (as `_since`).
    #[arg(long)]
    pub(crate) since: Option<String>,
    /// `Type?query`: only the resources of the type matching the query (as `_typeFilter`;
    /// repeat for alternatives).
    #[arg(long = "type-filter")]
    pub(crate) type_filters: Vec<String>,
    /// Export the members of this Group and their data (as `Group/[id]/$export`).
    #[arg(long, conflicts_with = "patients")]
    pub(crate) group: Option<String>,
    /// Export every patient's data (as `Patient/$export`).
    #[arg(long)]
    pub(crate) patients: bool,
    /// The folder the export's own folder is written in (default `<data-dir>/exports`).
    #[arg(long)]
    pub(crate) output: Option<PathBuf>,
    /// A file is closed, and the next begun, once it holds this many bytes.
    #[arg(long, default_value_t = 256 * 1024 * 1024)]
    pub(crate) file_bytes: u64,
}

/// A data partition, as named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum EnvironmentArg {
    Production,
    Sandbox,
}

impl From<EnvironmentArg> for store::Environment {
    fn from(environment: EnvironmentArg) -> store::Environment {
        match environment {
            EnvironmentArg::Production => store::Environment::Production,
            EnvironmentArg::Sandbox => store::Environment::Sandbox,
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct ReindexArgs {
    #[command(flatten)]
    pub(crate) storage: StorageArgs,
    /// Resources reindexed per database transaction.
    #[arg(long, default_value_t = 1000)]
    pub(crate) batch_size: usize,
}

#[derive(Debug, Args)]
pub(crate) struct MigrateArgs {
    #[command(flatten)]
    pub(crate) storage: StorageArgs,
}
