//! Accounts: made by an operator (no members yet) or by a signed-in user (its owner).

use access::account::{self, Member, MemberRole};
use access::certification;
use access::view::AccountView;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
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
    let account = account::get(store, &id).await?;
    caller.check(&account.value, Need::Read)?;
    let status = certification::status(store, &id, &account.value, time::OffsetDateTime::now_utc()).await?;
    Ok(axum::Json(AccountView::from(&account).with(&status)).into_response())
}
