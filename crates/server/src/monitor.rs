//! Usage monitoring and its rules.
//!
//! **Counters** per device, client and account (requests, errors, authentication failures,
//! distinct patients reached, calls from outside the approved network paths, throttled
//! requests) are kept from every audited request and served at `/metrics` in the Prometheus
//! text format; they are this process's (Prometheus adds up the servers).
//!
//! **Limits**: an account with a limit (`ignis admin account limit`) has a token bucket for
//! each of its devices and one for the account, shared by every server through the database
//! (`store::buckets`). Past the limit a request gets 429 with `Retry-After`. The rules escalate
//! in order: the first refusal **notifies** the account, every refusal is **throttled**, and
//! [`Rules::suspend_after`] refusals **suspend** the account (403 on every credential) until
//! an operator reinstates it. Each step is a change to the account's record (audited) and a
//! notification.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use store::Store;
use store::audit::{Event, Outcome};
use store::buckets::Rate;

use crate::error::ApiError;

/// When the rules act.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Refused requests (since the account's buckets were last reset) after which the account
    /// is suspended; 0 never suspends.
    pub suspend_after: u64,
}

impl Default for Rules {
    fn default() -> Rules {
        Rules { suspend_after: 1_000 }
    }
}

/// Who a counter counts.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Caller {
    environment: String,
    account: String,
    device: String,
    client: String,
}

impl Caller {
    fn of(event: &Event) -> Caller {
        let agent = &event.agent;
        let text = |value: &Option<String>| value.clone().unwrap_or_default();
        Caller {
            environment: text(&event.environment),
            account: text(&agent.account),
            device: text(&agent.device),
            client: text(&agent.client),
        }
    }
}

/// The account an OAuth client is an app or a device of, if it is one's; shared, so that a
/// request takes it from the cache without copying its strings.
type ClientAccount = Option<Arc<access::monitoring::ClientAccount>>;

/// How old what a process read of a client's account may be: a suspension reaches every
/// server within it.
const FRESH: std::time::Duration = std::time::Duration::from_secs(1);

/// The most clients remembered (beyond, the map starts again).
const MAX_CLIENTS: usize = 100_000;

/// The most distinct patients remembered per caller (beyond, the gauge stops growing).
const MAX_PATIENTS: usize = 100_000;

/// The counters, and the requests this process took from the buckets and has not spent.
pub(crate) struct Monitor {
    registry: Registry,
    requests: Family<Caller, Counter>,
    errors: Family<Caller, Counter>,
    authentication_failures: Family<Caller, Counter>,
    outside_network: Family<Caller, Counter>,
    throttled: Family<Caller, Counter>,
    patients: Family<Caller, Gauge>,
    seen_patients: Mutex<HashMap<Caller, HashSet<String>>>,
    /// The same counts per account, for the account's usage in the API.
    accounts: Mutex<HashMap<String, Usage>>,
    /// The account of each OAuth client seen (an app's), as read at most [`FRESH`] ago.
    clients: Mutex<HashMap<String, (std::time::Instant, ClientAccount)>>,
    held: Mutex<HashMap<String, u32>>,
}

/// What an account's devices and clients did, as this process counted it.
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Usage {
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) authentication_failures: u64,
    pub(crate) outside_network: u64,
    pub(crate) throttled: u64,
    /// Distinct patients whose data its requests reached.
    pub(crate) patients: u64,
    #[serde(skip)]
    seen: HashSet<String>,
}

impl Default for Monitor {
    fn default() -> Monitor {
        let mut registry = Registry::with_prefix("ignis");
        let monitor = Monitor {
            requests: Family::default(),
            errors: Family::default(),
            authentication_failures: Family::default(),
            outside_network: Family::default(),
            throttled: Family::default(),
            patients: Family::default(),
            seen_patients: Mutex::default(),
            accounts: Mutex::default(),
            clients: Mutex::default(),
            held: Mutex::default(),
            registry: Registry::default(),
        };
        registry.register("requests", "Audited requests", monitor.requests.clone());
        registry.register("request_errors", "Requests answered with an error (4xx, 5xx)", monitor.errors.clone());
        registry.register(
            "authentication_failures",
            "Requests refused for their credentials (401)",
            monitor.authentication_failures.clone(),
        );
        registry.register(
            "outside_network",
            "Production calls from outside the account's approved network paths",
            monitor.outside_network.clone(),
        );
        registry.register("throttled", "Requests refused for a rate limit (429)", monitor.throttled.clone());
        registry.register("patients", "Distinct patients whose data was reached", monitor.patients.clone());
        Monitor { registry, ..monitor }
    }
}

impl Monitor {
    /// Counts an answered request from its audit event.
    pub(crate) fn observe(&self, event: &Event) {
        if let Some(account) = &event.agent.account {
            self.count_account(account, event);
        }
        let caller = Caller::of(event);
        self.requests.get_or_create(&caller).inc();
        if event.outcome != Outcome::Success {
            self.errors.get_or_create(&caller).inc();
        }
        match event.status {
            Some(401) => {
                self.authentication_failures.get_or_create(&caller).inc();
            }
            Some(429) => {
                self.throttled.get_or_create(&caller).inc();
            }
            _ => {}
        }
        if !event.patients.is_empty() {
            let mut seen = self.seen_patients.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let patients = seen.entry(caller.clone()).or_default();
            for patient in &event.patients {
                if patients.len() < MAX_PATIENTS {
                    patients.insert(patient.clone());
                }
            }
            self.patients.get_or_create(&caller).set(i64::try_from(patients.len()).unwrap_or(i64::MAX));
        }
    }

    fn count_account(&self, account: &str, event: &Event) {
        let mut accounts = self.accounts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let usage = accounts.entry(account.to_owned()).or_default();
        usage.requests += 1;
        usage.errors += u64::from(event.outcome != Outcome::Success);
        usage.authentication_failures += u64::from(event.status == Some(401));
        usage.throttled += u64::from(event.status == Some(429));
        for patient in &event.patients {
            if usage.seen.len() < MAX_PATIENTS {
                usage.seen.insert(patient.clone());
            }
        }
        usage.patients = usage.seen.len() as u64;
    }

    /// What `account`'s devices and clients did, as this process counted it.
    pub(crate) fn usage(&self, account: &str) -> Usage {
        self.accounts.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(account).cloned().unwrap_or_default()
    }

    /// The account whose app `client_id` is, as read at most a second ago.
    pub(crate) async fn client_account(&self, store: &dyn Store, client_id: &str) -> Result<ClientAccount, ApiError> {
        let cached = self.clients.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(client_id).cloned();
        let account = match cached.filter(|(read, _)| read.elapsed() < FRESH) {
            Some((_, account)) => account,
            None => {
                let read = std::time::Instant::now();
                let account = access::monitoring::client_account(store, client_id).await.map_err(ApiError::internal)?;
                let account = account.map(Arc::new);
                let mut clients = self.clients.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                if clients.len() >= MAX_CLIENTS {
                    clients.clear();
                }
                clients.insert(client_id.to_owned(), (read, account.clone()));
                account
            }
        };
        Ok(account)
    }

    /// Counts a production call refused for coming from outside the approved network paths.
    pub(crate) fn outside_network(&self, environment: &str, account: &str, device: &str) {
        let caller = Caller {
            environment: environment.to_owned(),
            account: account.to_owned(),
            device: device.to_owned(),
            client: String::new(),
        };
        self.outside_network.get_or_create(&caller).inc();
        let mut accounts = self.accounts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        accounts.entry(account.to_owned()).or_default().outside_network += 1;
    }

    /// The counters in the Prometheus text format.
    pub(crate) fn render(&self) -> String {
        let mut text = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(%error, "the metrics could not be rendered");
        }
        text
    }

    /// Admits a request of `member` (`device:ID`, `client:ID`) of `account`, whose limit is
    /// `per_minute`: `Ok`, or 429 with `Retry-After` past the limit, or 403 once the rules
    /// suspend the account.
    pub(crate) async fn admit(
        &self,
        store: &dyn Store,
        rules: Rules,
        account: &str,
        member: &str,
        per_minute: u32,
    ) -> Result<(), ApiError> {
        let rate = Rate::per_minute(per_minute);
        // About a second's worth at a time: a busy device costs one database write a second.
        let chunk = (per_minute / 60).max(1);
        let prefix = access::monitoring::bucket_prefix(account);
        for key in [format!("{prefix}:{member}"), prefix] {
            if self.spend(&key) {
                continue;
            }
            let now = time::OffsetDateTime::now_utc();
            let taken = store.take(&key, chunk, rate, now).await.map_err(ApiError::internal)?;
            if taken.granted == 0 {
                return Err(refuse(store, rules, account, per_minute, taken).await);
            }
            self.hold(key, taken.granted - 1);
        }
        Ok(())
    }

    /// Spends one request this process holds for `key`, if it holds any.
    fn spend(&self, key: &str) -> bool {
        let mut held = self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match held.get_mut(key) {
            Some(count) if *count > 0 => {
                *count -= 1;
                true
            }
            _ => false,
        }
    }

    fn hold(&self, key: String, count: u32) {
        self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(key, count);
    }

    /// Forgets what this process holds of an account's buckets and read of clients' accounts
    /// (after an operator changed the account).
    pub(crate) fn forget(&self, account: &str) {
        self.clients.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clear();
        let prefix = access::monitoring::bucket_prefix(account);
        self.held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .retain(|key, _| key != &prefix && !key.starts_with(&format!("{prefix}:")));
    }
}

/// The answer to a request past the limit, after the rules acted on its refusal count: the
/// first refusal notifies the account, the `suspend_after`th suspends it.
async fn refuse(
    store: &dyn Store,
    rules: Rules,
    account: &str,
    per_minute: u32,
    taken: store::buckets::Taken,
) -> ApiError {
    if taken.refused == 1 {
        let data = serde_json::json!({"per_minute": per_minute});
        if let Err(error) = access::notification::emit(store, account, "account.throttled", data, "monitor").await {
            tracing::error!(%error, "the throttled account could not be notified");
        }
    }
    if rules.suspend_after > 0 && taken.refused >= rules.suspend_after {
        let reason = format!(
            "it kept going past its limit of {per_minute} requests a minute ({} requests refused)",
            taken.refused
        );
        return match access::monitoring::suspend(store, account, &reason, "monitor").await {
            Ok(suspended) => {
                let reason = suspended.value.suspended.map_or(reason, |suspension| suspension.reason);
                ApiError::forbidden(format!("the account is suspended: {reason}"))
            }
            Err(error) => ApiError::internal(error),
        };
    }
    let seconds = taken.retry_after.as_secs_f64().ceil().max(1.0) as u64;
    ApiError::throttled(format!("the account's limit of {per_minute} requests a minute is reached"), seconds)
}
