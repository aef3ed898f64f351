//! Assertions signed here with fresh RS384 and ES384 keys: the accepted case, each refusal,
//! and the JWKS cache against a fake fetcher that counts its calls.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_SHA384, RsaKeyPair};
use serde_json::json;

use super::*;

const ENDPOINT: &str = "https://ignis.example/auth/token";
const CLIENT: &str = "backend-app";
const JWKS_URL: &str = "https://app.example/jwks.json";
const NOW: i64 = 1_700_000_000;

fn now() -> OffsetDateTime {
    from_seconds(NOW)
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Signs bytes with a test key.
type Signer = Box<dyn Fn(&[u8]) -> Vec<u8> + Send + Sync>;

/// Tells whether a refusal is the one expected.
type Expected = fn(&AssertionError) -> bool;

/// A signing key and its public JWK.
struct TestKey {
    sign: Signer,
    jwk: Value,
}

fn rsa_key(kid: &str) -> TestKey {
    let pair = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let public = pair.public_key();
    let jwk = json!({
        "kty": "RSA", "alg": "RS384", "use": "sig", "kid": kid,
        "n": b64(public.modulus().big_endian_without_leading_zero()),
        "e": b64(public.exponent().big_endian_without_leading_zero()),
    });
    let sign = move |message: &[u8]| {
        let mut signature = vec![0; pair.public_modulus_len()];
        pair.sign(&RSA_PKCS1_SHA384, &SystemRandom::new(), message, &mut signature).unwrap();
        signature
    };
    TestKey { sign: Box::new(sign), jwk }
}

fn ec_key(kid: &str) -> TestKey {
    let pair = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING).unwrap();
    let point = pair.public_key().as_ref().to_vec(); // 0x04 ‖ x ‖ y
    let jwk = json!({
        "kty": "EC", "crv": "P-384", "alg": "ES384", "use": "sig", "key_ops": ["verify"], "kid": kid,
        "x": b64(&point[1..49]), "y": b64(&point[49..97]),
    });
    let sign = move |message: &[u8]| pair.sign(&SystemRandom::new(), message).unwrap().as_ref().to_vec();
    TestKey { sign: Box::new(sign), jwk }
}

/// The keys, generated once for every test.
fn rsa() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| rsa_key("rsa-1"))
}

fn ec() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| ec_key("ec-1"))
}

fn jwks(keys: &[&TestKey]) -> Value {
    json!({ "keys": keys.iter().map(|key| key.jwk.clone()).collect::<Vec<_>>() })
}

/// A compact JWS of `header` and `claims`, signed by `key`.
fn signed(header: &Value, claims: &Value, key: &TestKey) -> String {
    let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
    let signature = (key.sign)(input.as_bytes());
    format!("{input}.{}", b64(&signature))
}

fn header(alg: &str, kid: &str) -> Value {
    json!({ "alg": alg, "kid": kid, "typ": "JWT" })
}

fn claims(jti: &str) -> Value {
    json!({ "iss": CLIENT, "sub": CLIENT, "aud": ENDPOINT, "exp": NOW + 240, "jti": jti })
}

fn client(jwks: Option<Value>, jwks_url: Option<&str>) -> Client {
    Client {
        client_id: CLIENT.into(),
        client_type: ClientType::ConfidentialAsymmetric,
        environment: "production".into(),
        secret_hash: None,
        jwks,
        jwks_url: jwks_url.map(str::to_owned),
        redirect_uris: Vec::new(),
        launch_uris: Vec::new(),
        scopes: "system/*.rs".into(),
    }
}

/// An in-memory expiring list, as the store keeps them.
#[derive(Default)]
struct Lists(Mutex<HashMap<(String, String), OffsetDateTime>>);

#[async_trait]
impl Expiring for Lists {
    async fn remember(
        &self,
        list: &str,
        key: &str,
        expires: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<bool, store::Error> {
        let mut entries = self.0.lock().unwrap();
        let entry = (list.to_owned(), key.to_owned());
        if entries.get(&entry).is_some_and(|until| *until > now) {
            return Ok(false);
        }
        entries.insert(entry, expires);
        Ok(true)
    }

    async fn remembered(&self, list: &str, key: &str, now: OffsetDateTime) -> Result<bool, store::Error> {
        let entries = self.0.lock().unwrap();
        Ok(entries.get(&(list.to_owned(), key.to_owned())).is_some_and(|until| *until > now))
    }

    async fn listed(&self, list: &str, now: OffsetDateTime) -> Result<Vec<(String, OffsetDateTime)>, store::Error> {
        let entries = self.0.lock().unwrap();
        let live = entries.iter().filter(|((name, _), until)| name == list && **until > now);
        Ok(live.map(|((_, key), until)| (key.clone(), *until)).collect())
    }

    async fn purge_expired(&self, _now: OffsetDateTime, _limit: usize) -> Result<u64, store::Error> {
        Ok(0)
    }
}

/// A fetcher serving one JWKS with a `Cache-Control` header, counting its calls.
struct FakeFetcher {
    jwks: Mutex<Value>,
    cache_control: Option<&'static str>,
    calls: AtomicUsize,
}

impl FakeFetcher {
    fn new(jwks: Value, cache_control: Option<&'static str>) -> Arc<FakeFetcher> {
        Arc::new(FakeFetcher { jwks: Mutex::new(jwks), cache_control, calls: AtomicUsize::new(0) })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl JwksFetcher for FakeFetcher {
    async fn fetch(&self, url: &str) -> Result<FetchedJwks, String> {
        assert_eq!(url, JWKS_URL);
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(FetchedJwks { jwks: self.jwks.lock().unwrap().clone(), max_age: cache_lifetime(self.cache_control) })
    }
}

/// A cache whose fetcher must never be called (clients with inline keys).
fn no_fetching() -> JwksCache {
    JwksCache::new(FakeFetcher::new(json!({"keys": []}), None))
}

async fn check(assertion: &str, client: &Client, lists: &Lists, at: i64) -> Result<VerifiedAssertion, AssertionError> {
    verify(assertion, client, ENDPOINT, &no_fetching(), lists, from_seconds(at)).await
}

#[tokio::test]
async fn rs384_and_es384_assertions_are_accepted() {
    let lists = Lists::default();
    let inline = client(Some(jwks(&[rsa(), ec()])), None);
    let rs = signed(&header("RS384", "rsa-1"), &claims("one"), rsa());
    let accepted = check(&rs, &inline, &lists, NOW).await.unwrap();
    assert_eq!(
        accepted,
        VerifiedAssertion {
            client_id: CLIENT.into(),
            jti: "one".into(),
            expires_at: NOW + 240,
            key_id: "rsa-1".into()
        }
    );
    assert!(lists.remembered(JTI_LIST, &format!("{CLIENT} one"), now()).await.unwrap());
    // ES384, by URL; no typ; the audience in an array; a fractional exp.
    let fetcher = FakeFetcher::new(jwks(&[ec()]), Some("max-age=600"));
    let keys = JwksCache::new(fetcher.clone());
    let mut es_claims = claims("two");
    es_claims["aud"] = json!(["https://other.example", ENDPOINT]);
    es_claims["exp"] = json!(NOW as f64 + 100.5);
    let es = signed(&json!({"alg": "ES384", "kid": "ec-1"}), &es_claims, ec());
    let by_url = client(None, Some(JWKS_URL));
    let accepted = verify(&es, &by_url, ENDPOINT, &keys, &lists, now()).await.unwrap();
    assert_eq!((accepted.key_id.as_str(), accepted.expires_at), ("ec-1", NOW + 100));
    assert_eq!(fetcher.calls(), 1);
    assert_eq!(claimed_client_id(&es).unwrap(), CLIENT);
}

#[tokio::test]
async fn algorithms_other_than_rs384_and_es384_are_refused() {
    let lists = Lists::default();
    let inline = client(Some(jwks(&[rsa(), ec()])), None);
    let body = b64(claims("alg").to_string().as_bytes());
    // `none`, with and without a signature part.
    let none = b64(json!({"alg": "none", "kid": "rsa-1"}).to_string().as_bytes());
    for assertion in [format!("{none}.{body}."), format!("{none}.{body}.AAAA")] {
        assert!(matches!(check(&assertion, &inline, &lists, NOW).await, Err(AssertionError::Algorithm)));
    }
    // HS256 keyed with the RSA modulus (the algorithm-confusion attack), RS256, PS384, no alg.
    for alg in [Some("HS256"), Some("HS384"), Some("RS256"), Some("PS384"), Some("ES256"), None] {
        let head = json!({"alg": alg, "kid": "rsa-1"});
        let assertion = signed(&head, &claims("alg"), rsa());
        let refused = check(&assertion, &inline, &lists, NOW).await;
        assert!(matches!(refused, Err(AssertionError::Algorithm)), "{alg:?}: {refused:?}");
    }
    // A key of the other family than the alg names.
    let assertion = signed(&header("ES384", "rsa-1"), &claims("alg"), rsa());
    assert!(matches!(check(&assertion, &inline, &lists, NOW).await, Err(AssertionError::KeyUnusable(_))));
    assert!(
        !lists.remembered(JTI_LIST, &format!("{CLIENT} alg"), now()).await.unwrap(),
        "a refused assertion uses no jti"
    );
    let message = AssertionError::Algorithm.to_string();
    assert!(message.contains("alg") && message.contains("RS384"), "{message}");
}

#[tokio::test]
async fn each_header_and_key_check_refuses() {
    let lists = Lists::default();
    let inline = client(Some(jwks(&[rsa()])), None);
    let no_kid = signed(&json!({"alg": "RS384"}), &claims("h"), rsa());
    assert!(matches!(check(&no_kid, &inline, &lists, NOW).await, Err(AssertionError::MissingKid)));
    let unknown = signed(&header("RS384", "nope"), &claims("h"), rsa());
    assert!(matches!(check(&unknown, &inline, &lists, NOW).await, Err(AssertionError::UnknownKid)));
    let typ = signed(&json!({"alg": "RS384", "kid": "rsa-1", "typ": "at+jwt"}), &claims("h"), rsa());
    assert!(matches!(check(&typ, &inline, &lists, NOW).await, Err(AssertionError::Type)));
    let crit = signed(&json!({"alg": "RS384", "kid": "rsa-1", "crit": ["exp"]}), &claims("h"), rsa());
    assert!(matches!(check(&crit, &inline, &lists, NOW).await, Err(AssertionError::Critical)));
    // Signed by another key that claims the registered kid.
    let impostor = rsa_key("rsa-1");
    let forged = signed(&header("RS384", "rsa-1"), &claims("h"), &impostor);
    assert!(matches!(check(&forged, &inline, &lists, NOW).await, Err(AssertionError::Signature)));
    // Claims altered after signing.
    let good = signed(&header("RS384", "rsa-1"), &claims("h"), rsa());
    let parts: Vec<&str> = good.split('.').collect();
    let mut changed = claims("h");
    changed["exp"] = json!(NOW + 299);
    let tampered = format!("{}.{}.{}", parts[0], b64(changed.to_string().as_bytes()), parts[2]);
    assert!(matches!(check(&tampered, &inline, &lists, NOW).await, Err(AssertionError::Signature)));
    for garbage in ["", "a.b", "a.b.c.d", "!!.!!.!!"] {
        assert!(matches!(check(garbage, &inline, &lists, NOW).await, Err(AssertionError::Malformed(_))), "{garbage}");
    }
    // A client that is not confidential-asymmetric.
    let public = Client { client_type: ClientType::Public, ..client(None, None) };
    assert!(matches!(check(&good, &public, &lists, NOW).await, Err(AssertionError::NotAsymmetric)));
    // A key registered for verification only by another alg, or for encryption.
    let mut encryption = rsa().jwk.clone();
    encryption["use"] = json!("enc");
    let enc_client = client(Some(json!({ "keys": [encryption] })), None);
    assert!(matches!(check(&good, &enc_client, &lists, NOW).await, Err(AssertionError::KeyUnusable(_))));
}

#[tokio::test]
async fn each_claim_check_refuses() {
    let lists = Lists::default();
    let inline = client(Some(jwks(&[ec()])), None);
    let with = |change: &dyn Fn(&mut Value)| {
        let mut body = claims("c");
        change(&mut body);
        signed(&header("ES384", "ec-1"), &body, ec())
    };
    let cases: Vec<(String, Expected)> = vec![
        (with(&|c| c["aud"] = json!("https://ignis.example/fhir")), |e| matches!(e, AssertionError::Audience)),
        (with(&|c| c["aud"] = json!([])), |e| matches!(e, AssertionError::Audience)),
        (with(&|c| drop(c.as_object_mut().unwrap().remove("aud"))), |e| matches!(e, AssertionError::Audience)),
        (with(&|c| c["iss"] = json!("someone-else")), |e| matches!(e, AssertionError::Issuer)),
        (with(&|c| c["sub"] = json!("someone-else")), |e| matches!(e, AssertionError::Subject)),
        (with(&|c| drop(c.as_object_mut().unwrap().remove("sub"))), |e| matches!(e, AssertionError::Subject)),
        (with(&|c| c["exp"] = json!(NOW - 61)), |e| matches!(e, AssertionError::Expired)),
        (with(&|c| c["exp"] = json!(NOW + 300 + 61)), |e| matches!(e, AssertionError::TooLongLived)),
        (with(&|c| drop(c.as_object_mut().unwrap().remove("exp"))), |e| matches!(e, AssertionError::MissingExpiry)),
        (with(&|c| c["exp"] = json!("soon")), |e| matches!(e, AssertionError::MissingExpiry)),
        (with(&|c| c["nbf"] = json!(NOW + 120)), |e| matches!(e, AssertionError::NotYetValid)),
        (with(&|c| drop(c.as_object_mut().unwrap().remove("jti"))), |e| matches!(e, AssertionError::MissingJti)),
        (with(&|c| c["jti"] = json!("x".repeat(257))), |e| matches!(e, AssertionError::JtiTooLong)),
    ];
    for (index, (assertion, expected)) in cases.iter().enumerate() {
        let refused = check(assertion, &inline, &lists, NOW).await;
        match &refused {
            Err(error) if expected(error) => {
                let message = error.to_string();
                assert!(!message.contains(assertion.as_str()) && !message.contains("someone-else"), "{message}");
            }
            other => panic!("case {index}: {other:?}"),
        }
    }
    // Within the leeway, on both sides.
    assert!(check(&with(&|c| c["exp"] = json!(NOW - 30)), &inline, &lists, NOW).await.is_ok());
    let later = with(&|c| {
        c["exp"] = json!(NOW + 330);
        c["jti"] = json!("c2");
    });
    assert!(check(&later, &inline, &lists, NOW + 1).await.is_ok());
}

#[tokio::test]
async fn a_jti_is_accepted_once() {
    let lists = Lists::default();
    let inline = client(Some(jwks(&[rsa()])), None);
    let assertion = signed(&header("RS384", "rsa-1"), &claims("once"), rsa());
    assert!(check(&assertion, &inline, &lists, NOW).await.is_ok());
    let replayed = check(&assertion, &inline, &lists, NOW + 10).await;
    assert!(matches!(replayed, Err(AssertionError::Replayed)), "{replayed:?}");
    // Another client may use the same jti: a jti is unique per issuer.
    let other = Client { client_id: "other-app".into(), ..inline.clone() };
    let mut other_claims = claims("once");
    other_claims["iss"] = json!("other-app");
    other_claims["sub"] = json!("other-app");
    let theirs = signed(&header("RS384", "rsa-1"), &other_claims, rsa());
    assert!(check(&theirs, &other, &lists, NOW).await.is_ok());
    // The jti is remembered past exp by the leeway, as long as the assertion is acceptable.
    let until = from_seconds(NOW + 240) + LEEWAY;
    assert!(lists.remembered(JTI_LIST, &format!("{CLIENT} once"), until - Duration::from_secs(1)).await.unwrap());
}

#[tokio::test]
async fn an_unknown_kid_fetches_the_jwks_once_more() {
    let lists = Lists::default();
    let fetcher = FakeFetcher::new(jwks(&[rsa()]), Some("public, max-age=3600"));
    let keys = JwksCache::new(fetcher.clone());
    let by_url = client(None, Some(JWKS_URL));
    let run = |assertion: String, at: i64| {
        let (keys, lists, by_url) = (&keys, &lists, &by_url);
        async move { verify(&assertion, by_url, ENDPOINT, keys, lists, from_seconds(at)).await }
    };
    run(signed(&header("RS384", "rsa-1"), &claims("k1"), rsa()), NOW).await.unwrap();
    assert_eq!(fetcher.calls(), 1);
    // Just fetched: an unknown kid does not fetch again.
    let unknown = run(signed(&header("ES384", "ec-1"), &claims("k2"), ec()), NOW + 1).await;
    assert!(matches!(unknown, Err(AssertionError::UnknownKid)), "{unknown:?}");
    assert_eq!(fetcher.calls(), 1);
    // Later, it fetches once more, and is refused when the key is still not there.
    let unknown = run(signed(&header("ES384", "ec-1"), &claims("k3"), ec()), NOW + 60).await;
    assert!(matches!(unknown, Err(AssertionError::UnknownKidAfterRefetch)), "{unknown:?}");
    assert_eq!(fetcher.calls(), 2);
    // The client rotates in a new key: the next fetch finds it.
    *fetcher.jwks.lock().unwrap() = jwks(&[rsa(), ec()]);
    run(signed(&header("ES384", "ec-1"), &claims("k4"), ec()), NOW + 120).await.unwrap();
    assert_eq!(fetcher.calls(), 3);
    // A JWKS that is no JWKS.
    *fetcher.jwks.lock().unwrap() = json!({"keys": "none"});
    let invalid = run(signed(&header("RS384", "rsa-1"), &claims("k5"), rsa()), NOW + 4_000).await;
    assert!(matches!(invalid, Err(AssertionError::JwksInvalid)), "{invalid:?}");
}

#[tokio::test]
async fn the_cache_honours_max_age_and_no_store() {
    let lists = Lists::default();
    let by_url = client(None, Some(JWKS_URL));
    for (cache_control, lifetime, fetches) in [
        // Reused for 100 s: the calls at +0, +50 and +99 share one fetch, +100 fetches again.
        (Some("max-age=100"), Some(100), 2),
        (Some("no-store"), None, 4),
        (Some("max-age=100, no-cache"), None, 4),
        (Some("max-age=0"), None, 4),
    ] {
        assert_eq!(cache_lifetime(cache_control), lifetime.map(Duration::from_secs), "{cache_control:?}");
        let fetcher = FakeFetcher::new(jwks(&[rsa()]), cache_control);
        let keys = JwksCache::new(fetcher.clone());
        for (index, at) in [0, 50, 99, 100].into_iter().enumerate() {
            let assertion = signed(&header("RS384", "rsa-1"), &claims(&format!("{cache_control:?}-{index}")), rsa());
            verify(&assertion, &by_url, ENDPOINT, &keys, &lists, from_seconds(NOW + at)).await.unwrap();
        }
        assert_eq!(fetcher.calls(), fetches, "{cache_control:?}");
    }
    assert_eq!(cache_lifetime(None), Some(DEFAULT_JWKS_MAX_AGE));
    assert_eq!(cache_lifetime(Some("public")), Some(DEFAULT_JWKS_MAX_AGE));
    assert_eq!(cache_lifetime(Some("Max-Age=\"30\"")), Some(Duration::from_secs(30)));
    assert_eq!(cache_lifetime(Some("max-age=31536000")), Some(MAX_JWKS_MAX_AGE));
    assert_eq!(cache_lifetime(Some("max-age=soon")), None);
}

#[tokio::test]
async fn a_fetch_failure_is_reported() {
    struct Down;
    #[async_trait]
    impl JwksFetcher for Down {
        async fn fetch(&self, _url: &str) -> Result<FetchedJwks, String> {
            Err("connection refused".into())
        }
    }
    let keys = JwksCache::new(Arc::new(Down));
    let assertion = signed(&header("RS384", "rsa-1"), &claims("down"), rsa());
    let refused = verify(&assertion, &client(None, Some(JWKS_URL)), ENDPOINT, &keys, &Lists::default(), now()).await;
    match refused {
        Err(error @ AssertionError::JwksUnavailable(_)) => {
            assert_eq!(error.to_string(), "the client's JWKS cannot be fetched: connection refused");
        }
        other => panic!("{other:?}"),
    }
    let no_keys = verify(&assertion, &client(None, None), ENDPOINT, &keys, &Lists::default(), now()).await;
    assert!(matches!(no_keys, Err(AssertionError::NoKeys)), "{no_keys:?}");
}
