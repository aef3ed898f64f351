//! The middleware stack, read top to bottom from the outside in.

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderName, Method, StatusCode, header};
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::{CompressionLayer, CompressionLevel};
use tower_http::cors::{Any, CorsLayer};
use tower_http::decompression::RequestDecompressionLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::api::problem::Problem;
use crate::error::{issue_for_status, outcome_response};
use crate::negotiation::check_acceptable;
use crate::state::AppState;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Wraps `app` in the shared layers. Order matters: the request id is set first so the trace
/// span carries it; `outcome_for_bare_errors` sits outside panic catching and the timeout so
/// that their plain responses also become OperationOutcomes.
pub(crate) fn stack(app: Router, state: &AppState) -> Router {
    let config = &state.config;
    app.layer(cors())
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(request_span))
                // Responses in gzip or brotli when the client asks; gzipped request bodies are
                // inflated (innermost) before the handlers read them, so the body size limit
                // counts the inflated bytes and a decompression bomb stops at the limit (413).
                .layer(CompressionLayer::new().quality(CompressionLevel::Fastest))
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(from_fn(outcome_for_bare_errors))
                // Inside the answers above, outside panics and the timeout: their answers are
                // audited too.
                .layer(from_fn_with_state(state.clone(), crate::audit::record_requests))
                .layer(CatchPanicLayer::new())
                .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, config.request_timeout))
                .layer(RequestDecompressionLayer::new()),
        )
        .layer(axum::extract::DefaultBodyLimit::disable())
}

/// The trace span of a request: its method and path, never its query string, which holds
/// search values (names, birth dates: PHI) and, at the authorization endpoint, state and PKCE
/// values.
fn request_span(request: &Request) -> tracing::Span {
    tracing::debug_span!("request", method = %request.method(), path = %request.uri().path(), version = ?request.version())
}

/// CORS for browser apps (SMART apps run in browsers): any origin may call the FHIR API,
/// discovery, metadata and the token endpoint. No credentials are involved: every call carries
/// its bearer token or client credentials itself, never a cookie, so `*` exposes nothing.
fn cors() -> CorsLayer {
    let header = HeaderName::from_static;
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::HEAD])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            header::IF_MATCH,
            header::IF_NONE_MATCH,
            header::IF_MODIFIED_SINCE,
            header("if-none-exist"),
            header("prefer"),
        ])
        .expose_headers([header::LOCATION, header::ETAG, header::LAST_MODIFIED, header::CONTENT_LOCATION])
        .max_age(std::time::Duration::from_secs(3600))
}

/// Refuses, with 406, requests whose `Accept` or `_format` rules out FHIR JSON.
pub(crate) async fn negotiate(request: Request, next: Next) -> Response {
    let format = request.uri().query().and_then(|query| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(query)
            .ok()?
            .into_iter()
            .find_map(|(name, value)| (name == "_format").then_some(value))
    });
    if let Err(error) = check_acceptable(request.headers(), format.as_deref()) {
        return error.into_response();
    }
    next.run(request).await
}

/// Gives every error response an OperationOutcome body: routing misses, wrong methods,
/// caught panics and timeouts come from the framework with plain or empty bodies.
/// Under `/api/` they become problem documents instead.
async fn outcome_for_bare_errors(request: Request<Body>, next: Next) -> Response {
    let api = request.uri().path().starts_with("/api/");
    let response = next.run(request).await;
    let status = response.status();
    // OperationOutcomes, problem documents, OAuth JSON errors and the authorization pages keep
    // their bodies.
    let has_own_body =
        response.headers().get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).is_some_and(|value| {
            ["application/fhir+json", "application/json", "application/problem+json", "text/html"]
                .iter()
                .any(|kind| value.starts_with(kind))
        });
    if !(status.is_client_error() || status.is_server_error()) || has_own_body {
        return response;
    }
    let (parts, _) = response.into_parts();
    let mut replaced = match api {
        true => Problem::for_status(status).into_response(),
        false => outcome_response(status, &[issue_for_status(status)], None),
    };
    for name in [header::ALLOW, header::RETRY_AFTER] {
        if let Some(value) = parts.headers.get(&name) {
            replaced.headers_mut().insert(name, value.clone());
        }
    }
    replaced
}
