//! Devices of an account and their Device JWTs.

use access::ca::{self, Given};
use access::certificate::DeviceCertificate;
use access::device::{self, CertificateSource, NewDevice};
use access::view::DeviceView;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use store::Environment;
use utoipa::ToSchema;

use super::problem::{Problem, ProblemDocument};
use super::{ApiContext, ApiUser, Need, json_body};

/// A device to configure: the certificate it will present, or a CSR for the platform CA to
/// sign (its private key stays on the device).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewDeviceRequest {
    name: String,
    #[schema(value_type = String, example = "production")]
    environment: Environment,
    #[serde(default)]
    purpose: String,
    /// `system/` scopes (default `system/*.rs`).
    #[serde(default)]
    scope: Option<String>,
    /// PEM.
    #[serde(default)]
    certificate: Option<String>,
    /// PEM certificate signing request.
    #[serde(default)]
    csr: Option<String>,
}

/// A device's new certificate: the one it will present, or a CSR for the platform CA.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewCertificate {
    #[serde(default)]
    certificate: Option<String>,
    #[serde(default)]
    csr: Option<String>,
}

/// A Device JWT.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Credential {
    device: String,
    /// The device's one live Device JWT (shown once).
    jwt: String,
}

/// Configure a device of the account.
#[utoipa::path(post, path = "/api/accounts/{id}/devices", tag = "devices", request_body = NewDeviceRequest,
    security(("api_key" = [])), params(("id" = String, Path, description = "the account id")),
    responses((status = 201, body = DeviceView), (status = 422, body = ProblemDocument, content_type = "application/problem+json")))]
pub(crate) async fn create(
    State(context): State<ApiContext>,
    caller: ApiUser,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    let request: NewDeviceRequest = json_body(&body)?;
    let store = context.store();
    caller.account(store, &id, Need::Change).await?;
    let certificate = certificate_of(&context, request.certificate, request.csr).await?;
    let new = NewDevice {
        account: id,
        name: request.name,
        purpose: request.purpose,
        environment: request.environment,
        scope: request.scope,
        certificate,
    };
    let created = device::create(store, new, caller.username()).await?;
    Ok((StatusCode::CREATED, axum::Json(DeviceView::from(&created))).into_response())
}

/// The account's devices.
#[utoipa::path(get, path = "/api/accounts/{id}/devices", tag = "devices", security(("api_key" = [])),
    params(("id" = String, Path, description = "the account id")), responses((status = 200, body = [DeviceView])))]
pub(crate) async fn list(
    State(context): State<ApiContext>,
    caller: ApiUser,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let store = context.store();
    caller.account(store, &id, Need::Read).await?;
    let devices: Vec<DeviceView> = device::of_account(store, &id).await?.iter().map(DeviceView::from).collect();
    Ok(axum::Json(devices).into_response())
}

/// Read a device.
#[utoipa::path(get, path = "/api/devices/{id}", tag = "devices", security(("api_key" = [])),
    params(("id" = String, Path, description = "the device id")),
    responses((status = 200, body = DeviceView), (status = 404, body = ProblemDocument, content_type = "application/problem+json")))]
pub(crate) async fn get(
    State(context): State<ApiContext>,
    caller: ApiUser,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let device = checked(&context, &caller, &id, Need::Read).await?;
    Ok(axum::Json(DeviceView::from(&device)).into_response())
}

/// Issue the device's one live Device JWT; the one before is refused from now on. A production
/// device needs a certificate and an approved access request.
#[utoipa::path(post, path = "/api/devices/{id}/credential", tag = "devices", security(("api_key" = [])),
    params(("id" = String, Path, description = "the device id")),
    responses((status = 201, body = Credential), (status = 409, description = "not certified, or revoked", body = ProblemDocument, content_type = "application/problem+json")))]
pub(crate) async fn credential(
    State(context): State<ApiContext>,
    caller: ApiUser,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    checked(&context, &caller, &id, Need::Change).await?;
    let store = context.store();
    let jwt = context.auth.devices(store).await?.issue(store, &id, caller.username()).await?;
    Ok((StatusCode::CREATED, axum::Json(Credential { device: id, jwt })).into_response())
}

/// Revoke the device and its Device JWT.
#[utoipa::path(post, path = "/api/devices/{id}/revoke", tag = "devices", security(("api_key" = [])),
    params(("id" = String, Path, description = "the device id")), responses((status = 200, body = DeviceView)))]
pub(crate) async fn revoke(
    State(context): State<ApiContext>,
    caller: ApiUser,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    checked(&context, &caller, &id, Need::Change).await?;
    let store = context.store();
    let revoked = device::revoke(store, &id, caller.username()).await?;
    context.auth.devices(store).await?.forget(&id);
    Ok(axum::Json(DeviceView::from(&revoked)).into_response())
}

/// Rotate the device's certificate; its Device JWT, bound to the old one, is revoked.
#[utoipa::path(put, path = "/api/devices/{id}/certificate", tag = "devices", request_body = NewCertificate,
    security(("api_key" = [])), params(("id" = String, Path, description = "the device id")),
    responses((status = 200, body = DeviceView), (status = 422, body = ProblemDocument, content_type = "application/problem+json")))]
pub(crate) async fn rotate(
    State(context): State<ApiContext>,
    caller: ApiUser,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    let request: NewCertificate = json_body(&body)?;
    checked(&context, &caller, &id, Need::Change).await?;
    let Some((certificate, source)) = certificate_of(&context, request.certificate, request.csr).await? else {
        return Err(Problem::bad_request("give `certificate` or `csr`"));
    };
    let store = context.store();
    let rotated = device::rotate_certificate(store, &id, certificate, source, caller.username()).await?;
    context.auth.devices(store).await?.forget(&id);
    Ok(axum::Json(DeviceView::from(&rotated)).into_response())
}

/// The certificate a request gives, or the one the platform CA signs from its CSR.
async fn certificate_of(
    context: &ApiContext,
    certificate: Option<String>,
    csr: Option<String>,
) -> Result<Option<(DeviceCertificate, CertificateSource)>, Problem> {
    let Some(given) = Given::of(certificate.as_deref(), csr.as_deref())? else { return Ok(None) };
    Ok(Some(ca::device_certificate(context.store(), &context.auth.secret_key, given).await?))
}

/// The device at `id`, if the caller may `need` on its account.
async fn checked(
    context: &ApiContext,
    caller: &ApiUser,
    id: &str,
    need: Need,
) -> Result<store::records::Versioned<device::Device>, Problem> {
    let store = context.store();
    let device = device::get(store, id).await?;
    caller.account(store, &device.value.account, need).await?;
    Ok(device)
}

/// The platform client-auth CA.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PlatformCa {
    /// Its certificate, PEM.
    certificate: String,
}

/// Create the platform client-auth CA unless it exists (operators; as `ignis admin ca init`).
#[utoipa::path(post, path = "/api/ca", tag = "devices", security(("api_key" = [])),
    responses((status = 200, body = PlatformCa), (status = 403, body = ProblemDocument, content_type = "application/problem+json")))]
pub(crate) async fn ca_init(State(context): State<ApiContext>, caller: ApiUser) -> Result<Response, Problem> {
    caller.check_operator("create the platform CA")?;
    let certificate = ca::init(context.store(), &context.auth.secret_key, caller.username()).await?;
    Ok(axum::Json(PlatformCa { certificate }).into_response())
}
