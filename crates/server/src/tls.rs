//! HTTPS served by the binary: rustls (aws-lc-rs), TLS 1.2 and 1.3 only, ALPN h2 and
//! http/1.1, and a certificate that can be replaced while serving ([`Tls::reload`], which the
//! binary calls on SIGHUP): connections already open keep the certificate they were made
//! with, new ones get the new one.
//!
//! `axum::serve` has no TLS, so [`serve_tls`] runs the accept loop itself with hyper-util: each
//! connection's handshake runs on its own task under a time limit (a slow or broken client
//! never holds the loop). [`serve_mtls`] runs the same loop for the mutual-TLS listener
//! (`crate::mtls`): it requires a client certificate and puts the chain, with its verdict for
//! production, in each request's extensions ([`PeerCertificates`]).

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tokio::net::TcpListener;
use tower::ServiceExt;
use tower_http::normalize_path::NormalizePath;

use crate::app;
use crate::mtls::{ClientTrust, PeerCertificates};
use crate::state::AppState;

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the certificate or key cannot be used; names the file, never shows key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the certificate file {}: {reason}", path.display())]
    Certificate { path: PathBuf, reason: String },
    #[error("cannot read the private key file {}: {reason}", path.display())]
    Key { path: PathBuf, reason: String },
    #[error("the TLS configuration is refused: {0}")]
    Config(String),
}

/// The server's TLS settings: the certificate files and the certificate in use.
#[derive(Debug)]
pub struct Tls {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: Arc<Current>,
    config: Arc<ServerConfig>,
}

/// The certificate handed to each new handshake.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.read().ok().map(|current| Arc::clone(&current))
    }
}

impl Tls {
    /// Loads the PEM certificate chain at `cert_path` and private key at `key_path`.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Tls, TlsError> {
        let current = Arc::new(Current(RwLock::new(Arc::new(certified_key(cert_path, key_path)?))));
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|error| TlsError::Config(error.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&current) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Tls { cert_path: cert_path.to_owned(), key_path: key_path.to_owned(), current, config: Arc::new(config) })
    }

    /// The configuration of the mutual-TLS listener: the same server certificate (reloaded with
    /// it), and a client certificate required ([`ClientTrust::handshake_verifier`]).
    fn mutual(&self, trust: &ClientTrust) -> Result<Arc<ServerConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|error| TlsError::Config(error.to_string()))?
            .with_client_cert_verifier(trust.handshake_verifier())
            .with_cert_resolver(Arc::clone(&self.current) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// Reads the certificate and key files again; on success new handshakes use them. On
    /// failure the certificate in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = Arc::new(certified_key(&self.cert_path, &self.key_path)?);
        if let Ok(mut current) = self.current.0.write() {
            *current = fresh;
        }
        Ok(())
    }
}

/// The certificate chain and signing key in the two PEM files.
fn certified_key(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, TlsError> {
    let cert_error = |reason: String| TlsError::Certificate { path: cert_path.to_owned(), reason };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .map_err(|error| cert_error(error.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|error| cert_error(error.to_string()))?;
    if chain.is_empty() {
        return Err(cert_error("no CERTIFICATE in the file".into()));
    }
    let key_error = |reason: String| TlsError::Key { path: key_path.to_owned(), reason };
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|error| key_error(error.to_string()))?;
    let signing_key = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key)
        .map_err(|_| key_error("not an RSA, ECDSA or Ed25519 private key".into()))?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified.keys_match().map_err(|_| key_error(format!("it is not the key of {}", cert_path.display())))?;
    Ok(certified)
}

/// Serves `state` over TLS on `listener` until `shutdown` resolves, then finishes the requests
/// in flight. Runs this process's export loop meanwhile.
pub async fn serve_tls(
    listener: TcpListener,
    state: AppState,
    tls: Arc<Tls>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let runner = state.start_background();
    let served = accept_loop(listener, app(state), Arc::clone(&tls.config), None, shutdown).await;
    runner.abort();
    served
}

/// Serves `state` over mutual TLS on `listener` until `shutdown` resolves: every client
/// presents a certificate, judged by `trust` for production. Runs beside [`serve_tls`], which
/// runs the export loop.
pub async fn serve_mtls(
    listener: TcpListener,
    state: AppState,
    tls: Arc<Tls>,
    trust: Arc<ClientTrust>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let config = tls.mutual(&trust).map_err(io::Error::other)?;
    accept_loop(listener, app(state), config, Some(trust), shutdown).await
}

/// Accepts connections until `shutdown`; each handshake on its own task under a time limit.
async fn accept_loop(
    listener: TcpListener,
    app: NormalizePath<Router>,
    config: Arc<ServerConfig>,
    trust: Option<Arc<ClientTrust>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let graceful = GracefulShutdown::new();
    let builder = Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        let (stream, address) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: the listener itself is fine.
                    tracing::warn!(%error, "accepting a connection failed");
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let (acceptor, app, builder, trust) = (acceptor.clone(), app.clone(), builder.clone(), trust.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => return tracing::debug!(%error, "TLS handshake failed"),
                Err(_) => return tracing::debug!("TLS handshake timed out"),
            };
            // Judged once per connection, not per request.
            let peer = match (&trust, stream.get_ref().1.peer_certificates()) {
                (Some(trust), Some(chain)) => {
                    let chain: Vec<CertificateDer<'static>> =
                        chain.iter().map(|certificate| certificate.clone().into_owned()).collect();
                    let production = trust.judge(&chain, UnixTime::now());
                    let thumbprint = chain.first().map(|first| access::certificate::thumbprint(first.as_ref()));
                    let thumbprint = Arc::from(thumbprint.unwrap_or_default());
                    Some(PeerCertificates { chain: Arc::new(chain), thumbprint, production })
                }
                _ => None,
            };
            let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let mut request = request.map(axum::body::Body::new);
                request.extensions_mut().insert(axum::extract::ConnectInfo(address));
                if let Some(peer) = &peer {
                    request.extensions_mut().insert(peer.clone());
                }
                handle(app.clone(), request)
            });
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(error) = watcher.watch(connection.into_owned()).await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

async fn handle(
    app: NormalizePath<Router>,
    request: Request,
) -> Result<axum::response::Response, std::convert::Infallible> {
    app.oneshot(request).await
}
