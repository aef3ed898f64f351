//! The authorization pages in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, which `.ci/run` installs), driven through chromedriver: a practitioner
//! signs in with a password and a TOTP code, unticks a resource type on the consent page, and
//! the token the app gets is refused that type.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use auth::client::{ClientType, NewClient};
use fantoccini::{ClientBuilder, Locator};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::TestApp;

const VERIFIER: &str = "browser-test-code-verifier-0123456789-0123456789-0123456789";
const SECRET: &str = "browser app secret";
/// A hang guard only: each step normally takes milliseconds.
const DEADLINE: Duration = Duration::from_secs(60);

/// A chromedriver process on a free loopback port, killed when dropped.
struct ChromeDriver {
    child: Child,
    url: String,
}

impl ChromeDriver {
    async fn start() -> ChromeDriver {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("port").port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver) is installed");
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while reqwest::get(format!("{url}/status")).await.is_err() {
            assert!(started.elapsed() < DEADLINE, "chromedriver never answered");
            tokio::task::yield_now().await;
        }
        ChromeDriver { child, url }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
#[ignore = "needs Debian's chromium and chromium-driver (.ci/run installs them)"]
async fn a_practitioner_signs_in_with_totp_and_unticks_a_type_in_chromium() {
    let app = TestApp::spawn_secured().await;
    let admin = app.token("system/*.cruds", None);
    let patient = json!({"resourceType": "Patient", "name": [{"family": "Chromium"}]});
    let created = app.request(reqwest::Method::POST, "/Patient").bearer_auth(&admin).json(&patient).send().await;
    let patient: Value = created.expect("create").json().await.expect("json");
    let patient = patient["id"].as_str().expect("id").to_owned();
    // The app's redirect URI is a page of the server itself, so the browser lands somewhere real.
    let redirect = format!("{}/healthz", app.root);
    let client = NewClient {
        client_id: "browser-app".into(),
        client_type: ClientType::ConfidentialSymmetric,
        environment: "production".into(),
        secret: Some(SECRET.into()),
        jwks: None,
        jwks_url: None,
        redirect_uris: vec![redirect.clone()],
        launch_uris: Vec::new(),
        scopes: "launch openid fhirUser user/*.rs".into(),
    };
    auth::client::register(app.store.as_ref(), client, "test").await.expect("client");
    let authenticator = app.practitioner("drchrome", "Practitioner/7").await;
    let launch = auth::launch::Launch {
        environment: "production".into(),
        patient: patient.clone(),
        encounter: None,
        user: None,
        expires: i64::MAX / 2,
    };
    let launch = auth::launch::create(app.store.as_ref(), &launch, "test").await.expect("launch");

    let driver = ChromeDriver::start().await;
    let profile = tempfile::tempdir().expect("profile folder");
    let mut capabilities = serde_json::Map::new();
    let arguments = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        &format!("--user-data-dir={}", profile.path().display()),
    ];
    capabilities.insert("goog:chromeOptions".into(), json!({"binary": "/usr/bin/chromium", "args": arguments}));
    let browser = ClientBuilder::rustls()
        .expect("TLS roots")
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a Chromium session");

    let challenge = auth::pkce::challenge(VERIFIER);
    let query = serde_urlencoded::to_string([
        ("response_type", "code"),
        ("client_id", "browser-app"),
        ("redirect_uri", redirect.as_str()),
        ("scope", "launch openid fhirUser user/Patient.rs user/Observation.rs"),
        ("state", "browser-state"),
        ("aud", app.base.as_str()),
        ("launch", launch.as_str()),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ])
    .expect("query");
    browser.goto(&format!("{}/auth/authorize?{query}", app.root)).await.expect("open the authorize URL");
    let css = |selector: &'static str| Locator::Css(selector);
    browser.wait().at_most(DEADLINE).for_element(css("input[name=username]")).await.expect("the sign-in page");
    browser.find(css("input[name=username]")).await.expect("username").send_keys("drchrome").await.expect("type");
    let password = browser.find(css("input[name=password]")).await.expect("password");
    password.send_keys("drchrome password 42").await.expect("type");
    browser.find(css("button[type=submit]")).await.expect("submit").click().await.expect("sign in");

    let otp = browser.wait().at_most(DEADLINE).for_element(css("input[name=otp]")).await.expect("the code page");
    otp.send_keys(&authenticator.code_at(time::OffsetDateTime::now_utc())).await.expect("type the code");
    browser.find(css("button[type=submit]")).await.expect("submit").click().await.expect("verify");

    let observations = css("input[name=scope][value='user/Observation.rs']");
    let checkbox = browser.wait().at_most(DEADLINE).for_element(observations).await.expect("the consent page");
    assert!(checkbox.prop("checked").await.expect("checked").as_deref() == Some("true"), "ticked as the app asked");
    checkbox.click().await.expect("untick Observation");
    let approve = browser.find(css("button[name=decision][value=approve]")).await.expect("approve");
    approve.click().await.expect("approve");

    let started = Instant::now();
    let landed = loop {
        let url = browser.current_url().await.expect("URL");
        if url.as_str().starts_with(&redirect) {
            break url;
        }
        assert!(started.elapsed() < DEADLINE, "never redirected to the app: {url}");
        tokio::task::yield_now().await;
    };
    browser.close().await.expect("close Chromium");
    let pairs: Vec<(String, String)> = landed.query_pairs().into_owned().collect();
    assert!(pairs.contains(&("state".into(), "browser-state".into())), "{pairs:?}");
    let code = pairs.iter().find(|(name, _)| name == "code").map(|(_, code)| code.clone()).expect("a code");

    let response = reqwest::Client::new()
        .post(format!("{}/auth/token", app.root))
        .basic_auth("browser-app", Some(SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect.as_str()),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(response.status(), StatusCode::OK);
    let token: Value = response.json().await.expect("json");
    assert_eq!(token["scope"], "launch openid fhirUser user/Patient.rs");
    assert_eq!(token["patient"], patient);
    let access = token["access_token"].as_str().expect("access token");
    let read = |path: String| app.request(reqwest::Method::GET, &path).bearer_auth(access).send();
    assert_eq!(read(format!("/Patient/{patient}")).await.expect("read").status(), StatusCode::OK);
    let refused = read(format!("/Observation?patient={patient}")).await.expect("search").status();
    assert_eq!(refused, StatusCode::FORBIDDEN);
}
