//! Devices calling production over mutual TLS: the certificate must chain to an approved CA,
//! be valid, carry the client-auth usage and not be revoked, and be the one the Device JWT is
//! bound to; each refusal says which check failed. The sandbox takes self-signed certificates.

use access::certificate::DeviceCertificate;
use access::credential::DeviceCredentials;
use access::device::{self, CertificateSource, NewDevice};
use access::request::{self, Action, Item};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason, RevokedCertParams, SerialNumber,
};
use reqwest::StatusCode;
use serde_json::Value;
use store::Environment;
use time::{Duration, OffsetDateTime};

use crate::support::{MtlsServer, TestApp, status_and_json};

/// A test CA.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let pem = params.self_signed(&key).expect("CA").pem();
    Ca { issuer: Issuer::new(params, key), pem }
}

/// A client certificate and its key, PEM: signed by `ca` (self-signed without), with these
/// extended key usages, expiring at `not_after`, with serial `serial`.
struct Leaf {
    usages: Vec<ExtendedKeyUsagePurpose>,
    not_after: OffsetDateTime,
    serial: u64,
}

impl Leaf {
    fn client(serial: u64) -> Leaf {
        Leaf {
            usages: vec![ExtendedKeyUsagePurpose::ClientAuth],
            not_after: OffsetDateTime::now_utc() + Duration::days(30),
            serial,
        }
    }

    fn make(self, ca: Option<&Ca>) -> (String, String) {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, format!("device {}", self.serial));
        params.extended_key_usages = self.usages;
        params.not_before = OffsetDateTime::now_utc() - Duration::days(60);
        params.not_after = self.not_after;
        params.serial_number = Some(SerialNumber::from(self.serial));
        let certificate = match ca {
            Some(ca) => params.signed_by(&key, &ca.issuer),
            None => params.self_signed(&key),
        };
        (certificate.expect("certificate").pem(), key.serialize_pem())
    }
}

/// The world of one test: a secured server, its mutual-TLS listener, an approved CA in the
/// trust folder, an account certified for production.
struct World {
    app: TestApp,
    mtls: MtlsServer,
    server_certificate: String,
    approved: Ca,
    account: String,
    credentials: DeviceCredentials,
    folder: tempfile::TempDir,
}

impl World {
    async fn new() -> World {
        let app = TestApp::spawn_secured().await;
        let folder = tempfile::tempdir().expect("folder");
        let (anchors, crls) = (folder.path().join("anchors"), folder.path().join("crls"));
        std::fs::create_dir_all(&anchors).expect("anchors");
        std::fs::create_dir_all(&crls).expect("crls");
        let approved = ca("Approved CA");
        std::fs::write(anchors.join("approved.pem"), &approved.pem).expect("write CA");
        let server_key = KeyPair::generate().expect("key");
        let server = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .expect("params")
            .self_signed(&server_key)
            .expect("sign");
        let (cert, key) = (folder.path().join("server.pem"), folder.path().join("server.key"));
        std::fs::write(&cert, server.pem()).expect("write");
        std::fs::write(&key, server_key.serialize_pem()).expect("write");
        let mtls = app.serve_mtls((&cert, &key), &anchors, &crls).await;

        let account = certified_account(app.store.as_ref(), "127.0.0.1/32", None).await;
        let secret = app.secret.as_ref().expect("secret");
        let credentials = DeviceCredentials::load_or_create(app.store.as_ref(), secret).await.expect("credentials");
        World { server_certificate: server.pem(), app, mtls, approved, account, credentials, folder }
    }

    /// A device of `environment` presenting `certificate`, and its Device JWT.
    async fn device(&self, environment: Environment, certificate: &str) -> String {
        self.device_of(&self.account, environment, certificate).await
    }

    /// [`World::device`] of the account `account`.
    async fn device_of(&self, account: &str, environment: Environment, certificate: &str) -> String {
        let store = self.app.store.as_ref();
        let new = NewDevice {
            account: account.to_owned(),
            name: "lab interface".to_owned(),
            purpose: String::new(),
            environment,
            scope: None,
            certificate: Some((
                DeviceCertificate::from_pem(certificate).expect("certificate"),
                CertificateSource::Presented,
            )),
        };
        let device = device::create(store, new, "test").await.expect("device");
        self.credentials.issue(store, &device.id, "test").await.expect("credential")
    }

    /// A client of the mutual-TLS listener presenting `identity` (certificate, key).
    fn client(&self, identity: &(String, String)) -> reqwest::Client {
        let pem = format!("{}{}", identity.0, identity.1);
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(self.server_certificate.as_bytes()).expect("root"))
            .identity(reqwest::Identity::from_pem(pem.as_bytes()).expect("identity"))
            .build()
            .expect("client")
    }

    /// `GET {base}/Patient` over mutual TLS presenting `identity` with the bearer `jwt`.
    async fn call(&self, base: &str, identity: &(String, String), jwt: &str) -> (StatusCode, Value) {
        let response = self
            .client(identity)
            .get(format!("{}{base}/Patient?_count=1", self.mtls.root))
            .bearer_auth(jwt)
            .send()
            .await
            .expect("send");
        status_and_json(response).await
    }

    fn crl_folder(&self) -> std::path::PathBuf {
        self.folder.path().join("crls")
    }
}

/// An account whose access request, with network paths `network`, is approved.
async fn certified_account(store: &dyn store::Store, network: &str, grace_days: Option<u32>) -> String {
    let account = access::account::create_with_grace(store, "Acme Labs", Vec::new(), grace_days, "test")
        .await
        .expect("account")
        .id;
    approve(store, &account, network).await;
    account
}

/// Approves an access request of `account` with network paths `network`.
async fn approve(store: &dyn store::Store, account: &str, network: &str) {
    let draft = request::create(store, account, "test").await.expect("request").id;
    for action in [Action::Submit, Action::Review] {
        request::transition(store, &draft, action, None, "test").await.expect("transition");
    }
    for item in Item::ALL {
        let value = if item == Item::Network { network } else { "done" };
        request::record(store, &draft, item, value, "test").await.expect("checklist");
    }
    request::transition(store, &draft, Action::Approve, None, "test").await.expect("approve");
}

fn diagnostics(outcome: &Value) -> String {
    outcome["issue"][0]["diagnostics"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_device_calls_production_with_its_certificate_and_jwt() {
    let world = World::new().await;
    let identity = Leaf::client(1).make(Some(&world.approved));
    let jwt = world.device(Environment::Production, &identity.0).await;
    let (status, bundle) = world.call("/fhir", &identity, &jwt).await;
    assert_eq!(status, StatusCode::OK, "{bundle}");
    assert_eq!(bundle["resourceType"], "Bundle");

    // The same JWT with another valid certificate of the approved CA.
    let other = Leaf::client(2).make(Some(&world.approved));
    let (status, outcome) = world.call("/fhir", &other, &jwt).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(diagnostics(&outcome).contains("not the one the Device JWT is bound to"), "{outcome}");
}

#[tokio::test]
async fn production_refuses_each_bad_certificate_with_its_reason() {
    let world = World::new().await;
    let unapproved = ca("Unapproved CA");
    let now = OffsetDateTime::now_utc();
    let cases: Vec<(&str, (String, String), &str)> = vec![
        ("self-signed", Leaf::client(10).make(None), "self-signed client certificates are refused in production"),
        ("unapproved CA", Leaf::client(11).make(Some(&unapproved)), "does not chain to an approved CA"),
        (
            "expired",
            Leaf { not_after: now - Duration::days(1), ..Leaf::client(12) }.make(Some(&world.approved)),
            "has expired",
        ),
        (
            "server-auth only",
            Leaf { usages: vec![ExtendedKeyUsagePurpose::ServerAuth], ..Leaf::client(13) }.make(Some(&world.approved)),
            "client-auth extended key usage",
        ),
        (
            "no extended key usage",
            Leaf { usages: Vec::new(), ..Leaf::client(14) }.make(Some(&world.approved)),
            "client-auth extended key usage",
        ),
    ];
    for (name, identity, reason) in cases {
        let jwt = world.device(Environment::Production, &identity.0).await;
        let (status, outcome) = world.call("/fhir", &identity, &jwt).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}: {outcome}");
        assert_eq!(outcome["resourceType"], "OperationOutcome", "{name}");
        assert!(diagnostics(&outcome).contains(reason), "{name}: {outcome}");
        assert!(!diagnostics(&outcome).contains(&jwt), "{name}: the refusal does not echo the JWT");
    }
}

#[tokio::test]
async fn a_revoked_certificate_is_refused_once_its_crl_is_in_the_folder() {
    let world = World::new().await;
    let identity = Leaf::client(20).make(Some(&world.approved));
    let jwt = world.device(Environment::Production, &identity.0).await;
    assert_eq!(world.call("/fhir", &identity, &jwt).await.0, StatusCode::OK);

    let now = OffsetDateTime::now_utc();
    let crl = CertificateRevocationListParams {
        this_update: now - Duration::minutes(1),
        next_update: now + Duration::days(1),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: vec![RevokedCertParams {
            serial_number: SerialNumber::from(20u64),
            revocation_time: now - Duration::minutes(1),
            reason_code: Some(RevocationReason::KeyCompromise),
            invalidity_date: None,
        }],
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&world.approved.issuer)
    .expect("CRL");
    std::fs::write(world.crl_folder().join("approved.crl.pem"), crl.pem().expect("pem")).expect("write CRL");
    world.mtls.trust.refresh().await.expect("refresh");

    let (status, outcome) = world.call("/fhir", &identity, &jwt).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(diagnostics(&outcome).contains("revoked"), "{outcome}");
    let unrevoked = Leaf::client(21).make(Some(&world.approved));
    let jwt = world.device(Environment::Production, &unrevoked.0).await;
    assert_eq!(world.call("/fhir", &unrevoked, &jwt).await.0, StatusCode::OK);
}

#[tokio::test]
async fn the_sandbox_takes_self_signed_certificates_and_production_the_platform_ca() {
    let world = World::new().await;
    let self_signed = Leaf::client(30).make(None);
    let jwt = world.device(Environment::Sandbox, &self_signed.0).await;
    let (status, bundle) = world.call("/sandbox/fhir", &self_signed, &jwt).await;
    assert_eq!(status, StatusCode::OK, "{bundle}");

    // A device's CSR signed by the platform CA, made while the server runs.
    let store = world.app.store.as_ref();
    let secret = world.app.secret.as_ref().expect("secret");
    access::ca::init(store, secret, "test").await.expect("platform CA");
    world.mtls.trust.refresh().await.expect("refresh");
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, "csr device");
    let csr = params.serialize_request(&key).expect("csr").pem().expect("pem");
    let signed = access::ca::sign_csr(store, secret, &csr).await.expect("signed");
    let identity = (signed.pem.clone(), key.serialize_pem());
    let jwt = world.device(Environment::Production, &signed.pem).await;
    let (status, bundle) = world.call("/fhir", &identity, &jwt).await;
    assert_eq!(status, StatusCode::OK, "{bundle}");
}

#[tokio::test]
async fn production_is_open_only_from_the_approved_network_paths_of_a_certified_account() {
    let world = World::new().await;
    let store = world.app.store.as_ref();
    let elsewhere = certified_account(store, "203.0.113.0/24", None).await;
    let identity = Leaf::client(40).make(Some(&world.approved));
    let jwt = world.device_of(&elsewhere, Environment::Production, &identity.0).await;
    let (status, outcome) = world.call("/fhir", &identity, &jwt).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(diagnostics(&outcome).contains("approved network paths"), "{outcome}");

    // A material change with no grace period closes production until the next review.
    let strict =
        access::account::create_with_grace(store, "Strict", Vec::new(), Some(0), "test").await.expect("account").id;
    let first = Leaf::client(41).make(Some(&world.approved));
    let device = production_device(store, &strict, &first.0).await;
    approve(store, &strict, "127.0.0.1/32").await;
    let jwt = world.credentials.issue(store, &device, "test").await.expect("a credential while certified");
    let another_issuer = Leaf::client(42).make(Some(&ca("Another CA")));
    production_device(store, &strict, &another_issuer.0).await;
    let (status, outcome) = world.call("/fhir", &first, &jwt).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{outcome}");
    assert!(diagnostics(&outcome).contains("re-certified after a material change"), "{outcome}");
}

/// A production device of `account` presenting `certificate`; its id.
async fn production_device(store: &dyn store::Store, account: &str, certificate: &str) -> String {
    let new = NewDevice {
        account: account.to_owned(),
        name: "device".to_owned(),
        purpose: String::new(),
        environment: Environment::Production,
        scope: None,
        certificate: Some((
            DeviceCertificate::from_pem(certificate).expect("certificate"),
            CertificateSource::Presented,
        )),
    };
    device::create(store, new, "test").await.expect("device").id
}

#[tokio::test]
async fn a_device_gets_certificate_bound_access_tokens_over_mutual_tls() {
    let world = World::new().await;
    let identity = Leaf::client(50).make(Some(&world.approved));
    let device = production_device(world.app.store.as_ref(), &world.account, &identity.0).await;
    let token_url = format!("{}/auth/token", world.mtls.root);
    let ask = |identity: &(String, String), scope: &str| {
        let form = [("grant_type", "client_credentials"), ("client_id", device.as_str()), ("scope", scope)];
        world.client(identity).post(&token_url).form(&form).send()
    };
    let (status, issued) = status_and_json(ask(&identity, "system/Patient.rs").await.expect("send")).await;
    assert_eq!(status, StatusCode::OK, "{issued}");
    assert_eq!((issued["token_type"].as_str(), issued["expires_in"].as_i64()), (Some("Bearer"), Some(300)));
    let token = issued["access_token"].as_str().expect("a token");
    let (status, bundle) = world.call("/fhir", &identity, token).await;
    assert_eq!(status, StatusCode::OK, "{bundle}");

    // Another valid certificate: neither the token endpoint nor the FHIR API takes it.
    let other = Leaf::client(51).make(Some(&world.approved));
    let (status, outcome) = world.call("/fhir", &other, token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(diagnostics(&outcome).contains("bound to a client certificate"), "{outcome}");
    let (status, refused) = status_and_json(ask(&other, "system/Patient.rs").await.expect("send")).await;
    assert_eq!((status, refused["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")), "{refused}");

    // Scopes beyond the device's.
    let (status, refused) = status_and_json(ask(&identity, "system/Patient.cruds").await.expect("send")).await;
    assert_eq!((status, refused["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_scope")), "{refused}");

    // The account suspended (by another process, as it were): no new token, and the token it
    // holds is refused once what the server read of the device is a second old.
    access::monitoring::suspend(world.app.store.as_ref(), &world.account, "abuse report 3", "operator")
        .await
        .expect("suspend");
    let (status, refused) = status_and_json(ask(&identity, "system/Patient.rs").await.expect("send")).await;
    assert_eq!(refused["error"].as_str(), Some("unauthorized_client"), "{status} {refused}");
    assert!(refused["error_description"].as_str().unwrap_or("").contains("abuse report 3"), "{refused}");
    let started = std::time::Instant::now();
    loop {
        let (status, outcome) = world.call("/fhir", &identity, token).await;
        if status == StatusCode::FORBIDDEN {
            assert!(diagnostics(&outcome).contains("the account is suspended: abuse report 3"), "{outcome}");
            break;
        }
        assert_eq!(status, StatusCode::OK, "{outcome}");
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "the token was never refused");
    }
}

#[tokio::test]
async fn a_device_authenticates_with_an_assertion_signed_by_its_certificate_key() {
    let world = World::new().await;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("P-384 key");
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, "p384 device");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let certificate = params.signed_by(&key, &world.approved.issuer).expect("certificate");
    let identity = (certificate.pem(), key.serialize_pem());
    let device = production_device(world.app.store.as_ref(), &world.account, &identity.0).await;
    let token_url = format!("{}/auth/token", world.mtls.root);
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let claims = serde_json::json!({
        "iss": device, "sub": device, "aud": token_url, "exp": now + 60, "jti": uuid::Uuid::new_v4().to_string(),
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES384);
    header.kid = Some(access::certificate::thumbprint(certificate.der()));
    let signing = jsonwebtoken::EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).expect("signing key");
    let assertion = jsonwebtoken::encode(&header, &claims, &signing).expect("assertion");
    let form = [
        ("grant_type", "client_credentials"),
        ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
        ("client_assertion", assertion.as_str()),
        ("scope", "system/Patient.rs"),
    ];
    let post = || world.client(&identity).post(&token_url).form(&form).send();
    let (status, issued) = status_and_json(post().await.expect("send")).await;
    assert_eq!(status, StatusCode::OK, "{issued}");
    let (status, bundle) = world.call("/fhir", &identity, issued["access_token"].as_str().expect("token")).await;
    assert_eq!(status, StatusCode::OK, "{bundle}");
    let (status, refused) = status_and_json(post().await.expect("send")).await;
    assert_eq!((status, refused["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")));
    assert!(refused["error_description"].as_str().unwrap_or_default().contains("jti"), "{refused}");
}
