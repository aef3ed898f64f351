//! Mutual TLS for devices: a listener that requires a client certificate, and the judgement of
//! that certificate for production.
//!
//! The handshake takes any certificate whose key the client proves it holds
//! ([`AnyClientCertificate`]): the sandbox accepts self-signed ones, and a refusal in
//! production must say which check failed, which a failed handshake cannot. Each connection's
//! chain is then judged once against the approved CAs — the PEM roots of `--trust-anchors` and
//! the platform client-auth CA — with rustls' `WebPkiClientVerifier` (chain, validity,
//! client-auth usage, CRLs from `--crl-dir`), and the verdict travels with every request of the
//! connection ([`PeerCertificates`]). The FHIR layer refuses a production Device JWT whose
//! connection's verdict is not `Ok`.
//!
//! [`ClientTrust::watch`] re-reads the folders and the platform CA every second and rebuilds
//! the verifier when they changed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use store::Store;

use crate::tls::TlsError;

/// The verdict on a connection's client certificate for production: `Ok`, or which check
/// failed.
pub type Verdict = Result<(), Arc<str>>;

/// The client certificate chain of a mutual-TLS connection, and its verdict for production.
#[derive(Debug, Clone)]
pub struct PeerCertificates {
    pub chain: Arc<Vec<CertificateDer<'static>>>,
    /// The `x5t#S256` of the end-entity certificate, computed once per connection.
    pub thumbprint: Arc<str>,
    pub production: Verdict,
}

/// The approved CAs and CRLs, and the verifier built from them.
pub struct ClientTrust {
    anchors: Option<PathBuf>,
    crls: Option<PathBuf>,
    store: Arc<dyn Store>,
    provider: Arc<CryptoProvider>,
    current: RwLock<Built>,
}

/// A verifier and what it was built from.
struct Built {
    sources: Sources,
    /// `Err` when there is no approved CA at all.
    verifier: Result<Arc<dyn ClientCertVerifier>, Arc<str>>,
}

/// What the verifier depends on: each file's name, size and modification time, and the
/// platform CA.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Sources {
    files: Vec<(PathBuf, u64, Option<SystemTime>)>,
    platform_ca: Option<String>,
}

impl std::fmt::Debug for ClientTrust {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ClientTrust")
            .field("anchors", &self.anchors)
            .field("crls", &self.crls)
            .finish_non_exhaustive()
    }
}

impl ClientTrust {
    /// Reads the trust anchors (PEM files in `anchors`), the CRLs (PEM or DER files in `crls`)
    /// and the platform CA from `store`.
    pub async fn load(
        anchors: Option<&Path>,
        crls: Option<&Path>,
        store: Arc<dyn Store>,
    ) -> Result<ClientTrust, TlsError> {
        let trust = ClientTrust {
            anchors: anchors.map(Path::to_owned),
            crls: crls.map(Path::to_owned),
            store,
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
            current: RwLock::new(Built { sources: Sources::default(), verifier: Err("not loaded".into()) }),
        };
        trust.refresh().await?;
        Ok(trust)
    }

    /// Rebuilds the verifier when a file or the platform CA changed.
    pub async fn refresh(&self) -> Result<(), TlsError> {
        let sources = self.sources().await?;
        if self.current.read().is_ok_and(|current| current.sources == sources) {
            return Ok(());
        }
        let verifier = self.build(&sources)?;
        if let Ok(mut current) = self.current.write() {
            *current = Built { sources, verifier };
        }
        tracing::info!("client certificate trust (re)loaded");
        Ok(())
    }

    /// Re-reads every second until the process ends; a failed read keeps the trust in use.
    pub fn watch(self: &Arc<ClientTrust>) -> tokio::task::JoinHandle<()> {
        let trust = Arc::clone(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_secs(1));
            loop {
                ticks.tick().await;
                if let Err(error) = trust.refresh().await {
                    tracing::warn!(%error, "cannot re-read the client certificate trust; the previous one stays");
                }
            }
        })
    }

    /// The verdict on a client's chain for production, at `now`.
    pub fn judge(&self, chain: &[CertificateDer<'_>], now: UnixTime) -> Verdict {
        let Some((end_entity, intermediates)) = chain.split_first() else {
            return Err("no client certificate was presented".into());
        };
        let verifier = match self.current.read() {
            Ok(current) => current.verifier.clone()?,
            Err(_) => return Err("the client certificate trust is unavailable".into()),
        };
        if let Err(error) = verifier.verify_client_cert(end_entity, intermediates, now) {
            return Err(reason(&error, end_entity).into());
        }
        if !has_client_auth_usage(end_entity) {
            return Err("the client certificate does not carry the client-auth extended key usage".into());
        }
        Ok(())
    }

    /// The handshake's verifier: any certificate, its key proven.
    pub(crate) fn handshake_verifier(&self) -> Arc<dyn ClientCertVerifier> {
        Arc::new(AnyClientCertificate { algorithms: self.provider.signature_verification_algorithms })
    }

    async fn sources(&self) -> Result<Sources, TlsError> {
        let mut files = Vec::new();
        for folder in [&self.anchors, &self.crls].into_iter().flatten() {
            files.extend(list(folder)?);
        }
        let platform_ca = access::ca::certificate(self.store.as_ref())
            .await
            .map_err(|error| TlsError::Config(format!("cannot read the platform CA: {error}")))?;
        Ok(Sources { files, platform_ca })
    }

    fn build(&self, sources: &Sources) -> Result<Result<Arc<dyn ClientCertVerifier>, Arc<str>>, TlsError> {
        let mut roots = RootCertStore::empty();
        let mut pems: Vec<(String, Vec<u8>)> = Vec::new();
        if let Some(folder) = &self.anchors {
            for (path, _, _) in sources.files.iter().filter(|(path, _, _)| path.starts_with(folder)) {
                pems.push((path.display().to_string(), read(path)?));
            }
        }
        if let Some(ca) = &sources.platform_ca {
            pems.push(("the platform CA".to_owned(), ca.as_bytes().to_vec()));
        }
        for (name, pem) in &pems {
            for certificate in CertificateDer::pem_slice_iter(pem) {
                let certificate = certificate.map_err(|error| TlsError::Config(format!("{name}: {error}")))?;
                roots.add(certificate).map_err(|error| TlsError::Config(format!("{name}: {error}")))?;
            }
        }
        if roots.is_empty() {
            return Ok(Err("no approved CA is configured (--trust-anchors, or ignis admin ca init)".into()));
        }
        let mut crls = Vec::new();
        if let Some(folder) = &self.crls {
            for (path, _, _) in sources.files.iter().filter(|(path, _, _)| path.starts_with(folder)) {
                crls.extend(read_crls(path)?);
            }
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&self.provider))
            .with_crls(crls)
            .only_check_end_entity_revocation()
            .allow_unknown_revocation_status()
            .build()
            .map_err(|error| TlsError::Config(format!("the client certificate trust: {error}")))?;
        Ok(Ok(verifier))
    }
}

/// The files of `folder`, sorted, with their size and modification time.
fn list(folder: &Path) -> Result<Vec<(PathBuf, u64, Option<SystemTime>)>, TlsError> {
    let failed =
        |error: std::io::Error| TlsError::Config(format!("cannot read the folder {}: {error}", folder.display()));
    let mut files = Vec::new();
    for entry in std::fs::read_dir(folder).map_err(failed)? {
        let entry = entry.map_err(failed)?;
        let metadata = entry.metadata().map_err(failed)?;
        if metadata.is_file() {
            files.push((entry.path(), metadata.len(), metadata.modified().ok()));
        }
    }
    files.sort();
    Ok(files)
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Config(format!("cannot read {}: {error}", path.display())))
}

/// The CRLs of a file: PEM `X509 CRL` blocks, or one DER CRL.
fn read_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let bytes = read(path)?;
    if bytes.starts_with(b"-----") {
        return CertificateRevocationListDer::pem_slice_iter(&bytes)
            .collect::<Result<_, _>>()
            .map_err(|error| TlsError::Config(format!("{}: {error}", path.display())));
    }
    Ok(vec![CertificateRevocationListDer::from(bytes)])
}

/// Which check a refused certificate failed, in words.
fn reason(error: &Error, end_entity: &CertificateDer<'_>) -> String {
    match error {
        Error::InvalidCertificate(CertificateError::UnknownIssuer) if is_self_signed(end_entity) => {
            "self-signed client certificates are refused in production".to_owned()
        }
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "the client certificate does not chain to an approved CA".to_owned()
        }
        Error::InvalidCertificate(CertificateError::Expired | CertificateError::ExpiredContext { .. }) => {
            "the client certificate has expired".to_owned()
        }
        Error::InvalidCertificate(CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. }) => {
            "the client certificate is not valid yet".to_owned()
        }
        Error::InvalidCertificate(CertificateError::Revoked) => "the client certificate is revoked".to_owned(),
        Error::InvalidCertificate(
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. },
        ) => "the client certificate does not carry the client-auth extended key usage".to_owned(),
        other => format!("the client certificate is refused: {other}"),
    }
}

fn is_self_signed(certificate: &CertificateDer<'_>) -> bool {
    access::certificate::DeviceCertificate::from_der(certificate).is_ok_and(|read| read.self_signed)
}

/// Whether the certificate names client-auth among its extended key usages (an absent
/// extension, which webpki lets pass as "any usage", is not enough here).
fn has_client_auth_usage(certificate: &CertificateDer<'_>) -> bool {
    use x509_parser::prelude::{FromDer, X509Certificate};
    X509Certificate::from_der(certificate.as_ref())
        .ok()
        .and_then(|(_, parsed)| parsed.extended_key_usage().ok().flatten().map(|usage| usage.value.client_auth))
        .unwrap_or(false)
}

/// A handshake verifier that asks for a client certificate and takes any whose key the client
/// proves it holds. rustls has no verifier that lets a handshake through and reports a chain's
/// failure later, which the per-environment judgement needs; so this one is written here, and
/// the signature checks are rustls' own.
#[derive(Debug)]
struct AnyClientCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCertificate {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, certificate, signature, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, certificate, signature, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
