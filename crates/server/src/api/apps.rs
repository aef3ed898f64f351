//! Patient-access apps: registered by an account (a sandbox client at once), asked into
//! production by it, verified and enabled by an operator under the ONC clocks; and the
//! operators' review queue.

use access::app::{self, NewApp};
use access::request::{self, State as RequestState};
use access::view::{AccessRequestView, AppView};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::problem::{Problem, ProblemDocument};
use super::{ApiContext, ApiUser, Need, json_body};

/// An app to register.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewAppRequest {
    name: String,
    /// A confidential app gets a client secret; a public one uses PKCE only.
    #[serde(default)]
    confidential: bool,
    redirect_uris: Vec<String>,
    #[serde(default)]
    launch_uris: Vec<String>,
    /// The SMART scopes the app may ask for.
    scopes: String,
}

/// A registered app, with its client secret (shown once) when it is confidential.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RegisteredApp {
    app: AppView,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_secret: Option<String>,
}

/// What waits for an operator.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ReviewQueue {
    /// Production access requests submitted or in review.
    access_requests: Vec<AccessRequestView>,
    /// Apps waiting for verification or enablement, with their deadlines.
    apps: Vec<AppView>,
}

/// Register a patient-access app of the account: its sandbox client exists at once.
#[utoipa::path(post, path = "/api/accounts/{id}/apps", tag = "apps", request_body = NewAppRequest, security(("api_key" = [])),
    params(("id" = String, Path, description = "the account id")),
    responses((status = 201, body = RegisteredApp), (status = 422, body = ProblemDocument, content_type = "application/problem+json")))]
pub(crate) async fn register(
    State(context): State<ApiContext>,
    caller: ApiUser,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    let request: NewAppRequest = json_body(&body)?;
    let store = context.store();
    caller.account(store, &id, Need::Change).await?;
    let new = NewApp {
        name: request.name,
        confidential: request.confidential,
        redirect_uris: request.redirect_uris,
        launch_uris: request.launch_uris,
        scopes: request.scopes,
    };
    let (registered, client_secret) = app::register(store, &id, new, caller.username()).await?;
    let answer = RegisteredApp { app: AppView::at(&registered, OffsetDateTime::now_utc()), client_secret };
    Ok((StatusCode::CREATED, axum::Json(answer)).into_response())
}

/// The account's apps.
#[utoipa::path(get, path = "/api/accounts/{id}/apps", tag = "apps", security(("api_key" = [])),
    params(("id" = String, Path, description = "the account id")), responses((status = 200, body = [AppView])))]
pub(crate) async fn list(
    State(context): State<ApiContext>,
    caller: ApiUser,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let store = context.store();
    caller.account(store, &id, Need::Read).await?;
    let now = OffsetDateTime::now_utc();
    let apps: Vec<AppView> = app::of_account(store, &id).await?.iter().map(|found| AppView::at(found, now)).collect();
    Ok(axum::Json(apps).into_response())
}

/// Read an app, with its deadlines.
#[utoipa::path(get, path = "/api/apps/{id}", tag = "apps", security(("api_key" = [])),
    params(("id" = String, Path, description = "the app id")), responses((status = 200, body = AppView)))]
pub(crate) async fn get(
    State(context): State<ApiContext>,
    caller: ApiUser,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let found = checked(&context, &caller, &id, Need::Read).await?;
    Ok(axum::Json(AppView::at(&found, OffsetDateTime::now_utc())).into_response())
}

/// New settings of an app.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AppSettings {
    redirect_uris: Vec<String>,
    scopes: String,
}

/// Change the app's redirect URIs and scopes, in every environment it is registered in. Once
/// it is in production, new ones are a material change that asks for re-certification.
#[utoipa::path(put, path = "/api/apps/{id}", tag = "apps", request_body = AppSettings, security(("api_key" = [])),
    params(("id" = String, Path, description = "the app id")),
    responses((status = 200, body = AppView), (status = 422, body = ProblemDocument, content_type = "application/problem+json")))]
pub(crate) async fn update(
    State(context): State<ApiContext>,
    caller: ApiUser,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    let AppSettings { redirect_uris, scopes } = json_body(&body)?;
    checked(&context, &caller, &id, Need::Change).await?;
    let updated = app::update(context.store(), &id, redirect_uris, scopes, caller.username()).await?;
    Ok(axum::Json(AppView::at(&updated, OffsetDateTime::now_utc())).into_response())
}

/// Move the app towards production: `production` (the account asks), `verify` (an operator
/// verified the developer's identity), `enable` (an operator enables it in production).
#[utoipa::path(post, path = "/api/apps/{id}/{step}", tag = "apps", security(("api_key" = [])),
    params(("id" = String, Path, description = "the app id"), ("step" = String, Path, description = "production, verify or enable")),
    responses((status = 200, body = AppView), (status = 409, body = ProblemDocument, content_type = "application/problem+json")))]
pub(crate) async fn step(
    State(context): State<ApiContext>,
    caller: ApiUser,
    Path((id, step)): Path<(String, String)>,
) -> Result<Response, Problem> {
    checked(&context, &caller, &id, Need::Change).await?;
    let (store, by) = (context.store(), caller.username());
    let moved = match step.as_str() {
        "production" => app::request_production(store, &id, by).await,
        "verify" => {
            caller.check_operator("verify a developer")?;
            app::verify(store, &id, by).await
        }
        "enable" => {
            caller.check_operator("enable an app in production")?;
            app::enable(store, &id, by).await
        }
        _ => {
            return Err(Problem::new(
                StatusCode::NOT_FOUND,
                "not-found",
                format!("no step '{step}': production, verify or enable"),
            ));
        }
    }
    .map_err(|error| match error {
        access::AccessError::Invalid(reason) => Problem::new(StatusCode::CONFLICT, "illegal-step", reason),
        other => other.into(),
    })?;
    Ok(axum::Json(AppView::at(&moved, OffsetDateTime::now_utc())).into_response())
}

/// What waits for operators: access requests to review, apps to verify or enable (with their
/// deadlines and whether they are overdue).
#[utoipa::path(get, path = "/api/review-queue", tag = "apps", security(("api_key" = [])), responses((status = 200, body = ReviewQueue)))]
pub(crate) async fn queue(State(context): State<ApiContext>, caller: ApiUser) -> Result<Response, Problem> {
    caller.check_operator("read the review queue")?;
    let store = context.store();
    let mut access_requests = Vec::new();
    for state in [RequestState::Submitted, RequestState::InReview] {
        access_requests.extend(request::in_state(store, state).await?.iter().map(AccessRequestView::from));
    }
    let now = OffsetDateTime::now_utc();
    let mut apps = Vec::new();
    for waiting in ["verification", "enablement"] {
        apps.extend(app::waiting_for(store, waiting).await?.iter().map(|found| AppView::at(found, now)));
    }
    Ok(axum::Json(ReviewQueue { access_requests, apps }).into_response())
}

/// The app at `id`, if the caller may `need` on its account.
async fn checked(
    context: &ApiContext,
    caller: &ApiUser,
    id: &str,
    need: Need,
) -> Result<store::records::Versioned<app::App>, Problem> {
    let store = context.store();
    let found = app::get(store, id).await?;
    caller.account(store, &found.value.account, need).await?;
    Ok(found)
}
