//! The test harness: [`TestApp::spawn`] starts a server and offers one helper per request shape.

use std::sync::Arc;

use reqwest::{Client, Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;
use tokio::net::TcpListener;

/// A running server and a client for it. The server stops when the value is dropped.
pub(crate) struct TestApp {
    /// The production FHIR base, e.g. `http://127.0.0.1:4242/fhir`.
    pub(crate) base: String,
    /// The server root, e.g. `http://127.0.0.1:4242`.
    pub(crate) root: String,
    pub(crate) client: Client,
    /// The store itself, for operator actions that have no HTTP endpoint (reindex).
    pub(crate) store: Arc<dyn store::Store>,
    /// The secret key the server's authorization keys derive from, when it requires tokens.
    pub(crate) secret: Option<Arc<auth::secret::SecretKey>>,
    database: Arc<Database>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// A mutual-TLS listener started by [`TestApp::serve_mtls`]; stops when dropped.
pub(crate) struct MtlsServer {
    /// e.g. `https://127.0.0.1:4243`.
    pub(crate) root: String,
    /// Its trust, to re-read at once after a test changed the folders.
    pub(crate) trust: Arc<server::ClientTrust>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// The database behind a test server: a fresh SQLite file, or (when
/// `IGNIS_TEST_POSTGRES_URL` is set) a fresh schema in that PostgreSQL database. Removed when
/// the last server using it is dropped.
enum Database {
    Sqlite(tempfile::TempDir),
    Postgres { url: String, schema: String },
}

/// The PostgreSQL database the suite runs against, if any.
pub(crate) fn postgres_url() -> Option<String> {
    std::env::var("IGNIS_TEST_POSTGRES_URL").ok().filter(|url| !url.is_empty())
}

impl Database {
    fn fresh() -> Database {
        match postgres_url() {
            Some(url) => Database::Postgres { url, schema: format!("test_{}", uuid::Uuid::new_v4().simple()) },
            None => Database::Sqlite(tempfile::tempdir().expect("temp dir")),
        }
    }

    /// A new store over this database (each call a separate store, as a separate process
    /// would have).
    async fn open(&self) -> Arc<dyn store::Store> {
        match self {
            Database::Sqlite(folder) => {
                Arc::new(store::sqlite::SqliteStore::open(&folder.path().join("test.db")).expect("open store"))
            }
            Database::Postgres { url, schema } => {
                let (url, schema) = (url.clone(), schema.clone());
                let store =
                    tokio::task::spawn_blocking(move || store::postgres::PostgresStore::open_in_schema(&url, &schema))
                        .await
                        .expect("open task")
                        .expect("open PostgreSQL store");
                Arc::new(store)
            }
        }
    }
}

impl Database {
    /// A PostgreSQL store of its own over this database, `None` on SQLite.
    async fn open_postgres(&self) -> Option<store::postgres::PostgresStore> {
        let Database::Postgres { url, schema } = self else { return None };
        let (url, schema) = (url.clone(), schema.clone());
        let store = tokio::task::spawn_blocking(move || store::postgres::PostgresStore::open_in_schema(&url, &schema))
            .await
            .expect("open task")
            .expect("open PostgreSQL store");
        Some(store)
    }

    /// Runs `statement` in this PostgreSQL schema; does nothing on SQLite.
    async fn execute(&self, statement: &str) {
        let Database::Postgres { url, schema } = self else { return };
        let mut config: postgres::Config = url.parse().expect("IGNIS_TEST_POSTGRES_URL");
        config.options(&format!("-c search_path={schema}"));
        let statement = statement.to_owned();
        // The synchronous client cannot run inside the test's runtime: use a thread.
        tokio::task::spawn_blocking(move || config.connect(postgres::NoTls)?.batch_execute(&statement))
            .await
            .expect("statement task")
            .expect("run the statement");
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Database::Postgres { url, schema } = self {
            // The synchronous client cannot run inside the test's runtime: use a thread.
            let (url, name) = (url.clone(), schema.clone());
            let dropped = std::thread::spawn(move || {
                let mut client = postgres::Client::connect(&url, postgres::NoTls)?;
                client.batch_execute(&format!("SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS {name} CASCADE"))
            })
            .join();
            if !matches!(dropped, Ok(Ok(()))) {
                eprintln!("could not drop the test schema {schema}");
            }
        }
    }
}

/// A secured server's secret key, and how to change its authorization policies.
type Secured = (Arc<auth::secret::SecretKey>, fn(&mut server::Authorization));

impl TestApp {
    /// A server with default configuration.
    pub(crate) async fn spawn() -> TestApp {
        TestApp::spawn_with(|_| {}).await
    }

    /// A server whose configuration `adjust` may change first.
    pub(crate) async fn spawn_with(adjust: impl FnOnce(&mut server::Config)) -> TestApp {
        let database = Arc::new(Database::fresh());
        let store = database.open().await;
        TestApp::serve(database, store, adjust, None).await
    }

    /// A server that requires access tokens; [`TestApp::token`] issues them.
    pub(crate) async fn spawn_secured() -> TestApp {
        TestApp::spawn_secured_with(|_| {}).await
    }

    /// [`TestApp::spawn_secured`] with the authorization server's policies changed by `adjust`.
    pub(crate) async fn spawn_secured_with(adjust: fn(&mut server::Authorization)) -> TestApp {
        let database = Arc::new(Database::fresh());
        let store = database.open().await;
        let secret = Arc::new(auth::secret::SecretKey::generate().expect("a secret key"));
        TestApp::serve(database, store, |_| {}, Some((secret, adjust))).await
    }

    /// A server that requires access tokens, its configuration changed by `adjust`.
    pub(crate) async fn spawn_secured_configured(adjust: impl FnOnce(&mut server::Config)) -> TestApp {
        let database = Arc::new(Database::fresh());
        let store = database.open().await;
        let secret = Arc::new(auth::secret::SecretKey::generate().expect("a secret key"));
        TestApp::serve(database, store, adjust, Some((secret, |_| {}))).await
    }

    /// An access token of this server's production base granting `scopes`, with `patient` in
    /// context, valid for an hour.
    pub(crate) fn token(&self, scopes: &str, patient: Option<&str>) -> String {
        self.token_for(&self.base, scopes, patient, 3600)
    }

    /// An access token for the FHIR base `audience`, expiring `lifetime` seconds from now
    /// (negative: already expired).
    pub(crate) fn token_for(&self, audience: &str, scopes: &str, patient: Option<&str>, lifetime: i64) -> String {
        self.token_of_client("test-client", audience, scopes, patient, lifetime)
    }

    /// [`TestApp::token_for`] issued to the client `client_id`.
    pub(crate) fn token_of_client(
        &self,
        client_id: &str,
        audience: &str,
        scopes: &str,
        patient: Option<&str>,
        lifetime: i64,
    ) -> String {
        let secret = self.secret.as_ref().expect("a secured server");
        let key = auth::token::TokenKey::new(&secret.derive("access-token"));
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
        let grant = auth::token::Grant {
            token_id: auth::token::new_token_id(),
            client_id: client_id.into(),
            subject: "test-user".into(),
            scopes: auth::scope::Scopes::parse(scopes).expect("scopes"),
            patient: patient.map(str::to_owned),
            encounter: None,
            fhir_user: None,
            issued_at: now,
            expires_at: now + lifetime,
            cnf: None,
        };
        key.issue(&grant, &self.root, audience).expect("sign")
    }

    /// A practitioner user `username` (password `"{username} password 42"`) whose FHIR user is
    /// `fhir_user`, and the authenticator of the TOTP it is enrolled in.
    pub(crate) async fn practitioner(&self, username: &str, fhir_user: &str) -> auth::totp::Authenticator {
        self.staff(auth::user::Role::Practitioner, username, fhir_user).await
    }

    /// An operator `username` (password `"{username} password 42"`), and its TOTP authenticator.
    pub(crate) async fn operator(&self, username: &str) -> auth::totp::Authenticator {
        self.staff(auth::user::Role::Operator, username, "Practitioner/operator").await
    }

    async fn staff(&self, role: auth::user::Role, username: &str, fhir_user: &str) -> auth::totp::Authenticator {
        let secret = self.secret.as_ref().expect("a secured server");
        let user = auth::user::NewUser {
            username: username.into(),
            password: format!("{username} password 42"),
            role,
            fhir_user: fhir_user.into(),
            patients: Vec::new(),
            enrol_totp: false,
        };
        let (_, enrolment) =
            auth::user::create(self.store.as_ref(), secret, user, "test").await.expect("a practitioner");
        auth::totp::Authenticator::from_base32(&enrolment.expect("enrolled in TOTP").secret).expect("a TOTP seed")
    }

    /// Calls the `/api/` with `key`, a JSON body when given; the status and the JSON answer.
    /// Errors, and only errors, must be problem documents.
    pub(crate) async fn api(
        &self,
        key: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{}/api{path}", self.root));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        let response = request.send().await.expect("send");
        let problem = response.headers().get("content-type").is_some_and(|value| value == "application/problem+json");
        let (status, body) = status_and_json(response).await;
        assert_eq!(problem, !status.is_success(), "errors, and only errors, are problem documents: {status} {body}");
        (status, body)
    }

    /// A new operator `username`, signed in through the API with its password and TOTP; its
    /// API key.
    pub(crate) async fn operator_key(&self, username: &str) -> String {
        let totp = self.operator(username).await;
        let code = totp.code_at(time::OffsetDateTime::now_utc());
        let body =
            serde_json::json!({"username": username, "password": format!("{username} password 42"), "code": code});
        let (status, session) = self.api(None, Method::POST, "/sessions", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{session}");
        session["api_key"].as_str().expect("an API key").to_owned()
    }

    /// The AuditEvents of `/api/audit-events?{query}` (every page), read by a new operator.
    pub(crate) async fn audit_events(&self, query: &str) -> Vec<Value> {
        let key = self.operator_key(&format!("auditor-{}", uuid::Uuid::new_v4().simple())).await;
        self.audit_events_with(&key, query).await
    }

    /// The AuditEvents of `/api/audit-events?{query}` read with the API key `key`, every page
    /// followed.
    pub(crate) async fn audit_events_with(&self, key: &str, query: &str) -> Vec<Value> {
        let mut url = format!("{}/api/audit-events?{query}", self.root);
        let mut events = Vec::new();
        loop {
            let response = self.client.get(&url).bearer_auth(key).send().await.expect("send");
            assert_eq!(response.headers()["content-type"], "application/fhir+json");
            let (status, bundle) = status_and_json(response).await;
            assert_eq!((status, &bundle["type"]), (StatusCode::OK, &serde_json::json!("searchset")), "{bundle}");
            events.extend(bundle["entry"].as_array().into_iter().flatten().map(|entry| entry["resource"].clone()));
            match bundle["link"].as_array().and_then(|links| links.iter().find(|link| link["relation"] == "next")) {
                Some(next) => url = next["url"].as_str().expect("url").to_owned(),
                None => return events,
            }
        }
    }

    /// A server over a fresh schema of the PostgreSQL database at `url`.
    pub(crate) async fn spawn_postgres(url: &str) -> TestApp {
        let schema = format!("test_{}", uuid::Uuid::new_v4().simple());
        let database = Arc::new(Database::Postgres { url: url.to_owned(), schema });
        let store = database.open().await;
        TestApp::serve(database, store, |_| {}, None).await
    }

    /// A second server over this one's database with a store of its own, as a second
    /// process would have it.
    pub(crate) async fn spawn_sharing(&self) -> TestApp {
        let store = self.database.open().await;
        let secured = self.secret.clone().map(|secret| (secret, (|_| {}) as fn(&mut server::Authorization)));
        TestApp::serve(Arc::clone(&self.database), store, |_| {}, secured).await
    }

    /// A server that requires access tokens over this one's database (to load data through
    /// an open server, then test a secured one).
    pub(crate) async fn spawn_secured_sharing(&self, adjust: impl FnOnce(&mut server::Config)) -> TestApp {
        let store = self.database.open().await;
        let secret = Arc::new(auth::secret::SecretKey::generate().expect("a secret key"));
        let secured = (secret, (|_| {}) as fn(&mut server::Authorization));
        TestApp::serve(Arc::clone(&self.database), store, adjust, Some(secured)).await
    }

    async fn serve(
        database: Arc<Database>,
        store: Arc<dyn store::Store>,
        adjust: impl FnOnce(&mut server::Config),
        secured: Option<Secured>,
    ) -> TestApp {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let root = format!("http://{}", listener.local_addr().expect("address"));
        let mut config = server::Config::new(root.clone());
        adjust(&mut config);
        let secret = secured.as_ref().map(|(secret, _)| Arc::clone(secret));
        let audit_secret =
            secret.clone().unwrap_or_else(|| Arc::new(auth::secret::SecretKey::from_bytes(&[9; 32]).expect("key")));
        let mut state = server::AppState::new(Arc::clone(&store), config, &audit_secret).expect("the app state");
        if let Some((secret, adjust)) = secured {
            let mut authorization = server::Authorization::new(secret);
            adjust(&mut authorization);
            state = state.with_authorization(authorization);
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server::serve(listener, state, async {
            let _ = stopped.await;
        }));
        TestApp { base: format!("{root}/fhir"), root, client: Client::new(), store, secret, database, _stop: stop }
    }

    /// A mutual-TLS listener over this secured server's state: its server certificate from the
    /// PEM files `tls` (certificate, key), client certificates judged against the CAs in
    /// `anchors` and the CRLs in `crls`.
    pub(crate) async fn serve_mtls(
        &self,
        tls: (&std::path::Path, &std::path::Path),
        anchors: &std::path::Path,
        crls: &std::path::Path,
    ) -> MtlsServer {
        let secret = Arc::clone(self.secret.as_ref().expect("a secured server"));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let root = format!("https://{}", listener.local_addr().expect("address"));
        let state = server::AppState::new(Arc::clone(&self.store), server::Config::new(root.clone()), &secret)
            .expect("the app state")
            .with_authorization(server::Authorization::new(secret));
        let trust = server::ClientTrust::load(Some(anchors), Some(crls), Arc::clone(&self.store)).await.expect("trust");
        let trust = Arc::new(trust);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let tls = Arc::new(server::Tls::load(tls.0, tls.1).expect("tls"));
        tokio::spawn(server::serve_mtls(listener, state, tls, Arc::clone(&trust), async {
            let _ = stopped.await;
        }));
        MtlsServer { root, trust, _stop: stop }
    }

    /// A PostgreSQL store of its own over this server's database, for diagnostics only
    /// PostgreSQL has (`explain_search`); `None` when the suite runs on SQLite.
    pub(crate) async fn postgres_store(&self) -> Option<store::postgres::PostgresStore> {
        self.database.open_postgres().await
    }

    /// Runs one `statement` (e.g. `VACUUM ANALYZE`) in this server's PostgreSQL schema;
    /// nothing on SQLite.
    pub(crate) async fn postgres_execute(&self, statement: &str) {
        self.database.execute(statement).await;
    }

    /// Holds an `ACCESS EXCLUSIVE` lock on `table` of this server's PostgreSQL schema until
    /// the returned guard is dropped, so that statements on it wait (to test time limits
    /// without depending on speed). Panics on SQLite.
    pub(crate) async fn postgres_hold_lock(&self, table: &str) -> TableLock {
        let Database::Postgres { url, schema } = self.database.as_ref() else { panic!("a lock needs PostgreSQL") };
        let mut config: postgres::Config = url.parse().expect("IGNIS_TEST_POSTGRES_URL");
        config.options(&format!("-c search_path={schema}"));
        let statement = format!("BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE");
        let (locked, is_locked) = tokio::sync::oneshot::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            let mut client = config.connect(postgres::NoTls).expect("connect");
            client.batch_execute(&statement).expect("lock");
            let _ = locked.send(());
            let _ = released.recv();
            let _ = client.batch_execute("ROLLBACK");
        });
        is_locked.await.expect("the lock was taken");
        TableLock { _release: release }
    }

    /// A request to `path` under the FHIR base.
    pub(crate) fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, format!("{}/{}", self.base, path.trim_start_matches('/')))
    }

    pub(crate) async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path).send().await.expect("send")
    }

    /// Sends `body` as `application/fhir+json` with `method`.
    pub(crate) async fn send_json(&self, method: Method, path: &str, body: &Value) -> Response {
        self.request(method, path)
            .header("content-type", "application/fhir+json")
            .body(body.to_string())
            .send()
            .await
            .expect("send")
    }

    pub(crate) async fn post(&self, path: &str, body: &Value) -> Response {
        self.send_json(Method::POST, path, body).await
    }

    /// Posts `body` to the FHIR base itself (`POST [base]`, no trailing slash): a transaction
    /// or batch Bundle.
    pub(crate) async fn post_base(&self, body: &Value) -> Response {
        self.client
            .post(&self.base)
            .header("content-type", "application/fhir+json")
            .body(body.to_string())
            .send()
            .await
            .expect("send")
    }

    pub(crate) async fn put(&self, path: &str, body: &Value) -> Response {
        self.send_json(Method::PUT, path, body).await
    }

    pub(crate) async fn delete(&self, path: &str) -> Response {
        self.request(Method::DELETE, path).send().await.expect("send")
    }

    /// Creates `resource` and returns its server-assigned id.
    pub(crate) async fn create(&self, resource: &Value) -> String {
        let resource_type = resource["resourceType"].as_str().expect("resourceType");
        let response = self.post(resource_type, resource).await;
        assert_eq!(response.status(), StatusCode::CREATED, "create {resource_type}");
        let body: Value = response.json().await.expect("json");
        body["id"].as_str().expect("id").to_owned()
    }
}

/// A table lock held by [`TestApp::postgres_hold_lock`]; released when dropped.
pub(crate) struct TableLock {
    _release: std::sync::mpsc::Sender<()>,
}

/// The status and JSON body of a response.
pub(crate) async fn status_and_json(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
    (status, body)
}

/// Asserts `response` is an OperationOutcome with `status` and an error issue of `code`.
pub(crate) async fn assert_outcome(response: Response, status: StatusCode, code: &str) -> Value {
    let content_type = response.headers().get("content-type").map(|value| value.to_str().unwrap_or("").to_owned());
    let (actual, body) = status_and_json(response).await;
    assert_eq!(actual, status, "status; body: {body}");
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
    assert!(content_type.unwrap_or_default().starts_with("application/fhir+json"), "content type");
    let issues = body["issue"].as_array().expect("issues");
    assert!(issues.iter().any(|issue| issue["code"] == code), "expected an issue with code {code}: {body}");
    body
}
