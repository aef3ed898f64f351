//! Sign-up (an account, its owner, and at once a working sandbox credential) and sign-in (an
//! API key, after the second factor when one is enrolled).

use access::account::{self, Member, MemberRole};
use access::device::{self, NewDevice};
use access::view::{AccountView, DeviceView};
use auth::user::{self, NewUser, PasswordOutcome, Role};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use store::Environment;
use utoipa::ToSchema;

use super::problem::{Problem, ProblemDocument};
use super::{ApiContext, json_body};
use crate::authorize::now;

/// A sign-up.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignUp {
    /// The company's name.
    account: String,
    /// The owner's username.
    username: String,
    password: String,
}

/// What sign-up made.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SignedUp {
    account: AccountView,
    username: String,
    /// The owner's API key (shown once).
    api_key: String,
    /// Seconds since the Unix epoch.
    api_key_expires: i64,
    /// A sandbox device, ready to call `/sandbox/fhir` with `sandbox_jwt`.
    sandbox_device: DeviceView,
    /// Its Device JWT (shown once).
    sandbox_jwt: String,
}

/// A sign-in.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignIn {
    username: String,
    password: String,
    /// The TOTP or recovery code, for users enrolled in a second factor.
    #[serde(default)]
    code: Option<String>,
}

/// A new API key.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Session {
    api_key: String,
    /// Seconds since the Unix epoch.
    expires: i64,
}

/// Sign up: an account, its owner (a developer) and a sandbox device with its Device JWT.
#[utoipa::path(post, path = "/api/signup", tag = "sessions", request_body = SignUp,
    responses(
        (status = 201, body = SignedUp),
        (status = 409, description = "the username is taken", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 422, description = "a value is not acceptable", body = ProblemDocument, content_type = "application/problem+json"),
    ))]
pub(crate) async fn sign_up(State(context): State<ApiContext>, body: Bytes) -> Result<Response, Problem> {
    let request: SignUp = json_body(&body)?;
    let store = context.store();
    let new = NewUser {
        username: request.username,
        password: request.password,
        role: Role::Developer,
        fhir_user: String::new(),
        patients: Vec::new(),
        enrol_totp: false,
    };
    let (owner, _) = user::create(store, &context.auth.secret_key, new, "signup").await?;
    let username = owner.value.username.clone();
    let member = Member { username: username.clone(), role: MemberRole::Owner };
    let account = account::create(store, &request.account, vec![member], &username).await?;
    let sandbox = NewDevice {
        account: account.id.clone(),
        name: "sandbox".to_owned(),
        purpose: "made at sign-up".to_owned(),
        environment: Environment::Sandbox,
        scope: None,
        certificate: None,
    };
    let device = device::create(store, sandbox, &username).await?;
    let jwt = context.auth.devices(store).await?.issue(store, &device.id, &username).await?;
    let device = device::get(store, &device.id).await?;
    let (api_key, expires) = auth::api_key::issue(store, &owner.id, now()).await.map_err(Problem::internal)?;
    let answer = SignedUp {
        account: AccountView::from(&account),
        username,
        api_key,
        api_key_expires: expires,
        sandbox_device: DeviceView::from(&device),
        sandbox_jwt: jwt,
    };
    Ok((StatusCode::CREATED, axum::Json(answer)).into_response())
}

/// Sign in: a new API key.
#[utoipa::path(post, path = "/api/sessions", tag = "sessions", request_body = SignIn,
    responses(
        (status = 201, body = Session),
        (status = 401, description = "wrong credentials, a missing or wrong code, or a locked user", body = ProblemDocument, content_type = "application/problem+json"),
    ))]
pub(crate) async fn sign_in(State(context): State<ApiContext>, body: Bytes) -> Result<Response, Problem> {
    let request: SignIn = json_body(&body)?;
    let store = context.store();
    let policy = &context.auth.sign_in;
    let at = time::OffsetDateTime::now_utc();
    let user = match user::check_password(store, &request.username, &request.password, policy, at).await? {
        PasswordOutcome::SignedIn(user) => user,
        PasswordOutcome::NeedsSecondFactor(user) => {
            let Some(code) = request.code.as_deref() else {
                return Err(Problem::new(
                    StatusCode::UNAUTHORIZED,
                    "second-factor-required",
                    "the user has a second factor: send its code in `code`",
                ));
            };
            let key = &context.auth.secret_key;
            user::check_second_factor(store, key, &user.value.username, code.trim(), policy, at).await?
        }
    };
    let (api_key, expires) = auth::api_key::issue(store, &user.id, now()).await.map_err(Problem::internal)?;
    Ok((StatusCode::CREATED, axum::Json(Session { api_key, expires })).into_response())
}
