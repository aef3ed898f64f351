//! SMART App Launch through real HTTP, as an app and a browser would play it (checklist §3,
//! §6, §8): discovery, the authorization endpoint and its pages (sign-in, second factor,
//! patient picker, consent with unticked types and granular sub-scopes), the token endpoint
//! with each client type, PKCE, refresh, revocation and introspection, and the RFC 6749
//! errors of each bad request.

use std::sync::Arc;

use auth::client::{ClientType, NewClient};
use auth::user::{NewUser, Role};
use reqwest::header::{AUTHORIZATION, COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use crate::support::TestApp;

const REDIRECT: &str = "https://app.example/callback";
const SECRET: &str = "app secret 1234";
const VERIFIER: &str = "a-very-long-code-verifier-of-forty-three-plus-characters-0123456789";
const ADMIN: &str = "system/*.cruds";
const ALL_PATIENT: &str = "launch/patient openid fhirUser offline_access patient/*.rs";

/// A server with two patients, a confidential and a public client, a patient user (Alice,
/// patient A) and a parent (acting for A and B).
struct World {
    app: TestApp,
    a: String,
    b: String,
}

async fn world() -> World {
    world_with(|_| {}).await
}

/// [`world`] with the authorization server's policies changed by `adjust`.
async fn world_with(adjust: fn(&mut server::Authorization)) -> World {
    let app = TestApp::spawn_secured_with(adjust).await;
    let admin = app.token(ADMIN, None);
    let mut ids = Vec::new();
    for family in ["Alpha", "Beta"] {
        let body = json!({"resourceType": "Patient", "name": [{"family": family, "given": ["Pat"]}]});
        let response = app.request(reqwest::Method::POST, "/Patient").bearer_auth(&admin).json(&body).send().await;
        let created: Value = response.expect("create").json().await.expect("json");
        ids.push(created["id"].as_str().expect("id").to_owned());
    }
    let store = app.store.as_ref();
    for (client_id, client_type, secret) in [
        ("confidential", ClientType::ConfidentialSymmetric, Some(SECRET.to_owned())),
        ("public", ClientType::Public, None),
    ] {
        let client = NewClient {
            client_id: client_id.into(),
            client_type,
            environment: "production".into(),
            secret,
            jwks: None,
            jwks_url: None,
            redirect_uris: vec![REDIRECT.into()],
            launch_uris: Vec::new(),
            scopes: "launch launch/patient openid fhirUser offline_access patient/*.cruds user/*.cruds".into(),
        };
        auth::client::register(store, client, "test").await.expect("register");
    }
    let secret = Arc::clone(app.secret.as_ref().expect("secured"));
    for (username, patients) in [("alice", vec![]), ("parent", vec![ids[1].clone()])] {
        let user = NewUser {
            username: username.into(),
            password: format!("{username} password 42"),
            role: Role::Patient,
            fhir_user: format!("Patient/{}", ids[0]),
            patients,
            enrol_totp: false,
        };
        auth::user::create(store, &secret, user, "test").await.expect("user");
    }
    World { app, a: ids[0].clone(), b: ids[1].clone() }
}

/// A browser: no automatic redirects, one session cookie.
struct Browser {
    http: Client,
    cookie: Option<String>,
}

impl Browser {
    fn new() -> Browser {
        let http = Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        Browser { http, cookie: None }
    }

    async fn get(&mut self, url: &str) -> reqwest::Response {
        let mut request = self.http.get(url);
        if let Some(cookie) = &self.cookie {
            request = request.header(COOKIE, cookie);
        }
        self.keep_cookie(request.send().await.expect("GET"))
    }

    async fn post(&mut self, url: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let mut request = self.http.post(url).form(form);
        if let Some(cookie) = &self.cookie {
            request = request.header(COOKIE, cookie);
        }
        self.keep_cookie(request.send().await.expect("POST"))
    }

    fn keep_cookie(&mut self, response: reqwest::Response) -> reqwest::Response {
        if let Some(set) = response.headers().get(SET_COOKIE) {
            let pair = set.to_str().expect("cookie").split(';').next().expect("pair").to_owned();
            self.cookie = Some(pair);
        }
        response
    }

    /// Follows `response`'s redirects while they stay on the server; returns the final page
    /// or the redirect to the app.
    async fn follow(&mut self, mut response: reqwest::Response, root: &str) -> Page {
        loop {
            if response.status() != StatusCode::SEE_OTHER {
                let status = response.status();
                return Page::Html(status, response.text().await.expect("page"));
            }
            let location = response.headers()[LOCATION].to_str().expect("location").to_owned();
            if !location.starts_with(root) {
                return Page::App(location);
            }
            response = self.get(&location).await;
        }
    }
}

#[derive(Debug)]
enum Page {
    Html(StatusCode, String),
    /// A redirect to the app's redirect URI.
    App(String),
}

impl Page {
    fn html(&self) -> &str {
        match self {
            Page::Html(_, html) => html,
            Page::App(location) => panic!("expected a page, got a redirect to {location}"),
        }
    }

    fn app(&self) -> Vec<(String, String)> {
        match self {
            Page::App(location) => {
                let query = location.strip_prefix(&format!("{REDIRECT}?")).expect("to the redirect URI");
                serde_urlencoded::from_str(query).expect("query")
            }
            Page::Html(status, html) => panic!("expected a redirect to the app, got {status}: {html}"),
        }
    }
}

/// The `value` of the hidden input `request` of a page.
fn handle(html: &str) -> String {
    attribute_after(html, "name=\"request\"").expect("a request handle")
}

fn attribute_after(html: &str, marker: &str) -> Option<String> {
    let at = html.find(marker)?;
    let rest = &html[at..];
    let start = rest.find("value=\"")? + 7;
    Some(rest[start..start + rest[start..].find('"')?].replace("&amp;", "&"))
}

/// Every `scope` checkbox of a consent page: `(value, ticked)`.
fn checkboxes(html: &str) -> Vec<(String, bool)> {
    html.split("<input type=\"checkbox\" name=\"scope\"")
        .skip(1)
        .map(|rest| {
            let tag = &rest[..rest.find('>').expect("tag end")];
            let value = attribute_after(tag, "").expect("value");
            (value, tag.contains("checked"))
        })
        .collect()
}

fn query(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).expect("query")
}

/// The parameters of an authorization request by `client_id` for `scope`.
fn authorize_url(app: &TestApp, client_id: &str, scope: &str, aud: &str) -> String {
    let challenge = auth::pkce::challenge(VERIFIER);
    let pairs = [
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", REDIRECT),
        ("scope", scope),
        ("state", "state-123"),
        ("aud", aud),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    format!("{}/auth/authorize?{}", app.root, query(&pairs))
}

/// Signs `username` in from the authorization URL and returns the consent page.
async fn sign_in(browser: &mut Browser, app: &TestApp, url: &str, username: &str) -> Page {
    let response = browser.get(url).await;
    let page = browser.follow(response, &app.root).await;
    assert!(page.html().contains("name=\"username\""), "{}", page.html());
    let password = format!("{username} password 42");
    let form = [("request", handle(page.html())), ("username", username.into()), ("password", password)];
    let form: Vec<(&str, &str)> = form.iter().map(|(name, value)| (*name, value.as_str())).collect();
    let response = browser.post(&format!("{}/auth/sign-in", app.root), &form).await;
    browser.follow(response, &app.root).await
}

/// Approves the consent page `page` with the `ticked` scopes; returns the code.
async fn approve(browser: &mut Browser, app: &TestApp, page: &Page, ticked: &[&str]) -> String {
    let request = handle(page.html());
    let mut form = vec![("request", request.as_str()), ("decision", "approve")];
    form.extend(ticked.iter().map(|scope| ("scope", *scope)));
    let response = browser.post(&format!("{}/auth/consent", app.root), &form).await;
    let back = browser.follow(response, &app.root).await.app();
    assert!(back.contains(&("state".into(), "state-123".into())), "{back:?}");
    back.into_iter().find(|(name, _)| name == "code").map(|(_, code)| code).expect("a code")
}

/// A consent page's ticked scopes, as the app asked.
fn as_asked(page: &Page) -> Vec<String> {
    checkboxes(page.html()).into_iter().filter(|(_, ticked)| *ticked).map(|(scope, _)| scope).collect()
}

async fn token_request(app: &TestApp, basic: Option<(&str, &str)>, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let mut request = Client::new().post(format!("{}/auth/token", app.root)).form(form);
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    let response = request.send().await.expect("token request");
    let status = response.status();
    if status == StatusCode::OK {
        assert_eq!(response.headers()["cache-control"], "no-store");
        assert_eq!(response.headers()["pragma"], "no-cache");
    }
    (status, response.json().await.expect("JSON"))
}

async fn exchange(app: &TestApp, code: &str, verifier: Option<&str>) -> (StatusCode, Value) {
    let mut form = vec![("grant_type", "authorization_code"), ("code", code), ("redirect_uri", REDIRECT)];
    if let Some(verifier) = verifier {
        form.push(("code_verifier", verifier));
    }
    token_request(app, Some(("confidential", SECRET)), &form).await
}

/// A full standalone launch of Alice through the confidential client, approving what was
/// asked; returns the token response.
async fn launch_alice(world: &World, scope: &str) -> Value {
    let mut browser = Browser::new();
    let url = authorize_url(&world.app, "confidential", scope, &world.app.base);
    let page = sign_in(&mut browser, &world.app, &url, "alice").await;
    let asked = as_asked(&page);
    let asked: Vec<&str> = asked.iter().map(String::as_str).collect();
    let code = approve(&mut browser, &world.app, &page, &asked).await;
    let (status, body) = exchange(&world.app, &code, Some(VERIFIER)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Checks the token response's id_token as an OpenID client does (checklist §2.2): RS256 with a
/// `kid` of the JWKS that `openid-configuration` names, issued by that configuration's issuer
/// for `client_id`; returns its claims.
async fn verify_id_token(app: &TestApp, token: &Value, client_id: &str) -> Value {
    let id_token = token["id_token"].as_str().expect("an id_token");
    let header = jsonwebtoken::decode_header(id_token).expect("a JWT");
    assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
    let configuration = Client::new().get(format!("{}/.well-known/openid-configuration", app.base)).send().await;
    let configuration: Value = configuration.expect("configuration").json().await.expect("json");
    let issuer = configuration["issuer"].as_str().expect("issuer");
    let jwks = Client::new().get(configuration["jwks_uri"].as_str().expect("jwks_uri")).send().await;
    let jwks: jsonwebtoken::jwk::JwkSet = jwks.expect("jwks").json().await.expect("a JWK Set");
    let jwk = jwks.find(header.kid.as_deref().expect("a kid")).expect("the kid is published");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[client_id]);
    validation.set_issuer(&[issuer]);
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).expect("an RSA key");
    let claims = jsonwebtoken::decode::<Value>(id_token, &key, &validation).expect("the id_token verifies").claims;
    assert!(claims["sub"].as_str().is_some_and(|sub| !sub.is_empty() && sub.len() < 256));
    assert!(claims["iat"].is_number());
    claims
}

async fn read(app: &TestApp, token: &str, path: &str) -> StatusCode {
    app.request(reqwest::Method::GET, path).bearer_auth(token).send().await.expect("read").status()
}

#[tokio::test]
async fn discovery_lists_the_endpoints_and_capabilities() {
    let world = world().await;
    let response = Client::new().get(format!("{}/.well-known/smart-configuration", world.app.base)).send().await;
    let response = response.expect("discovery");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().expect("type").starts_with("application/json"));
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["authorization_endpoint"], format!("{}/auth/authorize", world.app.root));
    assert_eq!(body["token_endpoint"], format!("{}/auth/token", world.app.root));
    assert_eq!(body["code_challenge_methods_supported"], json!(["S256"]));
    let capabilities = body["capabilities"].as_array().expect("capabilities");
    for needed in [
        "launch-standalone",
        "launch-ehr",
        "client-public",
        "client-confidential-symmetric",
        "permission-v1",
        "permission-v2",
        "authorize-post",
        "permission-offline",
    ] {
        assert!(capabilities.contains(&json!(needed)), "{needed}");
    }
    let openid = Client::new().get(format!("{}/.well-known/openid-configuration", world.app.base)).send().await;
    let openid: Value = openid.expect("openid").json().await.expect("json");
    assert_eq!(openid["issuer"], world.app.base);
    assert!(openid["id_token_signing_alg_values_supported"].as_array().expect("algs").contains(&json!("RS256")));
    // The sandbox has its own endpoints.
    let sandbox = Client::new().get(format!("{}/sandbox/fhir/.well-known/smart-configuration", world.app.root)).send();
    let sandbox: Value = sandbox.await.expect("sandbox").json().await.expect("json");
    assert_eq!(sandbox["token_endpoint"], format!("{}/sandbox/auth/token", world.app.root));
}

#[tokio::test]
async fn a_standalone_patient_launch_reads_only_its_patient() {
    let world = world().await;
    let token = launch_alice(&world, ALL_PATIENT).await;
    assert_eq!(token["token_type"], "Bearer");
    assert!(token["expires_in"].is_number());
    assert_eq!(token["patient"], world.a);
    assert_eq!(token["need_patient_banner"], true);
    let scope = token["scope"].as_str().expect("scope");
    for granted in ["launch/patient", "openid", "fhirUser", "offline_access", "patient/*.rs"] {
        assert!(scope.split(' ').any(|word| word == granted), "{granted} in {scope}");
    }
    assert!(token["refresh_token"].is_string());
    let claims = verify_id_token(&world.app, &token, "confidential").await;
    assert_eq!(claims["fhirUser"], format!("{}/Patient/{}", world.app.base, world.a));
    let access = token["access_token"].as_str().expect("access token");
    assert_eq!(read(&world.app, access, &format!("/Patient/{}", world.a)).await, StatusCode::OK);
    assert_ne!(read(&world.app, access, &format!("/Patient/{}", world.b)).await, StatusCode::OK);
    // Without a token: exactly 401.
    let bare = Client::new().get(format!("{}/Patient/{}", world.app.base, world.a)).send().await.expect("read");
    assert_eq!(bare.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn unticking_a_type_refuses_it_and_sub_scopes_narrow_a_type() {
    let world = world().await;
    let mut browser = Browser::new();
    let scope = "launch/patient openid fhirUser patient/Patient.rs patient/Condition.rs patient/Observation.rs";
    let url = authorize_url(&world.app, "confidential", scope, &world.app.base);
    let page = sign_in(&mut browser, &world.app, &url, "alice").await;
    let boxes = checkboxes(page.html());
    let lab = "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory";
    assert!(boxes.contains(&(lab.to_owned(), false)), "{boxes:?}");
    assert!(boxes.contains(&("patient/Condition.rs".to_owned(), true)));
    assert!(page.html().contains("name=\"decision\" value=\"approve\""));
    // Untick Condition; grant only laboratory Observations.
    let code =
        approve(&mut browser, &world.app, &page, &["launch/patient", "openid", "fhirUser", "patient/Patient.rs", lab])
            .await;
    let (status, token) = exchange(&world.app, &code, Some(VERIFIER)).await;
    assert_eq!(status, StatusCode::OK, "{token}");
    assert_eq!(token["scope"], format!("launch/patient openid fhirUser patient/Patient.rs {lab}"));
    assert!(token.get("refresh_token").is_none(), "no offline_access, no refresh token");
    let access = token["access_token"].as_str().expect("token");
    let refused = read(&world.app, access, &format!("/Condition?patient={}", world.a)).await;
    assert!(matches!(refused, StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED), "{refused}");
    assert_eq!(read(&world.app, access, &format!("/Observation?patient={}", world.a)).await, StatusCode::OK);
}

#[tokio::test]
async fn a_parent_picks_the_patient() {
    let world = world().await;
    let mut browser = Browser::new();
    let url = authorize_url(&world.app, "public", ALL_PATIENT, &world.app.base);
    let page = sign_in(&mut browser, &world.app, &url, "parent").await;
    let html = page.html();
    assert!(html.contains(&format!("value=\"{}\"", world.b)) && html.contains("name=\"patient\""), "{html}");
    let form = [("request", handle(html)), ("patient", world.b.clone())];
    let form: Vec<(&str, &str)> = form.iter().map(|(name, value)| (*name, value.as_str())).collect();
    let response = browser.post(&format!("{}/auth/patient", world.app.root), &form).await;
    let page = browser.follow(response, &world.app.root).await;
    let asked = as_asked(&page);
    let code = approve(&mut browser, &world.app, &page, &asked.iter().map(String::as_str).collect::<Vec<_>>()).await;
    // A public client: client_id in the body, no secret.
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
        ("client_id", "public"),
    ];
    let (status, token) = token_request(&world.app, None, &form).await;
    assert_eq!(status, StatusCode::OK, "{token}");
    assert_eq!(token["patient"], world.b);
    verify_id_token(&world.app, &token, "public").await;
    let access = token["access_token"].as_str().expect("token");
    assert_eq!(read(&world.app, access, &format!("/Patient/{}", world.b)).await, StatusCode::OK);
    assert_ne!(read(&world.app, access, &format!("/Patient/{}", world.a)).await, StatusCode::OK);
}

#[tokio::test]
async fn refresh_tokens_renew_narrow_and_refuse_more() {
    let world = world().await;
    let token = launch_alice(&world, ALL_PATIENT).await;
    let refresh = token["refresh_token"].as_str().expect("refresh token");
    let basic = Some(("confidential", SECRET));
    let (status, renewed) =
        token_request(&world.app, basic, &[("grant_type", "refresh_token"), ("refresh_token", refresh)]).await;
    assert_eq!(status, StatusCode::OK, "{renewed}");
    assert_eq!(renewed["scope"], token["scope"]);
    assert!(renewed["expires_in"].is_number());
    assert_eq!(renewed["refresh_token"], refresh, "renewed in place, valid for another 100 days");
    let access = renewed["access_token"].as_str().expect("token");
    assert_eq!(read(&world.app, access, &format!("/Patient/{}", world.a)).await, StatusCode::OK);
    let narrower = [("grant_type", "refresh_token"), ("refresh_token", refresh), ("scope", "patient/Patient.rs")];
    let (status, narrowed) = token_request(&world.app, basic, &narrower).await;
    assert_eq!(status, StatusCode::OK, "{narrowed}");
    assert_eq!(narrowed["scope"], "patient/Patient.rs");
    let wider = [("grant_type", "refresh_token"), ("refresh_token", refresh), ("scope", "user/*.cruds")];
    let (status, refused) = token_request(&world.app, basic, &wider).await;
    assert_eq!((status, &refused["error"]), (StatusCode::BAD_REQUEST, &json!("invalid_scope")));
    let random = uuid::Uuid::new_v4().to_string();
    let bogus = [("grant_type", "refresh_token"), ("refresh_token", random.as_str())];
    let (status, refused) = token_request(&world.app, basic, &bogus).await;
    assert_eq!((status, &refused["error"]), (StatusCode::BAD_REQUEST, &json!("invalid_grant")));
    // Each refresh is audited, refusals with their reason.
    let refreshes = world.app.audit_events("type=110114&subtype=refresh").await;
    let outcomes: Vec<(&str, &str)> = refreshes
        .iter()
        .map(|event| (event["outcome"].as_str().unwrap_or(""), event["outcomeDesc"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(outcomes.iter().filter(|(outcome, _)| *outcome == "0").count(), 2, "{outcomes:?}");
    assert!(outcomes.iter().any(|(outcome, why)| *outcome == "4" && why.starts_with("invalid_scope")), "{outcomes:?}");
    assert!(outcomes.iter().any(|(outcome, why)| *outcome == "4" && why.starts_with("invalid_grant")), "{outcomes:?}");
    assert!(refreshes.iter().all(|event| event["agent"][0]["who"]["identifier"]["value"] == "confidential"));
}

#[tokio::test]
async fn revocation_and_introspection() {
    let world = world().await;
    let token = launch_alice(&world, ALL_PATIENT).await;
    let access = token["access_token"].as_str().expect("token");
    let refresh = token["refresh_token"].as_str().expect("refresh");
    let introspect = |token: String| {
        let url = format!("{}/auth/introspect", world.app.root);
        async move {
            let response = Client::new().post(url).form(&[("token", token)]).send().await.expect("introspect");
            assert_eq!(response.status(), StatusCode::OK);
            response.json::<Value>().await.expect("json")
        }
    };
    let active = introspect(access.to_owned()).await;
    assert_eq!(active["active"], true);
    assert_eq!(active["client_id"], "confidential");
    assert_eq!(active["scope"], token["scope"]);
    assert_eq!(active["patient"], world.a);
    assert!(active["exp"].is_number());
    assert_eq!(introspect("invalid_token_value".into()).await, json!({"active": false}));

    let revoke = Client::new()
        .post(format!("{}/auth/revoke", world.app.root))
        .basic_auth("confidential", Some(SECRET))
        .form(&[("token", refresh)])
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoke.status(), StatusCode::OK);
    assert_eq!(read(&world.app, access, &format!("/Patient/{}", world.a)).await, StatusCode::UNAUTHORIZED);
    assert_eq!(introspect(access.to_owned()).await, json!({"active": false}));
    let again = [("grant_type", "refresh_token"), ("refresh_token", refresh)];
    let (status, _) = token_request(&world.app, Some(("confidential", SECRET)), &again).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // The revocation and the introspections are audited.
    let revoked = world.app.audit_events("type=110114&subtype=revoke").await;
    assert_eq!(revoked.len(), 1, "{revoked:#?}");
    assert_eq!(
        (&revoked[0]["outcome"], &revoked[0]["agent"][0]["who"]["identifier"]["value"]),
        (&json!("0"), &json!("confidential"))
    );
    assert_eq!(world.app.audit_events("type=110114&subtype=introspect").await.len(), 3);
}

#[tokio::test]
async fn bad_token_requests_get_rfc_6749_errors() {
    let world = world().await;
    let app = &world.app;
    // Four launches, four bad verifiers: none, empty, wrong, the challenge itself.
    let challenge = auth::pkce::challenge(VERIFIER);
    let wrong = "x".repeat(60);
    for verifier in [None, Some(""), Some(wrong.as_str()), Some(challenge.as_str())] {
        let mut browser = Browser::new();
        let page =
            sign_in(&mut browser, app, &authorize_url(app, "confidential", ALL_PATIENT, &app.base), "alice").await;
        let asked = as_asked(&page);
        let code = approve(&mut browser, app, &page, &asked.iter().map(String::as_str).collect::<Vec<_>>()).await;
        let (status, body) = exchange(app, &code, verifier).await;
        assert_eq!((status, &body["error"]), (StatusCode::BAD_REQUEST, &json!("invalid_grant")), "{verifier:?}");
    }
    let (status, body) = exchange(app, "BAD_CODE", Some(VERIFIER)).await;
    assert_eq!((status, &body["error"]), (StatusCode::BAD_REQUEST, &json!("invalid_grant")));
    let form = [("grant_type", "authorization_code"), ("code", "x"), ("redirect_uri", REDIRECT)];
    let (status, body) = token_request(app, Some(("BAD_CLIENT_ID", SECRET)), &form).await;
    assert_eq!((status, &body["error"]), (StatusCode::UNAUTHORIZED, &json!("invalid_client")));
    let (status, body) = token_request(app, Some(("confidential", "wrong secret")), &form).await;
    assert_eq!((status, &body["error"]), (StatusCode::UNAUTHORIZED, &json!("invalid_client")));
    let (status, body) = token_request(app, Some(("confidential", SECRET)), &[("grant_type", "password")]).await;
    assert_eq!((status, &body["error"]), (StatusCode::BAD_REQUEST, &json!("unsupported_grant_type")));
    let (status, body) = token_request(app, Some(("confidential", SECRET)), &[]).await;
    assert_eq!((status, &body["error"]), (StatusCode::BAD_REQUEST, &json!("invalid_request")));
    // A code is good once.
    let mut browser = Browser::new();
    let page = sign_in(&mut browser, app, &authorize_url(app, "confidential", ALL_PATIENT, &app.base), "alice").await;
    let asked = as_asked(&page);
    let code = approve(&mut browser, app, &page, &asked.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(exchange(app, &code, Some(VERIFIER)).await.0, StatusCode::OK);
    assert_eq!(exchange(app, &code, Some(VERIFIER)).await.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn bad_authorization_requests_never_get_a_code() {
    let world = world().await;
    let app = &world.app;
    let mut browser = Browser::new();
    let invalid_aud = authorize_url(app, "confidential", ALL_PATIENT, "https://inferno.healthit.gov/invalid_aud");
    let back = browser.follow(browser.http.get(&invalid_aud).send().await.expect("authorize"), &app.root).await.app();
    assert!(back.contains(&("error".into(), "invalid_request".into())), "{back:?}");
    assert!(!back.iter().any(|(name, _)| name == "code"));
    // The sandbox's base is another audience.
    let sandbox = authorize_url(app, "confidential", ALL_PATIENT, &format!("{}/sandbox/fhir", app.root));
    let back = browser.follow(browser.http.get(&sandbox).send().await.expect("authorize"), &app.root).await.app();
    assert!(back.contains(&("error".into(), "invalid_request".into())), "{back:?}");
    // plain PKCE is refused.
    let plain = authorize_url(app, "confidential", ALL_PATIENT, &app.base).replace("S256", "plain");
    let back = browser.follow(browser.http.get(&plain).send().await.expect("authorize"), &app.root).await.app();
    assert!(back.contains(&("error".into(), "invalid_request".into())), "{back:?}");
    // An unregistered redirect URI gets a page, never a redirect.
    let elsewhere = authorize_url(app, "confidential", ALL_PATIENT, &app.base)
        .replace("app.example%2Fcallback", "evil.example%2Fcallback");
    let response = browser.http.get(&elsewhere).send().await.expect("authorize");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().await.expect("page").contains("redirect_uri"));
    // A wrong password shows the sign-in page again, saying so without naming which was wrong.
    let response = browser.get(&authorize_url(app, "confidential", ALL_PATIENT, &app.base)).await;
    let page = browser.follow(response, &app.root).await;
    let form = [("request", handle(page.html())), ("username", "alice".into()), ("password", "wrong".into())];
    let form: Vec<(&str, &str)> = form.iter().map(|(name, value)| (*name, value.as_str())).collect();
    let response = browser.post(&format!("{}/auth/sign-in", app.root), &form).await;
    let page = browser.follow(response, &app.root).await;
    assert!(page.html().contains("the username or password is wrong"), "{}", page.html());
    assert!(browser.cookie.is_none());
    // Denying sends access_denied back.
    let page = sign_in(&mut browser, app, &authorize_url(app, "confidential", ALL_PATIENT, &app.base), "alice").await;
    let form = [("request", handle(page.html())), ("decision", "deny".to_owned())];
    let form: Vec<(&str, &str)> = form.iter().map(|(name, value)| (*name, value.as_str())).collect();
    let response = browser.post(&format!("{}/auth/consent", app.root), &form).await;
    let back = browser.follow(response, &app.root).await.app();
    assert!(back.contains(&("error".into(), "access_denied".into())), "{back:?}");
    // Basic credentials with a bad header are refused as a bad client.
    let response = Client::new()
        .post(format!("{}/auth/token", app.root))
        .header(AUTHORIZATION, "Basic !!!")
        .form(&[("grant_type", "authorization_code")])
        .send()
        .await
        .expect("token");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_ehr_launch_signs_a_practitioner_in_with_totp_by_post() {
    let world = world().await;
    let app = &world.app;
    let authenticator = app.practitioner("drhouse", "Practitioner/12").await;
    let admin = app.token(ADMIN, None);
    let encounter = json!({"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
        "subject": {"reference": format!("Patient/{}", world.a)}});
    let created = app.request(reqwest::Method::POST, "/Encounter").bearer_auth(&admin).json(&encounter).send().await;
    let encounter: Value = created.expect("create").json().await.expect("json");
    let encounter = encounter["id"].as_str().expect("id").to_owned();
    let launch = auth::launch::Launch {
        environment: "production".into(),
        patient: world.a.clone(),
        encounter: Some(encounter.clone()),
        user: None,
        expires: i64::MAX / 2,
    };
    let launch = auth::launch::create(app.store.as_ref(), &launch, "test").await.expect("launch");

    // The app posts the authorization request (authorize-post).
    let mut browser = Browser::new();
    let challenge = auth::pkce::challenge(VERIFIER);
    let form = [
        ("response_type", "code"),
        ("client_id", "confidential"),
        ("redirect_uri", REDIRECT),
        ("scope", "launch openid fhirUser offline_access user/*.rs"),
        ("state", "state-123"),
        ("aud", app.base.as_str()),
        ("launch", launch.as_str()),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let response = browser.post(&format!("{}/auth/authorize", app.root), &form).await;
    let page = browser.follow(response, &app.root).await;
    let sign_in =
        [("request", handle(page.html())), ("username", "drhouse".into()), ("password", "drhouse password 42".into())];
    let sign_in: Vec<(&str, &str)> = sign_in.iter().map(|(name, value)| (*name, value.as_str())).collect();
    let response = browser.post(&format!("{}/auth/sign-in", app.root), &sign_in).await;
    let page = browser.follow(response, &app.root).await;
    assert!(page.html().contains("name=\"otp\""), "{}", page.html());
    assert!(browser.cookie.is_none(), "no session before the second factor");
    let request = handle(page.html());
    let wrong =
        browser.post(&format!("{}/auth/second-factor", app.root), &[("request", &request), ("otp", "000000")]).await;
    let page = browser.follow(wrong, &app.root).await;
    assert!(page.html().contains("wrong or was already used"), "{}", page.html());
    let code = authenticator.code_at(time::OffsetDateTime::now_utc());
    let right =
        browser.post(&format!("{}/auth/second-factor", app.root), &[("request", &request), ("otp", &code)]).await;
    let page = browser.follow(right, &app.root).await;
    let asked = as_asked(&page);
    assert!(asked.contains(&"user/*.rs".to_owned()), "{asked:?}");
    let code = approve(&mut browser, app, &page, &asked.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let (status, token) = exchange(app, &code, Some(VERIFIER)).await;
    assert_eq!(status, StatusCode::OK, "{token}");
    assert_eq!(token["patient"], world.a);
    assert_eq!(token["encounter"], encounter);
    assert_eq!(token["need_patient_banner"], false);
    let style = token["smart_style_url"].as_str().expect("smart_style_url");
    let style = Client::new().get(style).send().await.expect("style");
    assert_eq!(style.status(), StatusCode::OK);
    assert!(style.json::<Value>().await.expect("JSON")["color_background"].is_string());
    let access = token["access_token"].as_str().expect("token");
    assert_eq!(read(app, access, &format!("/Encounter/{encounter}")).await, StatusCode::OK);
    // user/ scopes reach every patient the practitioner may see.
    assert_eq!(read(app, access, &format!("/Patient/{}", world.b)).await, StatusCode::OK);

    // An EHR launch asking only patient-level scopes (checklist §6.6), in the same browser
    // session: no sign-in again, and the launch's patient is the context.
    let scope = "launch openid fhirUser offline_access patient/Patient.rs";
    let mut form = form.to_vec();
    form.retain(|(name, _)| *name != "scope");
    form.push(("scope", scope));
    let response = browser.post(&format!("{}/auth/authorize", app.root), &form).await;
    let page = browser.follow(response, &app.root).await;
    assert!(page.html().contains("name=\"decision\""), "straight to consent: {}", page.html());
    let asked = as_asked(&page);
    let code = approve(&mut browser, app, &page, &asked.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let (status, token) = exchange(app, &code, Some(VERIFIER)).await;
    assert_eq!(status, StatusCode::OK, "{token}");
    assert_eq!((&token["scope"], &token["patient"]), (&json!(scope), &json!(world.a)));
    let access = token["access_token"].as_str().expect("token");
    assert_eq!(read(app, access, &format!("/Patient/{}", world.a)).await, StatusCode::OK);
    assert_ne!(read(app, access, &format!("/Patient/{}", world.b)).await, StatusCode::OK);

    // The sign-in, both second-factor attempts and the tokens are audited, as drhouse.
    let steps = |action: &'static str| async move {
        let events = app.audit_events(&format!("type=110114&subtype={action}&agent=user:drhouse")).await;
        events.iter().map(|event| event["outcome"].as_str().unwrap_or("").to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(steps("sign-in").await, ["0"]);
    let mut second = steps("second-factor").await;
    second.sort();
    assert_eq!(second, ["0", "4"]);
    let tokens = app.audit_events("type=110114&subtype=token&agent=client:confidential").await;
    assert_eq!(tokens.len(), 2, "{tokens:#?}");
    // The reads through those tokens name the practitioner and the patients reached.
    let reads = app.audit_events(&format!("subtype=read&patient={}&agent=client:confidential", world.b)).await;
    assert_eq!(reads.len(), 2, "one read and one refusal of B: {reads:#?}");
}

#[tokio::test]
async fn metadata_names_the_oauth_endpoints_and_browsers_may_call_the_api() {
    let world = world().await;
    let app = &world.app;
    let metadata: Value =
        Client::new().get(format!("{}/metadata", app.base)).send().await.expect("metadata").json().await.expect("json");
    let security = &metadata["rest"][0]["security"];
    assert_eq!(security["service"][0]["coding"][0]["code"], "SMART-on-FHIR");
    let oauth = &security["extension"][0];
    assert_eq!(oauth["url"], "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris");
    assert!(
        oauth["extension"]
            .as_array()
            .expect("uris")
            .contains(&json!({"url": "token", "valueUri": format!("{}/auth/token", app.root)}))
    );
    // A preflight and a cross-origin call to the FHIR API and the token endpoint.
    let preflight = Client::new()
        .request(reqwest::Method::OPTIONS, format!("{}/Patient", app.base))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .expect("preflight");
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
    let token = Client::new()
        .post(format!("{}/auth/token", app.root))
        .header("origin", "https://app.example")
        .form(&[("grant_type", "authorization_code"), ("client_id", "public"), ("code", "x")])
        .send()
        .await
        .expect("token");
    assert_eq!(token.headers()["access-control-allow-origin"], "*");
}

#[tokio::test]
async fn the_service_base_urls_are_public() {
    let app = TestApp::spawn_secured().await;
    let response = Client::new().get(format!("{}/api/service-base-urls", app.root)).send().await.expect("list");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().expect("type").starts_with("application/fhir+json"));
    let bundle: Value = response.json().await.expect("json");
    assert_eq!(bundle["resourceType"], "Bundle");
    let resources: Vec<&Value> =
        bundle["entry"].as_array().expect("entries").iter().map(|entry| &entry["resource"]).collect();
    let addresses: Vec<&str> = resources
        .iter()
        .filter(|resource| resource["resourceType"] == "Endpoint")
        .filter_map(|endpoint| endpoint["address"].as_str())
        .collect();
    assert_eq!(addresses, [app.base.clone(), format!("{}/sandbox/fhir", app.root)]);
    let organization =
        resources.iter().find(|resource| resource["resourceType"] == "Organization").expect("organization");
    assert_eq!(organization["endpoint"].as_array().expect("endpoints").len(), 2);
    assert!(organization["name"].is_string());
}

#[tokio::test]
async fn v1_scopes_are_granted_and_read_and_search() {
    let world = world().await;
    let token =
        launch_alice(&world, "launch/patient openid fhirUser patient/Patient.read patient/Observation.read").await;
    assert_eq!(token["scope"], "launch/patient openid fhirUser patient/Patient.read patient/Observation.read");
    let access = token["access_token"].as_str().expect("token");
    assert_eq!(read(&world.app, access, &format!("/Patient/{}", world.a)).await, StatusCode::OK);
    assert_eq!(read(&world.app, access, &format!("/Patient?_id={}", world.a)).await, StatusCode::OK);
    assert_eq!(read(&world.app, access, &format!("/Observation?patient={}", world.a)).await, StatusCode::OK);
    assert_eq!(read(&world.app, access, &format!("/Condition?patient={}", world.a)).await, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_idle_session_ends_and_the_user_signs_in_again() {
    // Sessions end as soon as they are idle at all: the step after signing in finds it over.
    let world = world_with(|authorization| authorization.session_idle = std::time::Duration::ZERO).await;
    let mut browser = Browser::new();
    let url = authorize_url(&world.app, "confidential", ALL_PATIENT, &world.app.base);
    let page = sign_in(&mut browser, &world.app, &url, "alice").await;
    assert!(browser.cookie.is_some(), "a session cookie was set");
    assert!(page.html().contains("name=\"password\""), "signed out again: {}", page.html());
    assert!(!page.html().contains("name=\"decision\""));
}

#[tokio::test]
async fn a_patient_revokes_an_app_on_the_connected_apps_page() {
    let world = world().await;
    let app = &world.app;
    let token = launch_alice(&world, ALL_PATIENT).await;
    let access = token["access_token"].as_str().expect("token");
    let refresh = token["refresh_token"].as_str().expect("refresh");
    let mut browser = Browser::new();
    let page = browser.get(&format!("{}/auth/apps", app.root)).await.text().await.expect("page");
    assert!(page.contains("name=\"password\""), "{page}");
    let wrong = [("username", "alice"), ("password", "nope")];
    let page = browser.post(&format!("{}/auth/apps/sign-in", app.root), &wrong).await.text().await.expect("page");
    assert!(page.contains("the username or password is wrong"), "{page}");
    let right = [("username", "alice"), ("password", "alice password 42")];
    let response = browser.post(&format!("{}/auth/apps/sign-in", app.root), &right).await;
    let page = browser.follow(response, &app.root).await;
    let html = page.html();
    assert!(html.contains("confidential") && html.contains("patient/*.rs"), "{html}");
    let grant = attribute_after(html, "name=\"grant\"").expect("a grant to revoke");
    let page = browser.post(&format!("{}/auth/apps/revoke", app.root), &[("grant", &grant)]).await;
    assert!(page.text().await.expect("page").contains("Access revoked"));
    assert_eq!(read(app, access, &format!("/Patient/{}", world.a)).await, StatusCode::UNAUTHORIZED);
    let again = [("grant_type", "refresh_token"), ("refresh_token", refresh)];
    let (status, _) = token_request(app, Some(("confidential", SECRET)), &again).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Another user's grant cannot be revoked from this session.
    let forged = browser.post(&format!("{}/auth/apps/revoke", app.root), &[("grant", "0123")]).await;
    assert_eq!(forged.status(), StatusCode::NOT_FOUND);
}

/// A client assertion (RFC 7523) for `client_id` at `token_url`, signed ES384 with `key`.
fn client_assertion(key: &jsonwebtoken::EncodingKey, kid: &str, client_id: &str, token_url: &str) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    let claims = json!({"iss": client_id, "sub": client_id, "aud": token_url, "exp": now + 240,
        "jti": uuid::Uuid::new_v4().to_string()});
    signed_assertion(key, kid, &claims)
}

#[tokio::test]
async fn an_asymmetric_client_authenticates_with_private_key_jwt() {
    let world = world().await;
    let app = &world.app;
    let (jwk, signing) = es384_key("k1");
    let client = NewClient {
        client_id: "asymmetric".into(),
        client_type: ClientType::ConfidentialAsymmetric,
        environment: "production".into(),
        secret: None,
        jwks: Some(json!({"keys": [jwk]})),
        jwks_url: None,
        redirect_uris: vec![REDIRECT.into()],
        launch_uris: Vec::new(),
        scopes: ALL_PATIENT.into(),
    };
    auth::client::register(app.store.as_ref(), client, "test").await.expect("register");
    let mut browser = Browser::new();
    let page = sign_in(&mut browser, app, &authorize_url(app, "asymmetric", ALL_PATIENT, &app.base), "alice").await;
    let asked = as_asked(&page);
    let code = approve(&mut browser, app, &page, &asked.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let token_url = format!("{}/auth/token", app.root);
    let assertion = client_assertion(&signing, "k1", "asymmetric", &token_url);
    let assertion_type = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
        ("client_assertion_type", assertion_type),
        ("client_assertion", assertion.as_str()),
    ];
    let (status, token) = token_request(app, None, &form).await;
    assert_eq!(status, StatusCode::OK, "{token}");
    assert_eq!(token["patient"], world.a);
    verify_id_token(app, &token, "asymmetric").await;
    // The same assertion again is a replay.
    let refresh = token["refresh_token"].as_str().expect("refresh token");
    let replayed = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh),
        ("client_assertion_type", assertion_type),
        ("client_assertion", assertion.as_str()),
    ];
    let (status, body) = token_request(app, None, &replayed).await;
    assert_eq!((status, &body["error"]), (StatusCode::UNAUTHORIZED, &json!("invalid_client")), "{body}");
    assert!(body["error_description"].as_str().expect("description").contains("jti was already used"));
    let fresh = client_assertion(&signing, "k1", "asymmetric", &token_url);
    let renewed = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh),
        ("client_assertion_type", assertion_type),
        ("client_assertion", fresh.as_str()),
    ];
    let (status, body) = token_request(app, None, &renewed).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // An assertion for another audience, or signed by an unknown key, is refused.
    let elsewhere = client_assertion(&signing, "k1", "asymmetric", "https://elsewhere.example/token");
    let wrong = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh),
        ("client_assertion_type", assertion_type),
        ("client_assertion", elsewhere.as_str()),
    ];
    let (status, body) = token_request(app, None, &wrong).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let unknown = client_assertion(&signing, "k2", "asymmetric", &token_url);
    let wrong = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh),
        ("client_assertion_type", assertion_type),
        ("client_assertion", unknown.as_str()),
    ];
    let (status, _) = token_request(app, None, &wrong).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// An ES384 key pair: its public JWK (`kid`) and the key jsonwebtoken signs with.
fn es384_key(kid: &str) -> (Value, jsonwebtoken::EncodingKey) {
    use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    use base64::Engine;
    let pair = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING).expect("a P-384 key");
    let point = pair.public_key().as_ref().to_vec();
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let jwk = json!({"kty": "EC", "crv": "P-384", "alg": "ES384", "kid": kid, "x": b64(&point[1..49]), "y": b64(&point[49..97])});
    (jwk, jsonwebtoken::EncodingKey::from_ec_der(pair.to_pkcs8v1().expect("PKCS#8").as_ref()))
}

/// An ES384 assertion with `claims`, signed by `key` under `kid`.
fn signed_assertion(key: &jsonwebtoken::EncodingKey, kid: &str, claims: &Value) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES384);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, key).expect("sign")
}

#[tokio::test]
async fn backend_services_get_system_tokens_with_client_credentials() {
    let world = world().await;
    let app = &world.app;
    let (jwk, key) = es384_key("backend-1");
    let client = NewClient {
        client_id: "backend".into(),
        client_type: ClientType::ConfidentialAsymmetric,
        environment: "production".into(),
        secret: None,
        jwks: Some(json!({"keys": [jwk]})),
        jwks_url: None,
        redirect_uris: Vec::new(),
        launch_uris: Vec::new(),
        scopes: "system/*.rs".into(),
    };
    auth::client::register(app.store.as_ref(), client, "test").await.expect("register");
    let token_url = format!("{}/auth/token", app.root);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
    let claims = |change: &dyn Fn(&mut Value)| {
        let mut claims = json!({"iss": "backend", "sub": "backend", "aud": token_url, "exp": now + 240,
            "jti": uuid::Uuid::new_v4().to_string()});
        change(&mut claims);
        claims
    };
    let request = |assertion: String, grant_type: &'static str, scope: &'static str| async move {
        let form = [
            ("grant_type", grant_type),
            ("scope", scope),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", assertion.as_str()),
        ];
        token_request(app, None, &form).await
    };
    let good = signed_assertion(&key, "backend-1", &claims(&|_| {}));
    let (status, token) =
        request(good.clone(), "client_credentials", "system/Patient.rs system/Observation.read").await;
    assert_eq!(status, StatusCode::OK, "{token}");
    assert_eq!(token["scope"], "system/Patient.rs system/Observation.read");
    assert_eq!(token["expires_in"], 300);
    assert!(token.get("refresh_token").is_none());
    let access = token["access_token"].as_str().expect("token");
    assert_eq!(read(app, access, &format!("/Patient/{}", world.b)).await, StatusCode::OK);
    assert_eq!(read(app, access, "/Condition").await, StatusCode::FORBIDDEN);

    let (_, other_key) = es384_key("backend-1");
    let refusals = [
        (good, "client_credentials", "system/Patient.rs", StatusCode::UNAUTHORIZED, "jti was already used"),
        (
            signed_assertion(&key, "backend-1", &claims(&|c| c["exp"] = json!(now - 600))),
            "client_credentials",
            "system/Patient.rs",
            StatusCode::UNAUTHORIZED,
            "expired",
        ),
        (
            signed_assertion(&key, "backend-1", &claims(&|c| c["aud"] = json!("https://elsewhere.example/token"))),
            "client_credentials",
            "system/Patient.rs",
            StatusCode::UNAUTHORIZED,
            "aud",
        ),
        (
            signed_assertion(&key, "backend-2", &claims(&|_| {})),
            "client_credentials",
            "system/Patient.rs",
            StatusCode::UNAUTHORIZED,
            "kid",
        ),
        (
            signed_assertion(&other_key, "backend-1", &claims(&|_| {})),
            "client_credentials",
            "system/Patient.rs",
            StatusCode::UNAUTHORIZED,
            "signature",
        ),
        (
            signed_assertion(&key, "backend-1", &claims(&|_| {})),
            "client_credentials",
            "system/*.cruds",
            StatusCode::BAD_REQUEST,
            "not allowed",
        ),
        (
            signed_assertion(&key, "backend-1", &claims(&|_| {})),
            "client_credentials",
            "patient/Patient.rs",
            StatusCode::BAD_REQUEST,
            "system/ scopes only",
        ),
        (
            signed_assertion(&key, "backend-1", &claims(&|_| {})),
            "password",
            "system/Patient.rs",
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
        ),
    ];
    for (assertion, grant_type, scope, status, says) in refusals {
        let (got, body) = request(assertion, grant_type, scope).await;
        assert_eq!(got, status, "{says}: {body}");
        assert!(body.to_string().contains(says), "{says}: {body}");
    }
    // A client with a secret cannot use client_credentials.
    let form = [("grant_type", "client_credentials"), ("scope", "system/Patient.rs")];
    let (status, body) = token_request(app, Some(("confidential", SECRET)), &form).await;
    assert_eq!((status, &body["error"]), (StatusCode::BAD_REQUEST, &json!("unauthorized_client")));
}

#[tokio::test]
async fn a_practitioner_finds_the_patient_by_name_in_a_standalone_launch() {
    let world = world().await;
    let app = &world.app;
    let authenticator = app.practitioner("drpick", "Practitioner/3").await;
    let mut browser = Browser::new();
    let scope = "launch/patient openid fhirUser user/Patient.rs";
    let page = sign_in(&mut browser, app, &authorize_url(app, "confidential", scope, &app.base), "drpick").await;
    let request = handle(page.html());
    let code = authenticator.code_at(time::OffsetDateTime::now_utc());
    let verified =
        browser.post(&format!("{}/auth/second-factor", app.root), &[("request", &request), ("otp", &code)]).await;
    let page = browser.follow(verified, &app.root).await;
    let html = page.html();
    assert!(html.contains("name=\"name\"") && html.contains(&world.a) && html.contains(&world.b), "{html}");
    let query = serde_urlencoded::to_string([("request", request.as_str()), ("name", "Beta")]).expect("query");
    let found = browser.get(&format!("{}/auth/flow?{query}", app.root)).await;
    let html = found.text().await.expect("page");
    assert!(
        html.contains(&format!("value=\"{}\"", world.b)) && !html.contains(&format!("value=\"{}\"", world.a)),
        "{html}"
    );
    let none = serde_urlencoded::to_string([("request", request.as_str()), ("name", "Nobody")]).expect("query");
    let html = browser.get(&format!("{}/auth/flow?{none}", app.root)).await.text().await.expect("page");
    assert!(html.contains("No patient matches"), "{html}");
    let picked =
        browser.post(&format!("{}/auth/patient", app.root), &[("request", &request), ("patient", &world.b)]).await;
    let page = browser.follow(picked, &app.root).await;
    let asked = as_asked(&page);
    let code = approve(&mut browser, app, &page, &asked.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let (status, token) = exchange(app, &code, Some(VERIFIER)).await;
    assert_eq!(status, StatusCode::OK, "{token}");
    assert_eq!(token["patient"], world.b);
}
