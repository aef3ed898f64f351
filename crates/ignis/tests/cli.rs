//! The `ignis` binary as an operator runs it: real processes, real sockets.
//!
//! - `migrate` reports the schema version before and after, on SQLite and (when
//!   `IGNIS_TEST_POSTGRES_URL` names a database) on PostgreSQL.
//! - `admin user create` makes patients and practitioners while a server runs on the same
//!   SQLite file, prints them without secrets, writes the TOTP enrolment to an owner-only file,
//!   and leaves neither password nor TOTP secret in clear in the database.
//! - `admin client create` registers each client type and refuses bad ones; `admin client
//!   import` takes the Inferno reference server's client list; `admin launch create` and
//!   `admin signing-key rotate` print what they made.
//! - `serve --tls-cert --tls-key` speaks TLS 1.2 and 1.3, refuses a TLS 1.1 ClientHello, and
//!   reloads its certificate on SIGHUP without dropping an open connection.
//! - A whole SMART launch against the real binary leaves no password, client secret, TOTP
//!   seed, recovery code, token, code, cookie, secret key or private key in clear in the
//!   database files or the debug log, and no patient name or birth date searched for in the
//!   log.
//! - Bulk export: a server killed right after an export's kick-off leaves the job to the next
//!   server, which finishes it with every resource once; `ignis export` writes a Group export;
//!   `--export-store s3://…` writes to an S3-compatible server (moto; ignored unless run with
//!   `--include-ignored`, as `.ci/run` does after installing it).
//! - The access program's `admin` commands take a production access request from draft to
//!   approved (refusing an illegal transition, a request for changes without a reason and an
//!   incomplete checklist), the platform CA signs a device's CSR, and the device's JWT works
//!   over `serve --mtls-listen` with the signed certificate until `admin device revoke`.
//! - The audit log: `ignis audit verify` names a row changed or deleted under a running server;
//!   `ignis audit export` prints NDJSON AuditEvents. One rate limit, one suspension and its
//!   reinstatement (`admin account limit|suspend|reinstate`) hold across two `ignis serve`
//!   processes on one PostgreSQL database.
//! - Two `ignis serve` processes over one PostgreSQL database (skipped without
//!   `IGNIS_TEST_POSTGRES_URL`; `.ci/with-postgres` provides one): what one writes the other
//!   reads and finds, and conditional creates racing across both make one resource.
//!
//! Every PostgreSQL test works in a fresh schema of the database (selected with the URL's
//! `options=-c search_path=…`), dropped at the end. Children are killed when their handle is
//! dropped, so a failing test leaves no server behind. Nothing waits on a timer: a server is
//! ready once it has logged its address and answers `/healthz`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

/// How long a server may take to start before the test fails.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// The PostgreSQL database of the run; the tests that need one are ignored in a plain
/// `cargo test` and fail without it under `--include-ignored`.
fn postgres_url() -> String {
    std::env::var("IGNIS_TEST_POSTGRES_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .expect("needs IGNIS_TEST_POSTGRES_URL (run under .ci/with-postgres with --include-ignored)")
}

/// A fresh, empty schema of the test database, dropped with the value.
struct Schema {
    url: String,
    name: String,
}

/// Numbers the schemas of this test process.
static SCHEMAS: AtomicUsize = AtomicUsize::new(0);

impl Schema {
    fn create(url: &str) -> Schema {
        let name = format!("test_cli_{}_{}", std::process::id(), SCHEMAS.fetch_add(1, Ordering::Relaxed));
        let statement = format!("CREATE SCHEMA {name}");
        run_sql(url, &statement);
        Schema { url: url.to_owned(), name }
    }

    /// The database URL with this schema as the search path.
    fn url(&self) -> String {
        let separator = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{separator}options=-c%20search_path%3D{}", self.url, self.name)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        run_sql(&self.url, &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
    }
}

/// Runs `statement` on a connection of its own, on a thread of its own: the synchronous
/// client must not run on the test's async runtime.
fn run_sql(url: &str, statement: &str) {
    let (url, statement) = (url.to_owned(), statement.to_owned());
    let outcome = std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls)?;
        client.batch_execute(&statement)
    })
    .join();
    assert!(matches!(outcome, Ok(Ok(()))), "{outcome:?}");
}

/// A running `ignis serve` process, killed when dropped.
struct Server {
    child: Child,
    /// The production FHIR base, e.g. `http://127.0.0.1:4242/fhir`.
    base: String,
    /// The address it listens on.
    address: String,
    /// Its log lines so far.
    log: Arc<std::sync::Mutex<Vec<String>>>,
    /// Its data folder (secret key, export files) when the test named none.
    _data: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts `ignis serve --insecure-no-auth` on a free loopback port over `database_url` and
    /// waits until it answers `/healthz`.
    async fn start(database_url: &str) -> Server {
        Server::start_with(database_url, &["--insecure-no-auth"]).await
    }

    /// [`Server::start`] with `extra` flags instead of `--insecure-no-auth`.
    async fn start_with(database_url: &str, extra: &[&str]) -> Server {
        Server::start_with_env(database_url, extra, &[]).await
    }

    /// [`Server::start_with`] with these environment variables too.
    async fn start_with_env(database_url: &str, extra: &[&str], environment: &[(&str, &str)]) -> Server {
        let data = (!extra.contains(&"--data-dir")).then(|| tempfile::tempdir().expect("data folder"));
        let data_dir: Vec<&std::ffi::OsStr> = match &data {
            Some(folder) => vec!["--data-dir".as_ref(), folder.path().as_os_str()],
            None => Vec::new(),
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_ignis"))
            .args(["serve", "--listen", "127.0.0.1:0", "--no-demo", "--database-url", database_url])
            .args(data_dir)
            .args(extra)
            .envs(environment.iter().copied())
            .env("IGNIS_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ignis serve");
        let stderr = child.stderr.take().expect("stderr");
        let (address_sender, address) = std::sync::mpsc::channel::<String>();
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = Arc::clone(&log);
        // The log is read to its end, so the child never blocks on a full pipe; the address
        // comes from the line announcing that the server is serving.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let line = strip_ansi(&line);
                if line.contains("ignis is serving")
                    && let Some(address) = field(&line, "address")
                {
                    let _ = address_sender.send(address);
                }
                kept.lock().expect("log").push(line);
            }
            // The process ended: anything it said helps whoever reads the failure.
            let log = kept.lock().expect("log");
            if log.iter().all(|line| !line.contains("ignis is serving")) {
                eprintln!("ignis serve ended before serving:\n{}", log.join("\n"));
            }
        });
        let address = tokio::task::spawn_blocking(move || address.recv_timeout(START_DEADLINE))
            .await
            .expect("address task")
            .expect("ignis serve logs its address");
        let tls = extra.contains(&"--tls-cert");
        let scheme = if tls { "https" } else { "http" };
        let server = Server { child, base: format!("{scheme}://{address}/fhir"), address, log, _data: data };
        if !tls {
            // Over TLS the tests make their own connections; the listener is bound already.
            server.wait_healthy().await;
        }
        server
    }

    /// Waits until the log has a line containing `text` (the deadline is only a hang guard).
    async fn wait_for_log(&self, text: &str) {
        let started = Instant::now();
        while !self.log.lock().expect("log").iter().any(|line| line.contains(text)) {
            assert!(started.elapsed() < START_DEADLINE, "the log never said '{text}'");
            tokio::task::yield_now().await;
        }
    }

    /// Asks `/healthz` until it answers 200 (the listener is bound before the address is
    /// logged, so this normally succeeds at once).
    async fn wait_healthy(&self) {
        let url = self.base.replace("/fhir", "/healthz");
        let client = reqwest::Client::new();
        let started = Instant::now();
        loop {
            match client.get(&url).send().await {
                Ok(response) if response.status() == StatusCode::OK => return,
                outcome => {
                    assert!(started.elapsed() < START_DEADLINE, "{url} never became healthy: {outcome:?}");
                    tokio::task::yield_now().await;
                }
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn strip_ansi(line: &str) -> String {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip to the end of the escape sequence (a letter).
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

/// The value of `name=value` in a log line.
fn field(line: &str, name: &str) -> Option<String> {
    let start = line.find(&format!("{name}="))? + name.len() + 1;
    line[start..].split_whitespace().next().map(str::to_owned)
}

fn patient(family: &str, identifier: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{"system": "urn:test", "value": identifier}],
        "name": [{"family": family}],
    })
}

async fn send(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.expect("send");
    let status = response.status();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}")))
}

fn post(client: &reqwest::Client, url: String, body: &Value) -> reqwest::RequestBuilder {
    client.post(url).header("content-type", "application/fhir+json").body(body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs IGNIS_TEST_POSTGRES_URL"]
async fn two_serve_processes_share_one_postgres_database() {
    let url = postgres_url();
    let schema = Schema::create(&url);
    // Both start on an empty schema: they migrate it at once, one waiting for the other.
    let database_url = schema.url();
    let (first, second) = tokio::join!(Server::start(&database_url), Server::start(&database_url));
    let client = reqwest::Client::new();

    // Written through the first process, read and searched through the second.
    let (status, created) = send(post(&client, format!("{}/Patient", first.base), &patient("Twoproc", "two-1"))).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let (status, read) = send(client.get(format!("{}/Patient/{id}", second.base))).await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(read["name"][0]["family"], "Twoproc");
    let (_, found) = send(client.get(format!("{}/Patient?family=twoproc", second.base))).await;
    assert_eq!(found["total"], 1, "{found}");
    assert_eq!(found["entry"][0]["resource"]["id"], id.as_str());

    // Updated through the second, listed through the first: two versions, the second later.
    let mut changed = read.clone();
    changed["name"][0]["family"] = json!("Twoprocchanged");
    let update = client
        .put(format!("{}/Patient/{id}", second.base))
        .header("content-type", "application/fhir+json")
        .body(changed.to_string());
    let (status, updated) = send(update).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    let (_, history) = send(client.get(format!("{}/Patient/{id}/_history", first.base))).await;
    let entries = history["entry"].as_array().expect("entries");
    assert_eq!(entries.len(), 2, "{history}");
    let instants: Vec<&str> =
        entries.iter().map(|entry| entry["resource"]["meta"]["lastUpdated"].as_str().unwrap_or("")).collect();
    assert!(instants[0] > instants[1], "newest first, strictly later: {instants:?}");
    let (_, found) = send(client.get(format!("{}/Patient?family=twoprocchanged", first.base))).await;
    assert_eq!(found["total"], 1, "{found}");

    // Conditional creates with one If-None-Exist, racing across both processes.
    let bases = Arc::new([first.base.clone(), second.base.clone()]);
    let mut tasks = Vec::new();
    for task in 0..16 {
        let (client, bases) = (client.clone(), Arc::clone(&bases));
        tasks.push(tokio::spawn(async move {
            let request = post(&client, format!("{}/Patient", bases[task % 2]), &patient("Race", "race"))
                .header("if-none-exist", "identifier=urn:test|race");
            let (status, body) = send(request).await;
            assert!(status == StatusCode::CREATED || status == StatusCode::OK, "{status}: {body}");
            body["id"].as_str().expect("id").to_owned()
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.expect("task"));
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1, "every create found the one resource: {ids:?}");
    for base in bases.iter() {
        let (_, found) = send(client.get(format!("{base}/Patient?identifier=urn:test|race"))).await;
        assert_eq!(found["total"], 1, "{found}");
        assert_eq!(found["entry"][0]["resource"]["id"], ids[0].as_str());
    }
    let (_, history) = send(client.get(format!("{}/Patient/{}/_history", second.base, ids[0]))).await;
    assert_eq!(history["entry"].as_array().map(Vec::len), Some(1), "one version: {history}");

    drop((first, second));
    drop(schema);
}

/// Runs `ignis migrate` with `args` and returns what it printed.
fn migrate(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_ignis"))
        .arg("migrate")
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run ignis migrate");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "ignis migrate {args:?}: {stdout}{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

/// The `before -> after` versions (or the one version when up to date) in `migrate`'s output.
fn versions(output: &str) -> (u32, u32) {
    let text = output.split("schema version ").nth(1).unwrap_or_else(|| panic!("no version in {output:?}"));
    let number =
        |text: &str| text.trim_start().split(|c: char| !c.is_ascii_digit()).next().and_then(|n| n.parse().ok());
    let before: u32 = number(text).unwrap_or_else(|| panic!("no version in {output:?}"));
    match text.split_once("->") {
        Some((_, after)) => (before, number(after).unwrap_or_else(|| panic!("no version in {output:?}"))),
        None => {
            assert!(text.contains("up to date"), "{output:?}");
            (before, before)
        }
    }
}

#[test]
fn migrate_reports_the_schema_version_before_and_after_on_sqlite() {
    let folder = tempfile::tempdir().expect("temp dir");
    let data_dir = folder.path().to_str().expect("UTF-8 path");
    let (before, after) = versions(&migrate(&["--data-dir", data_dir]));
    assert_eq!(before, 0, "a new database");
    assert!(after > 0);
    assert!(folder.path().join("ignis.db").exists());
    assert_eq!(versions(&migrate(&["--data-dir", data_dir])), (after, after));
}

#[test]
#[ignore = "needs IGNIS_TEST_POSTGRES_URL"]
fn migrate_reports_the_schema_version_before_and_after_on_postgres() {
    let url = postgres_url();
    let schema = Schema::create(&url);
    let (before, after) = versions(&migrate(&["--database-url", &schema.url()]));
    assert_eq!(before, 0, "a new schema");
    assert!(after > 0);
    assert_eq!(versions(&migrate(&["--database-url", &schema.url()])), (after, after));
}

#[test]
fn bad_database_urls_fail_with_a_clear_message() {
    let cases = [
        ("mysql://host/db", "unsupported database URL"),
        ("postgres://user@127.0.0.1:5432/db?sslmode=sometimes", "invalid PostgreSQL connection string"),
        // Nothing listens on port 1: refused at once.
        ("postgres://user@127.0.0.1:1/db", "the database is unavailable"),
    ];
    for (url, expected) in cases {
        let output = Command::new(env!("CARGO_BIN_EXE_ignis"))
            .args(["migrate", "--database-url", url])
            .env("NO_COLOR", "1")
            .output()
            .expect("run ignis migrate");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{url} was accepted");
        assert!(stderr.contains(expected), "{url}: expected '{expected}' in {stderr:?}");
        assert!(!stderr.contains("panicked"), "{url}: {stderr}");
    }
}

#[tokio::test]
async fn serve_requires_tokens_by_default() {
    let folder = tempfile::tempdir().expect("temp dir");
    let database = format!("sqlite://{}", folder.path().join("ignis.db").display());
    let data_dir = folder.path().to_str().expect("UTF-8 path");
    let server = Server::start_with(&database, &["--data-dir", data_dir]).await;
    let client = reqwest::Client::new();
    let refused = client.get(format!("{}/Patient", server.base)).send().await.expect("search");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(refused.headers()["www-authenticate"].to_str().expect("challenge").starts_with("Bearer"));
    let metadata = client.get(format!("{}/metadata", server.base)).send().await.expect("metadata");
    assert_eq!(metadata.status(), StatusCode::OK);
    let discovery = client.get(format!("{}/.well-known/smart-configuration", server.base)).send().await;
    let discovery: Value = discovery.expect("discovery").json().await.expect("JSON");
    assert_eq!(discovery["token_endpoint"], server.base.replace("/fhir", "/auth/token"));
    #[cfg(unix)]
    assert_eq!(mode(&folder.path().join("secret.key")), 0o600, "the secret key is generated owner-only");
}

/// Runs `ignis admin user create` with `args`, writing `password` and a newline to its stdin.
fn admin_user_create(args: &[&str], password: &str) -> std::process::Output {
    admin_with_stdin(&[&["user", "create"], args].concat(), &format!("{password}\n"))
}

/// The JSON a successful `admin user create` printed.
fn created_user(output: &std::process::Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_str(&stdout).unwrap_or_else(|error| panic!("not JSON ({error}): {stdout}"))
}

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

#[tokio::test]
async fn admin_user_create_stores_users_without_secrets_in_clear() {
    const PATIENT_PASSWORD: &str = "patient pass phrase 8513";
    const PRACTITIONER_PASSWORD: &str = "practitioner pass phrase 2291";
    let folder = tempfile::tempdir().expect("temp dir");
    let data_dir = folder.path().to_str().expect("UTF-8 path");
    let database = folder.path().join("ignis.db");
    // A server holds the database open all along: the commands work beside it, and its
    // connections keep the write-ahead log from being folded away before it is scanned.
    let server = Server::start(&format!("sqlite://{}", database.display())).await;

    let patient = created_user(&admin_user_create(
        &[
            "--data-dir",
            data_dir,
            "--username",
            "Alice",
            "--password-stdin",
            "--fhir-user",
            "Patient/85",
            "--role",
            "patient",
        ],
        PATIENT_PASSWORD,
    ));
    let id = patient["id"].as_str().expect("an id").to_owned();
    assert!(!id.is_empty());
    assert_eq!(patient["username"], "alice");
    assert_eq!(patient["role"], "patient");
    assert_eq!(patient["fhir_user"], "Patient/85");
    assert_eq!(patient["patients"], json!(["85"]));
    assert_eq!(patient["totp_enrolled"], false);
    assert_eq!(patient["version"], 1);
    assert!(patient["updated"].as_str().is_some_and(|updated| updated.ends_with('Z')), "{patient}");
    let fields: Vec<&String> = patient.as_object().expect("an object").keys().collect();
    assert_eq!(fields, ["id", "username", "role", "fhir_user", "patients", "totp_enrolled", "version", "updated"]);
    #[cfg(unix)]
    assert_eq!(mode(&folder.path().join("secret.key")), 0o600, "the secret key is created owner-only");

    let practitioner_args =
        ["--data-dir", data_dir, "--username", "drhouse", "--password-stdin", "--fhir-user", "Practitioner/12"];
    let without_file = admin_user_create(&[&practitioner_args[..], &["--role", "practitioner"]].concat(), "x1");
    let stderr = String::from_utf8_lossy(&without_file.stderr);
    assert!(!without_file.status.success() && without_file.stdout.is_empty(), "{stderr}");
    assert!(stderr.contains("--totp-secret-out"), "{stderr}");

    let secret_file = folder.path().join("drhouse-totp.json");
    let secret_path = secret_file.to_str().expect("UTF-8 path");
    let practitioner = created_user(&admin_user_create(
        &[&practitioner_args[..], &["--role", "practitioner", "--totp-secret-out", secret_path]].concat(),
        PRACTITIONER_PASSWORD,
    ));
    assert_eq!(practitioner["username"], "drhouse");
    assert_eq!(practitioner["role"], "practitioner");
    assert_eq!(practitioner["fhir_user"], "Practitioner/12");
    assert_eq!(practitioner["patients"], json!([]));
    assert_eq!(practitioner["totp_enrolled"], true);
    assert_ne!(practitioner["id"], patient["id"]);
    #[cfg(unix)]
    assert_eq!(mode(&secret_file), 0o600);
    let enrolment: Value = serde_json::from_str(&std::fs::read_to_string(&secret_file).expect("the TOTP file"))
        .expect("the TOTP file is JSON");
    let secret = enrolment["secret"].as_str().expect("a base32 secret").to_owned();
    assert_eq!(secret.len(), 32);
    assert_eq!(enrolment["otpauth_uri"], format!("otpauth://totp/Ignis:drhouse?secret={secret}&issuer=Ignis"));
    let recovery_codes: Vec<String> = serde_json::from_value(enrolment["recovery_codes"].clone()).expect("codes");
    assert_eq!(recovery_codes.len(), 10);
    let printed = String::from_utf8_lossy(&practitioner.to_string().into_bytes()).into_owned();
    assert!(!printed.contains(&secret) && !printed.contains("argon2"), "{printed}");

    let duplicate = admin_user_create(
        &[
            "--data-dir",
            data_dir,
            "--username",
            "ALICE",
            "--password-stdin",
            "--fhir-user",
            "Patient/86",
            "--role",
            "patient",
        ],
        "another password",
    );
    let stderr = String::from_utf8_lossy(&duplicate.stderr);
    assert!(!duplicate.status.success() && duplicate.stdout.is_empty(), "{stderr}");
    assert!(stderr.contains("'alice' already exists"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // The server still serves after the commands wrote beside it.
    let health = reqwest::get(server.base.replace("/fhir", "/healthz")).await.expect("healthz");
    assert_eq!(health.status(), StatusCode::OK);

    let mut scanned = 0;
    for file in [database.clone(), folder.path().join("ignis.db-wal")] {
        let Ok(bytes) = std::fs::read(&file) else { continue };
        scanned += bytes.len();
        let text = String::from_utf8_lossy(&bytes);
        for secret_text in [PATIENT_PASSWORD, PRACTITIONER_PASSWORD, &secret]
            .into_iter()
            .chain(recovery_codes.iter().map(String::as_str))
        {
            assert!(!text.contains(secret_text), "{} holds '{secret_text}' in clear", file.display());
        }
        if text.contains("drhouse") {
            // The user's record is in this file, so the scan looked where the secrets would be.
            assert!(text.contains("$argon2id$"), "{}", file.display());
        }
    }
    assert!(scanned > 0);
    let both = [database.clone(), folder.path().join("ignis.db-wal")]
        .iter()
        .filter_map(|file| std::fs::read(file).ok())
        .any(|bytes| String::from_utf8_lossy(&bytes).contains("drhouse"));
    assert!(both, "the user records are in the database files scanned");
    drop(server);
}

/// A self-signed certificate for `localhost` and 127.0.0.1 written to `cert.pem`/`key.pem` in
/// `folder`; returns its DER.
fn write_certificate(folder: &std::path::Path) -> Vec<u8> {
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let rcgen::CertifiedKey { cert, signing_key } = rcgen::generate_simple_self_signed(names).expect("a certificate");
    std::fs::write(folder.join("cert.pem"), cert.pem()).expect("write the certificate");
    std::fs::write(folder.join("key.pem"), signing_key.serialize_pem()).expect("write the key");
    cert.der().to_vec()
}

/// A TLS connection to `address` trusting only `trusted`, speaking only `version`.
async fn tls_connect(
    address: &str,
    trusted: &[u8],
    version: &'static rustls::SupportedProtocolVersion,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls_pki_types::CertificateDer::from(trusted.to_vec())).expect("a root");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(address).await.expect("connect");
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    connector.connect(name, tcp).await.expect("a TLS handshake")
}

/// Sends `GET path` on `stream` and returns the status line.
async fn http_get(stream: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    String::from_utf8_lossy(&response).lines().next().unwrap_or_default().to_owned()
}

/// A TLS 1.1 ClientHello (legacy_version 0x0302, no supported_versions extension).
fn tls11_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x02];
    body.extend([0x42; 32]); // random
    body.push(0); // no session id
    body.extend([0x00, 0x04, 0xc0, 0x13, 0x00, 0x2f]); // ECDHE-RSA-AES128-SHA, RSA-AES128-SHA
    body.extend([0x01, 0x00]); // null compression
    let mut handshake = vec![0x01, 0x00];
    handshake.extend(u16::try_from(body.len()).expect("short").to_be_bytes());
    handshake.extend(body);
    let mut record = vec![0x16, 0x03, 0x02];
    record.extend(u16::try_from(handshake.len()).expect("short").to_be_bytes());
    record.extend(handshake);
    record
}

#[tokio::test]
async fn serve_speaks_tls_1_2_and_1_3_only_and_reloads_its_certificate() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let folder = tempfile::tempdir().expect("temp dir");
    let first = write_certificate(folder.path());
    let database = format!("sqlite://{}", folder.path().join("ignis.db").display());
    let (cert, key) = (folder.path().join("cert.pem"), folder.path().join("key.pem"));
    let flags = ["--tls-cert", cert.to_str().expect("path"), "--tls-key", key.to_str().expect("path")];
    let server =
        Server::start_with(&database, &[&flags[..], &["--data-dir", folder.path().to_str().expect("path")]].concat())
            .await;
    assert!(server.base.starts_with("https://"), "{}", server.base);

    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let mut stream = tls_connect(&server.address, &first, version).await;
        assert_eq!(stream.get_ref().1.protocol_version(), Some(version.version));
        assert_eq!(http_get(&mut stream, "/fhir/metadata").await, "HTTP/1.1 200 OK");
    }

    let mut old = tokio::net::TcpStream::connect(&server.address).await.expect("connect");
    old.write_all(&tls11_client_hello()).await.expect("send the hello");
    let mut answer = Vec::new();
    let _ = old.read_to_end(&mut answer).await;
    assert!(answer.first() != Some(&0x16), "no ServerHello for TLS 1.1: {answer:02x?}");
    if let Some(first_byte) = answer.first() {
        assert_eq!(*first_byte, 0x15, "an alert: {answer:02x?}");
    }

    // A connection opened before the reload keeps working after it.
    let mut before = tls_connect(&server.address, &first, &rustls::version::TLS13).await;
    let second = write_certificate(folder.path());
    assert_ne!(first, second);
    let hangup = Command::new("kill").args(["-HUP", &server.child.id().to_string()]).status().expect("kill -HUP");
    assert!(hangup.success());
    server.wait_for_log("TLS certificate reloaded").await;
    let mut after = tls_connect(&server.address, &second, &rustls::version::TLS13).await;
    let presented = after.get_ref().1.peer_certificates().expect("a certificate")[0].to_vec();
    assert_eq!(presented, second, "new connections get the new certificate");
    assert_eq!(http_get(&mut after, "/fhir/metadata").await, "HTTP/1.1 200 OK");
    assert_eq!(http_get(&mut before, "/fhir/metadata").await, "HTTP/1.1 200 OK");
}

#[test]
fn serve_refuses_plain_http_beyond_loopback_and_half_tls_flags() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_ignis"))
            .args(["serve", "--no-demo"])
            .args(args)
            .env("NO_COLOR", "1")
            .output()
            .expect("run ignis serve")
    };
    let folder = tempfile::tempdir().expect("temp dir");
    let data_dir = folder.path().to_str().expect("path");
    let plain = run(&["--listen", "0.0.0.0:0", "--data-dir", data_dir]);
    let stderr = String::from_utf8_lossy(&plain.stderr);
    assert!(!plain.status.success() && stderr.contains("without TLS: pass --tls-cert and --tls-key"), "{stderr}");
    let half = run(&["--listen", "127.0.0.1:0", "--tls-cert", "cert.pem", "--data-dir", data_dir]);
    let stderr = String::from_utf8_lossy(&half.stderr);
    assert!(!half.status.success() && stderr.contains("--tls-key"), "{stderr}");
    let missing =
        run(&["--listen", "127.0.0.1:0", "--tls-cert", "nope.pem", "--tls-key", "nope.key", "--data-dir", data_dir]);
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success() && stderr.contains("nope.pem"), "{stderr}");
}

/// Runs `ignis admin ARGS` and returns its JSON output, failing on a non-zero exit.
fn admin(args: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_ignis")).arg("admin").args(args).env("NO_COLOR", "1").output();
    let output = output.expect("run ignis admin");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{args:?}: {stdout}{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_str(&stdout).unwrap_or_else(|error| panic!("not JSON ({error}): {stdout}"))
}

#[test]
fn admin_launch_and_signing_key_commands() {
    let folder = tempfile::tempdir().expect("temp dir");
    let data_dir = folder.path().to_str().expect("path");
    let launch = admin(&["launch", "create", "--patient", "85", "--encounter", "e1", "--data-dir", data_dir]);
    assert!(launch["launch"].as_str().is_some_and(|value| value.len() >= 40), "{launch}");
    assert_eq!((&launch["patient"], &launch["encounter"]), (&json!("85"), &json!("e1")));
    let first = admin(&["signing-key", "rotate", "--data-dir", data_dir]);
    let second = admin(&["signing-key", "rotate", "--data-dir", data_dir]);
    assert_ne!(first["kid"], second["kid"]);
    // The first start's key, then two rotations: the keys rotated out stay published while the
    // tokens they signed live.
    assert_eq!((&first["published"], &second["published"]), (&json!(2), &json!(3)));
    let revoked = Command::new(env!("CARGO_BIN_EXE_ignis"))
        .args(["admin", "token", "revoke", "--username", "nobody", "--data-dir", data_dir])
        .output()
        .expect("run");
    assert!(!revoked.status.success());
    assert!(String::from_utf8_lossy(&revoked.stderr).contains("no user named 'nobody'"));
}

/// A form POST without following redirects; returns the response.
async fn post_form(
    http: &reqwest::Client,
    url: &str,
    form: &[(&str, &str)],
    cookie: Option<&str>,
) -> reqwest::Response {
    let mut request = http
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(form).expect("form"));
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    request.send().await.expect("POST")
}

/// The `Location` of a redirect.
fn location(response: &reqwest::Response) -> String {
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    response.headers()["location"].to_str().expect("location").to_owned()
}

/// The value of the hidden `request` field of a page.
fn request_handle(page: &str) -> String {
    let at = page.find("name=\"request\" value=\"").expect("a request handle") + 22;
    page[at..at + page[at..].find('"').expect("end")].to_owned()
}

#[tokio::test]
async fn no_secret_is_in_clear_in_the_database_or_the_log() {
    const PASSWORD: &str = "practitioner pass phrase 7731";
    const CLIENT_SECRET: &str = "client secret 5521 of the audit app";
    const REDIRECT: &str = "https://app.example/callback";
    const PATIENT_NAME: &str = "Zyxwvutson";
    const BIRTH_DATE: &str = "1957-03-04";
    let folder = tempfile::tempdir().expect("temp dir");
    let data_dir = folder.path().to_str().expect("path");
    let database = folder.path().join("ignis.db");
    let url = format!("sqlite://{}", database.display());
    let server = Server::start_with(&url, &["--data-dir", data_dir, "--log-level", "debug"]).await;
    let totp_file = folder.path().join("totp.json");
    let args = ["--data-dir", data_dir, "--username", "drwho", "--password-stdin", "--fhir-user", "Practitioner/9"];
    let extra = ["--role", "practitioner", "--totp-secret-out", totp_file.to_str().expect("path")];
    created_user(&admin_user_create(&[&args[..], &extra[..]].concat(), PASSWORD));
    let enrolment: Value = serde_json::from_str(&std::fs::read_to_string(&totp_file).expect("file")).expect("JSON");
    let seed = enrolment["secret"].as_str().expect("seed").to_owned();
    let store = store::sqlite::SqliteStore::open(&database).expect("the database");
    let client = auth::client::NewClient {
        client_id: "audit-app".into(),
        client_type: auth::client::ClientType::ConfidentialSymmetric,
        environment: "production".into(),
        secret: Some(CLIENT_SECRET.into()),
        jwks: None,
        jwks_url: None,
        redirect_uris: vec![REDIRECT.into()],
        launch_uris: Vec::new(),
        scopes: "openid fhirUser offline_access user/*.rs".into(),
    };
    auth::client::register(&store, client, "test").await.expect("register the client");

    // The whole flow against the real binary.
    let root = server.base.trim_end_matches("/fhir").to_owned();
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let verifier = "v".repeat(64);
    let challenge = auth::pkce::challenge(&verifier);
    let query = serde_urlencoded::to_string([
        ("response_type", "code"),
        ("client_id", "audit-app"),
        ("redirect_uri", REDIRECT),
        ("scope", "openid fhirUser offline_access user/*.rs"),
        ("state", "s"),
        ("aud", server.base.as_str()),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ])
    .expect("query");
    let flow = location(&http.get(format!("{root}/auth/authorize?{query}")).send().await.expect("authorize"));
    let page = http.get(&flow).send().await.expect("flow").text().await.expect("page");
    let handle = request_handle(&page);
    let signed = post_form(
        &http,
        &format!("{root}/auth/sign-in"),
        &[("request", &handle), ("username", "drwho"), ("password", PASSWORD)],
        None,
    )
    .await;
    location(&signed);
    let code = auth::totp::Authenticator::from_base32(&seed).expect("seed").code_at(time::OffsetDateTime::now_utc());
    let verified =
        post_form(&http, &format!("{root}/auth/second-factor"), &[("request", &handle), ("otp", &code)], None).await;
    let cookie = verified.headers()["set-cookie"].to_str().expect("cookie").split(';').next().expect("pair").to_owned();
    let consent = [
        ("request", handle.as_str()),
        ("decision", "approve"),
        ("scope", "openid"),
        ("scope", "fhirUser"),
        ("scope", "offline_access"),
        ("scope", "user/*.rs"),
    ];
    let back = location(&post_form(&http, &format!("{root}/auth/consent"), &consent, Some(&cookie)).await);
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(back.split_once('?').expect("query").1).expect("pairs");
    let auth_code = pairs.iter().find(|(name, _)| name == "code").map(|(_, code)| code.clone()).expect("a code");
    let exchange = [
        ("grant_type", "authorization_code"),
        ("code", auth_code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier.as_str()),
    ];
    let token = http
        .post(format!("{root}/auth/token"))
        .basic_auth("audit-app", Some(CLIENT_SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(exchange).expect("form"))
        .send()
        .await
        .expect("token");
    assert_eq!(token.status(), StatusCode::OK);
    let token: Value = token.json().await.expect("JSON");
    let access = token["access_token"].as_str().expect("access token").to_owned();
    let refresh = token["refresh_token"].as_str().expect("refresh token").to_owned();
    assert!(token["id_token"].is_string());
    let read = http.get(format!("{}/Patient", server.base)).bearer_auth(&access).send().await.expect("search");
    assert_eq!(read.status(), StatusCode::OK);
    // A search by a name and a birth date: PHI in a query string, which the log must not keep.
    let by_name = format!("{}/Patient?name={PATIENT_NAME}&birthdate={BIRTH_DATE}", server.base);
    let search = http.get(by_name).bearer_auth(&access).send().await.expect("search");
    assert_eq!(search.status(), StatusCode::OK);

    let secret_key = std::fs::read_to_string(folder.path().join("secret.key")).expect("the secret key");
    let mut secrets = vec![
        PASSWORD,
        CLIENT_SECRET,
        seed.as_str(),
        access.as_str(),
        refresh.as_str(),
        auth_code.as_str(),
        &cookie["ignis_session=".len()..],
        secret_key.trim(),
    ];
    let recovery: Vec<String> = serde_json::from_value(enrolment["recovery_codes"].clone()).expect("codes");
    secrets.extend(recovery.iter().map(String::as_str));
    let log = server.log.lock().expect("log").join("\n");
    assert!(log.contains("authorize"), "the log saw the flow:\n{log}");
    let mut scanned = vec![("the log".to_owned(), log)];
    for file in ["ignis.db", "ignis.db-wal"] {
        if let Ok(bytes) = std::fs::read(folder.path().join(file)) {
            scanned.push((file.to_owned(), String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
    for phi in [PATIENT_NAME, BIRTH_DATE] {
        assert!(!scanned[0].1.contains(phi), "the log holds PHI ({phi})");
    }
    for (name, text) in &scanned {
        for secret in &secrets {
            assert!(!text.contains(secret), "{name} holds a secret in clear ({} characters)", secret.len());
        }
        assert!(!text.contains("PRIVATE KEY"), "{name} holds a private key in clear");
    }
    let stored: String =
        scanned.iter().filter(|(name, _)| name.starts_with("ignis.db")).map(|(_, text)| text.as_str()).collect();
    assert!(stored.contains("drwho") && stored.contains("signing_keys"), "the records are in the files scanned");
}

/// Runs `ignis admin ARGS` with `stdin` on its standard input.
fn admin_with_stdin(args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_ignis"))
        .arg("admin")
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ignis admin");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write");
    child.wait_with_output().expect("wait")
}

#[test]
fn admin_client_create_and_import() {
    let folder = tempfile::tempdir().expect("temp dir");
    let data_dir = folder.path().to_str().expect("path");
    let base = [
        "client",
        "create",
        "--data-dir",
        data_dir,
        "--redirect-uri",
        "https://app.example/cb",
        "--scopes",
        "launch/patient openid fhirUser patient/*.rs",
    ];
    let public = admin(&[&base[..], &["--client-id", "pub", "--type", "public"]].concat());
    assert_eq!(
        (&public["client_id"], &public["type"], &public["environment"]),
        (&json!("pub"), &json!("public"), &json!("production"))
    );
    let symmetric = admin_with_stdin(
        &[
            &base[..],
            &["--client-id", "sym", "--type", "confidential-symmetric", "--secret-stdin", "--environment", "sandbox"],
        ]
        .concat(),
        "s3cret of the app\n",
    );
    let stdout = String::from_utf8_lossy(&symmetric.stdout);
    assert!(symmetric.status.success(), "{stdout}{}", String::from_utf8_lossy(&symmetric.stderr));
    assert!(
        stdout.contains("\"environment\":\"sandbox\"") && !stdout.contains("s3cret") && !stdout.contains("argon2"),
        "{stdout}"
    );
    let jwks = folder.path().join("jwks.json");
    std::fs::write(&jwks, r#"{"keys": []}"#).expect("write");
    let asymmetric = admin(
        &[
            &base[..],
            &["--client-id", "asym", "--type", "confidential-asymmetric", "--jwks-file", jwks.to_str().expect("path")],
        ]
        .concat(),
    );
    assert_eq!(asymmetric["jwks"], true);
    let refusals: [(&[&str], &str); 3] = [
        (&["--client-id", "nosecret", "--type", "confidential-symmetric"], "--secret-stdin"),
        (
            &[
                "--client-id",
                "both",
                "--type",
                "confidential-asymmetric",
                "--jwks-file",
                "a.json",
                "--jwks-url",
                "https://keys.example/jwks",
            ],
            "cannot be used with",
        ),
        (&["--client-id", "pub", "--type", "public"], "'pub' already exists"),
    ];
    for (extra, expected) in refusals {
        let output = admin_with_stdin(&[&base[..], extra].concat(), "");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success() && stderr.contains(expected), "{extra:?}: {stderr}");
    }
    let backend = admin(&[
        "client",
        "create",
        "--data-dir",
        data_dir,
        "--client-id",
        "bulk",
        "--type",
        "confidential-asymmetric",
        "--jwks-url",
        "https://app.example/jwks.json",
        "--scopes",
        "system/*.rs",
    ]);
    assert_eq!(
        (&backend["redirect_uris"], &backend["jwks_url"]),
        (&json!([]), &json!("https://app.example/jwks.json"))
    );
    let no_redirect = admin_with_stdin(
        &["client", "create", "--data-dir", data_dir, "--client-id", "z", "--type", "public", "--scopes", "openid"],
        "",
    );
    assert!(String::from_utf8_lossy(&no_redirect.stderr).contains("a public client needs at least one --redirect-uri"));
    let bad_uri = admin_with_stdin(
        &[
            "client",
            "create",
            "--data-dir",
            data_dir,
            "--client-id",
            "x",
            "--type",
            "public",
            "--redirect-uri",
            "app.example/cb",
            "--scopes",
            "openid",
        ],
        "",
    );
    assert!(String::from_utf8_lossy(&bad_uri.stderr).contains("not an absolute http(s) URI"));
    let bad_scope = admin_with_stdin(
        &[
            "client",
            "create",
            "--data-dir",
            data_dir,
            "--client-id",
            "y",
            "--type",
            "public",
            "--redirect-uri",
            "https://app.example/cb",
            "--scopes",
            "patient/Observation.xyz",
        ],
        "",
    );
    let stderr = String::from_utf8_lossy(&bad_scope.stderr);
    assert!(!bad_scope.status.success() && stderr.contains("the client's scopes"), "{stderr}");

    let list = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/inferno/default_clients.json");
    let imported = admin(&["client", "import", list, "--data-dir", data_dir]);
    let ids: Vec<&str> = imported["registered"]
        .as_array()
        .expect("registered")
        .iter()
        .filter_map(|client| client["client_id"].as_str())
        .collect();
    assert_eq!(ids, ["SAMPLE_PUBLIC_CLIENT_ID", "SAMPLE_CONFIDENTIAL_CLIENT_ID", "SAMPLE_ASYMMETRIC_CLIENT_ID"]);
    assert_eq!(imported["registered"][2]["jwks"], true);
    assert_eq!(
        imported["registered"][0]["redirect_uris"],
        json!(["https://inferno.healthit.gov/suites/custom/smart/redirect"])
    );
    assert_eq!(imported["skipped"].as_array().expect("skipped").len(), 1, "the backend-services client, for now");
    let again = admin(&["client", "import", list, "--data-dir", data_dir]);
    assert_eq!(again["registered"], json!([]));
    assert!(again["skipped"][0]["reason"].as_str().expect("reason").contains("already exists"));
}

#[test]
fn version_and_shell_completions() {
    let version = Command::new(env!("CARGO_BIN_EXE_ignis")).arg("--version").output().expect("run");
    let text = String::from_utf8_lossy(&version.stdout);
    assert!(version.status.success() && text.starts_with("ignis ") && text.contains("FHIR R4 4.0.1"), "{text}");
    for shell in ["bash", "zsh", "fish"] {
        let script = Command::new(env!("CARGO_BIN_EXE_ignis")).args(["completions", shell]).output().expect("run");
        let text = String::from_utf8_lossy(&script.stdout);
        assert!(script.status.success() && text.contains("serve") && text.contains("--tls-cert"), "{shell}: {text}");
    }
}

#[test]
fn the_configuration_file_gives_serve_settings_below_flags_and_variables() {
    let folder = tempfile::tempdir().expect("temp dir");
    let config = folder.path().join("ignis.toml");
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:9911\"\nmax_concurrent_searches = 7\nno-demo = true\n\
         database-url = \"postgres://ignis:hunter2@db.example/ignis\"\n",
    )
    .expect("write");
    let print = |extra: &[&str], env: &[(&str, &str)]| {
        let output = Command::new(env!("CARGO_BIN_EXE_ignis"))
            .args(["config", "print", "--config", config.to_str().expect("path")])
            .args(extra)
            .envs(env.iter().copied())
            .output()
            .expect("run");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
        stdout
    };
    let from_file = print(&[], &[]);
    assert!(from_file.contains("listen = \"127.0.0.1:9911\""), "{from_file}");
    assert!(from_file.contains("max-concurrent-searches = \"7\""), "{from_file}");
    assert!(from_file.contains("no-demo = \"true\""), "{from_file}");
    assert!(
        from_file.contains("postgres://ignis:***@db.example/ignis") && !from_file.contains("hunter2"),
        "{from_file}"
    );
    let flag_wins = print(&["--listen", "127.0.0.1:9922"], &[("IGNIS_MAX_CONCURRENT_SEARCHES", "9")]);
    assert!(flag_wins.contains("listen = \"127.0.0.1:9922\" # command line"), "{flag_wins}");
    assert!(flag_wins.contains("max-concurrent-searches = \"9\" # environment"), "{flag_wins}");

    std::fs::write(&config, "listen = \"127.0.0.1:9911\"\nlisten-port = 80\n").expect("write");
    let unknown = Command::new(env!("CARGO_BIN_EXE_ignis"))
        .args(["serve", "--config", config.to_str().expect("path")])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(!unknown.status.success() && stderr.contains("unknown key 'listen-port'"), "{stderr}");
    std::fs::write(&config, "max-body-bytes = \"lots\"\n").expect("write");
    let bad = Command::new(env!("CARGO_BIN_EXE_ignis"))
        .args(["serve", "--config", config.to_str().expect("path")])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && stderr.contains("--max-body-bytes") && stderr.contains("lots"), "{stderr}");
}

#[tokio::test]
#[ignore = "needs Node.js and `npm ci` in clients/fhir-kit-client (.ci/run does both)"]
async fn a_third_party_javascript_client_works_unmodified() {
    let folder = tempfile::tempdir().expect("temp dir");
    let server = Server::start(&format!("sqlite://{}", folder.path().join("ignis.db").display())).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../clients/fhir-kit-client/check.mjs");
    let base = server.base.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .env("IGNIS_FHIR_BASE", base)
            .output()
            .expect("node runs (Node.js is installed)")
    })
    .await
    .expect("the node task");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "fhir-kit-client failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("all worked"), "{stdout}");
}

/// Kicks off `path` on `base` and returns the status URL.
async fn kick_off_export(client: &reqwest::Client, base: &str, path: &str) -> String {
    let response =
        client.get(format!("{base}/{path}")).header("prefer", "respond-async").send().await.expect("kick-off");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    response.headers()["content-location"].to_str().expect("location").to_owned()
}

/// Polls `status` until the manifest comes; resource counts by type.
async fn export_counts(client: &reqwest::Client, status: &str) -> std::collections::BTreeMap<String, u64> {
    let started = Instant::now();
    loop {
        let response = client.get(status).send().await.expect("poll");
        if response.status() == StatusCode::OK {
            let manifest: Value = response.json().await.expect("manifest");
            let mut counts = std::collections::BTreeMap::new();
            for output in manifest["output"].as_array().expect("output") {
                *counts.entry(output["type"].as_str().expect("type").to_owned()).or_default() +=
                    output["count"].as_u64().expect("count");
            }
            return counts;
        }
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        assert!(started.elapsed() < START_DEADLINE, "the export never finished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_whose_server_was_killed_is_finished_by_the_next_server() {
    let folder = tempfile::tempdir().expect("temp dir");
    let data_dir = folder.path().to_str().expect("UTF-8 path");
    let conformance = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/demo/conformance-patients");
    let imported = Command::new(env!("CARGO_BIN_EXE_ignis"))
        .args(["import", "--data-dir", data_dir])
        .args(["85", "907"].map(|patient| format!("{conformance}/uscore_bundle_patient_{patient}.json")))
        .output()
        .expect("run ignis import");
    assert!(imported.status.success(), "{}", String::from_utf8_lossy(&imported.stderr));
    let database = format!("sqlite://{data_dir}/ignis.db");
    let exports = format!("file://{data_dir}/exports");
    // A file per page, and a lease a dead server holds for one second only.
    let flags =
        ["--insecure-no-auth", "--export-store", &exports, "--export-file-bytes", "1", "--export-lease-seconds", "1"];
    let client = reqwest::Client::new();

    // Killed at once after its kick-off, wherever its runner had got to.
    let mut first = Server::start_with(&database, &flags).await;
    let status = kick_off_export(&client, &first.base, "$export").await;
    first.child.kill().expect("kill");
    first.child.wait().expect("wait");
    drop(first);

    let second = Server::start_with(&database, &flags).await;
    let status = status.replace(&status[..status.find("/fhir").expect("base")], &format!("http://{}", second.address));
    let resumed = export_counts(&client, &status).await;
    let whole = export_counts(&client, &kick_off_export(&client, &second.base, "$export").await).await;
    assert_eq!(resumed, whole, "the resumed export holds every resource once");
    assert_eq!(whole["Observation"], 66, "patient 85's Observations: {whole:?}");
}

#[test]
fn export_writes_a_group_export_from_the_command_line() {
    let folder = tempfile::tempdir().expect("temp dir");
    let data_dir = folder.path().to_str().expect("UTF-8 path");
    let conformance = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/demo/conformance-patients");
    let imported = Command::new(env!("CARGO_BIN_EXE_ignis"))
        .args(["import", "--data-dir", data_dir])
        .args(
            ["uscore_bundle_patient_85.json", "uscore_bundle_patient_907.json", "uscore_group_1a.json"]
                .map(|name| format!("{conformance}/{name}")),
        )
        .output()
        .expect("run ignis import");
    assert!(imported.status.success(), "{}", String::from_utf8_lossy(&imported.stderr));
    // The import is in the audit log, with what it wrote.
    let (passed, ndjson) = audit(&["export", "--data-dir", data_dir]);
    assert!(passed, "{ndjson}");
    let import = ndjson
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("JSON"))
        .find(|event| event["subtype"][0]["code"] == "import")
        .unwrap_or_else(|| panic!("no import event: {ndjson}"));
    let description = import["outcomeDesc"].as_str().unwrap_or_default();
    assert!(description.contains("created") && description.contains("uscore_group_1a.json"), "{import}");
    let output = Command::new(env!("CARGO_BIN_EXE_ignis"))
        .args(["export", "--data-dir", data_dir, "--group", "1a", "--type", "Patient,Observation,Practitioner"])
        .output()
        .expect("run ignis export");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.starts_with("exported 70 resources"), "2 Patients, 66 Observations, 2 Practitioners: {stdout}");
    let folder = stdout.split(" to ").nth(1).and_then(|rest| rest.split(" in ").next()).expect("the folder");
    let mut names: Vec<String> = std::fs::read_dir(folder)
        .expect("the export's folder")
        .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["Observation-0.ndjson", "Patient-1.ndjson", "Practitioner-2.ndjson"]);
    let bad = Command::new(env!("CARGO_BIN_EXE_ignis"))
        .args(["export", "--data-dir", data_dir, "--type-filter", "Observation?bogus=1"])
        .output()
        .expect("run ignis export");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("bogus"));
}

/// A moto S3 server on a free loopback port, killed when dropped.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    async fn start() -> Moto {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("port").port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server (pip install 'moto[server]') runs");
        let moto = Moto { child, endpoint: format!("http://127.0.0.1:{port}") };
        let client = reqwest::Client::new();
        let started = Instant::now();
        while client.get(&moto.endpoint).send().await.is_err() {
            assert!(started.elapsed() < START_DEADLINE, "moto_server never answered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        moto
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs moto_server (pip install 'moto[server]'; .ci/run installs it)"]
async fn an_export_goes_to_s3_compatible_object_storage() {
    let moto = Moto::start().await;
    let client = reqwest::Client::new();
    let bucket = format!("{}/ignis-exports", moto.endpoint);
    assert!(client.put(&bucket).send().await.expect("create the bucket").status().is_success());
    let folder = tempfile::tempdir().expect("temp dir");
    let database = format!("sqlite://{}/ignis.db", folder.path().display());
    let flags = ["--insecure-no-auth", "--export-store", "s3://ignis-exports/bulk/"];
    let environment = [
        ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ];
    let server = Server::start_with_env(&database, &flags, &environment).await;
    let created = send(post(&client, format!("{}/Patient", server.base), &patient("Stored", "s3-1"))).await;
    assert_eq!(created.0, StatusCode::CREATED);
    let status = kick_off_export(&client, &server.base, "$export?_type=Patient").await;
    assert_eq!(export_counts(&client, &status).await["Patient"], 1);
    let manifest: Value = client.get(&status).send().await.expect("poll").json().await.expect("manifest");
    let url = manifest["output"][0]["url"].as_str().expect("a file");
    let response = client.get(url).send().await.expect("the file");
    assert_eq!(response.headers()["content-type"], "application/fhir+ndjson");
    let line: Value = serde_json::from_str(response.text().await.expect("text").trim()).expect("one resource");
    assert_eq!(line["name"][0]["family"], "Stored");
    // The file is an object of the bucket, under the prefix.
    let listing = client.get(format!("{bucket}?list-type=2")).send().await.expect("list").text().await.expect("text");
    let job = status.rsplit('/').next().expect("job id");
    assert!(listing.contains(&format!("<Key>bulk/{job}/")), "{listing}");
}

/// Runs `ignis admin ARGS` expecting a refusal; its standard error.
fn admin_refused(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_ignis")).arg("admin").args(args).env("NO_COLOR", "1").output();
    let output = output.expect("run ignis admin");
    assert!(!output.status.success(), "{args:?} must fail");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn the_access_program_from_the_admin_commands_to_a_device_call_over_mutual_tls() {
    let folder = tempfile::tempdir().expect("temp dir");
    let data_dir = folder.path().to_str().expect("path");
    let storage = ["--data-dir", data_dir];
    let run = |args: &[&str]| admin(&[args, &storage[..]].concat());

    let account = run(&["account", "create", "--name", "Acme Labs"]);
    let account = account["id"].as_str().expect("account id").to_owned();
    let request = run(&["access-request", "create", "--account", &account]);
    assert_eq!(request["state"], "draft");
    let request = request["id"].as_str().expect("request id").to_owned();
    let refused = admin_refused(&["access-request", "approve", "--id", &request, "--data-dir", data_dir]);
    assert!(
        refused.contains("cannot be approved") && refused.contains("allowed now: submit (to submitted)"),
        "{refused}"
    );
    assert_eq!(run(&["access-request", "submit", "--id", &request])["state"], "submitted");
    assert_eq!(run(&["access-request", "review", "--id", &request])["state"], "in_review");
    let refused = admin_refused(&["access-request", "request-changes", "--id", &request, "--data-dir", data_dir]);
    assert!(refused.contains("without a reason"), "{refused}");
    let refused = admin_refused(&["access-request", "approve", "--id", &request, "--data-dir", data_dir]);
    assert!(refused.contains("checklist is incomplete"), "{refused}");
    for (item, value) in
        [("legal", "signed"), ("architecture", "a"), ("security", "s"), ("network", "127.0.0.1"), ("demo", "d")]
    {
        run(&["access-request", "checklist", "--id", &request, "--item", item, "--value", value]);
    }
    let approved = run(&["access-request", "approve", "--id", &request]);
    assert_eq!(approved["state"], "approved");
    assert_eq!(approved["checklist"][3]["value"], "127.0.0.1/32");

    // The platform CA signs the device's CSR; the device keeps its key.
    let ca = run(&["ca", "init"]);
    assert!(ca["certificate"].as_str().is_some_and(|pem| pem.contains("BEGIN CERTIFICATE")));
    let device_key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name.push(rcgen::DnType::CommonName, "lab interface");
    let csr = params.serialize_request(&device_key).expect("csr").pem().expect("pem");
    let csr_path = folder.path().join("device.csr");
    std::fs::write(&csr_path, csr).expect("write CSR");
    let csr_arg = csr_path.to_str().expect("path");
    let device = run(&[
        "device",
        "create",
        "--account",
        &account,
        "--name",
        "lab interface",
        "--environment",
        "production",
        "--csr",
        csr_arg,
    ]);
    assert_eq!(device["certificate_source"], "signed-csr");
    let certificate = device["certificate"].as_str().expect("the signed certificate").to_owned();
    let device = device["id"].as_str().expect("device id").to_owned();
    let jwt = run(&["device", "credential", "--device", &device]);
    let jwt = jwt["jwt"].as_str().expect("jwt").to_owned();

    write_certificate(folder.path());
    let (cert, key) = (folder.path().join("cert.pem"), folder.path().join("key.pem"));
    let database = format!("sqlite://{}", folder.path().join("ignis.db").display());
    let flags = [
        "--tls-cert",
        cert.to_str().expect("path"),
        "--tls-key",
        key.to_str().expect("path"),
        "--mtls-listen",
        "127.0.0.1:0",
        "--data-dir",
        data_dir,
    ];
    let server = Server::start_with(&database, &flags).await;
    server.wait_for_log("mutual TLS listener ready").await;
    let mtls_address = server
        .log
        .lock()
        .expect("log")
        .iter()
        .find_map(|line| line.contains("mutual TLS listener ready").then(|| field(line, "mtls_address")).flatten())
        .expect("the mutual TLS address");

    let identity = format!("{certificate}{}", device_key.serialize_pem());
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(&cert).expect("read")).expect("root"))
        .identity(reqwest::Identity::from_pem(identity.as_bytes()).expect("identity"))
        .build()
        .expect("client");
    let url = format!("https://{mtls_address}/fhir/Patient?_count=1").replace("127.0.0.1", "localhost");
    let (status, bundle) = send(client.get(&url).bearer_auth(&jwt)).await;
    assert_eq!(status, StatusCode::OK, "{bundle}");

    // Revoked by the operator while the server runs: refused within the second the server may
    // keep the device's state (the deadline only guards against a hang).
    let revoked = run(&["device", "revoke", "--device", &device]);
    assert_eq!(revoked["credential_live"], false);
    let started = Instant::now();
    loop {
        let (status, outcome) = send(client.get(&url).bearer_auth(&jwt)).await;
        if status == StatusCode::UNAUTHORIZED {
            assert!(outcome.to_string().contains("revoked"), "{outcome}");
            break;
        }
        assert_eq!(status, StatusCode::OK);
        assert!(started.elapsed() < START_DEADLINE, "the revoked device was never refused");
        tokio::task::yield_now().await;
    }
}

/// Runs `ignis audit ARGS`; its exit status and stdout.
fn audit(args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_ignis")).arg("audit").args(args).env("NO_COLOR", "1").output();
    let output = output.expect("run ignis audit");
    (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
}

#[tokio::test]
async fn audit_verify_names_the_row_changed_on_a_live_database() {
    let folder = tempfile::tempdir().expect("temp dir");
    let path = folder.path().join("ignis.db");
    let database = format!("sqlite://{}", path.display());
    let data_dir = folder.path().to_str().expect("UTF-8 path");
    let server = Server::start_with(&database, &["--insecure-no-auth", "--data-dir", data_dir]).await;
    let client = reqwest::Client::new();
    for family in ["Able", "Baker", "Chen"] {
        let (status, body) = send(post(&client, format!("{}/Patient", server.base), &patient(family, family))).await;
        assert_eq!(status, StatusCode::CREATED);
        let id = body["id"].as_str().expect("id");
        let (status, _) = send(client.get(format!("{}/Patient/{id}", server.base))).await;
        assert_eq!(status, StatusCode::OK);
    }
    let storage = ["--data-dir", data_dir, "--database-url", &database];
    let verify = || {
        let (passed, stdout) = audit(&[&["verify"][..], &storage[..]].concat());
        let report: Value =
            serde_json::from_str(&stdout).unwrap_or_else(|error| panic!("not JSON ({error}): {stdout}"));
        assert_eq!(report["verified"], passed, "{report}");
        report
    };
    // The reads' events are appended a moment after their answers (the writes' with them).
    let started = Instant::now();
    loop {
        let report = verify();
        assert_eq!(report["verified"], true, "{report}");
        if report["entries"].as_u64().unwrap_or(0) >= 6 {
            break;
        }
        assert!(started.elapsed() < START_DEADLINE, "the reads were never audited: {report}");
    }

    // One row changed, then deleted, by hand while the server runs: verify names it.
    let sql = rusqlite::Connection::open(&path).expect("open the database");
    let (chain, seq, body): (String, i64, String) = sql
        .query_row("SELECT chain, seq, body FROM audit_entries WHERE action = 'read' ORDER BY seq LIMIT 1", [], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .expect("a read's entry");
    // The read is made to look refused.
    let forged = body.replace("\"status\":200", "\"status\":404");
    assert_ne!(forged, body);
    sql.execute(
        "UPDATE audit_entries SET body = ?1 WHERE chain = ?2 AND seq = ?3",
        rusqlite::params![forged, chain, seq],
    )
    .expect("tamper");
    let report = verify();
    let problem = report["problem"].as_str().unwrap_or_default();
    assert!(problem.contains(&format!("{chain}#{seq}")) && problem.contains("altered"), "{report}");
    sql.execute(
        "UPDATE audit_entries SET body = ?1 WHERE chain = ?2 AND seq = ?3",
        rusqlite::params![body, chain, seq],
    )
    .expect("restore");
    assert_eq!(verify()["verified"], true);
    sql.execute("DELETE FROM audit_entries WHERE chain = ?1 AND seq = ?2", rusqlite::params![chain, seq])
        .expect("delete");
    let report = verify();
    let problem = report["problem"].as_str().unwrap_or_default();
    assert!(problem.contains(&format!("{chain}#{seq}")) && problem.contains("missing"), "{report}");

    // Bad input to the commands is refused with the reason.
    let (passed, _) = audit(&[&["export", "--since", "yesterday"][..], &storage[..]].concat());
    assert!(!passed, "a date that is not one is refused");
    let refused = admin_refused(&["account", "limit", "--id", "nope", "--per-minute", "5", "--data-dir", data_dir]);
    assert!(refused.contains("no account with id 'nope'"), "{refused}");
    let account = admin(&["account", "create", "--name", "Calm", "--data-dir", data_dir]);
    let account = account["id"].as_str().expect("id");
    let refused = admin_refused(&["account", "limit", "--id", account, "--per-minute", "0", "--data-dir", data_dir]);
    assert!(refused.contains("at least 1 request per minute"), "{refused}");

    // The day's entries export as NDJSON AuditEvents.
    let today = time::OffsetDateTime::now_utc().date().to_string();
    let (passed, ndjson) = audit(&[&["export", "--since", &today][..], &storage[..]].concat());
    assert!(passed, "{ndjson}");
    let events: Vec<Value> = ndjson.lines().map(|line| serde_json::from_str(line).expect("JSON")).collect();
    assert!(events.len() >= 5 && events.iter().all(|event| event["resourceType"] == "AuditEvent"), "{ndjson}");
    drop(server);
}

/// A sandbox search with `jwt` at `base` (a production FHIR base): its status.
async fn sandbox_search(client: &reqwest::Client, base: &str, jwt: &str) -> StatusCode {
    let url = format!("{}/Patient?_count=1", base.replace("/fhir", "/sandbox/fhir"));
    client.get(url).bearer_auth(jwt).send().await.expect("search").status()
}

/// Asks `base` with `jwt` until it answers `wanted` (what a server read of an account is at
/// most a second old; the deadline is only a hang guard).
async fn until_status(client: &reqwest::Client, base: &str, jwt: &str, wanted: StatusCode) {
    let started = Instant::now();
    while sandbox_search(client, base, jwt).await != wanted {
        assert!(started.elapsed() < START_DEADLINE, "{base} never answered {wanted}");
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs IGNIS_TEST_POSTGRES_URL"]
async fn one_rate_limit_and_suspension_hold_across_two_serve_processes_on_postgres() {
    let url = postgres_url();
    let schema = Schema::create(&url);
    let database_url = schema.url();
    let folder = tempfile::tempdir().expect("temp dir");
    let data_dir = folder.path().to_str().expect("path");
    // The admin commands and both servers share the database and the secret key.
    let storage = ["--data-dir", data_dir, "--database-url", &database_url];
    let run = |args: &[&str]| admin(&[args, &storage[..]].concat());
    let account = run(&["account", "create", "--name", "Busy Labs"])["id"].as_str().expect("id").to_owned();
    let limited = run(&["account", "limit", "--id", &account, "--per-minute", "60"]);
    assert_eq!(limited["limit_per_minute"], 60, "{limited}");
    let device = run(&["device", "create", "--account", &account, "--name", "lab", "--environment", "sandbox"]);
    let device = device["id"].as_str().expect("device id").to_owned();
    let jwt = run(&["device", "credential", "--device", &device])["jwt"].as_str().expect("jwt").to_owned();
    let flags = ["--data-dir", data_dir];
    let (first, second) =
        tokio::join!(Server::start_with(&database_url, &flags), Server::start_with(&database_url, &flags));
    let client = reqwest::Client::new();

    // Alternating between the processes, the device gets the burst (10) and what refills while
    // the test runs (one a second), not twice that.
    let started = Instant::now();
    let mut granted = 0;
    for round in 0..40 {
        let server = if round % 2 == 0 { &first } else { &second };
        match sandbox_search(&client, &server.base, &jwt).await {
            StatusCode::OK => granted += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("unexpected {other}"),
        }
    }
    let refilled = started.elapsed().as_secs() as usize + 1;
    assert!((10..=10 + refilled).contains(&granted), "{granted} granted in {:?}", started.elapsed());

    // Suspended by an operator command while both run: both refuse it; reinstated: both serve.
    let suspended = run(&["account", "suspend", "--id", &account, "--reason", "abuse report 9"]);
    assert_eq!(suspended["suspended"]["reason"], "abuse report 9", "{suspended}");
    for server in [&first, &second] {
        until_status(&client, &server.base, &jwt, StatusCode::FORBIDDEN).await;
    }
    let reinstated = run(&["account", "reinstate", "--id", &account]);
    assert!(reinstated.get("suspended").is_none(), "{reinstated}");
    for server in [&first, &second] {
        until_status(&client, &server.base, &jwt, StatusCode::OK).await;
    }
    drop((first, second));
}
