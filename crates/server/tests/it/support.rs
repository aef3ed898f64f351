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
    pub(crate) store: Arc<store::sqlite::SqliteStore>,
    _data_dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl TestApp {
    /// A server with default configuration.
    pub(crate) async fn spawn() -> TestApp {
        TestApp::spawn_with(|_| {}).await
    }

    /// A server whose configuration `adjust` may change first.
    pub(crate) async fn spawn_with(adjust: impl FnOnce(&mut server::Config)) -> TestApp {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(store::sqlite::SqliteStore::open(&data_dir.path().join("test.db")).expect("open store"));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let root = format!("http://{}", listener.local_addr().expect("address"));
        let mut config = server::Config::new(root.clone());
        adjust(&mut config);
        let state = server::AppState::new(Arc::clone(&store) as Arc<dyn store::Store>, config);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server::serve(listener, state, async {
            let _ = stopped.await;
        }));
        TestApp { base: format!("{root}/fhir"), root, client: Client::new(), store, _data_dir: data_dir, _stop: stop }
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
