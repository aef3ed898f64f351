//! The platform client-auth CA signs devices' CSRs (their keys stay on the device).

use access::ca;
use auth::secret::SecretKey;
use store::sqlite::SqliteStore;
use x509_parser::prelude::{FromDer, X509Certificate};

#[tokio::test]
async fn the_platform_ca_signs_a_device_csr_for_client_auth() {
    let folder = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&folder.path().join("db")).unwrap();
    let secret = SecretKey::generate().unwrap();
    let csr = {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, "lab-interface-1");
        params.serialize_request(&key).unwrap().pem().unwrap()
    };
    assert!(ca::sign_csr(&store, &secret, &csr).await.unwrap_err().to_string().contains("ca init"));

    let root = ca::init(&store, &secret, "test").await.unwrap();
    assert_eq!(ca::init(&store, &secret, "test").await.unwrap(), root, "init keeps the CA it made");
    let signed = ca::sign_csr(&store, &secret, &csr).await.unwrap();
    assert!(!signed.self_signed);
    assert_eq!(signed.subject, "CN=lab-interface-1");
    assert_eq!(signed.issuer, "O=Ignis, CN=Ignis platform client-auth CA");

    let der = rustls_pki_types::pem::PemObject::from_pem_slice(signed.pem.as_bytes())
        .map(|der: rustls_pki_types::CertificateDer<'_>| der.to_vec())
        .unwrap();
    let (_, parsed) = X509Certificate::from_der(&der).unwrap();
    let usage = parsed.extended_key_usage().unwrap().unwrap().value;
    assert!(usage.client_auth && !usage.server_auth);

    assert!(
        ca::sign_csr(&store, &secret, "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n")
            .await
            .is_err()
    );
    let (generated, key) = ca::generate_for_device(&store, &secret, "made-here").await.unwrap();
    assert_eq!(generated.issuer, signed.issuer);
    assert!(key.contains("PRIVATE KEY"));
}
