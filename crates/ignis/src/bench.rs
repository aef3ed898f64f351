//! `ignis bench`: creates and reads over real HTTP against a throw-away server on loopback
//! (over a throw-away SQLite file, or a throw-away schema of the `--database-url` PostgreSQL
//! database), and prints a table of throughput and latency. Bounded in count; it stops by itself.
//! With `--bundles`, it measures loading Bundles instead (`bench/bundles.rs`), and with
//! `--search` a mix of searches (`bench/search.rs`); both run on SQLite and, given
//! `--database-url`, on PostgreSQL too, printing the two side by side. `--export` measures a
//! Bulk Data export through a real server process (`bench/export.rs`). `--soak` sends a mix of
//! valid and malformed requests and checks the server never fails (`bench/soak.rs`).

mod bundles;
mod export;
mod search;
mod soak;
mod validation;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use store::postgres::PostgresStore;
use store::sqlite::SqliteStore;
use tokio::net::TcpListener;

use crate::cli::BenchArgs;

/// One row of the result table.
struct Measurement {
    operation: &'static str,
    latencies: Vec<Duration>,
    elapsed: Duration,
}

pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.soak {
        return soak::run(args.requests, args.clients, args.database_url.clone()).await;
    }
    if let Some(path) = &args.export {
        return export::run(path, &args.export_sizes, args.database_url.clone()).await;
    }
    if let Some(path) = &args.search {
        return search::run(path, args.resources, args.requests, args.clients, args.database_url.clone()).await;
    }
    if let Some(path) = &args.validate {
        return validation::run(path);
    }
    if let Some(path) = &args.bundles {
        return bundles::run(path, args.clients, args.database_url.clone()).await;
    }
    let backend = Backend::new(args.database_url.clone());
    let fresh = backend.fresh().await?;
    let server = BenchServer::start(Arc::clone(&fresh.store), None).await?;
    let base = server.base.clone();
    let client = reqwest::Client::builder().pool_max_idle_per_host(args.clients).build()?;
    let mut rows = Vec::new();
    let patients = create_many(&client, &base, "Patient", &args, patient, Caller::open("create Patient")).await?;
    rows.push(patients.0);
    let observation_of = |index| observation(index, &patients.1);
    let observations =
        create_many(&client, &base, "Observation", &args, observation_of, Caller::open("create Observation")).await?;
    rows.push(observations.0);
    rows.push(read_many(&client, &base, "Patient", &patients.1, args.clients, Caller::open("read Patient")).await?);
    let read_observation = Caller::open("read Observation");
    rows.push(read_many(&client, &base, "Observation", &observations.1, args.clients, read_observation).await?);
    // The same creates and reads without audit, which only the bench can switch off: what
    // audit costs. The reads alternate, audited and not, so that neither gains from running
    // later (a bigger database, background work of the creates before).
    let unaudited = BenchServer::start_with(Arc::clone(&fresh.store), None, false).await?;
    let label = Caller::open("create Patient, audit bypassed");
    rows.push(create_many(&client, &unaudited.base, "Patient", &args, patient, label).await?.0);
    for _ in 0..2 {
        let label = Caller::open("read Patient, audit bypassed");
        rows.push(read_many(&client, &unaudited.base, "Patient", &patients.1, args.clients, label).await?);
        let label = Caller::open("read Patient (again, audited)");
        rows.push(read_many(&client, &base, "Patient", &patients.1, args.clients, label).await?);
    }
    unaudited.stop().await?;
    // The same reads through a server that requires tokens, over the same database.
    let secured = BenchServer::start(Arc::clone(&fresh.store), Some(bench_token()?)).await?;
    let bearer = |operation| Caller { token: secured.token.as_deref(), operation };
    let (patient_ids, observation_ids) = (&patients.1, &observations.1);
    rows.push(
        read_many(&client, &secured.base, "Patient", patient_ids, args.clients, bearer("read Patient (bearer token)"))
            .await?,
    );
    let label = "read Observation (bearer token)";
    rows.push(read_many(&client, &secured.base, "Observation", observation_ids, args.clients, bearer(label)).await?);
    rows.extend(device_rows(&client, &secured, fresh.store.as_ref(), &args).await?);
    secured.stop().await?;
    server.stop().await?;
    fresh.remove().await?;
    print_table(&rows, args.clients, backend.name());
    Ok(())
}

/// What a measured request presents, and the row it is reported as.
#[derive(Clone, Copy)]
struct Caller<'a> {
    token: Option<&'a str>,
    operation: &'static str,
}

impl Caller<'static> {
    const fn open(operation: &'static str) -> Caller<'static> {
        Caller { token: None, operation }
    }
}

async fn create_many(
    client: &reqwest::Client,
    base: &str,
    resource_type: &'static str,
    args: &BenchArgs,
    body: impl Fn(usize) -> Value,
    caller: Caller<'_>,
) -> anyhow::Result<(Measurement, Vec<String>)> {
    let bodies: Vec<String> = (0..args.count).map(|index| body(index).to_string()).collect();
    let url = format!("{base}/{resource_type}");
    let chunks = split(bodies, args.clients);
    let started = Instant::now();
    let tasks = chunks.into_iter().map(|chunk| {
        let (client, url) = (client.clone(), url.clone());
        let authorization = caller.token.map(|token| format!("Bearer {token}"));
        tokio::spawn(async move {
            let mut results = Vec::with_capacity(chunk.len());
            for body in chunk {
                let sent = Instant::now();
                let mut request = client
                    .post(&url)
                    .header("content-type", "application/fhir+json")
                    .header("prefer", "return=minimal")
                    .body(body);
                if let Some(authorization) = &authorization {
                    request = request.header("authorization", authorization);
                }
                let response = request.send().await?;
                if response.status() != reqwest::StatusCode::CREATED {
                    bail!("create answered {}", response.status());
                }
                let location = response
                    .headers()
                    .get("location")
                    .and_then(|value| value.to_str().ok())
                    .context("create without Location")?
                    .to_owned();
                let id = location.split('/').rev().nth(2).context("malformed Location")?.to_owned();
                results.push((sent.elapsed(), id));
            }
            anyhow::Ok(results)
        })
    });
    let mut latencies = Vec::with_capacity(args.count);
    let mut ids = Vec::with_capacity(args.count);
    for task in tasks.collect::<Vec<_>>() {
        for (latency, id) in task.await?? {
            latencies.push(latency);
            ids.push(id);
        }
    }
    Ok((Measurement { operation: caller.operation, latencies, elapsed: started.elapsed() }, ids))
}

async fn read_many(
    client: &reqwest::Client,
    base: &str,
    resource_type: &'static str,
    ids: &[String],
    clients: usize,
    caller: Caller<'_>,
) -> anyhow::Result<Measurement> {
    let urls: Vec<String> = ids.iter().map(|id| format!("{base}/{resource_type}/{id}")).collect();
    let started = Instant::now();
    let tasks: Vec<_> = split(urls, clients)
        .into_iter()
        .map(|chunk| {
            let client = client.clone();
            let authorization = caller.token.map(|token| format!("Bearer {token}"));
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(chunk.len());
                for url in chunk {
                    let sent = Instant::now();
                    let mut request = client.get(&url);
                    if let Some(authorization) = &authorization {
                        request = request.header("authorization", authorization);
                    }
                    let response = request.send().await?;
                    if response.status() != reqwest::StatusCode::OK {
                        bail!("read answered {}", response.status());
                    }
                    response.bytes().await?;
                    latencies.push(sent.elapsed());
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok(Measurement { operation: caller.operation, latencies, elapsed: started.elapsed() })
}

/// Creates and reads in the sandbox with a sandbox device's Device JWT, and the same reads with
/// a bearer token for the sandbox: what a Device JWT costs against an access token.
async fn device_rows(
    client: &reqwest::Client,
    secured: &BenchServer,
    store: &dyn store::Store,
    args: &BenchArgs,
) -> anyhow::Result<Vec<Measurement>> {
    let secret = secured.secret.as_ref().context("a secured server")?;
    let account = access::account::create(store, "bench", Vec::new(), "bench").await?;
    let device = access::device::NewDevice {
        account: account.id,
        name: "bench".to_owned(),
        purpose: String::new(),
        environment: store::Environment::Sandbox,
        scope: Some("system/*.cruds".to_owned()),
        certificate: None,
    };
    let device = access::device::create(store, device, "bench").await?;
    let credentials = access::DeviceCredentials::load_or_create(store, secret).await?;
    let jwt = credentials.issue(store, &device.id, "bench").await?;
    let sandbox = secured.base.replace("/fhir", "/sandbox/fhir");
    let device_caller = |operation| Caller { token: Some(jwt.as_str()), operation };
    let created =
        create_many(client, &sandbox, "Patient", args, patient, device_caller("create Patient (Device JWT, sandbox)"))
            .await?;
    let read = read_many(
        client,
        &sandbox,
        "Patient",
        &created.1,
        args.clients,
        device_caller("read Patient (Device JWT, sandbox)"),
    )
    .await?;
    let token = secured.token_for(&sandbox)?;
    let bearer = Caller { token: Some(token.as_str()), operation: "read Patient (bearer token, sandbox)" };
    let compared = read_many(client, &sandbox, "Patient", &created.1, args.clients, bearer).await?;
    Ok(vec![created.0, read, compared])
}

fn split<T>(items: Vec<T>, parts: usize) -> Vec<Vec<T>> {
    let parts = parts.max(1);
    let mut chunks: Vec<Vec<T>> = (0..parts).map(|_| Vec::new()).collect();
    for (index, item) in items.into_iter().enumerate() {
        chunks[index % parts].push(item);
    }
    chunks
}

fn patient(index: usize) -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{"system": "urn:ignis:bench", "value": format!("p{index}")}],
        "name": [{"family": format!("Bench{index}"), "given": ["Ada", "B."]}],
        "gender": if index.is_multiple_of(2) { "female" } else { "male" },
        "birthDate": format!("19{:02}-0{}-1{}", index % 100, 1 + index % 9, index % 10),
        "address": [{"line": ["1 Main St"], "city": "Boston", "state": "MA", "postalCode": "02110"}],
    })
}

fn observation(index: usize, patients: &[String]) -> Value {
    let subject = patients.get(index % patients.len().max(1)).cloned().unwrap_or_default();
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": format!("Patient/{subject}")},
        "effectiveDateTime": "2024-03-05T10:00:00Z",
        "valueQuantity": {"value": 60 + index % 40, "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min"},
    })
}

#[allow(clippy::print_stdout)] // The table is the command's output.
fn print_table(rows: &[Measurement], clients: usize, backend: &str) {
    println!("| operation ({backend}) | requests | clients | seconds | requests/s | p50 ms | p99 ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        let mut sorted = row.latencies.clone();
        sorted.sort();
        let seconds = row.elapsed.as_secs_f64();
        println!(
            "| {} | {} | {} | {:.2} | {:.0} | {:.2} | {:.2} |",
            row.operation,
            sorted.len(),
            clients,
            seconds,
            sorted.len() as f64 / seconds.max(1e-9),
            percentile(&sorted, 0.50),
            percentile(&sorted, 0.99)
        );
    }
}

/// The database kind each run gets a fresh database of.
pub(crate) enum Backend {
    Sqlite,
    /// A schema of its own in this database per run.
    Postgres {
        url: String,
    },
}

impl Backend {
    /// PostgreSQL when a `database_url` is given, else SQLite.
    pub(crate) fn new(database_url: Option<String>) -> Backend {
        match database_url {
            Some(url) => Backend::Postgres { url },
            None => Backend::Sqlite,
        }
    }

    /// SQLite, and PostgreSQL beside it when a `database_url` is given: the modes that load
    /// data measure both, so that the two backends are compared on one run.
    pub(crate) fn compared(database_url: Option<String>) -> Vec<Backend> {
        std::iter::once(Backend::Sqlite).chain(database_url.map(|url| Backend::Postgres { url })).collect()
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres { .. } => "PostgreSQL",
        }
    }

    /// A store over a database nothing else uses.
    pub(crate) async fn fresh(&self) -> anyhow::Result<Fresh> {
        match self {
            Backend::Sqlite => {
                let folder = tempfile::tempdir()?;
                let store = Arc::new(SqliteStore::open(&folder.path().join("bench.db"))?);
                Ok(Fresh { store, place: Place::Folder(folder) })
            }
            Backend::Postgres { url } => {
                let schema = format!("ignis_bench_{}_{}", std::process::id(), RUNS.fetch_add(1, Ordering::Relaxed));
                let (opened_url, opened_schema) = (url.clone(), schema.clone());
                // The PostgreSQL client blocks: keep it off the async runtime's threads.
                let store =
                    tokio::task::spawn_blocking(move || PostgresStore::open_in_schema(&opened_url, &opened_schema))
                        .await??;
                Ok(Fresh { store: Arc::new(store), place: Place::Schema { url: url.clone(), schema } })
            }
        }
    }
}

/// Numbers the throw-away schemas of this process.
static RUNS: AtomicUsize = AtomicUsize::new(0);

/// A fresh store and where its data lives.
pub(crate) struct Fresh {
    pub(crate) store: Arc<dyn store::Store>,
    place: Place,
}

enum Place {
    Folder(tempfile::TempDir),
    Schema { url: String, schema: String },
}

impl Fresh {
    /// The size of a SQLite database (with its WAL); PostgreSQL's is the server's to tell.
    pub(crate) fn sqlite_bytes(&self) -> Option<u64> {
        let Place::Folder(folder) = &self.place else { return None };
        let database = folder.path().join("bench.db");
        let size = |path: &std::path::Path| std::fs::metadata(path).map_or(0, |meta| meta.len());
        Some(size(&database) + size(&database.with_extension("db-wal")))
    }

    /// The database URL another process opens this store's data with (PostgreSQL: the
    /// schema chosen through the connection's `options`).
    pub(crate) fn database_url(&self) -> String {
        match &self.place {
            Place::Folder(folder) => format!("sqlite://{}", folder.path().join("bench.db").display()),
            Place::Schema { url, schema } => {
                let separator = if url.contains('?') { '&' } else { '?' };
                format!("{url}{separator}options=-c%20search_path%3D{schema}")
            }
        }
    }

    /// Drops the store, then its data.
    pub(crate) async fn remove(self) -> anyhow::Result<()> {
        drop(self.store);
        match self.place {
            Place::Folder(folder) => folder.close()?,
            Place::Schema { url, schema } => {
                tokio::task::spawn_blocking(move || PostgresStore::drop_schema(&url, &schema)).await??;
            }
        }
        Ok(())
    }
}

/// What a secured bench server is given: a fresh secret key and the grant of the token the
/// bench presents (a practitioner's `user/*.rs`, checked like any other on every request).
pub(crate) struct BenchToken {
    secret: Arc<auth::secret::SecretKey>,
    scopes: &'static str,
}

pub(crate) fn bench_token() -> anyhow::Result<BenchToken> {
    Ok(BenchToken { secret: Arc::new(auth::secret::SecretKey::generate()?), scopes: "user/*.rs" })
}

/// A throw-away server on a loopback port, over `store`.
struct BenchServer {
    /// The production FHIR base, e.g. `http://127.0.0.1:4242/fhir`.
    base: String,
    /// The access token to present, when the server requires one.
    token: Option<String>,
    /// The secret key and the grant of `token`, when the server requires tokens.
    secret: Option<Arc<auth::secret::SecretKey>>,
    grant: Option<auth::token::Grant>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl BenchServer {
    async fn start(store: Arc<dyn store::Store>, secured: Option<BenchToken>) -> anyhow::Result<BenchServer> {
        BenchServer::start_with(store, secured, true).await
    }

    /// [`BenchServer::start`], with audit bypassed when `audit` is false (the bench's own
    /// switch, to measure what audit costs).
    async fn start_with(
        store: Arc<dyn store::Store>,
        secured: Option<BenchToken>,
        audit: bool,
    ) -> anyhow::Result<BenchServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let root = format!("http://{}", listener.local_addr()?);
        let base = format!("{root}/fhir");
        let audit_secret = match &secured {
            Some(secured) => Arc::clone(&secured.secret),
            None => Arc::new(auth::secret::SecretKey::generate()?),
        };
        let mut config = server::Config::new(root.clone());
        config.bench_without_audit = !audit;
        let mut state = server::AppState::new(store, config, &audit_secret)?;
        let (mut token, mut secret, mut issued) = (None, None, None);
        if let Some(secured) = secured {
            secret = Some(Arc::clone(&secured.secret));
            let authorization = server::Authorization::new(secured.secret);
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let grant = auth::token::Grant {
                token_id: auth::token::new_token_id(),
                client_id: "bench".into(),
                subject: "bench".into(),
                scopes: auth::scope::Scopes::parse(secured.scopes)?,
                patient: None,
                encounter: None,
                fhir_user: Some("Practitioner/bench".into()),
                issued_at: now,
                expires_at: now + 3600,
                cnf: None,
            };
            token = Some(authorization.issuer.token_key().issue(&grant, &base, &base)?);
            issued = Some(grant);
            state = state.with_authorization(authorization);
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server::serve(listener, state, async {
            let _ = stopped.await;
        }));
        Ok(BenchServer { base, token, secret, grant: issued, stop, task })
    }

    /// The bench's grant as a token for the FHIR base `audience` (e.g. the sandbox's).
    fn token_for(&self, audience: &str) -> anyhow::Result<String> {
        let (secret, grant) = (self.secret.as_ref(), self.grant.as_ref());
        let (Some(secret), Some(grant)) = (secret, grant) else { bail!("the bench server requires no tokens") };
        let key = auth::token::TokenKey::new(&secret.derive("access-token"));
        Ok(key.issue(grant, &self.base, audience)?)
    }

    /// Shuts the server down and waits for it.
    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await??;
        Ok(())
    }
}

/// The `quantile` latency of `sorted` latencies, in milliseconds.
fn percentile(sorted: &[Duration], quantile: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * quantile).round() as usize;
    sorted[index.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}
