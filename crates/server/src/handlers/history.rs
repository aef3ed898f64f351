//! `history` at system, type and instance level, with `_since`, `_at`, `_count` and keyset
//! paging (`_page` carries the position where the next page starts).

use auth::scope::Permission;
use axum::Extension;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use store::{HistoryQuery, HistoryScope};
use time::OffsetDateTime;

use crate::audit::Note;
use crate::authorize::{Caller, Limit};
use crate::bundle::history_bundle;
use crate::error::ApiError;
use crate::handlers::{parse_id, parse_type, query_pairs};
use crate::response::json_response;
use crate::state::FhirContext;

const DEFAULT_COUNT: usize = 50;
const MAX_COUNT: usize = 1000;

/// `GET [base]/_history`.
pub(crate) async fn system(
    State(context): State<FhirContext>,
    Extension(caller): Extension<Caller>,
    note: Note,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    caller.admit_every_type(Permission::Search)?;
    history(&context, &note, HistoryScope::System, "_history".to_owned(), query.as_deref()).await
}

/// `GET [base]/[type]/_history`.
pub(crate) async fn type_level(
    State(context): State<FhirContext>,
    Extension(caller): Extension<Caller>,
    note: Note,
    Path(type_name): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let resource_type = parse_type(&type_name)?;
    // A type's history lists versions of resources the limit may not reach, which a
    // history query cannot filter yet: only callers without a limit get it.
    if let Limit::Within(_) = caller.admit(&context, &resource_type, Permission::Search)? {
        return Err(ApiError::forbidden(format!(
            "the history of every {resource_type} needs a scope without a patient or category limit; \
             read an instance's history instead"
        )));
    }
    let path = format!("{resource_type}/_history");
    history(&context, &note, HistoryScope::Type(resource_type), path, query.as_deref()).await
}

/// `GET [base]/[type]/[id]/_history`: 404 for a resource that never existed.
pub(crate) async fn instance(
    State(context): State<FhirContext>,
    Extension(caller): Extension<Caller>,
    note: Note,
    Path((type_name, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let (resource_type, id) = (parse_type(&type_name)?, parse_id(&id)?);
    let limit = caller.admit(&context, &resource_type, Permission::Read)?;
    if context.store().read(context.env, &resource_type, &id).await?.is_none() {
        return Err(ApiError::not_found(format!("{resource_type}/{id} is not known")));
    }
    limit.check(&context, &resource_type, &id).await?;
    let path = format!("{resource_type}/{id}/_history");
    history(&context, &note, HistoryScope::Instance(resource_type, id), path, query.as_deref()).await
}

async fn history(
    context: &FhirContext,
    note: &Note,
    scope: HistoryScope,
    path: String,
    query: Option<&str>,
) -> Result<Response, ApiError> {
    let parameters = HistoryParameters::parse(query)?;
    let request = HistoryQuery {
        scope,
        since: parameters.since,
        at: parameters.at,
        count: parameters.count,
        before: parameters.page,
    };
    let page = context.store().history(context.env, request).await?;
    note.resources(page.entries.iter().map(|entry| &entry.resource));
    let self_url = format!("{}/{path}?{}", context.base, parameters.to_query(parameters.page));
    let next_url = page.next.map(|next| format!("{}/{path}?{}", context.base, parameters.to_query(Some(next))));
    let body = history_bundle(&context.base, &page.entries, self_url, next_url)?;
    Ok(json_response(StatusCode::OK, body))
}

/// The history query parameters, parsed; unknown parameters are ignored.
struct HistoryParameters {
    since: Option<OffsetDateTime>,
    at: Option<OffsetDateTime>,
    count: usize,
    page: Option<i64>,
    /// The `_since` and `_at` texts, echoed in links.
    echoed: Vec<(String, String)>,
}

impl HistoryParameters {
    fn parse(query: Option<&str>) -> Result<HistoryParameters, ApiError> {
        let mut parameters =
            HistoryParameters { since: None, at: None, count: DEFAULT_COUNT, page: None, echoed: Vec::new() };
        for (name, value) in query_pairs(query)? {
            match name.as_str() {
                "_since" => parameters.since = Some(instant(&name, &value)?),
                "_at" => parameters.at = Some(instant(&name, &value)?),
                "_count" => {
                    let count: usize = value.parse().map_err(|_| {
                        ApiError::bad_request(format!("_count '{value}' is not a non-negative integer"))
                    })?;
                    parameters.count = count.clamp(1, MAX_COUNT);
                    continue;
                }
                "_page" => {
                    parameters.page = Some(value.parse().map_err(|_| {
                        ApiError::bad_request(format!("_page '{value}' is not a page this server issued"))
                    })?);
                    continue;
                }
                _ => continue,
            }
            parameters.echoed.push((name, value));
        }
        Ok(parameters)
    }

    fn to_query(&self, page: Option<i64>) -> String {
        let mut pairs = self.echoed.clone();
        pairs.push(("_count".into(), self.count.to_string()));
        if let Some(page) = page {
            pairs.push(("_page".into(), page.to_string()));
        }
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    }
}

fn instant(name: &str, value: &str) -> Result<OffsetDateTime, ApiError> {
    fhir::instant::parse_lower_bound(value)
        .ok_or_else(|| ApiError::bad_request(format!("{name} '{value}' is not a FHIR instant or date")))
}
