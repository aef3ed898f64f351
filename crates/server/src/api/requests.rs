//! Production access requests and their review: accounts open, fill in and submit them;
//! operators review, request changes, approve or reject. An action the request's state does
//! not allow is a 409 problem listing the actions it does allow.

use access::request::{self, Action, Item};
use access::view::AccessRequestView;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::ToSchema;

use super::problem::{Problem, ProblemDocument};
use super::{ApiContext, ApiUser, Need, json_body};

/// A checklist item's value.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChecklistValue {
    /// For `network`, comma-separated CIDRs.
    value: String,
}

/// Why, for an action that needs a reason; the contract end, for an approval.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Reason {
    #[serde(default)]
    reason: Option<String>,
    /// RFC 3339 instant when the certification ends (default a year after approval).
    #[serde(default)]
    contract_end: Option<String>,
}

/// Open a draft request for the account.
#[utoipa::path(post, path = "/api/accounts/{id}/access-requests", tag = "access requests", security(("api_key" = [])),
    params(("id" = String, Path, description = "the account id")), responses((status = 201, body = AccessRequestView)))]
pub(crate) async fn create(
    State(context): State<ApiContext>,
    caller: ApiUser,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let store = context.store();
    caller.account(store, &id, Need::Change).await?;
    let created = request::create(store, &id, caller.username()).await?;
    Ok((StatusCode::CREATED, axum::Json(AccessRequestView::from(&created))).into_response())
}

/// The account's requests.
#[utoipa::path(get, path = "/api/accounts/{id}/access-requests", tag = "access requests", security(("api_key" = [])),
    params(("id" = String, Path, description = "the account id")), responses((status = 200, body = [AccessRequestView])))]
pub(crate) async fn list(
    State(context): State<ApiContext>,
    caller: ApiUser,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let store = context.store();
    caller.account(store, &id, Need::Read).await?;
    let requests: Vec<AccessRequestView> =
        request::of_account(store, &id).await?.iter().map(AccessRequestView::from).collect();
    Ok(axum::Json(requests).into_response())
}

/// Read a request.
#[utoipa::path(get, path = "/api/access-requests/{id}", tag = "access requests", security(("api_key" = [])),
    params(("id" = String, Path, description = "the request id")),
    responses((status = 200, body = AccessRequestView), (status = 404, body = ProblemDocument, content_type = "application/problem+json")))]
pub(crate) async fn get(
    State(context): State<ApiContext>,
    caller: ApiUser,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let found = checked(&context, &caller, &id, Need::Read).await?;
    Ok(axum::Json(AccessRequestView::from(&found)).into_response())
}

/// Record an item of the review checklist (legal, architecture, security, network, demo).
#[utoipa::path(put, path = "/api/access-requests/{id}/checklist/{item}", tag = "access requests", security(("api_key" = [])),
    request_body = ChecklistValue,
    params(("id" = String, Path, description = "the request id"), ("item" = String, Path, description = "legal, architecture, security, network or demo")),
    responses((status = 200, body = AccessRequestView), (status = 422, body = ProblemDocument, content_type = "application/problem+json")))]
pub(crate) async fn record(
    State(context): State<ApiContext>,
    caller: ApiUser,
    Path((id, item)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, Problem> {
    let item: Item = item.parse()?;
    let ChecklistValue { value } = json_body(&body)?;
    checked(&context, &caller, &id, Need::Change).await?;
    let changed = request::record(context.store(), &id, item, &value, caller.username()).await?;
    Ok(axum::Json(AccessRequestView::from(&changed)).into_response())
}

/// Move the request on: `submit` (the account), `review`, `request-changes`, `approve`,
/// `reject` (operators; the last needs a complete checklist, the two others a reason).
#[utoipa::path(post, path = "/api/access-requests/{id}/{action}", tag = "access requests", security(("api_key" = [])),
    request_body(content = Reason, description = "optional; `reason` is required to request changes or reject"),
    params(("id" = String, Path, description = "the request id"), ("action" = String, Path, description = "submit, review, request-changes, approve or reject")),
    responses(
        (status = 200, body = AccessRequestView),
        (status = 409, description = "the state does not allow the action (the problem lists `allowed`), or the checklist is incomplete (`missing`)", body = ProblemDocument, content_type = "application/problem+json"),
    ))]
pub(crate) async fn transition(
    State(context): State<ApiContext>,
    caller: ApiUser,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, Problem> {
    let action: Action = action
        .parse()
        .map_err(|error: access::AccessError| Problem::new(StatusCode::NOT_FOUND, "not-found", error.to_string()))?;
    let Reason { reason, contract_end } = if body.is_empty() { Reason::default() } else { json_body(&body)? };
    let contract_end = contract_end
        .map(|text| {
            time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
                .map_err(|_| Problem::bad_request(format!("contract_end '{text}' is not an RFC 3339 instant")))
        })
        .transpose()?;
    checked(&context, &caller, &id, Need::Change).await?;
    if action.needs_operator() {
        caller.check_operator(&format!("{} a request", action.as_str()))?;
    }
    let changed =
        request::transition_with(context.store(), &id, action, reason.as_deref(), contract_end, caller.username())
            .await?;
    Ok(axum::Json(AccessRequestView::from(&changed)).into_response())
}

/// The request at `id`, if the caller may `need` on its account.
async fn checked(
    context: &ApiContext,
    caller: &ApiUser,
    id: &str,
    need: Need,
) -> Result<store::records::Versioned<request::AccessRequest>, Problem> {
    let store = context.store();
    let found = request::get(store, id).await?;
    caller.account(store, &found.value.account, need).await?;
    Ok(found)
}
