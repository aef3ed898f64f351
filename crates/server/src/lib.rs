//! The Ignis HTTP application.
//!
//! [`router`] builds the axum `Router` for an [`AppState`]; [`serve`] runs it on a listener
//! until a shutdown future resolves. The binary only parses flags and calls these, and tests
//! call them with a port-0 listener.
//!
//! Layout: `router.rs` lists every route; `handlers/` holds one module per FHIR interaction;
//! `authorize.rs` authenticates bearer tokens and decides what each caller may reach;
//! `api.rs` (+ `api/`) is the access program's JSON API, whose errors are problem documents;
//! `negotiation.rs` reads request headers and bodies; `response.rs` writes resource
//! responses; `error.rs` is the only place FHIR errors become HTTP responses (`api/problem.rs`
//! for the `/api/`); `middleware.rs`
//! stacks the layers.
//!
//! **Architecture invariant:** this is the only crate that knows HTTP. FHIR rules live in
//! `fhir`, storage in `store`.

mod api;
mod audit;
mod authorize;
mod bundle;
mod capability;
mod directory;
mod error;
mod export;
mod handlers;
mod jwks;
mod middleware;
mod monitor;
mod mtls;
mod negotiation;
mod notify;
mod oauth;
mod response;
mod router;
mod state;
mod tls;
mod transaction;

use std::future::Future;

use tokio::net::TcpListener;

pub use audit::events::export as audit_export;
pub use jwks::HttpJwksFetcher;
pub use monitor::Rules;
pub use mtls::{ClientTrust, PeerCertificates, Verdict};
pub use router::{app, router};
pub use state::{AppState, Authorization, Config, audit_key};
pub use tls::{Tls, TlsError, serve_mtls, serve_tls};

/// Serves `state` on `listener` until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let runner = state.start_background();
    let service = axum::ServiceExt::<axum::extract::Request>::into_make_service_with_connect_info::<std::net::SocketAddr>(
        app(state),
    );
    let served = axum::serve(listener, service).with_graceful_shutdown(shutdown).await;
    runner.abort();
    served
}
