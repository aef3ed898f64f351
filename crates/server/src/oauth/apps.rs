//! "Connected apps": a signed-in user sees the apps they granted lasting access (refresh
//! tokens) and revokes any of them, which ends the app's refresh token and every access token
//! issued from it at once (ONC (g)(10) token revocation, checklist §6.2).
//!
//! Signing in here takes the password and, for users enrolled in TOTP, the code in one form;
//! it starts the same browser session as the authorization pages.

use auth::user::{self, AuthError, PasswordOutcome, User};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use store::records::Versioned;

use super::flow::{failed, see_other, session_of, start_session};
use super::{AuthContext, field, form_pairs, now, pages};

/// `GET …/auth/apps`.
pub(crate) async fn list(State(context): State<AuthContext>, headers: HeaderMap) -> Response {
    match session_of(&context, &headers).await {
        Ok(Some((_, user))) => page(&context, &user, None).await,
        Ok(None) => pages::apps_sign_in(&context.url("apps/sign-in"), None),
        Err(error) => failed(error),
    }
}

/// `POST …/auth/apps/sign-in` with `username`, `password` and (when enrolled) `otp`.
pub(crate) async fn sign_in(State(context): State<AuthContext>, body: Bytes) -> Response {
    let form = form_pairs(&body);
    let (username, password) = (field(&form, "username").unwrap_or(""), field(&form, "password").unwrap_or(""));
    let auth = &context.auth;
    let clock = time::OffsetDateTime::now_utc();
    let signed_in = match user::check_password(context.store(), username, password, &auth.sign_in, clock).await {
        Ok(PasswordOutcome::SignedIn(user)) => Ok(user),
        Ok(PasswordOutcome::NeedsSecondFactor(user)) => {
            let code = field(&form, "otp").unwrap_or("").trim();
            let store = context.store();
            user::check_second_factor(store, &auth.secret_key, &user.value.username, code, &auth.sign_in, clock).await
        }
        Err(error) => Err(error),
    };
    match signed_in {
        Ok(user) => match start_session(&context, &user.id).await {
            Ok(cookie) => {
                let mut response = see_other(&context.url("apps"));
                response.headers_mut().insert(axum::http::header::SET_COOKIE, cookie);
                response
            }
            Err(response) => response,
        },
        Err(error @ (AuthError::InvalidCredentials | AuthError::Locked { .. } | AuthError::InvalidSecondFactor)) => {
            pages::apps_sign_in(&context.url("apps/sign-in"), Some(&error.to_string()))
        }
        Err(error) => failed(error),
    }
}

/// `POST …/auth/apps/revoke` with `grant`.
pub(crate) async fn revoke(State(context): State<AuthContext>, headers: HeaderMap, body: Bytes) -> Response {
    let form = form_pairs(&body);
    let user = match session_of(&context, &headers).await {
        Ok(Some((_, user))) => user,
        Ok(None) => return see_other(&context.url("apps")),
        Err(error) => return failed(error),
    };
    let grant = field(&form, "grant").unwrap_or("");
    match context.auth.issuer.revoke_grant(context.store(), &user.id, grant, now()).await {
        Ok(true) => page(&context, &user, Some("Access revoked: the app's tokens no longer work.")).await,
        Ok(false) => pages::error(StatusCode::NOT_FOUND, "You have no such app grant."),
        Err(error) => failed(error),
    }
}

async fn page(context: &AuthContext, user: &Versioned<User>, notice: Option<&str>) -> Response {
    match context.auth.issuer.grants(context.store(), &user.id, now()).await {
        Ok(grants) => {
            let rows: Vec<(String, String, String)> = grants
                .into_iter()
                .filter(|(_, grant)| grant.environment == context.env.as_str())
                .map(|(id, grant)| (id, grant.client_id, grant.approval.scope))
                .collect();
            pages::apps(&context.url("apps/revoke"), &user.value.username, &rows, notice)
        }
        Err(error) => failed(error),
    }
}
