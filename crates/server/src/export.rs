//! Bulk Data `$export` over HTTP: kick-off at system, `Patient` and `Group/[id]` level (GET
//! and POST), status polling and cancellation, and the files. The jobs themselves are the
//! `export` crate's; this module reads the request, decides with the caller's scopes what
//! the export may hold (`authorize::Caller::admit_export`), and answers as the Bulk Data 2.0
//! specification says.

use std::collections::BTreeMap;

use axum::Extension;
use axum::body::Body;
use axum::extract::{FromRequest, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use export::{ExportJob, Level, State as JobState};
use fhir::Definitions;
use fhir::outcome::IssueType;
use fhir::search::Registry;
use serde_json::{Value, json};

use crate::authorize::Caller;
use crate::error::ApiError;
use crate::handlers::{parse_id, query_pairs};
use crate::negotiation::read_resource;
use crate::state::FhirContext;

/// The output formats a client may ask for; all mean NDJSON.
const OUTPUT_FORMATS: [&str; 3] = ["application/fhir+ndjson", "application/ndjson", "ndjson"];

/// How long a client should wait between polls, in seconds.
const RETRY_AFTER: u64 = 2;

/// `[base]/$export`.
pub(crate) async fn system(
    State(context): State<FhirContext>,
    Extension(caller): Extension<Caller>,
    request: Request,
) -> Result<Response, ApiError> {
    kick_off(&context, &caller, request, Scope::System).await
}

/// `[base]/Patient/$export`.
pub(crate) async fn patient(
    State(context): State<FhirContext>,
    Extension(caller): Extension<Caller>,
    request: Request,
) -> Result<Response, ApiError> {
    kick_off(&context, &caller, request, Scope::Patients).await
}

/// `[base]/Group/[id]/$export`: the Group's members.
pub(crate) async fn group(
    State(context): State<FhirContext>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let members = export::plan::read_group(context.store(), context.env, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("Group/{id} is not known")))?;
    kick_off(&context, &caller, request, Scope::Group(members)).await
}

/// The level of a kick-off: every resource, every patient's data, or a Group's members' data.
enum Scope {
    System,
    Patients,
    Group(Vec<String>),
}

/// A kick-off's parameters, from the query string (GET) or a `Parameters` body (POST).
pub(crate) struct Request {
    url: String,
    types: Option<Vec<String>>,
    since: Option<String>,
    type_filters: BTreeMap<String, Vec<String>>,
    elements: Option<Vec<String>>,
    patients: Option<Vec<String>>,
}

impl FromRequest<FhirContext> for Request {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, context: &FhirContext) -> Result<Request, ApiError> {
        let (parts, body) = request.into_parts();
        Request::read(context, &parts.uri, &parts.method, &parts.headers, body).await
    }
}

impl Request {
    async fn read(
        context: &FhirContext,
        uri: &axum::http::Uri,
        method: &Method,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<Request, ApiError> {
        let async_asked = headers
            .get_all("prefer")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|preference| preference.trim().eq_ignore_ascii_case("respond-async"));
        if !async_asked {
            return Err(ApiError::bad_request("a bulk export needs the header 'Prefer: respond-async'"));
        }
        let mut pairs = query_pairs(uri.query())?;
        if method == Method::POST {
            let parameters = read_resource(headers, body, context.app.config.max_body_bytes).await?;
            pairs.extend(parameter_pairs(&parameters)?);
        }
        // Inside the FHIR base's router the URI is the part after the base.
        let url = format!("{}{}", context.base, uri);
        let mut request =
            Request { url, types: None, since: None, type_filters: BTreeMap::new(), elements: None, patients: None };
        let registry = context.store().registry(context.env);
        for (name, value) in pairs {
            request.take(&registry, &name, &value, method)?;
        }
        Ok(request)
    }

    /// Takes one parameter.
    fn take(&mut self, registry: &Registry, name: &str, value: &str, method: &Method) -> Result<(), ApiError> {
        let list = || value.split(',').map(str::trim).filter(|item| !item.is_empty()).map(str::to_owned);
        match name {
            "_outputFormat" if OUTPUT_FORMATS.contains(&value) => {}
            "_outputFormat" => {
                return Err(ApiError::bad_request(format!(
                    "_outputFormat '{value}' is not supported; use application/fhir+ndjson"
                )));
            }
            "_type" => {
                for resource_type in list() {
                    if !Definitions::get().is_resource_type(&resource_type) {
                        return Err(ApiError::bad_request(format!("_type: '{resource_type}' is not a resource type")));
                    }
                    self.types.get_or_insert_with(Vec::new).push(resource_type);
                }
            }
            "_since" => {
                let since =
                    export::plan::since(value).map_err(|problem| ApiError::bad_request(format!("_since {problem}")))?;
                self.since = Some(since);
            }
            "_typeFilter" => {
                for filter in value.split(',') {
                    let (resource_type, query) = export::plan::type_filter(registry, filter)
                        .map_err(|problem| ApiError::bad_request(format!("_typeFilter: {problem}")))?;
                    self.type_filters.entry(resource_type).or_default().push(query);
                }
            }
            "_elements" => self.elements.get_or_insert_with(Vec::new).extend(list()),
            "patient" if method == Method::POST => {
                let id = export::plan::patient_id(value)
                    .ok_or_else(|| ApiError::bad_request(format!("patient '{value}' is not a Patient reference")))?;
                self.patients.get_or_insert_with(Vec::new).push(id);
            }
            "_format" => {}
            other => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    IssueType::NotSupported,
                    format!("the export parameter '{other}' is not supported"),
                ));
            }
        }
        Ok(())
    }
}

/// The parameters of a POST kick-off's `Parameters` body as `(name, value)` pairs.
fn parameter_pairs(parameters: &Value) -> Result<Vec<(String, String)>, ApiError> {
    if parameters["resourceType"] != "Parameters" {
        return Err(ApiError::bad_request("a POST kick-off's body is a Parameters resource"));
    }
    let mut pairs = Vec::new();
    for parameter in parameters["parameter"].as_array().into_iter().flatten() {
        let name = parameter["name"].as_str().unwrap_or_default().to_owned();
        let value = ["valueString", "valueInstant", "valueCode", "valueDateTime"]
            .iter()
            .find_map(|key| parameter[*key].as_str())
            .or_else(|| parameter["valueReference"]["reference"].as_str())
            .ok_or_else(|| ApiError::bad_request(format!("the parameter '{name}' has no value this server reads")))?;
        pairs.push((name, value.to_owned()));
    }
    Ok(pairs)
}

async fn kick_off(
    context: &FhirContext,
    caller: &Caller,
    request: Request,
    scope: Scope,
) -> Result<Response, ApiError> {
    let patient_level = !matches!(scope, Scope::System);
    let registry = context.store().registry(context.env);
    let candidates = export::plan::candidate_types(&registry, request.types.as_deref(), patient_level);
    let grant = caller.admit_export(&candidates, matches!(scope, Scope::Patients))?;
    let mut notes = Vec::new();
    if let Some(asked) = &request.types {
        for resource_type in asked {
            if !grant.types.iter().any(|(granted, _)| granted == resource_type) {
                let why = match candidates.iter().any(|candidate| candidate == resource_type) {
                    true => "the access token may not read it",
                    false => "a patient-level export holds patients' data and what it references only",
                };
                notes.push(format!("{resource_type} was left out: {why}"));
            }
        }
    }
    let patients = match (scope, grant.patient) {
        (Scope::System, _) => None,
        (_, Some(own)) => {
            if request.patients.as_ref().is_some_and(|asked| asked.iter().any(|id| *id != own)) {
                return Err(ApiError::forbidden("a patient's access token exports that patient's data only"));
            }
            Some(vec![own])
        }
        (Scope::Patients, None) => request.patients,
        (Scope::Group(members), None) => match request.patients {
            Some(asked) => {
                let asked: std::collections::HashSet<String> = asked.into_iter().collect();
                Some(members.into_iter().filter(|id| asked.contains(id)).collect())
            }
            None => Some(members),
        },
    };
    if let Some(patients) = &patients {
        export::plan::check_patients(patients.len())
            .map_err(|problem| ApiError::new(StatusCode::BAD_REQUEST, IssueType::TooCostly, problem))?;
    }
    let level = if patient_level { Level::Patients { patients } } else { Level::System };
    let (types, scope_filters): (Vec<String>, BTreeMap<String, Vec<String>>) = (
        grant.types.iter().map(|(resource_type, _)| resource_type.clone()).collect(),
        grant.types.into_iter().filter(|(_, queries)| !queries.is_empty()).collect(),
    );
    let mut job = ExportJob::queued(context.env, caller.client_id(), request.url, level, types);
    job.since = request.since;
    job.type_filters = request.type_filters;
    job.scope_filters = scope_filters;
    job.elements = request.elements;
    job.notes = notes;
    let id = context.app.exports.start(&job, caller.client_id()).await?;
    let mut response = StatusCode::ACCEPTED.into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("{}/$export-status/{id}", context.base)) {
        response.headers_mut().insert(header::CONTENT_LOCATION, location);
    }
    Ok(response)
}

/// The job `id` if the caller started it: 404 when it is unknown, 403 for another client.
async fn own_job(context: &FhirContext, caller: &Caller, id: &str) -> Result<ExportJob, ApiError> {
    let job = context
        .app
        .exports
        .get(id)
        .await?
        .filter(|job| job.value.environment == context.env)
        .ok_or_else(|| ApiError::not_found(format!("there is no export {id}")))?
        .value;
    if job.client_id != caller.client_id() {
        return Err(ApiError::forbidden("this export was started by another client"));
    }
    Ok(job)
}

/// `GET [base]/$export-status/[id]`: 202 with progress while it runs, then the manifest.
pub(crate) async fn status(
    State(context): State<FhirContext>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job = own_job(&context, &caller, &id).await?;
    match job.state {
        JobState::Queued | JobState::Running => {
            let mut response = StatusCode::ACCEPTED.into_response();
            let headers = response.headers_mut();
            headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER));
            if let Ok(progress) = HeaderValue::from_str(&job.progress()) {
                headers.insert("x-progress", progress);
            }
            Ok(response)
        }
        JobState::Complete => Ok(manifest(&context, &id, &job)),
        JobState::Failed => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            IssueType::Exception,
            job.failure.unwrap_or_else(|| "the export failed".to_owned()),
        )),
        JobState::Cancelled | JobState::Expired => {
            Err(ApiError::not_found(format!("the export {id} was cancelled or has expired")))
        }
    }
}

fn manifest(context: &FhirContext, id: &str, job: &ExportJob) -> Response {
    let file_url = |name: &str| format!("{}/$export-file/{id}/{name}", context.base);
    let entries = |outputs: &[export::Output]| -> Vec<Value> {
        outputs
            .iter()
            .map(|output| json!({"type": output.resource_type, "url": file_url(&output.name), "count": output.count}))
            .collect()
    };
    let body = json!({
        "transactionTime": job.transaction_time,
        "request": job.request,
        "requiresAccessToken": true,
        "output": entries(&job.outputs),
        "error": entries(&job.errors),
    });
    let mut response = (StatusCode::OK, body.to_string()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// `DELETE [base]/$export-status/[id]`: cancels the export (202); a later poll is 404.
pub(crate) async fn cancel(
    State(context): State<FhirContext>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    own_job(&context, &caller, &id).await?;
    if !context.app.exports.cancel(&id, caller.client_id()).await? {
        return Err(ApiError::not_found(format!("the export {id} was cancelled or has expired")));
    }
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `GET [base]/$export-file/[id]/[name]`: one file of a complete export, streamed.
pub(crate) async fn file(
    State(context): State<FhirContext>,
    Extension(caller): Extension<Caller>,
    note: crate::audit::Note,
    Path((id, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    note.entity(format!("$export-file/{id}/{name}"));
    let job = own_job(&context, &caller, &id).await?;
    let listed = job.outputs.iter().chain(&job.errors).any(|output| output.name == name);
    if job.state != JobState::Complete || !listed {
        return Err(ApiError::not_found(format!("the export {id} has no file {name}")));
    }
    if !export::Files::is_valid(&id, &name) {
        return Err(ApiError::not_found(format!("the export {id} has no file {name}")));
    }
    let stream = context.app.exports.files().read(&id, &name).await.map_err(ApiError::internal)?;
    let body = Body::from_stream(stream);
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/fhir+ndjson"));
    Ok(response)
}
