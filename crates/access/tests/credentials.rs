//! Device JWTs over a real SQLite store: issued, verified, replaced and revoked, and refused
//! for production until the account's access request is approved.

use access::certificate::DeviceCertificate;
use access::credential::{CredentialError, DeviceCredentials};
use access::device::{CertificateSource, NewDevice};
use access::request::{Action, Item};
use access::{AccessError, account, device, request};
use auth::secret::SecretKey;
use store::Environment;
use store::sqlite::SqliteStore;

const BY: &str = "test";

fn new_device(account: &str, environment: Environment, certificate: Option<DeviceCertificate>) -> NewDevice {
    NewDevice {
        account: account.to_owned(),
        name: "lab interface".to_owned(),
        purpose: "results".to_owned(),
        environment,
        scope: None,
        certificate: certificate.map(|certificate| (certificate, CertificateSource::Presented)),
    }
}

fn certificate() -> DeviceCertificate {
    let key = rcgen::KeyPair::generate().unwrap();
    let certificate = rcgen::CertificateParams::new(vec!["device".to_owned()]).unwrap().self_signed(&key).unwrap();
    DeviceCertificate::from_pem(&certificate.pem()).unwrap()
}

#[tokio::test]
async fn a_sandbox_credential_is_live_until_replaced_or_revoked() {
    let folder = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&folder.path().join("db")).unwrap();
    let secret = SecretKey::generate().unwrap();
    let credentials = DeviceCredentials::load_or_create(&store, &secret).await.unwrap();
    let account = account::create(&store, "Acme Labs", Vec::new(), BY).await.unwrap();
    let device = device::create(&store, new_device(&account.id, Environment::Sandbox, None), BY).await.unwrap();

    let first = credentials.issue(&store, &device.id, BY).await.unwrap();
    assert!(credentials.is_device_jwt(&first));
    let grant = &credentials.verify(&store, &first, Environment::Sandbox).await.unwrap().grant.claims;
    assert_eq!(
        (grant.sub.as_str(), grant.account.as_str(), grant.scope.as_str()),
        (device.id.as_str(), account.id.as_str(), "system/*.rs")
    );
    assert!(grant.cnf.is_none());
    assert!(matches!(
        credentials.verify(&store, &first, Environment::Production).await,
        Err(CredentialError::WrongEnvironment("sandbox"))
    ));

    let second = credentials.issue(&store, &device.id, BY).await.unwrap();
    assert!(matches!(credentials.verify(&store, &first, Environment::Sandbox).await, Err(CredentialError::Superseded)));
    credentials.verify(&store, &second, Environment::Sandbox).await.unwrap();

    // Another process sharing the database loads the same key and agrees.
    let other = DeviceCredentials::load_or_create(&store, &secret).await.unwrap();
    other.verify(&store, &second, Environment::Sandbox).await.unwrap();

    device::revoke(&store, &device.id, BY).await.unwrap();
    credentials.forget(&device.id);
    assert!(matches!(credentials.verify(&store, &second, Environment::Sandbox).await, Err(CredentialError::Revoked)));
    let fresh = DeviceCredentials::load_or_create(&store, &secret).await.unwrap();
    assert!(matches!(fresh.verify(&store, &second, Environment::Sandbox).await, Err(CredentialError::Revoked)));
    assert!(matches!(credentials.issue(&store, &device.id, BY).await, Err(AccessError::Revoked)));

    // One character in the middle of the signature changed.
    let at = second.len() - 20;
    let flipped = if &second[at..=at] == "A" { "B" } else { "A" };
    let tampered = format!("{}{flipped}{}", &second[..at], &second[at + 1..]);
    assert!(matches!(fresh.verify(&store, &tampered, Environment::Sandbox).await, Err(CredentialError::Invalid(_))));
}

#[tokio::test]
async fn a_production_credential_needs_a_certificate_and_an_approved_request() {
    let folder = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&folder.path().join("db")).unwrap();
    let secret = SecretKey::generate().unwrap();
    let credentials = DeviceCredentials::load_or_create(&store, &secret).await.unwrap();
    let account = account::create(&store, "Acme Labs", Vec::new(), BY).await.unwrap();

    let bare = device::create(&store, new_device(&account.id, Environment::Production, None), BY).await.unwrap();
    assert!(matches!(credentials.issue(&store, &bare.id, BY).await, Err(AccessError::Invalid(_))));

    let certificate = certificate();
    let thumbprint = certificate.thumbprint.clone();
    let device =
        device::create(&store, new_device(&account.id, Environment::Production, Some(certificate.clone())), BY)
            .await
            .unwrap();
    assert!(matches!(
        device::create(&store, new_device(&account.id, Environment::Production, Some(certificate)), BY).await,
        Err(AccessError::Invalid(message)) if message.contains("another device")
    ));
    assert!(matches!(credentials.issue(&store, &device.id, BY).await, Err(AccessError::NotCertified(_))));

    let draft = request::create(&store, &account.id, BY).await.unwrap();
    request::transition(&store, &draft.id, Action::Submit, None, BY).await.unwrap();
    request::transition(&store, &draft.id, Action::Review, None, "operator").await.unwrap();
    for item in Item::ALL {
        let value = if item == Item::Network { "198.51.100.0/24" } else { "signed by J. Doe" };
        request::record(&store, &draft.id, item, value, "operator").await.unwrap();
    }
    let approved = request::transition(&store, &draft.id, Action::Approve, None, "operator").await.unwrap();
    assert_eq!(
        approved.value.transitions.iter().map(|step| step.by.as_str()).collect::<Vec<_>>(),
        [BY, "operator", "operator"]
    );

    let jwt = credentials.issue(&store, &device.id, BY).await.unwrap();
    let verified = credentials.verify(&store, &jwt, Environment::Production).await.unwrap();
    let grant = &verified.grant.claims;
    assert_eq!(grant.cnf.as_ref().map(|cnf| cnf.thumbprint.as_str()), Some(thumbprint.as_str()));
}
