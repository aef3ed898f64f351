//! The `/api/` JSON API of the access program: sign-up, sign-in, accounts, devices and their
//! Device JWTs, production access requests and their review. Every operation calls the
//! `access` crate, as the `ignis admin` commands do; errors are RFC 9457 problem documents
//! ([`problem`]); `GET /api/openapi.json` describes it all ([`openapi`]).
//!
//! A caller authenticates with `Authorization: Bearer <api key>` (from sign-up or
//! `POST /api/sessions`). Operators may do everything; an account's owners and developers
//! change its devices and requests, its viewers read them; only operators review.

mod accounts;
mod apps;
mod audit;
mod devices;
pub(crate) mod openapi;
pub(crate) mod problem;
mod requests;
mod sessions;

use std::sync::Arc;

use access::account::{Account, MemberRole};
use auth::user::{Role, User};
use axum::Router;
use axum::body::Bytes;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::routing::{get, post, put};
use serde::de::DeserializeOwned;
use store::Store;
use store::records::Versioned;

use self::problem::Problem;
use crate::state::{AppState, Authorization};

/// What every API handler is given.
#[derive(Clone)]
pub(crate) struct ApiContext {
    pub(crate) app: AppState,
    pub(crate) auth: Arc<Authorization>,
}

impl ApiContext {
    pub(crate) fn store(&self) -> &dyn Store {
        self.app.store.as_ref()
    }
}

/// The routes under `/api/`.
pub(crate) fn routes(context: ApiContext) -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(openapi::document))
        .route("/signup", post(sessions::sign_up))
        .route("/sessions", post(sessions::sign_in))
        .route("/accounts", post(accounts::create))
        .route("/accounts/{id}", get(accounts::get))
        .route("/accounts/{id}/webhook", put(accounts::set_webhook))
        .route("/accounts/{id}/suspend", post(accounts::suspend))
        .route("/accounts/{id}/reinstate", post(accounts::reinstate))
        .route("/accounts/{id}/limit", put(accounts::set_limit))
        .route("/accounts/{id}/usage", get(accounts::usage))
        .route("/accounts/{id}/members/{username}", put(accounts::set_member).delete(accounts::remove_member))
        .route("/accounts/{id}/notifications", get(accounts::notifications))
        .route("/accounts/{id}/devices", get(devices::list).post(devices::create))
        .route("/accounts/{id}/access-requests", get(requests::list).post(requests::create))
        .route("/accounts/{id}/apps", get(apps::list).post(apps::register))
        .route("/apps/{id}", get(apps::get).put(apps::update))
        .route("/apps/{id}/{step}", post(apps::step))
        .route("/review-queue", get(apps::queue))
        .route("/audit-events", get(audit::search))
        .route("/audit-events/export", get(audit::export_range))
        .route("/ca", post(devices::ca_init))
        .route("/devices/{id}", get(devices::get))
        .route("/devices/{id}/credential", post(devices::credential))
        .route("/devices/{id}/revoke", post(devices::revoke))
        .route("/devices/{id}/certificate", put(devices::rotate))
        .route("/access-requests/{id}", get(requests::get))
        .route("/access-requests/{id}/checklist/{item}", put(requests::record))
        .route("/access-requests/{id}/{action}", post(requests::transition))
        .with_state(context)
}

/// The signed-in user of an API request.
pub(crate) struct ApiUser(pub(crate) Versioned<User>);

impl FromRequestParts<ApiContext> for ApiUser {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, context: &ApiContext) -> Result<ApiUser, Problem> {
        let key = crate::authorize::bearer(&parts.headers)
            .ok_or_else(|| Problem::unauthorized("this API requires an API key (Authorization: Bearer)"))?;
        match auth::api_key::user_of(context.store(), key, crate::authorize::now()).await? {
            Some(user) => {
                if let Some(note) = parts.extensions.get::<crate::audit::Note>() {
                    let user = Some(user.value.username.clone());
                    note.agent(store::audit::Agent { user, ..store::audit::Agent::default() });
                }
                Ok(ApiUser(user))
            }
            None => Err(Problem::unauthorized("the API key is unknown or expired")),
        }
    }
}

/// What a caller wants to do with an account's things.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    Read,
    Change,
    /// Its members: owners only.
    Manage,
}

impl ApiUser {
    pub(crate) fn username(&self) -> &str {
        &self.0.value.username
    }

    pub(crate) fn is_operator(&self) -> bool {
        self.0.value.role == Role::Operator
    }

    /// Whether the caller may `need` on `account`: operators always, members by their role.
    fn check(&self, account: &Account, need: Need) -> Result<(), Problem> {
        if self.is_operator() {
            return Ok(());
        }
        match (account.role_of(self.username()), need) {
            (Some(MemberRole::Owner), _)
            | (Some(MemberRole::Developer), Need::Read | Need::Change)
            | (Some(MemberRole::Viewer), Need::Read) => Ok(()),
            (Some(MemberRole::Developer), Need::Manage) => {
                Err(Problem::forbidden("only an owner of the account changes its members"))
            }
            (Some(MemberRole::Viewer), _) => Err(Problem::forbidden("a viewer of the account cannot change it")),
            (None, _) => Err(Problem::forbidden("the caller is not a member of the account")),
        }
    }

    /// The account `id`, if the caller may `need` on it.
    pub(crate) async fn account(&self, store: &dyn Store, id: &str, need: Need) -> Result<Versioned<Account>, Problem> {
        let account = access::account::get(store, id).await?;
        self.check(&account.value, need)?;
        Ok(account)
    }

    /// Only operators review.
    pub(crate) fn check_operator(&self, what: &str) -> Result<(), Problem> {
        if self.is_operator() { Ok(()) } else { Err(Problem::forbidden(format!("only an operator may {what}"))) }
    }
}

/// The JSON body of a request as `T`, or a problem naming what is wrong with it.
pub(crate) fn json_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, Problem> {
    serde_json::from_slice(body).map_err(|error| Problem::bad_request(format!("the request body: {error}")))
}
