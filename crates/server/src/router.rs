//! Every route of the server, in one place.

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use store::Environment;
use tower_http::normalize_path::NormalizePath;

use crate::handlers::{
    capabilities, create, delete, health, history, patch, read, search, transaction, update, validate,
};
use crate::oauth::AuthContext;
use crate::state::{AppState, FhirContext};
use crate::{api, authorize, directory, export, middleware, oauth};

/// The whole application: the production FHIR base at `/fhir`, the sandbox base at
/// `/sandbox/fhir`, their authorization servers under `/auth` and `/sandbox/auth`, the
/// service base URL list, health checks, and the middleware stack around them.
pub fn router(state: AppState) -> Router {
    let production = fhir_routes(FhirContext::new(state.clone(), Environment::Production, "/fhir"));
    let sandbox = fhir_routes(FhirContext::new(state.clone(), Environment::Sandbox, "/sandbox/fhir"));
    let mut app = Router::new().nest("/fhir", production).nest("/sandbox/fhir", sandbox);
    if let Some(auth) = &state.auth {
        let production = AuthContext::new(&state, Arc::clone(auth), Environment::Production, "");
        let sandbox = AuthContext::new(&state, Arc::clone(auth), Environment::Sandbox, "/sandbox");
        app = app.nest("/auth", oauth::routes(production)).nest("/sandbox/auth", oauth::routes(sandbox));
        let api = api::ApiContext { app: state.clone(), auth: Arc::clone(auth) };
        app = app.nest("/api", api::routes(api));
    }
    let app = app
        .route("/api/service-base-urls", get(directory::service_base_urls))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .with_state(state.clone());
    middleware::stack(app, &state)
}

/// [`router`] behind path normalization: `[base]/`, `[base]/Patient/` and every other path
/// with a trailing slash are served as the path without it (clients post transactions to
/// `[base]/`). It runs before routing, which a layer on the router itself cannot do.
pub fn app(state: AppState) -> NormalizePath<Router> {
    NormalizePath::trim_trailing_slash(router(state))
}

/// The FHIR REST interactions of one base. Static segments (`_history`, `$validate`) take
/// precedence over `{id}`, which cannot start with `_` or `$` anyway.
/// Every route but `metadata` needs an access token when the server requires them.
fn fhir_routes(context: FhirContext) -> Router<AppState> {
    let open = Router::new()
        .route("/metadata", get(capabilities::metadata))
        .route("/.well-known/smart-configuration", get(oauth::smart_configuration))
        .route("/.well-known/openid-configuration", get(oauth::openid_configuration));
    let authenticate = axum::middleware::from_fn_with_state(context.clone(), authorize::authenticate);
    // Export status and files answer JSON and NDJSON, outside FHIR's content negotiation.
    let exports = Router::new()
        .route("/$export-status/{job}", get(export::status).delete(export::cancel))
        .route("/$export-file/{job}/{name}", get(export::file))
        .route_layer(authenticate.clone());
    Router::new()
        .route("/", get(search::search_system).post(transaction::transaction))
        .route("/$export", get(export::system).post(export::system))
        .route("/Patient/$export", get(export::patient).post(export::patient))
        .route("/Group/{id}/$export", get(export::group).post(export::group))
        .route("/_history", get(history::system))
        .route(
            "/{type}",
            get(search::search_type)
                .post(create::create)
                .put(update::conditional_update)
                .delete(delete::conditional_delete),
        )
        .route("/{type}/_history", get(history::type_level))
        .route("/{type}/$validate", post(validate::validate))
        .route("/{type}/_search", post(search::search_post))
        .route("/{type}/{id}", get(read::read).put(update::update).delete(delete::delete).patch(patch::patch))
        .route("/{type}/{id}/_history", get(history::instance))
        .route("/{type}/{id}/_history/{version}", get(read::vread))
        .route("/{type}/{id}/{compartment_type}", get(search::search_compartment))
        .route_layer(authenticate)
        .merge(open)
        .layer(axum::middleware::from_fn(middleware::negotiate))
        .merge(exports)
        .with_state(context)
}
