//! `transaction` and `batch`: `POST [base]` with a Bundle.

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use crate::audit::Note;
use crate::authorize::Caller;
use crate::error::ApiError;
use crate::negotiation::read_resource;
use crate::response::json_response;
use crate::state::FhirContext;
use crate::transaction::{Detail, process};

/// `POST [base]`: 200 with a `transaction-response` or `batch-response` Bundle; a failed
/// transaction answers with the failing entry's status and OperationOutcome.
pub(crate) async fn transaction(
    State(context): State<FhirContext>,
    Extension(caller): Extension<Caller>,
    note: Note,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bundle = read_resource(&headers, body, context.app.config.max_body_bytes).await?;
    let body = process(&context, &caller, &note, bundle, detail(&headers)).await?;
    Ok(json_response(StatusCode::OK, body))
}

/// Response entries carry resources only when the client asks for them: transaction
/// responses for thousands of entries stay small by default.
fn detail(headers: &HeaderMap) -> Detail {
    let asked = headers
        .get_all("prefer")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.split([',', ';']).any(|part| part.trim() == "return=representation"));
    if asked { Detail::Representation } else { Detail::Minimal }
}
