//! Bundle responses. Stored bodies are embedded as raw JSON, so a page of history is written
//! without parsing and re-serialising every resource.

use serde::Serialize;
use serde_json::value::RawValue;
use store::{HistoryEntry, Method};

use crate::error::ApiError;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Bundle<'a> {
    resource_type: &'static str,
    #[serde(rename = "type")]
    bundle_type: &'static str,
    link: Vec<Link>,
    entry: Vec<Entry<'a>>,
}

#[derive(Serialize)]
struct Link {
    relation: &'static str,
    url: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Entry<'a> {
    full_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource: Option<&'a RawValue>,
    request: EntryRequest,
    response: EntryResponse,
}

#[derive(Serialize)]
struct EntryRequest {
    method: &'static str,
    url: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EntryResponse {
    status: &'static str,
    etag: String,
    last_modified: String,
}

/// One entry of a search result.
pub(crate) struct SearchEntry {
    pub(crate) full_url: String,
    /// The resource JSON as it will be served.
    pub(crate) body: String,
    /// `match`, `include` or `outcome`.
    pub(crate) mode: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SearchBundle<'a> {
    resource_type: &'static str,
    #[serde(rename = "type")]
    bundle_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<u64>,
    link: Vec<Link>,
    entry: Vec<SearchBundleEntry<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SearchBundleEntry<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    full_url: &'a str,
    resource: &'a RawValue,
    search: SearchMode,
}

#[derive(Serialize)]
struct SearchMode {
    mode: &'static str,
}

/// A `searchset` Bundle: `links` as `(relation, url)` pairs, then the entries in order.
pub(crate) fn search_bundle(
    entries: &[SearchEntry],
    links: Vec<(&'static str, String)>,
    total: Option<u64>,
) -> Result<String, ApiError> {
    let link = links.into_iter().map(|(relation, url)| Link { relation, url }).collect();
    let entry = entries
        .iter()
        .map(|entry| {
            let resource = serde_json::from_str::<&RawValue>(&entry.body).map_err(ApiError::internal)?;
            Ok(SearchBundleEntry { full_url: &entry.full_url, resource, search: SearchMode { mode: entry.mode } })
        })
        .collect::<Result<_, ApiError>>()?;
    let bundle = SearchBundle { resource_type: "Bundle", bundle_type: "searchset", total, link, entry };
    serde_json::to_string(&bundle).map_err(ApiError::internal)
}

/// A `history` Bundle of `entries` with `self` and (when there is one) `next` links.
pub(crate) fn history_bundle(
    base: &str,
    entries: &[HistoryEntry],
    self_url: String,
    next_url: Option<String>,
) -> Result<String, ApiError> {
    let mut link = vec![Link { relation: "self", url: self_url }];
    if let Some(url) = next_url {
        link.push(Link { relation: "next", url });
    }
    let entry = entries.iter().map(|entry| history_entry(base, entry)).collect::<Result<_, _>>()?;
    serde_json::to_string(&Bundle { resource_type: "Bundle", bundle_type: "history", link, entry })
        .map_err(ApiError::internal)
}

fn history_entry<'a>(base: &str, entry: &'a HistoryEntry) -> Result<Entry<'a>, ApiError> {
    let resource = &entry.resource;
    let body = if resource.deleted {
        None
    } else {
        Some(serde_json::from_str::<&RawValue>(&resource.body).map_err(ApiError::internal)?)
    };
    let (method, url, status) = match entry.method {
        Method::Post => ("POST", resource.resource_type.clone(), "201 Created"),
        Method::Delete => ("DELETE", format!("{}/{}", resource.resource_type, resource.id), "204 No Content"),
        Method::Put | Method::Patch => {
            let status = if resource.version == 1 { "201 Created" } else { "200 OK" };
            (entry.method.as_str(), format!("{}/{}", resource.resource_type, resource.id), status)
        }
    };
    Ok(Entry {
        full_url: format!("{base}/{}/{}", resource.resource_type, resource.id),
        resource: body,
        request: EntryRequest { method, url },
        response: EntryResponse {
            status,
            etag: format!("W/\"{}\"", resource.version),
            last_modified: fhir::instant::format(resource.last_updated),
        },
    })
}
