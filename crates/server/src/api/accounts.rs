//! Accounts: made by an operator (no members yet) or by a signed-in user (its owner).

use access::account::{self, Member, MemberRole};
use access::certification;
use access::notification;
use access::view::{AccountView, NotificationView};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::problem::{Problem, ProblemDocument};
use super::{ApiContext, ApiUser, Need, json_body};

/// A new account.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewAccount {
    name: String,
    /// Days production stays open after a material change (operators only; default 30).
    #[serde(default)]
    grace_days: Option<u32>,
}

/// Create an account.
#[utoipa::path(post, path = "/api/accounts", tag = "accounts", request_body = NewAccount, security(("api_key" = [])),
    responses((status = 201, body = AccountView), (status = 422, body = ProblemDocument, content_type = "application/problem+json")))]
pub(crate) async fn create(
    State(context): State<ApiContext>,
    caller: ApiUser,
    body: Bytes,
) -> Result<Response, Problem> {
    let request: NewAccount = json_body(&body)?;
    let members = match caller.is_operator() {
        true => Vec::new(),
        false => vec![Member { username: caller.username().to_owned(), role: MemberRole::Owner }],
    };
    if request.grace_days.is_some() {
        caller.check_operator("set an account's grace period")?;
    }
    let created =
        account::create_with_grace(context.store(), &request.name, members, request.grace_days, caller.username())
            .await?;
    Ok((StatusCode::CREATED, axum::Json(AccountView::from(&created))).into_response())
}

/// Read an account, with where it stands for production.
#[utoipa::path(get, path = "/api/accounts/{id}", tag = "accounts", security(("api_key" = [])),
    params(("id" = String, Path, description = "the account id")),
    responses((status = 200, body = AccountView), (status = 404, body = ProblemDocument, content_type = "application/problem+json")))]
pub(crate) async fn get(
    State(context): State<ApiContext>,
    caller: ApiUser,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let store = context.store();
    let account = caller.account(store, &id, Need::Read).await?;
    let status = certification::status(store, &id, &account.value, time::OffsetDateTime::now_utc()).await?;
    Ok(axum::Json(AccountView::from(&account).with(&status)).into_response())
}

/// An account's webhook.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewWebhook {
    /// https:// (plain http only to the machine itself).
    url: String,
}

/// The webhook set, with the secret its deliveries are signed with (shown once).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WebhookSet {
    url: String,
    /// The HMAC-SHA256 key of `X-Ignis-Signature: sha256=hex(hmac(secret, timestamp + "." + body))`.
    secret: String,
}

/// Set the account's webhook, where its notifications are delivered.
#[utoipa::path(put, path = "/api/accounts/{id}/webhook", tag = "accounts", request_body = NewWebhook, security(("api_key" = [])),
    params(("id" = String, Path, description = "the account id")),
    responses((status = 200, body = WebhookSet), (status = 422, body = ProblemDocument, content_type = "application/problem+json")))]
pub(crate) async fn set_webhook(
    State(context): State<ApiContext>,
    caller: ApiUser,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    let request: NewWebhook = json_body(&body)?;
    let store = context.store();
    caller.account(store, &id, Need::Change).await?;
    let secret =
        notification::set_webhook(store, &context.auth.secret_key, &id, &request.url, caller.username()).await?;
    Ok(axum::Json(WebhookSet { url: request.url, secret }).into_response())
}

/// The account's notifications (its outbox), oldest first, with their delivery.
#[utoipa::path(get, path = "/api/accounts/{id}/notifications", tag = "accounts", security(("api_key" = [])),
    params(("id" = String, Path, description = "the account id")), responses((status = 200, body = [NotificationView])))]
pub(crate) async fn notifications(
    State(context): State<ApiContext>,
    caller: ApiUser,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let store = context.store();
    caller.account(store, &id, Need::Read).await?;
    let found: Vec<NotificationView> =
        notification::of_account(store, &id).await?.iter().map(NotificationView::from).collect();
    Ok(axum::Json(found).into_response())
}

/// A member's role.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MemberRoleRequest {
    /// owner, developer or viewer.
    #[schema(value_type = String, example = "developer")]
    role: MemberRole,
}

/// Give an existing user a role on the account (owners and operators).
#[utoipa::path(put, path = "/api/accounts/{id}/members/{username}", tag = "accounts", request_body = MemberRoleRequest,
    security(("api_key" = [])),
    params(("id" = String, Path, description = "the account id"), ("username" = String, Path, description = "the user")),
    responses((status = 200, body = AccountView), (status = 404, body = ProblemDocument, content_type = "application/problem+json")))]
pub(crate) async fn set_member(
    State(context): State<ApiContext>,
    caller: ApiUser,
    Path((id, username)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, Problem> {
    let MemberRoleRequest { role } = json_body(&body)?;
    change_member(&context, &caller, &id, &username, Some(role)).await
}

/// Remove a member (an account keeps at least one owner).
#[utoipa::path(delete, path = "/api/accounts/{id}/members/{username}", tag = "accounts", security(("api_key" = [])),
    params(("id" = String, Path, description = "the account id"), ("username" = String, Path, description = "the user")),
    responses((status = 200, body = AccountView), (status = 422, body = ProblemDocument, content_type = "application/problem+json")))]
pub(crate) async fn remove_member(
    State(context): State<ApiContext>,
    caller: ApiUser,
    Path((id, username)): Path<(String, String)>,
) -> Result<Response, Problem> {
    change_member(&context, &caller, &id, &username, None).await
}

async fn change_member(
    context: &ApiContext,
    caller: &ApiUser,
    id: &str,
    username: &str,
    role: Option<MemberRole>,
) -> Result<Response, Problem> {
    let store = context.store();
    caller.account(store, id, Need::Manage).await?;
    let changed = account::set_member(store, id, username, role, caller.username()).await?;
    Ok(axum::Json(AccountView::from(&changed)).into_response())
}

/// Why an account is suspended.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewSuspension {
    pub(crate) reason: String,
}

/// An account's rate limit.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewLimit {
    /// Requests per minute for each of its devices and for the account as a whole.
    pub(crate) per_minute: u32,
}

/// Suspend the account: every credential of it is refused (403) until it is reinstated.
/// Operators only.
#[utoipa::path(post, path = "/api/accounts/{id}/suspend", tag = "accounts", request_body = NewSuspension, security(("api_key" = [])),
    params(("id" = String, Path, description = "the account id")),
    responses((status = 200, body = AccountView), (status = 403, body = ProblemDocument, content_type = "application/problem+json")))]
pub(crate) async fn suspend(
    State(context): State<ApiContext>,
    caller: ApiUser,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    caller.check_operator("suspend an account")?;
    let request: NewSuspension = json_body(&body)?;
    let account = access::monitoring::suspend(context.store(), &id, &request.reason, caller.username()).await?;
    account_changed(&context, &id).await?;
    Ok(axum::Json(AccountView::from(&account)).into_response())
}

/// Reinstate a suspended account; its rate limit starts afresh. Operators only.
#[utoipa::path(post, path = "/api/accounts/{id}/reinstate", tag = "accounts", security(("api_key" = [])),
    params(("id" = String, Path, description = "the account id")),
    responses((status = 200, body = AccountView), (status = 403, body = ProblemDocument, content_type = "application/problem+json")))]
pub(crate) async fn reinstate(
    State(context): State<ApiContext>,
    caller: ApiUser,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    caller.check_operator("reinstate an account")?;
    let account = access::monitoring::reinstate(context.store(), &id, caller.username()).await?;
    account_changed(&context, &id).await?;
    Ok(axum::Json(AccountView::from(&account)).into_response())
}

/// Set the account's rate limit (and lift a throttle: its buckets start full). Operators only.
#[utoipa::path(put, path = "/api/accounts/{id}/limit", tag = "accounts", request_body = NewLimit, security(("api_key" = [])),
    params(("id" = String, Path, description = "the account id")),
    responses((status = 200, body = AccountView), (status = 403, body = ProblemDocument, content_type = "application/problem+json")))]
pub(crate) async fn set_limit(
    State(context): State<ApiContext>,
    caller: ApiUser,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    caller.check_operator("set an account's limit")?;
    let request: NewLimit = json_body(&body)?;
    let account = access::monitoring::set_limit(context.store(), &id, request.per_minute, caller.username()).await?;
    account_changed(&context, &id).await?;
    Ok(axum::Json(AccountView::from(&account)).into_response())
}

/// After an operator changed the account's suspension or limit: this process reads its
/// devices again and drops what it held of its buckets (other servers within a second).
async fn account_changed(context: &ApiContext, id: &str) -> Result<(), Problem> {
    context.auth.devices(context.store()).await?.forget_all();
    context.app.monitor.forget(id);
    Ok(())
}

/// What the account's devices and clients did since the answering server started: requests,
/// errors, authentication failures, calls from outside the approved network paths, throttled
/// requests and distinct patients reached (each server counts its own; `/metrics` has them
/// per device and client).
#[utoipa::path(get, path = "/api/accounts/{id}/usage", tag = "accounts", security(("api_key" = [])),
    params(("id" = String, Path, description = "the account id")),
    responses((status = 200, body = crate::monitor::Usage)))]
pub(crate) async fn usage(
    State(context): State<ApiContext>,
    caller: ApiUser,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    caller.account(context.store(), &id, Need::Read).await?;
    Ok(axum::Json(context.app.monitor.usage(&id)).into_response())
}
