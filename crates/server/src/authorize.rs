//! Who is calling and what they may do: the one place FHIR interactions are authorized.
//!
//! [`authenticate`] turns the bearer token of every FHIR request (all but `metadata`) into a
//! [`Caller`]: 401 with a `WWW-Authenticate` challenge when it is missing or fails a check.
//! Handlers then ask [`Caller::admit`] for each resource type and permission they touch:
//! 403 when the scopes do not cover it, otherwise a [`Limit`] — none, or clauses every
//! resource the caller reaches must match: the patient's compartment for `patient/` scopes,
//! and the queries of granular scopes (`patient/Observation.rs?category=…|laboratory`).
//! Searches add the clauses to their own; reads and writes check single resources
//! ([`Limit::check`], [`Limit::check_body`]); search includes are filtered
//! ([`filter_included`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use auth::scope::{Access, Context, Permission};
use auth::token::Grant;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use fhir::id::{LogicalId, ResourceType};
use fhir::search::{Clause, Criteria, Handling, SearchQuery, index_rows};
use serde_json::Value;
use store::StoredResource;
use store::audit::Agent;

use crate::audit::Note;
use crate::error::ApiError;
use crate::state::FhirContext;

/// The authenticated caller of a FHIR request.
#[derive(Debug, Clone)]
pub(crate) enum Caller {
    /// The server runs without authorization (`--insecure-no-auth`, loopback only).
    Open,
    Token(Arc<Grant>),
}

/// Middleware: authenticates the request's bearer token against this FHIR base, and tells
/// the request's audit note who is calling (or why they were refused).
pub(crate) async fn authenticate(State(context): State<FhirContext>, mut request: Request, next: Next) -> Response {
    let note = request.extensions().get::<Note>().cloned();
    let caller = match caller_of(&context, request.headers(), request.extensions()).await {
        Ok((caller, agent)) => {
            if let Some(note) = &note {
                note.agent(agent);
            }
            caller
        }
        Err(error) => {
            if let Some(note) = &note {
                note.detail(error.summary());
            }
            return error.into_response();
        }
    };
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// The caller of `request` and who they are for the audit log: 401 with a challenge when the
/// token is missing or fails a check.
async fn caller_of(
    context: &FhirContext,
    headers: &axum::http::HeaderMap,
    extensions: &axum::http::Extensions,
) -> Result<(Caller, Agent), ApiError> {
    let Some(auth) = &context.app.auth else { return Ok((Caller::Open, Agent::default())) };
    let Some(token) = bearer(headers) else {
        return Err(ApiError::unauthorized(None, "this FHIR server requires an access token (Authorization: Bearer)"));
    };
    let devices = auth.devices(context.store()).await.map_err(ApiError::internal)?;
    if devices.is_device_jwt(token) {
        let presented = extensions.get::<crate::mtls::PeerCertificates>().cloned();
        let client = extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|info| info.0.ip());
        return device_caller(context, devices, token, (presented, client), extensions.get::<Note>()).await;
    }
    match auth.issuer.authenticate(context.store(), token, &context.base, now()).await {
        Ok(grant) => {
            bound_to_connection(&grant, extensions, context.env)?;
            let app = context.app.monitor.client_account(context.store(), &grant.client_id).await?;
            let device = app.as_ref().is_some_and(|app| app.member.starts_with("device:"));
            let agent = Agent {
                user: (grant.subject != grant.client_id).then(|| grant.subject.clone()),
                client: (!device).then(|| grant.client_id.clone()),
                device: device.then(|| grant.client_id.clone()),
                account: app.as_ref().map(|app| app.account.clone()),
            };
            if let Some(app) = &app {
                if let Some(note) = extensions.get::<Note>() {
                    note.agent(agent.clone());
                }
                admit_app(context, app).await?;
            }
            Ok((Caller::Token(grant), agent))
        }
        Err(error @ auth::token::TokenError::Unavailable(_)) => Err(ApiError::internal(error)),
        Err(error) => Err(ApiError::unauthorized(Some("invalid_token"), error.to_string())),
    }
}

/// An app's or a device's token is refused while its account is suspended, and past the
/// account's limit.
async fn admit_app(context: &FhirContext, app: &access::monitoring::ClientAccount) -> Result<(), ApiError> {
    if let Some(reason) = &app.suspended {
        return Err(ApiError::forbidden(format!("the account is suspended: {reason}")));
    }
    if let Some(per_minute) = app.limit_per_minute {
        let (store, rules) = (context.store(), context.app.config.rules);
        context.app.monitor.admit(store, rules, &app.account, &app.member, per_minute).await?;
    }
    Ok(())
}

/// A certificate-bound access token (RFC 8705) must come over mutual TLS with its certificate,
/// which in production must still pass the checks of `crate::mtls` (a CRL may have changed).
fn bound_to_connection(
    grant: &auth::token::Grant,
    extensions: &axum::http::Extensions,
    env: store::Environment,
) -> Result<(), ApiError> {
    let Some(cnf) = &grant.cnf else { return Ok(()) };
    let refused = |reason: &str| ApiError::unauthorized(Some("invalid_token"), reason);
    let peer = extensions.get::<crate::mtls::PeerCertificates>();
    if peer.map(|peer| &*peer.thumbprint) != Some(cnf.as_str()) {
        return Err(refused(
            "the access token is bound to a client certificate (cnf x5t#S256): present it over mutual TLS",
        ));
    }
    if env == store::Environment::Production
        && let Some(Err(reason)) = peer.map(|peer| &peer.production)
    {
        return Err(refused(reason));
    }
    Ok(())
}

/// The caller a Device JWT makes: the JWT must be its device's live credential for this
/// environment and its account not suspended; in production the account must be certified
/// and the call come from the approved network paths (`client`: the connection's address);
/// when it is bound to a certificate (always in production), the call must come over mutual
/// TLS with that certificate, which in production must also pass the checks of `crate::mtls`
/// (`presented`: the connection's certificate and its verdict); and the account's rate limit
/// must admit it. The request's audit `note` learns the device as soon as it is known.
async fn device_caller(
    context: &FhirContext,
    devices: &access::DeviceCredentials,
    token: &str,
    (presented, client): (Option<crate::mtls::PeerCertificates>, Option<std::net::IpAddr>),
    note: Option<&Note>,
) -> Result<(Caller, Agent), ApiError> {
    let refused = |reason: String| ApiError::unauthorized(Some("invalid_token"), reason);
    let verified = match devices.verify(context.store(), token, context.env).await {
        Ok(verified) => verified,
        Err(error @ access::credential::CredentialError::Unavailable(_)) => return Err(ApiError::internal(error)),
        Err(
            access::credential::CredentialError::NotCertified(reason)
            | access::credential::CredentialError::Suspended(reason),
        ) => {
            return Err(ApiError::forbidden(reason.to_string()));
        }
        Err(error) => return Err(refused(error.to_string())),
    };
    let (grant, network) = (Arc::clone(&verified.grant), verified.network.clone());
    let agent = Agent {
        device: Some(grant.claims.sub.clone()),
        account: Some(grant.claims.account.clone()),
        ..Agent::default()
    };
    // Known now, so that a refusal below is counted and audited against the device.
    if let Some(note) = note {
        note.agent(agent.clone());
    }
    match (&grant.claims.cnf, presented) {
        (None, _) if context.env == store::Environment::Sandbox => {}
        (None, _) => {
            return Err(refused("a production Device JWT must be bound to the device's certificate".to_owned()));
        }
        (Some(_), None) => {
            return Err(refused(
                "the Device JWT is bound to a certificate: call over mutual TLS presenting it".to_owned(),
            ));
        }
        (Some(cnf), Some(peer)) => {
            if context.env == store::Environment::Production {
                peer.production.map_err(|reason| refused(reason.to_string()))?;
            }
            if *peer.thumbprint != *cnf.thumbprint {
                return Err(refused(
                    "the client certificate is not the one the Device JWT is bound to (cnf x5t#S256)".to_owned(),
                ));
            }
        }
    }
    let (account, device) = (&grant.claims.account, &grant.claims.sub);
    if let Some(network) = &network
        && let Err(reason) = access::certification::admits(network, client)
    {
        context.app.monitor.outside_network(context.env.as_str(), account, device);
        return Err(ApiError::forbidden(reason));
    }
    if let Some(per_minute) = verified.limit_per_minute {
        let (store, rules) = (context.store(), context.app.config.rules);
        context.app.monitor.admit(store, rules, account, &format!("device:{device}"), per_minute).await?;
    }
    Ok((Caller::Token(Arc::clone(&grant.grant)), agent))
}

/// The token of an `Authorization: Bearer …` header (the scheme is case-insensitive): access
/// tokens and Device JWTs here, API keys in `/api/`.
pub(crate) fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|token| !token.is_empty())
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// What a bulk export may hold for its caller ([`Caller::admit_export`]).
#[derive(Debug, Clone)]
pub(crate) struct ExportGrant {
    /// The patient a `patient/` token confines the export to.
    pub(crate) patient: Option<String>,
    /// The types granted, in order, each with the granular queries confining it.
    pub(crate) types: Vec<(String, Vec<String>)>,
}

/// What an admitted caller reaches of one resource type.
#[derive(Debug, Clone)]
pub(crate) enum Limit {
    /// Every resource of the type.
    None,
    /// Only resources matching every one of these clauses.
    Within(Vec<Clause>),
}

impl Caller {
    /// Whether the caller may `permission` resources of `resource_type`, and within what.
    pub(crate) fn admit(
        &self,
        context: &FhirContext,
        resource_type: &ResourceType,
        permission: Permission,
    ) -> Result<Limit, ApiError> {
        let Caller::Token(grant) = self else { return Ok(Limit::None) };
        let type_name = resource_type.as_str();
        let wide = [Context::User, Context::System].map(|level| grant.scopes.access(level, type_name, permission));
        if wide.contains(&Access::All) {
            return Ok(Limit::None);
        }
        let registry = context.store().registry(context.env);
        let granular = |queries: &[String]| -> Result<Vec<Clause>, ApiError> {
            queries.iter().map(|query| granular_clause(&registry, type_name, query)).collect()
        };
        let mut alternatives = Vec::new();
        for access in &wide {
            if let Access::Matching(queries) = access {
                alternatives.extend(granular(queries)?);
            }
        }
        match grant.scopes.access(Context::Patient, type_name, permission) {
            Access::Denied => {}
            patient_access => {
                let compartment = match &grant.patient {
                    Some(patient) => Clause::compartment(&registry, "Patient", patient, type_name),
                    None => return Err(ApiError::forbidden("the token's patient/ scopes have no patient in context")),
                };
                let filters = match &patient_access {
                    Access::Matching(queries) => Some(granular(queries)?),
                    _ => None,
                };
                // Types outside the Patient compartment (Organization, Medication…) are not
                // any patient's data: patient/ scopes reach them whole.
                let mut clauses: Vec<Clause> = compartment.into_iter().collect();
                if let Some(filters) = filters {
                    clauses.push(Clause::AnyOf(filters));
                }
                if clauses.is_empty() {
                    return Ok(Limit::None);
                }
                alternatives.push(if clauses.len() == 1 { clauses.remove(0) } else { Clause::AllOf(clauses) });
            }
        }
        match alternatives.len() {
            0 => Err(ApiError::forbidden(format!(
                "the access token's scopes do not grant {} on {type_name}",
                permission_name(permission)
            ))),
            1 => Ok(Limit::Within(alternatives)),
            _ => Ok(Limit::Within(vec![Clause::AnyOf(alternatives)])),
        }
    }

    /// The client the caller uses (`open` on a server without tokens).
    pub(crate) fn client_id(&self) -> &str {
        match self {
            Caller::Token(grant) => &grant.client_id,
            Caller::Open => "open",
        }
    }

    /// What a bulk export of `candidates` may hold for this caller: `system/` scopes export
    /// at every level; at `Patient/$export` (`patient_export`) a token with `patient/` scopes
    /// and a patient in context exports that patient's compartment. Each granted type comes with the queries
    /// of granular scopes that confine it (none: the whole type). 403 when nothing is granted.
    pub(crate) fn admit_export(&self, candidates: &[String], patient_export: bool) -> Result<ExportGrant, ApiError> {
        let Caller::Token(grant) = self else {
            let types = candidates.iter().map(|resource_type| (resource_type.clone(), Vec::new())).collect();
            return Ok(ExportGrant { patient: None, types });
        };
        let has = |context: Context| grant.scopes.resources().any(|scope| scope.context == context);
        let (context, patient) = if has(Context::System) {
            (Context::System, None)
        } else if patient_export && has(Context::Patient) && grant.patient.is_some() {
            (Context::Patient, grant.patient.clone())
        } else if patient_export {
            return Err(ApiError::forbidden(
                "Patient/$export needs system/ scopes, or patient/ scopes with a patient in context",
            ));
        } else {
            return Err(ApiError::forbidden("a system or Group export needs system/ scopes"));
        };
        let mut types = Vec::new();
        for resource_type in candidates {
            match grant.scopes.access(context, resource_type, Permission::Read) {
                Access::Denied => {}
                Access::All => types.push((resource_type.clone(), Vec::new())),
                Access::Matching(queries) => types.push((resource_type.clone(), queries)),
            }
        }
        if types.is_empty() {
            return Err(ApiError::forbidden(format!(
                "the access token's {}/ scopes grant read on none of the types asked for",
                context.as_str()
            )));
        }
        Ok(ExportGrant { patient, types })
    }

    /// The token's patient, when it has one.
    pub(crate) fn patient(&self) -> Option<&str> {
        match self {
            Caller::Token(grant) => grant.patient.as_deref(),
            Caller::Open => None,
        }
    }
}

fn permission_name(permission: Permission) -> &'static str {
    match permission {
        Permission::Create => "create",
        Permission::Read => "read",
        Permission::Update => "update",
        Permission::Delete => "delete",
        Permission::Search => "search",
    }
}

/// The clause of a granular scope's query (`category=http://…|laboratory`).
fn granular_clause(registry: &fhir::search::Registry, resource_type: &str, query: &str) -> Result<Clause, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|_| ApiError::forbidden(format!("the granted scope query '{query}' cannot be read")))?;
    let parsed = SearchQuery::parse(registry, resource_type, &pairs, Handling::Strict).map_err(|_| {
        ApiError::forbidden(format!("the granted scope query '{query}' is not a search this server runs"))
    })?;
    let mut clauses = parsed.clauses;
    Ok(if clauses.len() == 1 { clauses.remove(0) } else { Clause::AllOf(clauses) })
}

impl Limit {
    /// The clauses a search adds to its own.
    pub(crate) fn clauses(self) -> Vec<Clause> {
        match self {
            Limit::None => Vec::new(),
            Limit::Within(clauses) => clauses,
        }
    }

    /// 403 unless the live resource `resource_type/id` is within the limit.
    pub(crate) async fn check(
        &self,
        context: &FhirContext,
        resource_type: &ResourceType,
        id: &LogicalId,
    ) -> Result<(), ApiError> {
        let Limit::Within(clauses) = self else { return Ok(()) };
        let mut all = vec![Clause::Id { ids: vec![id.to_string()], negate: false }];
        all.extend(clauses.iter().cloned());
        let found = context.store().find(context.env, resource_type, Criteria::from_clauses(all), 1).await?;
        if found.is_empty() {
            return Err(ApiError::forbidden(format!(
                "{resource_type}/{id} is outside what the access token grants (its patient's compartment and granted categories)"
            )));
        }
        Ok(())
    }

    /// 403 unless a resource body about to be written is within the limit. Only a patient's
    /// compartment can be checked on a body: a limit with granular filters refuses writes.
    pub(crate) fn check_body(
        &self,
        context: &FhirContext,
        resource_type: &ResourceType,
        body: &Value,
        caller: &Caller,
    ) -> Result<(), ApiError> {
        let Limit::Within(clauses) = self else { return Ok(()) };
        let refused = || {
            ApiError::forbidden(format!(
                "the access token may only write {resource_type} resources in its patient's compartment"
            ))
        };
        let ([Clause::Compartment { reference_ids, target_type, ids: Some(ids) }], Some(patient)) =
            (clauses.as_slice(), caller.patient())
        else {
            return Err(refused());
        };
        let [id] = ids.as_slice() else { return Err(refused()) };
        if resource_type.as_str() == target_type {
            return if body.get("id").and_then(Value::as_str) == Some(patient) { Ok(()) } else { Err(refused()) };
        }
        let registry = context.store().registry(context.env);
        let rows = index_rows(&registry, resource_type.as_str(), body);
        let linked = rows.references.iter().any(|row| {
            reference_ids.contains(&row.param)
                && row.target_type.as_deref() == Some(target_type.as_str())
                && row.target_id.as_deref() == Some(id.as_str())
        });
        if linked { Ok(()) } else { Err(refused()) }
    }
}

/// Drops the included resources the caller may not read (types the token does not cover,
/// resources outside its patient's compartment or granted categories). One query per type.
pub(crate) async fn filter_included(
    context: &FhirContext,
    caller: &Caller,
    included: Vec<StoredResource>,
) -> Result<Vec<StoredResource>, ApiError> {
    if matches!(caller, Caller::Open) || included.is_empty() {
        return Ok(included);
    }
    let mut by_type: BTreeMap<String, Vec<StoredResource>> = BTreeMap::new();
    for resource in included {
        by_type.entry(resource.resource_type.clone()).or_default().push(resource);
    }
    let mut kept = Vec::new();
    for (type_name, resources) in by_type {
        let Some(resource_type) = ResourceType::parse(&type_name) else { continue };
        match caller.admit(context, &resource_type, Permission::Read) {
            Err(_) => {}
            Ok(Limit::None) => kept.extend(resources),
            Ok(Limit::Within(clauses)) => {
                let ids: Vec<String> = resources.iter().map(|resource| resource.id.clone()).collect();
                let mut all = vec![Clause::Id { ids, negate: false }];
                all.extend(clauses);
                let allowed = context
                    .store()
                    .find(context.env, &resource_type, Criteria::from_clauses(all), resources.len())
                    .await?;
                kept.extend(
                    resources.into_iter().filter(|resource| allowed.iter().any(|found| found.id == resource.id)),
                );
            }
        }
    }
    Ok(kept)
}

impl Caller {
    /// Admits one operation of a transaction or batch: its type and permission, the
    /// resources it touches and writes, and its conditional criteria narrowed to the limit.
    pub(crate) async fn admit_operation(
        &self,
        context: &FhirContext,
        operation: &mut store::Operation,
    ) -> Result<(), ApiError> {
        use store::Operation;
        if matches!(self, Caller::Open) {
            return Ok(());
        }
        match operation {
            Operation::Read { resource_type, id, .. } => {
                self.admit(context, resource_type, Permission::Read)?.check(context, resource_type, id).await
            }
            Operation::Create { resource_type, resource, condition } => {
                let limit = self.admit(context, resource_type, Permission::Create)?;
                limit.check_body(context, resource_type, resource, self)?;
                narrow(condition.as_mut(), limit);
                Ok(())
            }
            Operation::Update { resource_type, id, resource, .. } => {
                let limit = self.admit(context, resource_type, Permission::Update)?;
                limit.check_existing(context, resource_type, id).await?;
                limit.check_body(context, resource_type, resource, self)
            }
            Operation::ConditionalUpdate { resource_type, criteria, resource } => {
                let limit = self.admit(context, resource_type, Permission::Update)?;
                limit.check_body(context, resource_type, resource, self)?;
                narrow(Some(criteria), limit);
                Ok(())
            }
            Operation::Delete { resource_type, id, .. } => {
                self.admit(context, resource_type, Permission::Delete)?.check(context, resource_type, id).await
            }
            Operation::ConditionalDelete { resource_type, criteria } => {
                narrow(Some(criteria), self.admit(context, resource_type, Permission::Delete)?);
                Ok(())
            }
        }
    }

    /// Admits a search for conditional criteria (`If-None-Exist`, conditional references)
    /// and narrows them to the limit, so they never match what the caller may not see.
    pub(crate) fn narrow_criteria(
        &self,
        context: &FhirContext,
        resource_type: &ResourceType,
        criteria: &mut Criteria,
    ) -> Result<(), ApiError> {
        let limit = self.admit(context, resource_type, Permission::Search)?;
        narrow(Some(criteria), limit);
        Ok(())
    }

    /// Admits an interaction across every resource type (system history): only an open
    /// server or a `user/*` or `system/*` scope with `permission` and no query reaches it.
    pub(crate) fn admit_every_type(&self, permission: Permission) -> Result<(), ApiError> {
        let Caller::Token(grant) = self else { return Ok(()) };
        let every = grant.scopes.resources().any(|scope| {
            scope.context != Context::Patient
                && scope.resource_type.is_none()
                && scope.query.is_none()
                && scope.permissions.contains(permission)
        });
        if every {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "{} across every resource type needs a user/*.{} or system/*.{} scope",
                permission_name(permission),
                permission_letter(permission),
                permission_letter(permission)
            )))
        }
    }
}

fn permission_letter(permission: Permission) -> char {
    permission_name(permission).chars().next().unwrap_or('r')
}

/// Adds the limit's clauses to `criteria`.
fn narrow(criteria: Option<&mut Criteria>, limit: Limit) {
    if let Some(criteria) = criteria {
        let mut clauses = criteria.clauses().to_vec();
        clauses.extend(limit.clauses());
        *criteria = Criteria::from_clauses(clauses);
    }
}

impl Limit {
    /// [`Limit::check`] when the resource exists and lives; nothing otherwise (a `PUT` that
    /// creates has only its body to check).
    pub(crate) async fn check_existing(
        &self,
        context: &FhirContext,
        resource_type: &ResourceType,
        id: &LogicalId,
    ) -> Result<(), ApiError> {
        if matches!(self, Limit::None) {
            return Ok(());
        }
        match context.store().read(context.env, resource_type, id).await? {
            Some(current) if !current.deleted => self.check(context, resource_type, id).await,
            _ => Ok(()),
        }
    }
}
