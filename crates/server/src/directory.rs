//! The public list of service base URLs (ONC 170.404(b)(2)): `GET /api/service-base-urls`
//! answers a FHIR `Bundle` with one `Endpoint` per environment's FHIR base and the
//! `Organization` that runs them, as app developers and the Inferno service-base-URL tests
//! read it. No token is needed.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::state::AppState;

/// `GET /api/service-base-urls`.
pub(crate) async fn service_base_urls(State(state): State<AppState>) -> Response {
    let root = &state.config.base_url;
    let organization = &state.config.organization_name;
    let endpoints = [("production", "/fhir", "Production"), ("sandbox", "/sandbox/fhir", "Sandbox")];
    let mut entries: Vec<Value> = endpoints
        .iter()
        .map(|(id, path, label)| {
            let resource = json!({
                "resourceType": "Endpoint",
                "id": id,
                "status": "active",
                "connectionType": {
                    "system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
                    "code": "hl7-fhir-rest",
                },
                "name": format!("{organization} FHIR R4 API ({label})"),
                "managingOrganization": {"reference": "Organization/operator"},
                "payloadType": [{"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/endpoint-payload-type",
                    "code": "none",
                }]}],
                "payloadMimeType": ["application/fhir+json"],
                "address": format!("{root}{path}"),
            });
            json!({"fullUrl": format!("{root}/api/service-base-urls/Endpoint/{id}"), "resource": resource})
        })
        .collect();
    let references: Vec<Value> =
        endpoints.iter().map(|(id, _, _)| json!({"reference": format!("Endpoint/{id}")})).collect();
    entries.push(json!({
        "fullUrl": format!("{root}/api/service-base-urls/Organization/operator"),
        "resource": {
            "resourceType": "Organization",
            "id": "operator",
            "active": true,
            "name": organization,
            "endpoint": references,
        },
    }));
    let bundle = json!({"resourceType": "Bundle", "type": "collection", "total": entries.len(), "entry": entries});
    let mut response = axum::Json(bundle).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/fhir+json"));
    response
}
