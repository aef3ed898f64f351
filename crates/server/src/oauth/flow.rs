//! The authorization endpoint (GET and POST, SMART `authorize-post`) and the pages a user
//! goes through: sign-in, second factor, patient picker, consent. Each form posts back here
//! with the request handle; every step ends with a redirect to `flow`, which shows the next
//! page, so reloading a page never repeats a step.
//!
//! Until the app's `client_id` and `redirect_uri` are known to match, errors are pages (never
//! a redirect to an unchecked URI); after that they go back to the app as RFC 6749 §4.1.2.1
//! errors with its `state`.

use auth::authorization::{self, Approval, PendingRequest};
use auth::consent;
use auth::user::{self, AuthError, PasswordOutcome, Role, User};
use auth::{client, launch, pkce, session};
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fhir::id::{LogicalId, ResourceType};
use fhir::search::{Handling, SearchQuery};
use store::records::Versioned;
use store::{SearchRequest, StoredResource};

use crate::audit::Note;
use store::audit::Agent;

use super::{AuthContext, cookie, field, form_pairs, now, pages};

/// The session cookie's name.
const SESSION: &str = "ignis_session";

/// `GET …/auth/authorize`.
pub(crate) async fn authorize_get(State(context): State<AuthContext>, RawQuery(query): RawQuery) -> Response {
    let pairs = query.as_deref().map(|query| form_pairs(query.as_bytes())).unwrap_or_default();
    authorize(&context, &pairs).await
}

/// `POST …/auth/authorize` (form-encoded, as SMART's `authorize-post`).
pub(crate) async fn authorize_post(State(context): State<AuthContext>, body: Bytes) -> Response {
    authorize(&context, &form_pairs(&body)).await
}

async fn authorize(context: &AuthContext, pairs: &[(String, String)]) -> Response {
    let (Some(client_id), Some(redirect_uri)) = (field(pairs, "client_id"), field(pairs, "redirect_uri")) else {
        return pages::error(StatusCode::BAD_REQUEST, "The app sent no client_id or no redirect_uri.");
    };
    let client = match client::find(context.store(), context.env.as_str(), client_id).await {
        Ok(Some(client)) => client,
        Ok(None) => return pages::error(StatusCode::BAD_REQUEST, "The app's client_id is not registered here."),
        Err(error) => return failed(error),
    };
    if !client.redirects_to(redirect_uri) {
        return pages::error(StatusCode::BAD_REQUEST, "The redirect_uri is not one registered for this app.");
    }
    let state = field(pairs, "state");
    let back = |error: &str, description: &str| redirect_error(redirect_uri, error, description, state);
    if field(pairs, "response_type") != Some("code") {
        return back("unsupported_response_type", "response_type must be code");
    }
    let aud = field(pairs, "aud").map(|aud| aud.trim_end_matches('/'));
    if aud != Some(&*context.fhir_base) {
        return back("invalid_request", "aud must be this server's FHIR base URL");
    }
    if field(pairs, "code_challenge_method") != Some("S256") {
        return back("invalid_request", "PKCE is required with code_challenge_method S256");
    }
    let Some(challenge) = field(pairs, "code_challenge").filter(|challenge| pkce::is_challenge(challenge)) else {
        return back("invalid_request", "code_challenge must be a base64url SHA-256 (43 characters)");
    };
    let requested = match auth::scope::Scopes::parse(field(pairs, "scope").unwrap_or("")) {
        Ok(scopes) => scopes,
        Err(error) => return back("invalid_scope", &error.to_string()),
    };
    let allowed = client.allowed_scopes();
    let mut scopes = requested.clone();
    scopes.retain(|scope| allowed.covers_one(scope));
    if scopes.iter().next().is_none() {
        return back("invalid_scope", "none of the requested scopes is allowed for this app");
    }
    let now = now();
    let launch = match field(pairs, "launch") {
        None => None,
        Some(value) => match launch::context(context.store(), context.env.as_str(), value, now).await {
            Ok(Some((bound, _user))) => Some(bound),
            Ok(None) => return back("invalid_request", "the launch parameter is unknown or expired"),
            Err(error) => return failed(error),
        },
    };
    let request = PendingRequest {
        environment: context.env.as_str().to_owned(),
        client_id: client.client_id,
        redirect_uri: redirect_uri.to_owned(),
        scope: scopes.to_string(),
        state: state.map(str::to_owned),
        code_challenge: challenge.to_owned(),
        nonce: field(pairs, "nonce").map(str::to_owned),
        patient: launch.as_ref().and_then(|bound| bound.patient.clone()),
        launch,
        awaiting_second_factor: None,
        user: None,
        expires: now + authorization::REQUEST_LIFETIME,
    };
    match authorization::begin(context.store(), &request).await {
        Ok(handle) => see_other(&flow_url(context, &handle)),
        Err(error) => failed(error),
    }
}

/// `GET …/auth/flow?request=…`: the page of the request's next step.
pub(crate) async fn show(
    State(context): State<AuthContext>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let pairs = query.as_deref().map(|query| form_pairs(query.as_bytes())).unwrap_or_default();
    let Some(handle) = field(&pairs, "request") else {
        return pages::error(StatusCode::BAD_REQUEST, "No authorization request.");
    };
    let name = field(&pairs, "name").map(str::trim).filter(|name| !name.is_empty());
    next_page_finding(&context, &headers, handle, None, name).await
}

/// `POST …/auth/sign-in` with `username` and `password`.
pub(crate) async fn sign_in(
    State(context): State<AuthContext>,
    note: Note,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = form_pairs(&body);
    let Some(handle) = field(&form, "request") else { return unknown_request() };
    if let Err(error) = authorization::pending(context.store(), handle, now()).await {
        return pages::error(StatusCode::BAD_REQUEST, &error.to_string());
    }
    let (username, password) = (field(&form, "username").unwrap_or(""), field(&form, "password").unwrap_or(""));
    note.agent(Agent { user: Some(username.to_owned()), ..Agent::default() });
    let checked = user::check_password(context.store(), username, password, &context.auth.sign_in, time_now()).await;
    match checked {
        Ok(PasswordOutcome::SignedIn(user)) => signed_in(&context, handle, &user).await,
        Ok(PasswordOutcome::NeedsSecondFactor(user)) => {
            let id = user.id.clone();
            match authorization::advance(context.store(), handle, |request| {
                request.awaiting_second_factor = Some(id.clone());
            })
            .await
            {
                Ok(_) => see_other(&flow_url(&context, handle)),
                Err(error) => failed(error),
            }
        }
        Err(error @ (AuthError::InvalidCredentials | AuthError::Locked { .. })) => {
            note.refused(error.to_string());
            next_page(&context, &headers, handle, Some(&error.to_string())).await
        }
        Err(error) => failed(error),
    }
}

/// `POST …/auth/second-factor` with `otp`.
pub(crate) async fn second_factor(
    State(context): State<AuthContext>,
    note: Note,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = form_pairs(&body);
    let Some(handle) = field(&form, "request") else { return unknown_request() };
    let request = match authorization::pending(context.store(), handle, now()).await {
        Ok(request) => request,
        Err(error) => return pages::error(StatusCode::BAD_REQUEST, &error.to_string()),
    };
    let Some(user_id) = request.value.awaiting_second_factor.as_deref() else {
        return see_other(&flow_url(&context, handle));
    };
    let username = match store::records::get::<User>(context.store(), user_id).await {
        Ok(Some(user)) => user.value.username,
        Ok(None) => return unknown_request(),
        Err(error) => return failed(error),
    };
    note.agent(Agent { user: Some(username.clone()), ..Agent::default() });
    let code = field(&form, "otp").unwrap_or("").trim();
    let auth = &context.auth;
    match user::check_second_factor(context.store(), &auth.secret_key, &username, code, &auth.sign_in, time_now()).await
    {
        Ok(user) => signed_in(&context, handle, &user).await,
        Err(error @ (AuthError::InvalidSecondFactor | AuthError::Locked { .. })) => {
            note.refused(error.to_string());
            next_page(&context, &headers, handle, Some(&error.to_string())).await
        }
        Err(error) => failed(error),
    }
}

/// `POST …/auth/patient` with `patient`.
pub(crate) async fn pick_patient(State(context): State<AuthContext>, headers: HeaderMap, body: Bytes) -> Response {
    let Step { form, handle, request, user } = match Step::of(&context, &headers, &body).await {
        Ok(step) => step,
        Err(response) => return response,
    };
    let handle = handle.as_str();
    let chosen = field(&form, "patient").unwrap_or("");
    let allowed = match may_choose(&context, &user.value, chosen).await {
        Ok(allowed) => allowed,
        Err(response) => return response,
    };
    if request.value.patient.is_some() || !allowed {
        return next_page(&context, &headers, handle, Some("Choose one of the patients listed.")).await;
    }
    let chosen = chosen.to_owned();
    match authorization::advance(context.store(), handle, |request| request.patient = Some(chosen.clone())).await {
        Ok(_) => see_other(&flow_url(&context, handle)),
        Err(error) => failed(error),
    }
}

/// `POST …/auth/consent` with the ticked `scope`s and `decision`.
pub(crate) async fn consent(State(context): State<AuthContext>, headers: HeaderMap, body: Bytes) -> Response {
    let Step { form, handle, request, user } = match Step::of(&context, &headers, &body).await {
        Ok(step) => step,
        Err(response) => return response,
    };
    let handle = handle.as_str();
    if request.value.needs_patient() && request.value.patient.is_none() {
        return see_other(&flow_url(&context, handle));
    }
    if let Err(error) = authorization::finish(context.store(), handle, &request).await {
        return pages::error(StatusCode::BAD_REQUEST, &error.to_string());
    }
    let request = request.value;
    let state = request.state.as_deref();
    if field(&form, "decision") != Some("approve") {
        return redirect_error(&request.redirect_uri, "access_denied", "the user denied access", state);
    }
    let offers = consent::offers(&request.scopes(), user.value.role);
    let ticked = form.iter().filter(|(name, _)| name == "scope").map(|(_, value)| value.as_str());
    let Some(granted) = consent::granted(&offers, ticked) else {
        return redirect_error(&request.redirect_uri, "access_denied", "the user granted nothing", state);
    };
    let auth_time = match session_of(&context, &headers).await {
        Ok(Some((session, _))) => session.started,
        _ => now(),
    };
    let wants_encounter = request.asks("launch") || request.asks("launch/encounter");
    let approval = Approval {
        scope: granted.to_string(),
        user: user.id.clone(),
        fhir_user: Some(user.value.fhir_user.clone()),
        patient: request.patient.clone(),
        encounter: request.launch.as_ref().and_then(|bound| bound.encounter.clone()).filter(|_| wants_encounter),
        nonce: request.nonce.clone(),
        auth_time,
    };
    match authorization::issue_code(context.store(), &request, approval, now()).await {
        Ok(code) => see_other(&with_query(&request.redirect_uri, &[("code", Some(&code)), ("state", state)])),
        Err(error) => failed(error),
    }
}

/// A posted step that needs the signed-in user: the form, the request handle, the request and
/// the user.
struct Step {
    form: Vec<(String, String)>,
    handle: String,
    request: Versioned<PendingRequest>,
    user: Versioned<User>,
}

impl Step {
    /// The step `body` posts; otherwise what to answer (back to the flow when no one is signed
    /// in for the request, or an error page).
    async fn of(context: &AuthContext, headers: &HeaderMap, body: &[u8]) -> Result<Step, Response> {
        let form = form_pairs(body);
        let handle = field(&form, "request").ok_or_else(unknown_request)?.to_owned();
        match signed_in_user(context, headers, &handle).await? {
            Some((request, user)) => Ok(Step { form, handle, request, user }),
            None => Err(see_other(&flow_url(context, &handle))),
        }
    }
}

/// The page for the request's next step, with `problem` shown when the last step failed.
async fn next_page(context: &AuthContext, headers: &HeaderMap, handle: &str, problem: Option<&str>) -> Response {
    next_page_finding(context, headers, handle, problem, None).await
}

/// [`next_page`], the patient picker narrowed to patients named `name`.
async fn next_page_finding(
    context: &AuthContext,
    headers: &HeaderMap,
    handle: &str,
    problem: Option<&str>,
    name: Option<&str>,
) -> Response {
    let request = match authorization::pending(context.store(), handle, now()).await {
        Ok(request) => request,
        Err(error) => return pages::error(StatusCode::BAD_REQUEST, &error.to_string()),
    };
    let user = match signed_in_user(context, headers, handle).await {
        Ok(Some((_, user))) => user,
        Ok(None) if request.value.awaiting_second_factor.is_some() => {
            return pages::second_factor(&context.url("second-factor"), handle, problem);
        }
        Ok(None) => return pages::sign_in(&context.url("sign-in"), handle, &request.value.client_id, problem),
        Err(response) => return response,
    };
    let request = request.value;
    if request.needs_patient() && request.patient.is_none() {
        let patients = match patient_choices(context, &user.value, name).await {
            Ok(patients) => patients,
            Err(response) => return response,
        };
        let searching = user.value.role != Role::Patient;
        if let ([(only, _)], None) = (patients.as_slice(), name) {
            let only = only.clone();
            return match authorization::advance(context.store(), handle, |request| request.patient = Some(only.clone()))
                .await
            {
                Ok(_) => see_other(&flow_url(context, handle)),
                Err(error) => failed(error),
            };
        }
        if patients.is_empty() && !searching {
            return pages::error(StatusCode::FORBIDDEN, "Your account may not act for any patient.");
        }
        let search = searching.then(|| (context.url("flow"), name));
        let search = search.as_ref().map(|(action, name)| (action.as_str(), *name));
        return pages::patient_picker(&context.url("patient"), handle, &patients, problem, search);
    }
    let offers = consent::offers(&request.scopes(), user.value.role);
    let offline = request.asks("offline_access");
    pages::consent(&context.url("consent"), handle, &request.client_id, request.patient.as_deref(), &offers, offline)
}

/// The user signed in for the request behind `handle`: the one whose session cookie came with
/// the request, when the request is theirs (or not yet anyone's: then it becomes theirs).
/// `Ok(None)` when no one is signed in for it.
async fn signed_in_user(
    context: &AuthContext,
    headers: &HeaderMap,
    handle: &str,
) -> Result<Option<(Versioned<PendingRequest>, Versioned<User>)>, Response> {
    let request = authorization::pending(context.store(), handle, now())
        .await
        .map_err(|error| pages::error(StatusCode::BAD_REQUEST, &error.to_string()))?;
    let Some((_, user)) = session_of(context, headers).await.map_err(failed)? else { return Ok(None) };
    match &request.value.user {
        Some(owner) if *owner == user.id => Ok(Some((request, user))),
        Some(_) => Err(pages::error(StatusCode::FORBIDDEN, "This authorization request belongs to another session.")),
        None => {
            let id = user.id.clone();
            let request = authorization::advance(context.store(), handle, |request| {
                request.user = Some(id.clone());
                request.awaiting_second_factor = None;
            })
            .await
            .map_err(failed)?;
            Ok(Some((request, user)))
        }
    }
}

pub(super) async fn session_of(
    context: &AuthContext,
    headers: &HeaderMap,
) -> Result<Option<(session::Session, Versioned<User>)>, auth::authorization::FlowError> {
    let Some(value) = cookie(headers, SESSION) else { return Ok(None) };
    let idle = i64::try_from(context.auth.session_idle.as_secs()).unwrap_or(i64::MAX);
    session::resume(context.store(), value, idle, now()).await
}

/// Starts `user`'s session, binds the request to them, and goes on.
async fn signed_in(context: &AuthContext, handle: &str, user: &Versioned<User>) -> Response {
    if !user.value.role.authorizes_apps() {
        return pages::error(
            StatusCode::FORBIDDEN,
            "A developer account cannot authorize apps: sign in as a patient or practitioner.",
        );
    }
    let id = user.id.clone();
    let advanced = authorization::advance(context.store(), handle, |request| {
        request.user = Some(id.clone());
        request.awaiting_second_factor = None;
    })
    .await;
    if let Err(error) = advanced {
        return failed(error);
    }
    let cookie = match start_session(context, &user.id).await {
        Ok(cookie) => cookie,
        Err(response) => return response,
    };
    let mut response = see_other(&flow_url(context, handle));
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    response
}

/// Starts a browser session for the user `user`; returns its `Set-Cookie` value.
pub(super) async fn start_session(context: &AuthContext, user: &str) -> Result<HeaderValue, Response> {
    let cookie = session::start(context.store(), user, now()).await.map_err(failed)?;
    let secure = if context.app.config.base_url.starts_with("https://") { "; Secure" } else { "" };
    let value = format!("{SESSION}={cookie}; Path={}; HttpOnly; SameSite=Lax{secure}", context.cookie_path);
    HeaderValue::from_str(&value).map_err(failed)
}

/// The patients `user` may choose, as `(id, label)`: a patient's own ones, or for
/// practitioners and operators the first 100 of the environment, those named `name` when given.
async fn patient_choices(
    context: &AuthContext,
    user: &User,
    name: Option<&str>,
) -> Result<Vec<(String, String)>, Response> {
    let patient_type = ResourceType::parse("Patient").ok_or_else(|| failed("the definitions lack Patient"))?;
    if user.role == Role::Patient {
        let mut choices = Vec::with_capacity(user.patients.len());
        for id in &user.patients {
            let read = read_patient(context, &patient_type, id).await;
            let label = read.as_ref().and_then(patient_label).unwrap_or_else(|| format!("Patient/{id}"));
            choices.push((id.clone(), label));
        }
        return Ok(choices);
    }
    let registry = context.store().registry(context.env);
    let pairs: Vec<(String, String)> = name.map(|name| ("name".to_owned(), name.to_owned())).into_iter().collect();
    let query = SearchQuery::parse(&registry, "Patient", &pairs, Handling::Lenient)
        .map_err(|issue| pages::error(StatusCode::BAD_REQUEST, &issue.diagnostics))?;
    let request =
        SearchRequest { types: vec![patient_type], query, count: 100, limits: context.app.config.search_limits };
    let found = context.store().search(context.env, request).await.map_err(failed)?;
    Ok(found
        .matches
        .iter()
        .map(|resource| {
            (resource.id.clone(), patient_label(resource).unwrap_or_else(|| format!("Patient/{}", resource.id)))
        })
        .collect())
}

/// Whether `user` may choose the Patient `id`: one of a patient's own, or for practitioners and
/// operators any Patient of the environment.
async fn may_choose(context: &AuthContext, user: &User, id: &str) -> Result<bool, Response> {
    if user.role == Role::Patient {
        return Ok(user.patients.iter().any(|own| own == id));
    }
    let patient_type = ResourceType::parse("Patient").ok_or_else(|| failed("the definitions lack Patient"))?;
    Ok(read_patient(context, &patient_type, id).await.is_some_and(|patient| !patient.deleted))
}

async fn read_patient(context: &AuthContext, patient_type: &ResourceType, id: &str) -> Option<StoredResource> {
    let id = LogicalId::parse(id)?;
    context.store().read(context.env, patient_type, &id).await.ok().flatten()
}

/// "Amy V. Shaw (Patient/85)".
fn patient_label(resource: &StoredResource) -> Option<String> {
    let body: serde_json::Value = serde_json::from_str(&resource.body).ok()?;
    let name = body["name"].get(0)?;
    let given: Vec<&str> = name["given"].as_array()?.iter().filter_map(|given| given.as_str()).collect();
    let family = name["family"].as_str().unwrap_or("");
    Some(format!("{} {family} (Patient/{})", given.join(" "), resource.id))
}

fn flow_url(context: &AuthContext, handle: &str) -> String {
    with_query(&context.url("flow"), &[("request", Some(handle))])
}

/// `uri` with `pairs` (those with a value) added to its query.
fn with_query(uri: &str, pairs: &[(&str, Option<&str>)]) -> String {
    let present: Vec<(&str, &str)> = pairs.iter().filter_map(|(name, value)| Some((*name, (*value)?))).collect();
    let query = serde_urlencoded::to_string(present).unwrap_or_default();
    let separator = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{separator}{query}")
}

/// The app's redirect URI with an RFC 6749 §4.1.2.1 error.
fn redirect_error(redirect_uri: &str, error: &str, description: &str, state: Option<&str>) -> Response {
    see_other(&with_query(
        redirect_uri,
        &[("error", Some(error)), ("error_description", Some(description)), ("state", state)],
    ))
}

pub(super) fn see_other(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(location) => {
            let mut response = StatusCode::SEE_OTHER.into_response();
            response.headers_mut().insert(header::LOCATION, location);
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(_) => pages::error(StatusCode::BAD_REQUEST, "The redirect address cannot be sent back."),
    }
}

fn unknown_request() -> Response {
    pages::error(StatusCode::BAD_REQUEST, &auth::authorization::FlowError::UnknownRequest.to_string())
}

pub(super) fn failed(error: impl std::fmt::Display) -> Response {
    tracing::error!(error = %error, "authorization step failed");
    pages::error(StatusCode::INTERNAL_SERVER_ERROR, "The server could not complete this step. Try again later.")
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}
