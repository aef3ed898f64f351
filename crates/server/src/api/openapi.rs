//! The OpenAPI 3.1 document of the `/api/`, generated from the handlers' annotations and the
//! types they take and answer (utoipa), served at `GET /api/openapi.json`.

use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{accounts, apps, audit, devices, problem, requests, sessions};

#[derive(OpenApi)]
#[openapi(
    info(title = "Ignis access program API", description = "Accounts, devices and Device JWTs, production access requests and their certification review, and the audit log. Errors are RFC 9457 problem documents."),
    paths(
        sessions::sign_up, sessions::sign_in,
        accounts::create, accounts::get, accounts::set_webhook, accounts::notifications,
        accounts::set_member, accounts::remove_member, accounts::suspend, accounts::reinstate, accounts::set_limit, accounts::usage,
        devices::create, devices::list, devices::get, devices::credential, devices::revoke, devices::rotate, devices::ca_init,
        apps::register, apps::list, apps::get, apps::update, apps::step, apps::queue,
        requests::create, requests::list, requests::get, requests::record, requests::transition,
        audit::search, audit::export_range,
    ),
    components(schemas(problem::ProblemDocument)),
    modifiers(&BearerKey),
)]
pub(crate) struct ApiDocument;

/// The `api_key` security scheme: `Authorization: Bearer <api key>`.
struct BearerKey;

impl Modify for BearerKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// `GET /api/openapi.json`.
pub(crate) async fn document() -> Response {
    axum::Json(ApiDocument::openapi()).into_response()
}
