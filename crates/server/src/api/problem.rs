//! RFC 9457 problem documents: every error of the `/api/`. `type` names the problem
//! (`urn:ignis:problem:…`), `detail` says which check failed; some problems carry members of
//! their own (`allowed` for an illegal transition, `missing` for an incomplete checklist).

use access::AccessError;
use auth::user::AuthError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

/// The media type of a problem document.
pub(crate) const PROBLEM_JSON: &str = "application/problem+json";

/// An error of the `/api/`.
#[derive(Debug)]
pub(crate) struct Problem {
    status: StatusCode,
    /// The last segment of the problem's type URI.
    kind: &'static str,
    detail: String,
    /// Members beyond the standard ones.
    extra: Map<String, Value>,
}

/// A problem document as the OpenAPI document describes it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProblemDocument {
    /// `urn:ignis:problem:<kind>`.
    #[serde(rename = "type")]
    kind: String,
    title: String,
    status: u16,
    /// Which check failed.
    detail: String,
}

impl Problem {
    pub(crate) fn new(status: StatusCode, kind: &'static str, detail: impl Into<String>) -> Problem {
        Problem { status, kind, detail: detail.into(), extra: Map::new() }
    }

    /// The same problem with a member of its own.
    pub(crate) fn with(mut self, name: &str, value: Value) -> Problem {
        self.extra.insert(name.to_owned(), value);
        self
    }

    pub(crate) fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, "invalid-request", detail)
    }

    pub(crate) fn unauthorized(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::UNAUTHORIZED, "unauthenticated", detail)
    }

    pub(crate) fn forbidden(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    /// A 500: the cause goes to the log, not to the client.
    pub(crate) fn internal(cause: impl std::fmt::Display) -> Problem {
        tracing::error!(error = %cause, "api request failed with an internal error");
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal server error")
    }

    /// The problem a framework error of `status` (a routing miss, a wrong method) stands for.
    pub(crate) fn for_status(status: StatusCode) -> Problem {
        let (kind, detail) = match status {
            StatusCode::NOT_FOUND => ("not-found", "no such resource in the API"),
            StatusCode::METHOD_NOT_ALLOWED => ("method-not-allowed", "the resource does not take this method"),
            StatusCode::PAYLOAD_TOO_LARGE => ("too-large", "the request body is too large"),
            StatusCode::REQUEST_TIMEOUT => ("timeout", "the request took too long"),
            status if status.is_server_error() => ("internal", "internal server error"),
            _ => ("invalid-request", "the request cannot be served"),
        };
        Problem::new(status, kind, detail)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut body = json!({
            "type": format!("urn:ignis:problem:{}", self.kind),
            "title": self.status.canonical_reason().unwrap_or("Error"),
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        if let Value::Object(members) = &mut body {
            members.extend(self.extra);
        }
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"api\""));
        }
        response
    }
}

impl From<AccessError> for Problem {
    fn from(error: AccessError) -> Problem {
        let detail = error.to_string();
        match error {
            AccessError::NotFound { .. } => Problem::new(StatusCode::NOT_FOUND, "not-found", detail),
            AccessError::IllegalTransition { from, allowed, .. } => {
                let allowed: Vec<Value> =
                    allowed.iter().map(|(action, to)| json!({"action": action.as_str(), "to": to.as_str()})).collect();
                Problem::new(StatusCode::CONFLICT, "illegal-transition", detail)
                    .with("state", json!(from.as_str()))
                    .with("allowed", json!(allowed))
            }
            AccessError::Closed(state) => {
                Problem::new(StatusCode::CONFLICT, "request-closed", detail).with("state", json!(state.as_str()))
            }
            AccessError::ChecklistIncomplete { missing } => {
                Problem::new(StatusCode::CONFLICT, "checklist-incomplete", detail).with("missing", json!(missing))
            }
            AccessError::NotCertified(_) => Problem::new(StatusCode::CONFLICT, "not-certified", detail),
            AccessError::Revoked => Problem::new(StatusCode::CONFLICT, "revoked", detail),
            AccessError::Invalid(_) => Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-value", detail),
            AccessError::Key(_) | AccessError::Secret(_) | AccessError::Store(_) => Problem::internal(error),
        }
    }
}

impl From<AuthError> for Problem {
    fn from(error: AuthError) -> Problem {
        let detail = error.to_string();
        match error {
            AuthError::InvalidCredentials | AuthError::InvalidSecondFactor | AuthError::Locked { .. } => {
                Problem::unauthorized(detail)
            }
            AuthError::UsernameTaken(_) => Problem::new(StatusCode::CONFLICT, "username-taken", detail),
            AuthError::InvalidUser(_) | AuthError::Password(_) | AuthError::NoSecondFactor => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-value", detail)
            }
            AuthError::Secret(_) | AuthError::Store(_) => Problem::internal(error),
        }
    }
}

impl From<store::Error> for Problem {
    fn from(error: store::Error) -> Problem {
        Problem::internal(error)
    }
}
