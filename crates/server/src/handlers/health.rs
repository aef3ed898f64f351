//! Liveness and readiness probes for load balancers and orchestrators.

use axum::extract::State;
use axum::http::StatusCode;
use fhir::id::{LogicalId, ResourceType};
use store::Environment;

use crate::error::ApiError;
use crate::state::AppState;

/// `GET /healthz`: the process is up.
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: the database answers.
pub(crate) async fn readyz(State(state): State<AppState>) -> Result<(StatusCode, &'static str), ApiError> {
    let probe_type = ResourceType::parse("Patient").ok_or_else(|| ApiError::internal("definitions lack Patient"))?;
    let probe_id = LogicalId::parse("readiness-probe").ok_or_else(|| ApiError::internal("bad probe id"))?;
    state.store.read(Environment::Production, &probe_type, &probe_id).await?;
    Ok((StatusCode::OK, "ready"))
}

/// `GET /metrics`: this process's usage counters in the Prometheus text format.
pub(crate) async fn metrics(State(state): State<AppState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(axum::http::header::CONTENT_TYPE, content_type)], state.monitor.render()).into_response()
}
