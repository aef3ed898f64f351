//! The authorization pages: sign-in, second factor, patient picker, consent, and errors.
//! Server-rendered HTML that works without JavaScript; `maud` escapes every value.
//!
//! The form fields are an interface conformance tools and browser tests drive: sign-in posts
//! `username` and `password`, the second factor `otp`, the picker `patient`, and consent one
//! checkbox `scope` per grantable scope plus a button `decision` (`approve` or `deny`). Every
//! form carries the request handle in `request`.

use auth::consent::Offer;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

pub(crate) fn sign_in(action: &str, handle: &str, client_id: &str, error: Option<&str>) -> Response {
    page(
        StatusCode::OK,
        "Sign in",
        html! {
            p { "The app " strong { (client_id) } " asks to access your health records. Sign in to continue." }
            (problem(error))
            form method="post" action=(action) {
                input type="hidden" name="request" value=(handle);
                label { "Username " input type="text" name="username" autocomplete="username" required autofocus; }
                label { "Password " input type="password" name="password" autocomplete="current-password" required; }
                button type="submit" { "Sign in" }
            }
        },
    )
}

pub(crate) fn second_factor(action: &str, handle: &str, error: Option<&str>) -> Response {
    page(
        StatusCode::OK,
        "Verification code",
        html! {
            p { "Enter the 6-digit code from your authenticator app, or one of your recovery codes." }
            (problem(error))
            form method="post" action=(action) {
                input type="hidden" name="request" value=(handle);
                label { "Code " input type="text" name="otp" inputmode="numeric" autocomplete="one-time-code" required autofocus; }
                button type="submit" { "Verify" }
            }
        },
    )
}

/// The patient picker: a radio button `patient` per choice; for practitioners and operators a
/// search by name first (`search` = the flow URL and the name searched).
pub(crate) fn patient_picker(
    action: &str,
    handle: &str,
    patients: &[(String, String)],
    error: Option<&str>,
    search: Option<(&str, Option<&str>)>,
) -> Response {
    page(
        StatusCode::OK,
        "Choose a patient",
        html! {
            p { "Whose records should the app see?" }
            (problem(error))
            @if let Some((flow, name)) = search {
                form method="get" action=(flow) {
                    input type="hidden" name="request" value=(handle);
                    label { "Name " input type="search" name="name" value=[name]; }
                    button type="submit" { "Find" }
                }
            }
            @if patients.is_empty() { p { "No patient matches." } }
            form method="post" action=(action) {
                input type="hidden" name="request" value=(handle);
                @for (index, (id, label)) in patients.iter().enumerate() {
                    label.choice { input type="radio" name="patient" value=(id) checked[index == 0]; " " (label) }
                }
                button type="submit" { "Continue" }
            }
        },
    )
}

pub(crate) fn consent(
    action: &str,
    handle: &str,
    client_id: &str,
    patient: Option<&str>,
    offers: &[Offer],
    offline: bool,
) -> Response {
    page(
        StatusCode::OK,
        "Allow access",
        html! {
            p { "The app " strong { (client_id) } " asks for the access ticked below. Untick what it should not have." }
            @if let Some(patient) = patient { p { "Patient: " strong { (patient) } } }
            @if offline {
                p.notice { "This app asks for offline access: it can keep reading the data you allow until you revoke its access, without you signing in again." }
            }
            form method="post" action=(action) {
                input type="hidden" name="request" value=(handle);
                fieldset {
                    legend { "Access" }
                    @for offer in offers {
                        label.choice.nested[offer.nested] {
                            input type="checkbox" name="scope" value=(offer.scope) checked[offer.ticked];
                            " " (offer.label) " " code { (offer.scope) }
                        }
                    }
                }
                button type="submit" name="decision" value="approve" { "Allow" }
                " "
                button type="submit" name="decision" value="deny" { "Deny" }
            }
        },
    )
}

/// Sign-in for the connected-apps page: password and, when enrolled, the TOTP code at once.
pub(crate) fn apps_sign_in(action: &str, error: Option<&str>) -> Response {
    page(
        StatusCode::OK,
        "Your connected apps",
        html! {
            p { "Sign in to see the apps you allowed to access your records, and to revoke them." }
            (problem(error))
            form method="post" action=(action) {
                label { "Username " input type="text" name="username" autocomplete="username" required autofocus; }
                label { "Password " input type="password" name="password" autocomplete="current-password" required; }
                label { "Code (if you use an authenticator app) " input type="text" name="otp" inputmode="numeric" autocomplete="one-time-code"; }
                button type="submit" { "Sign in" }
            }
        },
    )
}

/// The apps `username` granted lasting access: `(grant, client_id, scope)`, each revocable.
pub(crate) fn apps(
    action: &str,
    username: &str,
    grants: &[(String, String, String)],
    notice: Option<&str>,
) -> Response {
    page(
        StatusCode::OK,
        "Your connected apps",
        html! {
            p { "Signed in as " strong { (username) } "." }
            @if let Some(notice) = notice { p.notice role="status" { (notice) } }
            @if grants.is_empty() { p { "No app has lasting access to your records." } }
            @for (grant, client_id, scope) in grants {
                form method="post" action=(action) {
                    input type="hidden" name="grant" value=(grant);
                    p { strong { (client_id) } br; code { (scope) } }
                    button type="submit" { "Revoke access" }
                }
            }
        },
    )
}

/// A page that ends the flow here: the app's request cannot be answered at its redirect URI.
pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    page(status, "Cannot continue", html! { p.problem { (message) } })
}

fn problem(error: Option<&str>) -> Markup {
    html! { @if let Some(error) = error { p.problem role="alert" { (error) } } }
}

fn page(status: StatusCode, title: &str, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — Ignis" }
                style { (STYLE) }
            }
            body { main { h1 { (title) } (body) } }
        }
    };
    let mut response = (status, axum::response::Html(markup.into_string())).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"),
    );
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;background:#f6f7f9;color:#1f2328;margin:0}\
main{max-width:34rem;margin:3rem auto;background:#fff;padding:2rem;border-radius:6px;box-shadow:0 1px 3px #0002}\
label{display:block;margin:.6rem 0}label.nested{margin-left:1.6rem}input[type=text],input[type=password]{width:100%;padding:.4rem}\
button{padding:.5rem 1.2rem;margin-top:1rem}.problem{color:#b3261e}.notice{background:#fff4e5;padding:.6rem}\
code{font-size:.8em;color:#555}fieldset{border:1px solid #ddd}";
