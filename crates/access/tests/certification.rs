//! Certification over a real SQLite store: approval certifies until the contract end; a
//! material change asks for re-certification and, after the grace period, closes production
//! until the next approval.

use access::certificate::DeviceCertificate;
use access::certification::{self, Status};
use access::credential::{CredentialError, DeviceCredentials};
use access::device::{self, CertificateSource, NewDevice};
use access::request::{self, Action, Item};
use access::{AccessError, Account, account};
use auth::secret::SecretKey;
use store::Environment;
use store::records::{self, Records};
use store::sqlite::SqliteStore;

const BY: &str = "test";

fn certificate(issuer: Option<(&rcgen::Issuer<'_, rcgen::KeyPair>, u64)>) -> DeviceCertificate {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["device".to_owned()]).unwrap();
    let certificate = match issuer {
        Some((issuer, serial)) => {
            params.serial_number = Some(rcgen::SerialNumber::from(serial));
            params.signed_by(&key, issuer).unwrap()
        }
        None => params.self_signed(&key).unwrap(),
    };
    DeviceCertificate::from_pem(&certificate.pem()).unwrap()
}

fn ca(name: &str) -> rcgen::Issuer<'static, rcgen::KeyPair> {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    rcgen::Issuer::new(params, key)
}

async fn production_device(
    store: &dyn Records,
    account: &str,
    certificate: DeviceCertificate,
) -> Result<String, AccessError> {
    let new = NewDevice {
        account: account.to_owned(),
        name: format!("device {}", &certificate.thumbprint[..6]),
        purpose: String::new(),
        environment: Environment::Production,
        scope: None,
        certificate: Some((certificate, CertificateSource::Presented)),
    };
    Ok(device::create(store, new, BY).await?.id)
}

async fn approve(store: &dyn Records, account: &str) {
    let id = request::create(store, account, BY).await.unwrap().id;
    request::transition(store, &id, Action::Submit, None, BY).await.unwrap();
    request::transition(store, &id, Action::Review, None, BY).await.unwrap();
    for item in Item::ALL {
        let value = if item == Item::Network { "198.51.100.0/24" } else { "done" };
        request::record(store, &id, item, value, BY).await.unwrap();
    }
    request::transition(store, &id, Action::Approve, None, BY).await.unwrap();
}

async fn status(store: &dyn Records, id: &str) -> Status {
    let found = account::get(store, id).await.unwrap();
    certification::status(store, id, &found.value, time::OffsetDateTime::now_utc()).await.unwrap()
}

#[tokio::test]
async fn a_material_change_needs_recertification_within_the_grace_period() {
    let folder = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&folder.path().join("db")).unwrap();
    let secret = SecretKey::generate().unwrap();
    let credentials = DeviceCredentials::load_or_create(&store, &secret).await.unwrap();
    let approved_ca = ca("Approved CA");
    let id = account::create_with_grace(&store, "Acme", Vec::new(), Some(0), BY).await.unwrap().id;
    assert_eq!(status(&store, &id).await, Status::NotCertified);

    // Devices configured before the approval are what is certified.
    let first = production_device(&store, &id, certificate(Some((&approved_ca, 1)))).await.unwrap();
    approve(&store, &id).await;
    let Status::Certified { network, .. } = status(&store, &id).await else { panic!("certified") };
    assert_eq!(network.iter().map(ToString::to_string).collect::<Vec<_>>(), ["198.51.100.0/24"]);
    let jwt = credentials.issue(&store, &first, BY).await.unwrap();
    let verified = credentials.verify(&store, &jwt, Environment::Production).await.unwrap();
    assert_eq!(verified.network.as_deref().map(<[_]>::len), Some(1));

    // A new device with a certificate from another issuer; a grace of 0 days closes at once.
    production_device(&store, &id, certificate(None)).await.unwrap();
    let Status::Blocked { recertification } = status(&store, &id).await else { panic!("blocked") };
    assert_eq!(recertification.changes.len(), 2, "{:?}", recertification.changes);
    assert!(recertification.changes[0].starts_with("a new production device"));
    assert!(recertification.changes[1].starts_with("a certificate from a new issuer"));
    credentials.forget(&first);
    let Err(CredentialError::NotCertified(reason)) = credentials.verify(&store, &jwt, Environment::Production).await
    else {
        panic!("production is closed");
    };
    assert!(reason.contains("re-certified"), "{reason}");
    assert!(matches!(credentials.issue(&store, &first, BY).await, Err(AccessError::NotCertified(_))));

    // A new approval is the re-certification.
    approve(&store, &id).await;
    assert!(matches!(status(&store, &id).await, Status::Certified { .. }));
    credentials.forget(&first);
    credentials.verify(&store, &jwt, Environment::Production).await.unwrap();

    // With a grace period, production stays open meanwhile.
    let mut account: Account = account::get(&store, &id).await.unwrap().value;
    account.grace_days = Some(30);
    let current = account::get(&store, &id).await.unwrap();
    records::update(&store, &id, &account, current.version, BY).await.unwrap();
    let third = certificate(Some((&ca("Third CA"), 7)));
    let rotated = device::rotate_certificate(&store, &first, third, CertificateSource::Presented, BY).await.unwrap();
    assert!(rotated.value.credential.is_none(), "a rotation revokes the Device JWT");
    credentials.forget(&first);
    assert!(matches!(
        credentials.verify(&store, &jwt, Environment::Production).await,
        Err(CredentialError::Superseded)
    ));
    let Status::RecertificationRequired { recertification, .. } = status(&store, &id).await else { panic!("pending") };
    assert_eq!(recertification.changes, ["a certificate from a new issuer 'CN=Third CA'"]);
    credentials.issue(&store, &first, BY).await.unwrap();
}

#[tokio::test]
async fn certification_ends_with_the_contract_term() {
    let folder = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&folder.path().join("db")).unwrap();
    let id = account::create(&store, "Acme", Vec::new(), BY).await.unwrap().id;
    approve(&store, &id).await;
    let Status::Certified { until, .. } = status(&store, &id).await else { panic!("certified") };
    let year = time::OffsetDateTime::now_utc() + time::Duration::days(364);
    assert!(until > year, "a year by default");

    let approved = request::approved(&store, &id).await.unwrap().unwrap();
    let mut ended = approved.value.clone();
    ended.contract_end = Some(time::OffsetDateTime::now_utc() - time::Duration::days(1));
    records::update(&store, &approved.id, &ended, approved.version, BY).await.unwrap();
    let status = status(&store, &id).await;
    assert!(matches!(status, Status::Expired { .. }));
    assert!(status.production().unwrap_err().contains("contract term"));
}
