//! Content negotiation and request headers: `Accept`/`_format`, `Content-Type`, `Prefer`,
//! `If-Match`, and reading a JSON body within the size limit.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use fhir::outcome::IssueType;
use serde_json::Value;

use crate::error::ApiError;

/// What a write should return (`Prefer: return=…`); representation when absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReturnPreference {
    Minimal,
    Representation,
    OperationOutcome,
}

/// Reads `Prefer: return=…`.
pub(crate) fn return_preference(headers: &HeaderMap) -> ReturnPreference {
    for value in headers.get_all("prefer").iter().filter_map(|value| value.to_str().ok()) {
        for part in value.split([',', ';']).map(str::trim) {
            match part {
                "return=minimal" => return ReturnPreference::Minimal,
                "return=OperationOutcome" => return ReturnPreference::OperationOutcome,
                "return=representation" => return ReturnPreference::Representation,
                _ => {}
            }
        }
    }
    ReturnPreference::Representation
}

/// Fails with 406 unless the response may be FHIR JSON, judging by `_format` when the query
/// has it and by `Accept` otherwise.
pub(crate) fn check_acceptable(headers: &HeaderMap, format: Option<&str>) -> Result<(), ApiError> {
    if let Some(format) = format {
        let format = format.split(';').next().unwrap_or("").trim();
        return match format {
            "json" | "application/json" | "application/fhir+json" | "application/json+fhir" => Ok(()),
            other => Err(ApiError::new(
                StatusCode::NOT_ACCEPTABLE,
                IssueType::NotSupported,
                format!("_format '{other}' is not supported; this server speaks JSON"),
            )),
        };
    }
    let accept: Vec<&str> = headers.get_all(header::ACCEPT).iter().filter_map(|value| value.to_str().ok()).collect();
    if accept.is_empty() {
        return Ok(());
    }
    let acceptable = accept.iter().flat_map(|value| value.split(',')).any(|range| {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let refused = parts
            .any(|parameter| matches!(parameter.split_once('='), Some(("q", q)) if q.trim().parse::<f32>() == Ok(0.0)));
        !refused
            && matches!(
                media.as_str(),
                "*/*" | "application/*" | "application/json" | "application/fhir+json" | "application/json+fhir" | ""
            )
    });
    if acceptable {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            IssueType::NotSupported,
            "this server only produces application/fhir+json",
        ))
    }
}

/// Reads the body as a FHIR JSON resource: checks `Content-Type` (415), the size limit (413)
/// and the JSON syntax (400). The result is a JSON object with a `resourceType`.
pub(crate) async fn read_resource(headers: &HeaderMap, body: Body, limit: usize) -> Result<Value, ApiError> {
    require_content_type(headers, &["application/fhir+json", "application/json", "application/json+fhir"])?;
    let bytes = read_body(headers, body, limit).await?;
    let value = parse_json(&bytes)?;
    match value.get("resourceType") {
        Some(Value::String(_)) if value.is_object() => Ok(value),
        _ => Err(ApiError::bad_request("the body is not a FHIR resource: it needs a \"resourceType\" string")),
    }
}

/// Reads a JSON Patch document (`application/json-patch+json`).
pub(crate) async fn read_json_patch(headers: &HeaderMap, body: Body, limit: usize) -> Result<Value, ApiError> {
    require_content_type(headers, &["application/json-patch+json"])?;
    let bytes = read_body(headers, body, limit).await?;
    parse_json(&bytes)
}

/// The `If-Match` precondition as a version number, if present.
pub(crate) fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else { return Ok(None) };
    let text = value.to_str().unwrap_or("");
    parse_etag(text)
        .map(Some)
        .ok_or_else(|| ApiError::bad_request(format!("If-Match '{text}' is not a version ETag like W/\"3\"")))
}

/// The version in `W/"3"` (or `"3"`).
pub(crate) fn parse_etag(text: &str) -> Option<u64> {
    let text = text.trim();
    let text = text.strip_prefix("W/").unwrap_or(text);
    text.strip_prefix('"')?.strip_suffix('"')?.parse().ok()
}

fn require_content_type(headers: &HeaderMap, allowed: &[&str]) -> Result<(), ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if allowed.contains(&media.as_str()) {
        Ok(())
    } else {
        let shown = if content_type.is_empty() { "none" } else { content_type };
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IssueType::NotSupported,
            format!("Content-Type {shown} is not supported here; send {}", allowed[0]),
        ))
    }
}

async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            IssueType::TooLong,
            format!("the request body exceeds the limit of {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|error| {
        if std::error::Error::source(&error).is_some_and(|source| source.is::<http_body_util::LengthLimitError>()) {
            too_large()
        } else {
            ApiError::bad_request(format!("could not read the request body: {error}"))
        }
    })
}

fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    serde_json::from_slice(bytes).map_err(|error| {
        ApiError::new(StatusCode::BAD_REQUEST, IssueType::Structure, format!("the body is not valid JSON: {error}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags() {
        assert_eq!(parse_etag("W/\"3\""), Some(3));
        assert_eq!(parse_etag("\"12\""), Some(12));
        assert_eq!(parse_etag("3"), None);
        assert_eq!(parse_etag("W/\"x\""), None);
    }

    #[test]
    fn accept_ranges() {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, "text/html, application/fhir+json;q=0.9".parse().unwrap());
        assert!(check_acceptable(&headers, None).is_ok());
        headers.insert(header::ACCEPT, "application/fhir+xml".parse().unwrap());
        assert!(check_acceptable(&headers, None).is_err());
        assert!(check_acceptable(&headers, Some("json")).is_ok());
        assert!(check_acceptable(&HeaderMap::new(), Some("xml")).is_err());
        headers.insert(header::ACCEPT, "application/fhir+json;q=0".parse().unwrap());
        assert!(check_acceptable(&headers, None).is_err(), "q=0 refuses a type");
    }
}
