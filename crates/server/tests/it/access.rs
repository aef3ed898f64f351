//! The access program through its `/api/`, as an integrating company and an operator use it:
//! sign-up with a working sandbox credential, the production access request and its review
//! (illegal transitions and an incomplete checklist refused as problem documents), devices and
//! their Device JWTs on the FHIR API.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{TestApp, status_and_json};

const PASSWORD: &str = "correct horse battery staple";

/// Calls the `/api/` with `key`, a JSON body when given; the status and the JSON answer.
async fn api(app: &TestApp, key: Option<&str>, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    app.api(key, method, path, body).await
}

/// A FHIR read of `path` under `base` with the Device JWT `jwt`.
async fn fhir(app: &TestApp, base: &str, path: &str, jwt: &str) -> (StatusCode, Value) {
    let response = app.client.get(format!("{}{base}/{path}", app.root)).bearer_auth(jwt).send().await.expect("send");
    status_and_json(response).await
}

fn diagnostics(outcome: &Value) -> &str {
    outcome["issue"][0]["diagnostics"].as_str().unwrap_or_default()
}

/// Signs the operator `username` in with its password and a TOTP code; its API key.
async fn operator_key(app: &TestApp, username: &str) -> String {
    let totp = app.operator(username).await;
    let password = format!("{username} password 42");
    let (status, problem) =
        api(app, None, Method::POST, "/sessions", Some(json!({"username": username, "password": password}))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(problem["type"], "urn:ignis:problem:second-factor-required");
    let code = totp.code_at(time::OffsetDateTime::now_utc());
    let body = json!({"username": username, "password": password, "code": code});
    let (status, session) = api(app, None, Method::POST, "/sessions", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    session["api_key"].as_str().expect("an API key").to_owned()
}

/// A CA, and a client-auth certificate it signed with that certificate's key (PEM).
fn ca_and_client() -> (String, (String, String)) {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name.push(rcgen::DnType::CommonName, "Acme's CA");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    let ca_pem = params.self_signed(&ca_key).expect("CA").pem();
    let issuer = rcgen::Issuer::new(params, ca_key);
    let key = rcgen::KeyPair::generate().expect("key");
    let mut leaf = rcgen::CertificateParams::default();
    leaf.distinguished_name.push(rcgen::DnType::CommonName, "lab interface");
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let certificate = leaf.signed_by(&key, &issuer).expect("certificate").pem();
    (ca_pem, (certificate, key.serialize_pem()))
}

fn self_signed_certificate() -> String {
    let key = rcgen::KeyPair::generate().expect("key");
    rcgen::CertificateParams::new(vec!["lab-interface".to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("sign")
        .pem()
}

#[tokio::test]
async fn from_sign_up_to_an_approved_production_device() {
    let app = TestApp::spawn_secured().await;

    // Sign-up: an account, its owner and a sandbox credential that works at once, in the
    // sandbox only.
    let body = json!({"account": "Acme Labs", "username": "dev@acme.example", "password": PASSWORD});
    let (status, signed_up) = api(&app, None, Method::POST, "/signup", Some(body.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{signed_up}");
    let developer = signed_up["api_key"].as_str().expect("api key").to_owned();
    let account = signed_up["account"]["id"].as_str().expect("account id").to_owned();
    assert_eq!(signed_up["account"]["members"], json!([{"username": "dev@acme.example", "role": "owner"}]));
    let sandbox_jwt = signed_up["sandbox_jwt"].as_str().expect("sandbox jwt").to_owned();
    let (status, bundle) = fhir(&app, "/sandbox/fhir", "Patient?_count=1", &sandbox_jwt).await;
    assert_eq!(status, StatusCode::OK, "{bundle}");
    let (status, outcome) = fhir(&app, "/fhir", "Patient?_count=1", &sandbox_jwt).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(diagnostics(&outcome).contains("sandbox environment"), "{outcome}");
    let (status, problem) = api(&app, None, Method::POST, "/signup", Some(body)).await;
    assert_eq!((status, problem["type"].as_str()), (StatusCode::CONFLICT, Some("urn:ignis:problem:username-taken")));

    // A production device: no credential before the account is certified.
    let (ca_pem, identity) = ca_and_client();
    let certificate = identity.0.clone();
    let device_body = json!({"name": "lab interface", "environment": "production", "certificate": certificate});
    let (status, device) =
        api(&app, Some(&developer), Method::POST, &format!("/accounts/{account}/devices"), Some(device_body)).await;
    assert_eq!(status, StatusCode::CREATED, "{device}");
    let device = device["id"].as_str().expect("device id").to_owned();
    let credential = format!("/devices/{device}/credential");
    let (status, problem) = api(&app, Some(&developer), Method::POST, &credential, None).await;
    assert_eq!((status, problem["type"].as_str()), (StatusCode::CONFLICT, Some("urn:ignis:problem:not-certified")));

    // The request and its review.
    let (status, request) =
        api(&app, Some(&developer), Method::POST, &format!("/accounts/{account}/access-requests"), None).await;
    assert_eq!((status, request["state"].as_str()), (StatusCode::CREATED, Some("draft")));
    let request = request["id"].as_str().expect("request id").to_owned();
    let step = |action: &str| format!("/access-requests/{request}/{action}");
    let operator = operator_key(&app, "olivia").await;

    let (status, problem) = api(&app, Some(&operator), Method::POST, &step("approve"), None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(problem["type"], "urn:ignis:problem:illegal-transition");
    assert_eq!(problem["state"], "draft");
    assert_eq!(problem["allowed"], json!([{"action": "submit", "to": "submitted"}]));
    assert_eq!(problem["status"], 409);

    let (status, submitted) = api(&app, Some(&developer), Method::POST, &step("submit"), None).await;
    assert_eq!((status, submitted["state"].as_str()), (StatusCode::OK, Some("submitted")));
    let (status, problem) = api(&app, Some(&developer), Method::POST, &step("review"), None).await;
    assert_eq!((status, problem["type"].as_str()), (StatusCode::FORBIDDEN, Some("urn:ignis:problem:forbidden")));
    let (status, _) = api(&app, Some(&operator), Method::POST, &step("review"), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, problem) = api(&app, Some(&operator), Method::POST, &step("request-changes"), None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "a request for changes says why: {problem}");
    let why = json!({"reason": "name the egress addresses"});
    let (status, sent_back) = api(&app, Some(&operator), Method::POST, &step("request-changes"), Some(why)).await;
    assert_eq!((status, sent_back["state"].as_str()), (StatusCode::OK, Some("changes_requested")));
    let (status, _) = api(&app, Some(&developer), Method::POST, &step("submit"), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api(&app, Some(&operator), Method::POST, &step("review"), None).await;
    assert_eq!(status, StatusCode::OK);

    let (status, problem) = api(&app, Some(&operator), Method::POST, &step("approve"), None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(problem["type"], "urn:ignis:problem:checklist-incomplete");
    assert_eq!(problem["missing"], json!(["legal", "architecture", "security", "network", "demo"]));

    let item = |name: &str| format!("/access-requests/{request}/checklist/{name}");
    let (status, problem) =
        api(&app, Some(&developer), Method::PUT, &item("network"), Some(json!({"value": "10.0.0.0/33"}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(problem["detail"].as_str().unwrap_or_default().contains("10.0.0.0/33"), "{problem}");
    let values = [
        ("legal", "BAA and terms signed by J. Doe, CTO"),
        ("architecture", "one interface engine, no PHI at rest"),
        ("security", "SOC 2 type II"),
        ("network", "127.0.0.1/32"),
        ("demo", "https://videos.example/acme-demo"),
    ];
    for (name, value) in values {
        let (status, body) = api(&app, Some(&developer), Method::PUT, &item(name), Some(json!({"value": value}))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, approved) = api(&app, Some(&operator), Method::POST, &step("approve"), None).await;
    assert_eq!((status, approved["state"].as_str()), (StatusCode::OK, Some("approved")), "{approved}");
    let steps: Vec<(&str, &str)> = approved["transitions"]
        .as_array()
        .expect("transitions")
        .iter()
        .map(|step| (step["action"].as_str().unwrap_or_default(), step["by"].as_str().unwrap_or_default()))
        .collect();
    assert_eq!(
        steps,
        [
            ("submit", "dev@acme.example"),
            ("review", "olivia"),
            ("request-changes", "olivia"),
            ("submit", "dev@acme.example"),
            ("review", "olivia"),
            ("approve", "olivia")
        ]
    );
    assert_eq!(approved["transitions"][2]["reason"], "name the egress addresses");
    assert_eq!(approved["allowed"], json!([]));
    let (status, problem) =
        api(&app, Some(&operator), Method::POST, &step("reject"), Some(json!({"reason": "x"}))).await;
    assert_eq!((status, problem["allowed"].clone()), (StatusCode::CONFLICT, json!([])));

    let (status, found) = api(&app, Some(&developer), Method::GET, &format!("/accounts/{account}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(found["certification"]["status"], "certified", "{found}");

    // The platform CA, as `ignis admin ca init`: operators only, made once.
    assert_eq!(api(&app, Some(&developer), Method::POST, "/ca", None).await.0, StatusCode::FORBIDDEN);
    let (status, first) = api(&app, Some(&operator), Method::POST, "/ca", None).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert!(first["certificate"].as_str().is_some_and(|pem| pem.starts_with("-----BEGIN CERTIFICATE-----")));
    assert_eq!(api(&app, Some(&operator), Method::POST, "/ca", None).await.1, first);
    assert_eq!(found["certification"]["network"], json!(["127.0.0.1/32"]));
    assert!(found["certification"]["until"].is_string());

    // Certified: the production device gets its credential, which only works over mutual TLS
    // with the device's certificate.
    let (status, issued) = api(&app, Some(&developer), Method::POST, &credential, None).await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    let jwt = issued["jwt"].as_str().expect("jwt");
    let (status, outcome) = fhir(&app, "/fhir", "Patient?_count=1", jwt).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(diagnostics(&outcome).contains("mutual TLS"), "{outcome}");

    // Over the mutual-TLS listener, which trusts Acme's CA, with the device's certificate.
    let folder = tempfile::tempdir().expect("folder");
    let (anchors, crls) = (folder.path().join("anchors"), folder.path().join("crls"));
    std::fs::create_dir_all(&anchors).expect("anchors");
    std::fs::create_dir_all(&crls).expect("crls");
    std::fs::write(anchors.join("acme.pem"), &ca_pem).expect("write the CA");
    let server_key = rcgen::KeyPair::generate().expect("key");
    let server = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("params")
        .self_signed(&server_key)
        .expect("sign");
    let (server_cert, server_key_path) = (folder.path().join("server.pem"), folder.path().join("server.key"));
    std::fs::write(&server_cert, server.pem()).expect("write");
    std::fs::write(&server_key_path, server_key.serialize_pem()).expect("write");
    let mtls = app.serve_mtls((&server_cert, &server_key_path), &anchors, &crls).await;
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(server.pem().as_bytes()).expect("root"))
        .identity(reqwest::Identity::from_pem(format!("{}{}", identity.0, identity.1).as_bytes()).expect("identity"))
        .build()
        .expect("client");
    let response =
        client.get(format!("{}/fhir/Patient?_count=1", mtls.root)).bearer_auth(jwt).send().await.expect("send");
    let (status, bundle) = status_and_json(response).await;
    assert_eq!((status, bundle["resourceType"].as_str()), (StatusCode::OK, Some("Bundle")), "{bundle}");

    // Rotating the certificate revokes the JWT; a certificate from a new issuer is a material
    // change that asks for re-certification.
    let rotation = json!({"certificate": self_signed_certificate()});
    let (status, rotated) =
        api(&app, Some(&developer), Method::PUT, &format!("/devices/{device}/certificate"), Some(rotation)).await;
    assert_eq!((status, rotated["credential_live"].as_bool()), (StatusCode::OK, Some(false)), "{rotated}");
    let (_, found) = api(&app, Some(&developer), Method::GET, &format!("/accounts/{account}"), None).await;
    assert_eq!(found["certification"]["status"], "recertification_required", "{found}");
}

#[tokio::test]
async fn a_revoked_or_replaced_device_jwt_is_refused_at_once() {
    let app = TestApp::spawn_secured().await;
    let body = json!({"account": "Beta Health", "username": "beta", "password": PASSWORD});
    let (_, signed_up) = api(&app, None, Method::POST, "/signup", Some(body)).await;
    let key = signed_up["api_key"].as_str().expect("api key");
    let device = signed_up["sandbox_device"]["id"].as_str().expect("device");
    let first = signed_up["sandbox_jwt"].as_str().expect("jwt");
    assert_eq!(fhir(&app, "/sandbox/fhir", "Patient?_count=1", first).await.0, StatusCode::OK);

    let (status, issued) = api(&app, Some(key), Method::POST, &format!("/devices/{device}/credential"), None).await;
    assert_eq!(status, StatusCode::CREATED);
    let second = issued["jwt"].as_str().expect("jwt");
    let (status, outcome) = fhir(&app, "/sandbox/fhir", "Patient?_count=1", first).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(diagnostics(&outcome).contains("replaced"), "{outcome}");
    assert_eq!(fhir(&app, "/sandbox/fhir", "Patient?_count=1", second).await.0, StatusCode::OK);

    let (status, revoked) = api(&app, Some(key), Method::POST, &format!("/devices/{device}/revoke"), None).await;
    assert_eq!((status, revoked["credential_live"].as_bool()), (StatusCode::OK, Some(false)));
    assert!(revoked["revoked_at"].is_string());
    let (status, outcome) = fhir(&app, "/sandbox/fhir", "Patient?_count=1", second).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(diagnostics(&outcome).contains("revoked"), "{outcome}");
}

#[tokio::test]
async fn callers_see_only_their_own_accounts_and_errors_are_problem_documents() {
    let app = TestApp::spawn_secured().await;
    let (_, first) =
        api(&app, None, Method::POST, "/signup", Some(json!({"account": "A", "username": "a", "password": PASSWORD})))
            .await;
    let (_, second) =
        api(&app, None, Method::POST, "/signup", Some(json!({"account": "B", "username": "b", "password": PASSWORD})))
            .await;
    let other = first["account"]["id"].as_str().expect("id");
    let key = second["api_key"].as_str().expect("key");
    let (status, problem) = api(&app, Some(key), Method::GET, &format!("/accounts/{other}"), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
    let (status, problem) = api(&app, None, Method::GET, &format!("/accounts/{other}"), None).await;
    assert_eq!(
        (status, problem["type"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("urn:ignis:problem:unauthenticated"))
    );
    let (status, problem) = api(&app, Some("not-a-key"), Method::GET, &format!("/accounts/{other}"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{problem}");
    let (status, problem) = api(&app, Some(key), Method::GET, "/accounts/no-such-account", None).await;
    assert_eq!((status, problem["type"].as_str()), (StatusCode::NOT_FOUND, Some("urn:ignis:problem:not-found")));
    let (status, _) = api(&app, None, Method::GET, "/no-such-route", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, problem) = api(&app, None, Method::POST, "/signup", Some(json!({"account": "C"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert!(problem["detail"].as_str().unwrap_or_default().contains("username"), "{problem}");

    // A's owner makes b a viewer of A: b reads it, changes nothing, and manages no members.
    let owner = first["api_key"].as_str().expect("key");
    let member = |name: &str| format!("/accounts/{other}/members/{name}");
    let (status, account) = api(&app, Some(owner), Method::PUT, &member("b"), Some(json!({"role": "viewer"}))).await;
    assert_eq!(status, StatusCode::OK, "{account}");
    assert_eq!(account["members"][1], json!({"username": "b", "role": "viewer"}));
    assert_eq!(api(&app, Some(key), Method::GET, &format!("/accounts/{other}"), None).await.0, StatusCode::OK);
    let device = json!({"name": "d", "environment": "sandbox"});
    let (status, _) = api(&app, Some(key), Method::POST, &format!("/accounts/{other}/devices"), Some(device)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = api(&app, Some(key), Method::PUT, &member("b"), Some(json!({"role": "owner"}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, problem) =
        api(&app, Some(owner), Method::PUT, &member("nobody"), Some(json!({"role": "viewer"}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
    let (status, problem) = api(&app, Some(owner), Method::DELETE, &member("a"), None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "the last owner stays: {problem}");
    let (status, account) = api(&app, Some(owner), Method::DELETE, &member("b"), None).await;
    assert_eq!((status, account["members"].as_array().map(Vec::len)), (StatusCode::OK, Some(1)));
    assert_eq!(api(&app, Some(key), Method::GET, &format!("/accounts/{other}"), None).await.0, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_api_is_described_by_an_openapi_document() {
    let app = TestApp::spawn_secured().await;
    let (status, document) = api(&app, None, Method::GET, "/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(document["openapi"].as_str().unwrap_or_default().starts_with("3.1"), "{}", document["openapi"]);
    for path in [
        "/api/signup",
        "/api/accounts/{id}/devices",
        "/api/access-requests/{id}/{action}",
        "/api/devices/{id}/credential",
    ] {
        assert!(document["paths"][path].is_object(), "{path} is described");
    }
    assert!(document["components"]["schemas"]["AccessRequestView"].is_object());
    assert_eq!(document["components"]["securitySchemes"]["api_key"]["scheme"], "bearer");
}

/// What a webhook receiver got: each request's headers and body.
type Received = std::sync::Arc<std::sync::Mutex<Vec<(reqwest::header::HeaderMap, String)>>>;

/// A webhook receiver on a free loopback port that fails its first request with 500 and
/// accepts the others; its URL and what it received.
async fn webhook_receiver() -> (String, Received) {
    let received: Received = Default::default();
    let kept = received.clone();
    let handler = move |headers: axum::http::HeaderMap, body: String| {
        let kept = kept.clone();
        async move {
            let mut kept = kept.lock().expect("received");
            let mut copied = reqwest::header::HeaderMap::new();
            for (name, value) in &headers {
                if let (Ok(name), Ok(value)) = (
                    reqwest::header::HeaderName::from_bytes(name.as_str().as_bytes()),
                    reqwest::header::HeaderValue::from_bytes(value.as_bytes()),
                ) {
                    copied.insert(name, value);
                }
            }
            kept.push((copied, body));
            if kept.len() == 1 {
                axum::http::StatusCode::INTERNAL_SERVER_ERROR
            } else {
                axum::http::StatusCode::NO_CONTENT
            }
        }
    };
    let router = axum::Router::new().route("/hook", axum::routing::post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, received)
}

#[tokio::test]
async fn notifications_reach_the_webhook_signed_and_retried() {
    let app = TestApp::spawn_secured_configured(|config| {
        config.notification_poll = std::time::Duration::from_millis(10);
        config.notification_retry = std::time::Duration::from_millis(10);
    })
    .await;
    let body = json!({"account": "Hooked", "username": "hooked", "password": PASSWORD});
    let (_, signed_up) = api(&app, None, Method::POST, "/signup", Some(body)).await;
    let key = signed_up["api_key"].as_str().expect("key");
    let account = signed_up["account"]["id"].as_str().expect("account");
    let (url, received) = webhook_receiver().await;
    let (status, set) =
        api(&app, Some(key), Method::PUT, &format!("/accounts/{account}/webhook"), Some(json!({"url": url}))).await;
    assert_eq!(status, StatusCode::OK, "{set}");
    let secret = set["secret"].as_str().expect("secret").to_owned();
    let (status, problem) = api(
        &app,
        Some(key),
        Method::PUT,
        &format!("/accounts/{account}/webhook"),
        Some(json!({"url": "http://example.com/hook"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");

    let (_, request) = api(&app, Some(key), Method::POST, &format!("/accounts/{account}/access-requests"), None).await;
    let request = request["id"].as_str().expect("request");
    api(&app, Some(key), Method::POST, &format!("/access-requests/{request}/submit"), None).await;

    // Polled until delivered (the deadline only guards against a hang).
    let started = std::time::Instant::now();
    let notifications = loop {
        let (_, notifications) =
            api(&app, Some(key), Method::GET, &format!("/accounts/{account}/notifications"), None).await;
        let submitted = notifications
            .as_array()
            .expect("a list")
            .iter()
            .find(|notification| notification["event"] == "access-request.submitted")
            .cloned();
        if submitted.as_ref().is_some_and(|found| found["delivery"] == "delivered") {
            break notifications;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "never delivered: {notifications}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    let events: Vec<(&str, &str)> = notifications
        .as_array()
        .expect("a list")
        .iter()
        .map(|notification| {
            (notification["event"].as_str().unwrap_or_default(), notification["delivery"].as_str().unwrap_or_default())
        })
        .collect();
    assert_eq!(events, [("device.credential-issued", "no_webhook"), ("access-request.submitted", "delivered")]);
    assert_eq!(notifications[1]["attempts"], 2, "the first attempt failed with 500: {notifications}");

    let received = received.lock().expect("received").clone();
    assert_eq!(received.len(), 2);
    let (headers, body) = &received[1];
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok()).unwrap_or_default().to_owned();
    let timestamp: i64 = header("x-ignis-timestamp").parse().expect("a timestamp");
    assert_eq!(header("x-ignis-signature"), access::notification::signature(secret.as_bytes(), timestamp, body));
    assert_ne!(header("x-ignis-signature"), access::notification::signature(b"another secret", timestamp, body));
    assert_eq!(header("x-ignis-event"), "access-request.submitted");
    let delivered: Value = serde_json::from_str(body).expect("JSON");
    assert_eq!(
        (delivered["data"]["state"].as_str(), delivered["data"]["by"].as_str()),
        (Some("submitted"), Some("hooked"))
    );
}

/// The status of an authorization request for `client_id` at the `auth` base (`/auth` or
/// `/sandbox/auth`) of the FHIR base `fhir`: 303 when the client and its redirect URI are known.
async fn authorize_status(app: &TestApp, auth: &str, fhir: &str, client_id: &str) -> StatusCode {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let query = [
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", "https://app.example/callback"),
        ("scope", "launch/patient patient/Patient.rs openid fhirUser"),
        ("state", "s1"),
        ("aud", &format!("{}{fhir}", app.root)),
        ("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"),
        ("code_challenge_method", "S256"),
    ];
    let query = serde_urlencoded::to_string(query).expect("query");
    client.get(format!("{}{auth}/authorize?{query}", app.root)).send().await.expect("send").status()
}

#[tokio::test]
async fn a_patient_access_app_is_verified_then_enabled_under_the_onc_clocks() {
    let app = TestApp::spawn_secured().await;
    let body = json!({"account": "Pat Apps", "username": "patapps", "password": PASSWORD});
    let (_, signed_up) = api(&app, None, Method::POST, "/signup", Some(body)).await;
    let key = signed_up["api_key"].as_str().expect("key");
    let account = signed_up["account"]["id"].as_str().expect("account");
    let registration = json!({
        "name": "My Health Diary",
        "redirect_uris": ["https://app.example/callback"],
        "scopes": "launch/patient patient/*.rs openid fhirUser offline_access",
    });
    let (status, registered) =
        api(&app, Some(key), Method::POST, &format!("/accounts/{account}/apps"), Some(registration)).await;
    assert_eq!(status, StatusCode::CREATED, "{registered}");
    assert!(registered.get("client_secret").is_none(), "a public app has no secret");
    let id = registered["app"]["id"].as_str().expect("app id").to_owned();
    let client_id = registered["app"]["client_id"].as_str().expect("client id").to_owned();
    assert_eq!(authorize_status(&app, "/sandbox/auth", "/sandbox/fhir", &client_id).await, StatusCode::SEE_OTHER);
    assert_ne!(
        authorize_status(&app, "/auth", "/fhir", &client_id).await,
        StatusCode::SEE_OTHER,
        "not in production yet"
    );

    let step = |name: &str| format!("/apps/{id}/{name}");
    let operator = operator_key(&app, "oscar").await;
    let (status, problem) = api(&app, Some(&operator), Method::POST, &step("verify"), None).await;
    assert_eq!((status, problem["type"].as_str()), (StatusCode::CONFLICT, Some("urn:ignis:problem:illegal-step")));
    let (status, requested) = api(&app, Some(key), Method::POST, &step("production"), None).await;
    assert_eq!(status, StatusCode::OK, "{requested}");
    let track = &requested["production"];
    assert_eq!(track["waiting_for"], "verification");
    assert_eq!(
        (track["verification_overdue"].as_bool(), track["enablement_overdue"].as_bool()),
        (Some(false), Some(false))
    );
    let requested_at = time::OffsetDateTime::parse(
        track["requested"].as_str().expect("requested"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("instant");
    let verify_by = time::OffsetDateTime::parse(
        track["verify_by"].as_str().expect("verify_by"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("instant");
    assert_eq!(verify_by, access::app::add_business_days(requested_at, 10));

    let (status, _) = api(&app, Some(key), Method::POST, &step("verify"), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only operators verify");
    let (_, queue) = api(&app, Some(&operator), Method::GET, "/review-queue", None).await;
    assert!(queue["apps"].as_array().expect("apps").iter().any(|waiting| waiting["id"] == id.as_str()), "{queue}");
    let (status, problem) = api(&app, Some(&operator), Method::POST, &step("enable"), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "enabled only once verified: {problem}");
    let (_, verified) = api(&app, Some(&operator), Method::POST, &step("verify"), None).await;
    assert_eq!(
        (verified["production"]["waiting_for"].as_str(), verified["production"]["verified_by"].as_str()),
        (Some("enablement"), Some("oscar"))
    );
    assert!(verified["production"]["enable_by"].is_string());
    let (status, enabled) = api(&app, Some(&operator), Method::POST, &step("enable"), None).await;
    assert_eq!(status, StatusCode::OK, "{enabled}");
    assert!(enabled["production"].get("waiting_for").is_none());
    assert_eq!(
        authorize_status(&app, "/auth", "/fhir", &client_id).await,
        StatusCode::SEE_OTHER,
        "enabled in production"
    );
    let (_, queue) = api(&app, Some(&operator), Method::GET, "/review-queue", None).await;
    assert!(!queue["apps"].as_array().expect("apps").iter().any(|waiting| waiting["id"] == id.as_str()));

    // A new redirect URI of an app in production: both clients take it, and the account is
    // asked to re-certify. (Certified first, so the change outdates a certification.)
    let (_, request) = api(&app, Some(key), Method::POST, &format!("/accounts/{account}/access-requests"), None).await;
    let request = request["id"].as_str().expect("request");
    api(&app, Some(key), Method::POST, &format!("/access-requests/{request}/submit"), None).await;
    api(&app, Some(&operator), Method::POST, &format!("/access-requests/{request}/review"), None).await;
    for item in ["legal", "architecture", "security", "demo"] {
        let path = format!("/access-requests/{request}/checklist/{item}");
        api(&app, Some(&operator), Method::PUT, &path, Some(json!({"value": "done"}))).await;
    }
    let path = format!("/access-requests/{request}/checklist/network");
    api(&app, Some(&operator), Method::PUT, &path, Some(json!({"value": "10.0.0.0/8"}))).await;
    let (status, _) =
        api(&app, Some(&operator), Method::POST, &format!("/access-requests/{request}/approve"), None).await;
    assert_eq!(status, StatusCode::OK);
    let settings = json!({
        "redirect_uris": ["https://app.example/callback", "https://app.example/other"],
        "scopes": "launch/patient patient/*.rs openid fhirUser offline_access",
    });
    let (status, updated) = api(&app, Some(key), Method::PUT, &format!("/apps/{id}"), Some(settings)).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    let (_, found) = api(&app, Some(key), Method::GET, &format!("/accounts/{account}"), None).await;
    assert_eq!(found["certification"]["status"], "recertification_required", "{found}");
    assert!(found["certification"]["changes"][0].as_str().unwrap_or_default().contains("redirect URIs"), "{found}");
    let bad = json!({"redirect_uris": ["not a uri"], "scopes": "openid"});
    let (status, _) = api(&app, Some(key), Method::PUT, &format!("/apps/{id}"), Some(bad)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}
