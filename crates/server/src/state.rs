//! The application state every handler receives, and the server's configuration.

use std::sync::Arc;
use std::time::Duration;

use auth::issuer::Issuer;
use auth::secret::SecretKey;
use auth::user::Policy;
use store::{Environment, SearchLimits, Store};
use tokio::sync::Semaphore;

/// Server settings that handlers need.
#[derive(Debug, Clone)]
pub struct Config {
    /// The public address of the server, without a trailing slash (e.g.
    /// `http://127.0.0.1:8080`); links and `Location` headers are built from it.
    pub base_url: String,
    /// Request bodies larger than this are refused with 413.
    pub max_body_bytes: usize,
    /// Requests that take longer are answered with 408.
    pub request_timeout: Duration,
    /// Bounds on each search's database work and page size.
    pub search_limits: SearchLimits,
    /// Searches that may run at once; more wait up to [`Config::search_queue_wait`] for a
    /// slot and then get 503 with `Retry-After`.
    pub max_concurrent_searches: usize,
    /// How long a search waits for a slot.
    pub search_queue_wait: Duration,
    /// The organization that runs the server, as the service base URL list names it.
    pub organization_name: String,
    /// Where and how Bulk Data exports are written and kept.
    pub export: export::Settings,
    /// How often the server looks for notifications due for delivery.
    pub notification_poll: Duration,
    /// The wait before a failed delivery's second attempt; it doubles each time (at most an
    /// hour).
    pub notification_retry: Duration,
    /// Test-only: requests are served without audit events, so the bench can show what audit
    /// costs. No flag, variable or setting file reaches it: audit cannot be turned off.
    #[doc(hidden)]
    pub bench_without_audit: bool,
    /// When the monitor throttles and suspends accounts past their limits.
    pub rules: crate::monitor::Rules,
}

impl Config {
    /// Searches that may run at once unless configured: enough to keep the database's
    /// connections busy, few enough that a burst queues instead of thrashing.
    pub const DEFAULT_MAX_CONCURRENT_SEARCHES: usize = 32;

    /// Defaults for a server reachable at `base_url`.
    pub fn new(base_url: impl Into<String>) -> Config {
        Config {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            max_body_bytes: 16 * 1024 * 1024,
            request_timeout: Duration::from_secs(60),
            search_limits: SearchLimits::default(),
            max_concurrent_searches: Config::DEFAULT_MAX_CONCURRENT_SEARCHES,
            search_queue_wait: Duration::from_secs(2),
            organization_name: "Ignis".to_owned(),
            export: export::Settings::new(export::Location::Folder(std::env::temp_dir().join("ignis-exports"))),
            notification_poll: Duration::from_secs(1),
            notification_retry: Duration::from_secs(5),
            bench_without_audit: false,
            rules: crate::monitor::Rules::default(),
        }
    }
}

/// The key the audit log's chains are hashed with, derived from the server's secret key: the
/// server, the admin commands and `ignis audit verify` all take it from here.
pub fn audit_key(secret_key: &SecretKey) -> store::audit::ChainKey {
    store::audit::ChainKey::new(&secret_key.derive("audit-chain"))
}

/// The authorization server's keys and policies.
#[derive(Debug)]
pub struct Authorization {
    /// Signs and checks access tokens, runs the grants.
    pub issuer: Issuer,
    /// Seals secrets at rest (TOTP seeds).
    pub secret_key: Arc<SecretKey>,
    /// Lockout after failed sign-ins.
    pub sign_in: Policy,
    /// A browser session idle this long ends (ONC (d)(5)).
    pub session_idle: Duration,
    /// Issues and checks Device JWTs; its key is loaded (or made) on first use.
    devices: tokio::sync::OnceCell<access::DeviceCredentials>,
}

impl Authorization {
    /// The authorization server whose every key derives from `secret_key`, with default
    /// policies (15 minutes idle sessions).
    pub fn new(secret_key: Arc<SecretKey>) -> Authorization {
        let token_key = auth::token::TokenKey::new(&secret_key.derive("access-token"));
        Authorization {
            issuer: Issuer::new(token_key, Arc::clone(&secret_key), Arc::new(crate::jwks::HttpJwksFetcher::new())),
            secret_key,
            sign_in: Policy::default(),
            session_idle: Duration::from_secs(15 * 60),
            devices: tokio::sync::OnceCell::new(),
        }
    }

    /// The Device JWT issuer and checker, its key loaded from `store` (or made) the first time.
    pub async fn devices(
        &self,
        store: &dyn store::records::Records,
    ) -> Result<&access::DeviceCredentials, access::AccessError> {
        self.devices.get_or_try_init(|| access::DeviceCredentials::load_or_create(store, &self.secret_key)).await
    }
}

/// Cheap-to-clone handles shared by all requests.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub config: Arc<Config>,
    /// The authorization server; `None` runs the FHIR API open (no tokens, no `/auth`).
    pub auth: Option<Arc<Authorization>>,
    /// One permit per search that may run at once ([`Config::max_concurrent_searches`]).
    pub(crate) search_slots: Arc<Semaphore>,
    /// Bulk Data export jobs: started by kick-offs, run by [`AppState::start_background`].
    pub exports: Arc<export::Exports>,
    /// Appends the audit events of requests that write nothing.
    pub(crate) audit: Arc<crate::audit::Recorder>,
    /// The usage counters and the rate limits' buckets held by this process.
    pub(crate) monitor: Arc<crate::monitor::Monitor>,
}

impl AppState {
    /// State over `store` with `config`, whose audit chains are hashed with the key derived
    /// from `secret_key` ([`audit_key`]); fails when the export location cannot be used.
    pub fn new(store: Arc<dyn Store>, config: Config, secret_key: &SecretKey) -> Result<AppState, export::RunError> {
        store.set_audit_key(audit_key(secret_key));
        let search_slots = Arc::new(Semaphore::new(config.max_concurrent_searches));
        let exports = Arc::new(export::Exports::new(Arc::clone(&store), config.export.clone())?);
        let audit = Arc::new(crate::audit::Recorder::default());
        let monitor = Arc::new(crate::monitor::Monitor::default());
        Ok(AppState { store, config: Arc::new(config), auth: None, search_slots, exports, audit, monitor })
    }

    /// Starts this process's background work until the returned task is aborted: the export
    /// runner (it claims queued jobs, and those a dead process left, and writes their files)
    /// and the delivery of notifications to webhooks.
    pub fn start_background(&self) -> tokio::task::JoinHandle<()> {
        let (exports, notifications) = (Arc::clone(&self.exports), crate::notify::deliver_forever(self.clone()));
        tokio::spawn(async move {
            tokio::join!(exports.run_forever(), notifications);
        })
    }

    /// The same state with the authorization server: access tokens are then required on every
    /// FHIR request but `metadata` and discovery.
    pub fn with_authorization(mut self, authorization: Authorization) -> AppState {
        self.auth = Some(Arc::new(authorization));
        self
    }
}

/// The state of one FHIR base: the app state plus the environment (partition) the base
/// serves and its public URL.
#[derive(Clone)]
pub(crate) struct FhirContext {
    pub(crate) app: AppState,
    pub(crate) env: Environment,
    /// The public URL of this FHIR base, e.g. `http://127.0.0.1:8080/fhir`.
    pub(crate) base: Arc<str>,
    /// The CapabilityStatement JSON of this base, generated once at start.
    pub(crate) capability: Arc<str>,
}

impl FhirContext {
    /// The context of the base at `path` (e.g. `/fhir`) serving `env`.
    pub(crate) fn new(app: AppState, env: Environment, path: &str) -> FhirContext {
        let base: Arc<str> = format!("{}{path}", app.config.base_url).into();
        let security = app.auth.as_ref().and_then(|_| crate::oauth::capability_security(&base));
        let capability = crate::capability::capability_statement(&base, security).to_string().into();
        FhirContext { app, env, base, capability }
    }

    /// The store.
    pub(crate) fn store(&self) -> &dyn Store {
        self.app.store.as_ref()
    }

    /// The store a write of the request noted by `note` goes through: it records the
    /// request's audit event in the write's transaction.
    pub(crate) fn audited_store(&self, note: &crate::audit::Note) -> Arc<dyn Store> {
        note.store(&self.app.store)
    }
}
