//! The audit log for operators: `GET /api/audit-events` searches it and answers a FHIR
//! searchset Bundle of `AuditEvent`s; `GET /api/audit-events/export` streams a date range as
//! NDJSON (as `ignis audit export` prints it).

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;
use serde_json::json;
use store::audit::{Position, Query};
use time::OffsetDateTime;

use super::problem::Problem;
use super::{ApiContext, ApiUser};
use crate::audit::events::{audit_event, date_bounds, export, narrow};

/// Entries per page unless `_count` says otherwise, and at most.
const DEFAULT_COUNT: usize = 50;
const MAX_COUNT: usize = 1_000;

/// Audit entries, newest first, as a searchset Bundle of AuditEvents: by `date` (`ge`, `gt`,
/// `le`, `lt` or a whole day, month, year), `agent` (`user:NAME`, `client:ID`,
/// `device:ID`), `account`, `entity` (`Type/id`), `patient`, `type` (`rest`, `110114`,
/// `api`, `record`), `subtype` (`read`, `create`, `token`…) and `outcome` (0, 4, 8);
/// every parameter given must match. Operators only.
#[utoipa::path(get, path = "/api/audit-events", tag = "audit", security(("api_key" = [])),
    params(
        ("date" = Option<String>, Query, description = "e.g. ge2026-01-01; may repeat"),
        ("agent" = Option<String>, Query, description = "user:NAME, client:ID or device:ID"),
        ("account" = Option<String>, Query, description = "an account id"),
        ("entity" = Option<String>, Query, description = "Type/id"),
        ("patient" = Option<String>, Query, description = "a patient id or Patient/id"),
        ("type" = Option<String>, Query, description = "rest, 110114 (sign-in and tokens), api, record"),
        ("subtype" = Option<String>, Query, description = "read, search-type, create, token, sign-in…"),
        ("outcome" = Option<String>, Query, description = "0, 4 or 8"),
        ("_count" = Option<usize>, Query, description = "entries per page (at most 1000)"),
        ("_cursor" = Option<String>, Query, description = "from the next link"),
    ),
    responses((status = 200, description = "a FHIR searchset Bundle of AuditEvent", content_type = "application/fhir+json")))]
pub(crate) async fn search(
    State(context): State<ApiContext>,
    caller: ApiUser,
    RawQuery(raw): RawQuery,
) -> Result<Response, Problem> {
    caller.check_operator("read the audit log")?;
    let pairs = query_pairs(raw.as_deref())?;
    let query = parse(&pairs)?;
    flush(&context).await?;
    let page = context.store().search_audit(query.clone()).await?;
    let mut entries = Vec::with_capacity(page.len());
    for entry in &page {
        entries.push(json!({"resource": audit_event(entry)?, "search": {"mode": "match"}}));
    }
    let url = |cursor: Option<&Position>| {
        let mut pairs: Vec<(&str, String)> = pairs
            .iter()
            .filter(|(name, _)| name != "_cursor")
            .map(|(name, value)| (name.as_str(), value.clone()))
            .collect();
        if let Some(position) = cursor {
            pairs.push(("_cursor", format!("{}.{}.{}", position.recorded, position.chain, position.seq)));
        }
        let query = serde_urlencoded::to_string(pairs).unwrap_or_default();
        format!("{}/api/audit-events?{query}", context.app.config.base_url)
    };
    let mut links = vec![json!({"relation": "self", "url": url(query.before.as_ref())})];
    if page.len() == query.count
        && let Some(last) = page.last()
    {
        links.push(json!({"relation": "next", "url": url(Some(&Position::of(last)))}));
    }
    let bundle = json!({"resourceType": "Bundle", "type": "searchset", "link": links, "entry": entries});
    let mut response = (StatusCode::OK, bundle.to_string()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/fhir+json"));
    Ok(response)
}

/// The store query of the search parameters.
fn parse(pairs: &[(String, String)]) -> Result<Query, Problem> {
    let mut query = Query { count: DEFAULT_COUNT, ..Query::default() };
    for (name, value) in pairs {
        match name.as_str() {
            "date" => {
                let (since, until) = date_bounds(value).map_err(Problem::bad_request)?;
                query.since = query.since.max(since);
                query.until = match (query.until, until) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            "_count" => {
                let count: usize =
                    value.parse().map_err(|_| Problem::bad_request(format!("_count '{value}' is not a number")))?;
                query.count = count.clamp(1, MAX_COUNT);
            }
            "_cursor" => query.before = Some(cursor(value)?),
            _ => narrow(&mut query, name, value).map_err(Problem::bad_request)?,
        }
    }
    Ok(query)
}

/// A `_cursor` value: `recorded.chain.seq`.
fn cursor(value: &str) -> Result<Position, Problem> {
    let invalid = || Problem::bad_request(format!("_cursor '{value}' is not a cursor of this search"));
    let mut parts = value.splitn(3, '.');
    let recorded = parts.next().and_then(|part| part.parse().ok()).ok_or_else(invalid)?;
    let chain = parts.next().filter(|chain| !chain.is_empty()).ok_or_else(invalid)?.to_owned();
    let seq = parts.next().and_then(|part| part.parse().ok()).ok_or_else(invalid)?;
    Ok(Position { recorded, chain, seq })
}

/// Every entry recorded from `since` (inclusive) to `until` (exclusive), newest first, as
/// NDJSON AuditEvents, streamed. Operators only.
#[utoipa::path(get, path = "/api/audit-events/export", tag = "audit", security(("api_key" = [])),
    params(
        ("since" = Option<String>, Query, description = "a FHIR date or dateTime: the first instant"),
        ("until" = Option<String>, Query, description = "a FHIR date or dateTime: the end, excluded"),
    ),
    responses((status = 200, description = "NDJSON AuditEvents", content_type = "application/fhir+ndjson")))]
pub(crate) async fn export_range(
    State(context): State<ApiContext>,
    caller: ApiUser,
    RawQuery(raw): RawQuery,
) -> Result<Response, Problem> {
    caller.check_operator("export the audit log")?;
    let pairs = query_pairs(raw.as_deref())?;
    let bound = |name: &str| -> Result<Option<OffsetDateTime>, Problem> {
        match pairs.iter().find(|(key, _)| key == name) {
            None => Ok(None),
            Some((_, value)) => fhir::instant::parse_lower_bound(value)
                .map(Some)
                .ok_or_else(|| Problem::bad_request(format!("{name} '{value}' is not a FHIR date or dateTime"))),
        }
    };
    let (since, until) = (bound("since")?, bound("until")?);
    flush(&context).await?;
    let lines = export(std::sync::Arc::clone(&context.app.store), since, until).map_err(std::io::Error::other);
    let mut response = (StatusCode::OK, Body::from_stream(lines)).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/fhir+ndjson"));
    Ok(response)
}

/// Waits until the events this process queued are committed, so the audit log read next
/// holds every request answered before.
async fn flush(context: &ApiContext) -> Result<(), Problem> {
    context.app.audit.flush(&context.app.store).await.map_err(Problem::internal)
}

/// The query string's name-value pairs, or a problem saying it is not one.
fn query_pairs(raw: Option<&str>) -> Result<Vec<(String, String)>, Problem> {
    serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|error| Problem::bad_request(format!("the query string: {error}")))
}
