//! Every HTTP error of the FHIR API, and the one place that turns errors into responses.
//!
//! Handlers return [`ApiError`]; its `IntoResponse` picks the status and renders an
//! `OperationOutcome`. Store and validation errors are mapped here and nowhere else. A 5xx
//! never carries internal detail: that goes to the log.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fhir::outcome::{Issue, IssueType, operation_outcome};

use crate::response::FHIR_JSON;

/// A failed request: the status and the issues to report.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    issues: Vec<Issue>,
    /// Seconds a client should wait before retrying (503 and 429).
    retry_after: Option<u64>,
    /// The `WWW-Authenticate` challenge of a 401.
    challenge: Option<String>,
}

impl ApiError {
    /// An error with one issue.
    pub(crate) fn new(status: StatusCode, code: IssueType, diagnostics: impl Into<String>) -> ApiError {
        ApiError { status, issues: vec![Issue::error(code, diagnostics)], retry_after: None, challenge: None }
    }

    /// An error reporting several issues (e.g. every validation problem of a resource).
    pub(crate) fn with_issues(status: StatusCode, issues: Vec<Issue>) -> ApiError {
        ApiError { status, issues, retry_after: None, challenge: None }
    }

    /// 400 with an `invalid` issue.
    pub(crate) fn bad_request(diagnostics: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, IssueType::Invalid, diagnostics)
    }

    /// 404 with a `not-found` issue.
    pub(crate) fn not_found(diagnostics: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, IssueType::NotFound, diagnostics)
    }

    /// The same error, its diagnostics prefixed with the Bundle entry it is about.
    pub(crate) fn in_entry(mut self, index: usize) -> ApiError {
        for issue in &mut self.issues {
            issue.diagnostics = format!("Bundle.entry[{index}]: {}", issue.diagnostics);
        }
        self
    }

    /// The HTTP status.
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    /// The first issue's text, for the audit log.
    pub(crate) fn summary(&self) -> String {
        self.issues.first().map(|issue| issue.diagnostics.clone()).unwrap_or_default()
    }

    /// The OperationOutcome resource this error is reported as.
    pub(crate) fn outcome(&self) -> serde_json::Value {
        operation_outcome(&self.issues)
    }

    /// 429 with `Retry-After`: the caller is past its rate limit.
    pub(crate) fn throttled(diagnostics: impl Into<String>, retry_after: u64) -> ApiError {
        ApiError {
            retry_after: Some(retry_after),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, IssueType::Throttled, diagnostics)
        }
    }

    /// 503 with `Retry-After`: the server is at a limit that frees up soon.
    pub(crate) fn unavailable(diagnostics: impl Into<String>, retry_after: u64) -> ApiError {
        ApiError {
            retry_after: Some(retry_after),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, IssueType::Transient, diagnostics)
        }
    }

    /// 401 with a `WWW-Authenticate: Bearer` challenge (RFC 6750 §3): no token, or one that
    /// failed `error` (`invalid_token`) for `reason`.
    pub(crate) fn unauthorized(error: Option<&str>, reason: impl Into<String>) -> ApiError {
        let reason = reason.into();
        let challenge = match error {
            Some(error) => format!(
                "Bearer realm=\"ignis\", error=\"{error}\", error_description=\"{}\"",
                reason.replace(['"', '\\'], "'")
            ),
            None => "Bearer realm=\"ignis\"".to_owned(),
        };
        ApiError { challenge: Some(challenge), ..ApiError::new(StatusCode::UNAUTHORIZED, IssueType::Login, reason) }
    }

    /// 403: the token is valid but does not grant this.
    pub(crate) fn forbidden(diagnostics: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, IssueType::Forbidden, diagnostics)
    }

    /// 500 that reveals nothing; the cause is logged.
    pub(crate) fn internal(cause: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %cause, "request failed with an internal error");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, IssueType::Exception, "internal server error")
    }
}

impl From<store::Error> for ApiError {
    fn from(error: store::Error) -> ApiError {
        use store::Error as E;
        match error {
            E::NotFound { .. } => ApiError::not_found(error.to_string()),
            E::VersionConflict { .. } => {
                ApiError::new(StatusCode::PRECONDITION_FAILED, IssueType::Conflict, error.to_string())
            }
            E::MultipleMatches { .. } => {
                ApiError::new(StatusCode::PRECONDITION_FAILED, IssueType::MultipleMatches, error.to_string())
            }
            E::InvalidResource(_) | E::InvalidQuery(_) => ApiError::bad_request(error.to_string()),
            E::InvalidTransaction(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, IssueType::Processing, error.to_string())
            }
            E::RecordNotFound { .. } => ApiError::not_found(error.to_string()),
            E::RecordExists { .. } | E::RecordConflict { .. } | E::RecordKeyTaken { .. } => {
                ApiError::new(StatusCode::CONFLICT, IssueType::Conflict, error.to_string())
            }
            E::InvalidRecord { .. } => ApiError::bad_request(error.to_string()),
            E::TooCostly(_) => ApiError::new(StatusCode::BAD_REQUEST, IssueType::TooCostly, error.to_string()),
            E::Unavailable(_) => {
                tracing::warn!(error = %error, "database unavailable");
                ApiError::unavailable("the database is busy or unavailable; retry later", 1)
            }
            E::Database(_) => ApiError::internal(error),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = outcome_response(self.status, &self.issues, self.retry_after);
        if let Some(challenge) = self.challenge.and_then(|challenge| HeaderValue::from_str(&challenge).ok()) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
        }
        response
    }
}

/// An `OperationOutcome` response with `status`; used for errors and for
/// `Prefer: return=OperationOutcome`.
pub(crate) fn outcome_response(status: StatusCode, issues: &[Issue], retry_after: Option<u64>) -> Response {
    let body = operation_outcome(issues).to_string();
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    if let Some(seconds) = retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// The issue for a bare framework error (unmatched route, wrong method, oversized body, …)
/// that reached the client without an OperationOutcome.
pub(crate) fn issue_for_status(status: StatusCode) -> Issue {
    let (code, text) = match status {
        StatusCode::NOT_FOUND => (IssueType::NotFound, "no such endpoint"),
        StatusCode::METHOD_NOT_ALLOWED => {
            (IssueType::NotSupported, "this interaction is not supported on this endpoint")
        }
        StatusCode::PAYLOAD_TOO_LARGE => (IssueType::TooLong, "the request body is too large"),
        StatusCode::REQUEST_TIMEOUT => (IssueType::Timeout, "the request took too long"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (IssueType::NotSupported, "unsupported content type"),
        status if status.is_server_error() => (IssueType::Exception, "internal server error"),
        _ => (IssueType::Invalid, "the request is invalid"),
    };
    Issue::error(code, text)
}
