//! `search`: type search (`GET [type]?…`, `POST [type]/_search`), system search
//! (`GET [base]?_type=…`) and compartment search (`GET Patient/[id]/[type]?…`).

use std::sync::Arc;

use auth::scope::Permission;
use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use fhir::Definitions;
use fhir::id::ResourceType;
use fhir::outcome::{Issue, IssueType, operation_outcome};
use fhir::search::{Clause, Handling, SearchQuery, Summary, Total};
use fhir::summary::View;
use serde_json::Value;
use store::{SearchPage, SearchRequest, StoredResource};
use tokio::sync::OwnedSemaphorePermit;

use crate::audit::Note;
use crate::authorize::{Caller, Limit, filter_included};
use crate::bundle::{SearchEntry, search_bundle};
use crate::error::ApiError;
use crate::handlers::{parse_id, parse_type, query_pairs};
use crate::response::json_response;
use crate::state::FhirContext;

/// Matches per page when the client does not say.
const DEFAULT_COUNT: usize = 50;

/// `GET [base]/[type]?…`.
pub(crate) async fn search_type(
    State(context): State<FhirContext>,
    Extension(caller): Extension<Caller>,
    note: Note,
    Path(type_name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let resource_type = parse_type(&type_name)?;
    let pairs = query_pairs(query.as_deref())?;
    let path = resource_type.to_string();
    run(&context, &caller, &note, Scope { types: vec![resource_type], extra: None, path }, &pairs, &headers).await
}

/// `POST [base]/[type]/_search` with a form-encoded body (and possibly a query string too).
pub(crate) async fn search_post(
    State(context): State<FhirContext>,
    Extension(caller): Extension<Caller>,
    note: Note,
    Path(type_name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let resource_type = parse_type(&type_name)?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("");
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IssueType::NotSupported,
            "POST _search takes an application/x-www-form-urlencoded body",
        ));
    }
    let bytes = axum::body::to_bytes(body, context.app.config.max_body_bytes).await.map_err(|_| {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, IssueType::TooLong, "the search body is too large")
    })?;
    let form = std::str::from_utf8(&bytes).map_err(|_| ApiError::bad_request("the search body is not UTF-8"))?;
    let mut pairs = query_pairs(query.as_deref())?;
    pairs.extend(query_pairs(Some(form))?);
    let path = resource_type.to_string();
    run(&context, &caller, &note, Scope { types: vec![resource_type], extra: None, path }, &pairs, &headers).await
}

/// `GET [base]?_type=A,B&…`: without `_type`, every resource type (then only the parameters
/// every resource has, such as `_id` and `_lastUpdated`, apply).
pub(crate) async fn search_system(
    State(context): State<FhirContext>,
    Extension(caller): Extension<Caller>,
    note: Note,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(query.as_deref())?;
    let types = match pairs.iter().find(|(name, _)| name == "_type") {
        Some((_, list)) => list.split(',').map(|name| parse_type(name.trim())).collect::<Result<Vec<_>, _>>()?,
        None => Definitions::get().resource_types().filter_map(ResourceType::parse).collect(),
    };
    run(&context, &caller, &note, Scope { types, extra: None, path: String::new() }, &pairs, &headers).await
}

/// `GET [base]/[compartment]/[id]/[type]?…`.
pub(crate) async fn search_compartment(
    State(context): State<FhirContext>,
    Extension(caller): Extension<Caller>,
    note: Note,
    Path((compartment, id, type_name)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if !Definitions::get().is_compartment(&compartment) {
        return Err(ApiError::not_found(format!("'{compartment}' is not a compartment")));
    }
    let (id, resource_type) = (parse_id(&id)?, parse_type(&type_name)?);
    let registry = context.store().registry(context.env);
    let clause =
        Clause::compartment(&registry, &compartment, id.as_str(), resource_type.as_str()).ok_or_else(|| {
            ApiError::bad_request(format!("{resource_type} resources are never in a {compartment} compartment"))
        })?;
    let pairs = query_pairs(query.as_deref())?;
    let path = format!("{compartment}/{id}/{resource_type}");
    run(&context, &caller, &note, Scope { types: vec![resource_type], extra: Some(clause), path }, &pairs, &headers)
        .await
}

/// What a search runs over: the types, an extra clause (the compartment), and the path its
/// links repeat.
struct Scope {
    types: Vec<ResourceType>,
    extra: Option<Clause>,
    path: String,
}

async fn run(
    context: &FhirContext,
    caller: &Caller,
    note: &Note,
    scope: Scope,
    pairs: &[(String, String)],
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let body = searchset(context, caller, note, scope, pairs, handling(headers)).await?;
    Ok(json_response(StatusCode::OK, body))
}

/// The searchset Bundle of `GET [type]?query` as JSON: what a search entry of a transaction
/// or batch answers with (lenient, as without `Prefer`).
pub(crate) async fn type_searchset(
    context: &FhirContext,
    caller: &Caller,
    note: &Note,
    type_name: &str,
    query: Option<&str>,
) -> Result<String, ApiError> {
    let resource_type = parse_type(type_name)?;
    let pairs = query_pairs(query)?;
    let path = resource_type.to_string();
    let scope = Scope { types: vec![resource_type], extra: None, path };
    searchset(context, caller, note, scope, &pairs, Handling::Lenient).await
}

/// Parses and runs a search, and renders its page as a searchset Bundle.
async fn searchset(
    context: &FhirContext,
    caller: &Caller,
    note: &Note,
    scope: Scope,
    pairs: &[(String, String)],
    handling: Handling,
) -> Result<String, ApiError> {
    let parse_as = match scope.types.as_slice() {
        [single] => single.as_str(),
        // Parameters has only the parameters every resource has: the ones a search across
        // several types can use.
        _ => "Parameters",
    };
    let registry = context.store().registry(context.env);
    let mut query = SearchQuery::parse(&registry, parse_as, pairs, handling)
        .map_err(|issue| ApiError::with_issues(StatusCode::BAD_REQUEST, vec![issue]))?;
    query.clauses.extend(scope.extra);
    query.clauses.extend(limits(context, caller, &scope.types)?);
    if query.summary == Summary::Count {
        query.total = Total::Accurate;
    }
    let count = if query.summary == Summary::Count { 0 } else { query.count.unwrap_or(DEFAULT_COUNT) };
    let limits = context.app.config.search_limits;
    let request = SearchRequest { types: scope.types, query: query.clone(), count, limits };
    let _slot = search_slot(context).await?;
    let mut page = context.store().search(context.env, request).await?;
    page.included = filter_included(context, caller, std::mem::take(&mut page.included)).await?;
    note.resources(page.matches.iter().chain(&page.included));
    bundle(context, &scope.path, pairs, &query, page)
}

/// The clauses the caller's scopes add to a search of `types`; 403 for a type they do not
/// cover. A search across several types runs one query for all of them, so it is open only to
/// callers without a limit on any of them.
fn limits(context: &FhirContext, caller: &Caller, types: &[ResourceType]) -> Result<Vec<Clause>, ApiError> {
    if let [single] = types {
        return Ok(caller.admit(context, single, Permission::Search)?.clauses());
    }
    for resource_type in types {
        if let Limit::Within(_) = caller.admit(context, resource_type, Permission::Search)? {
            return Err(ApiError::forbidden(format!(
                "the access token limits what it reaches of {resource_type}: search one resource type at a time"
            )));
        }
    }
    Ok(Vec::new())
}

/// A slot among the searches that may run at once, waiting briefly for one; 503 when none
/// frees up in time.
async fn search_slot(context: &FhirContext) -> Result<OwnedSemaphorePermit, ApiError> {
    let config = &context.app.config;
    let slots = Arc::clone(&context.app.search_slots);
    match tokio::time::timeout(config.search_queue_wait, slots.acquire_owned()).await {
        Ok(Ok(permit)) => Ok(permit),
        _ => Err(ApiError::unavailable(
            format!(
                "too many searches are running (max-concurrent-searches = {}); retry shortly",
                config.max_concurrent_searches
            ),
            1,
        )),
    }
}

fn handling(headers: &HeaderMap) -> Handling {
    let strict = headers
        .get_all("prefer")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.split([',', ';']).any(|part| part.trim() == "handling=strict"));
    if strict { Handling::Strict } else { Handling::Lenient }
}

fn bundle(
    context: &FhirContext,
    path: &str,
    pairs: &[(String, String)],
    query: &SearchQuery,
    page: SearchPage,
) -> Result<String, ApiError> {
    let mut entries = Vec::with_capacity(page.matches.len() + page.included.len() + 1);
    for resource in &page.matches {
        entries.push(SearchEntry {
            full_url: full_url(context, resource),
            body: shaped(resource, query)?,
            mode: "match",
        });
    }
    for resource in &page.included {
        entries.push(SearchEntry {
            full_url: full_url(context, resource),
            body: shaped(resource, query)?,
            mode: "include",
        });
    }
    let mut warnings = query.warnings.clone();
    if page.cut {
        warnings.push(Issue::warning(
            IssueType::TooCostly,
            format!(
                "this page was cut to stay within {} bytes of resources (search-page-bytes): \
                 fewer matches than _count (the rest follow the next link), or fewer includes",
                context.app.config.search_limits.page_bytes
            ),
        ));
    }
    if !warnings.is_empty() {
        entries.push(SearchEntry {
            full_url: String::new(),
            body: operation_outcome(&warnings).to_string(),
            mode: "outcome",
        });
    }
    let link_base = if path.is_empty() { context.base.to_string() } else { format!("{}/{path}", context.base) };
    let link = |cursor: Option<&str>| {
        let mut kept: Vec<(&str, &str)> = pairs
            .iter()
            .filter(|(name, _)| name != "_cursor")
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        if let Some(cursor) = cursor {
            kept.push(("_cursor", cursor));
        }
        let encoded = serde_urlencoded::to_string(kept).unwrap_or_default();
        if encoded.is_empty() { link_base.clone() } else { format!("{link_base}?{encoded}") }
    };
    let mut links = vec![("self", link(query.cursor.as_deref()))];
    if let Some(next) = &page.next {
        links.push(("next", link(Some(next))));
    }
    if let Some(previous) = &page.previous {
        links.push(("previous", link(Some(previous))));
    }
    search_bundle(&entries, links, page.total)
}

fn full_url(context: &FhirContext, resource: &StoredResource) -> String {
    format!("{}/{}/{}", context.base, resource.resource_type, resource.id)
}

/// The body as stored, or reduced to the `_summary` / `_elements` view asked for.
fn shaped(resource: &StoredResource, query: &SearchQuery) -> Result<String, ApiError> {
    let view = match (&query.elements, query.summary) {
        (Some(elements), _) => View::Elements(elements),
        (None, Summary::True) => View::Summary,
        (None, Summary::Data) => View::Data,
        (None, Summary::Text) => View::Text,
        (None, Summary::False | Summary::Count) => return Ok(resource.body.clone()),
    };
    let mut value: Value = serde_json::from_str(&resource.body).map_err(ApiError::internal)?;
    fhir::summary::apply(&mut value, view);
    Ok(value.to_string())
}
