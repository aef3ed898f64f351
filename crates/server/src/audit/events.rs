//! Audit entries as FHIR R4 `AuditEvent`s, and the audit search operators run.

use std::sync::Arc;

use serde_json::{Value, json};
use store::Store;
use store::audit::{Entry, Event, Position, Query};
use time::OffsetDateTime;

/// The event types: FHIR interactions as `rest` of the FHIR audit event types, sign-ins and
/// token steps as DICOM's "User Authentication"; the rest are Ignis's own.
const EVENT_TYPES: &str = "http://terminology.hl7.org/CodeSystem/audit-event-type";
const DICOM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const IGNIS_CATEGORY: &str = "urn:ignis:audit-category";
const RESTFUL_INTERACTION: &str = "http://hl7.org/fhir/restful-interaction";
const IGNIS_ACTION: &str = "urn:ignis:audit-action";
const ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
const OBJECT_ROLE: &str = "http://terminology.hl7.org/CodeSystem/object-role";

/// `entry` as an `AuditEvent` resource whose id is its chain position.
pub(crate) fn audit_event(entry: &Entry) -> Result<Value, store::Error> {
    let event = entry.event()?;
    let mut resource = json!({
        "resourceType": "AuditEvent",
        "id": format!("{}-{}", entry.chain, entry.seq),
        "type": event_type(&event.category),
        "subtype": [{"system": subtype_system(&event.category), "code": event.action}],
        "action": action_code(&event),
        "recorded": fhir::instant::format(entry.recorded),
        "outcome": event.outcome.code(),
        "agent": agents(&event),
        "source": source(&event),
    });
    if let Some(description) = description(&event) {
        resource["outcomeDesc"] = Value::String(description);
    }
    let entities = entities(&event);
    if !entities.is_empty() {
        resource["entity"] = Value::Array(entities);
    }
    Ok(resource)
}

fn event_type(category: &str) -> Value {
    match category {
        "rest" => json!({"system": EVENT_TYPES, "code": "rest", "display": "RESTful Operation"}),
        "security" => json!({"system": DICOM, "code": "110114", "display": "User Authentication"}),
        other => json!({"system": IGNIS_CATEGORY, "code": other}),
    }
}

fn subtype_system(category: &str) -> &'static str {
    if category == "rest" { RESTFUL_INTERACTION } else { IGNIS_ACTION }
}

/// C, R, U, D or E (a search, an operation, a transaction and every other step).
fn action_code(event: &Event) -> &'static str {
    match event.action.as_str() {
        "create" => "C",
        "read" | "vread" | "history-instance" | "history-type" | "history-system" => "R",
        "update" | "patch" => "U",
        "delete" => "D",
        _ => "E",
    }
}

/// Who acted: the user (the requestor) and the client, device and account they acted
/// through; an unauthenticated request has one anonymous requestor.
fn agents(event: &Event) -> Vec<Value> {
    let agent = &event.agent;
    let network = event.source.as_ref().map(|address| json!({"address": address, "type": "2"}));
    let mut agents = Vec::new();
    for (system, value) in [
        ("urn:ignis:user", &agent.user),
        ("urn:ignis:device", &agent.device),
        ("urn:ignis:client", &agent.client),
        ("urn:ignis:account", &agent.account),
    ] {
        if let Some(value) = value {
            agents.push(
                json!({"who": {"identifier": {"system": system, "value": value}}, "requestor": agents.is_empty()}),
            );
        }
    }
    if agents.is_empty() {
        agents.push(json!({"who": {"display": "anonymous"}, "requestor": true}));
    }
    if let Some(network) = network {
        agents[0]["network"] = network;
    }
    agents
}

fn source(event: &Event) -> Value {
    let site = event.environment.as_deref().unwrap_or("platform");
    json!({
        "site": site,
        "observer": {"display": "Ignis"},
        "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4", "display": "Application Server"}],
    })
}

/// The outcome in words: the detail, and the HTTP request and status when known.
fn description(event: &Event) -> Option<String> {
    let request = match (&event.request, event.status) {
        (Some(request), Some(status)) => Some(format!("{request} answered {status}")),
        (Some(request), None) => Some(request.clone()),
        _ => None,
    };
    match (&event.detail, request) {
        (Some(detail), Some(request)) => Some(format!("{detail} ({request})")),
        (Some(detail), None) => Some(detail.clone()),
        (None, request) => request,
    }
}

/// The resources acted on (FHIR references for FHIR resources, identifiers for platform
/// records), then the patients whose data it touched.
fn entities(event: &Event) -> Vec<Value> {
    let mut entities: Vec<Value> = event
        .entities
        .iter()
        .map(|entity| {
            let what = if event.category == "record" {
                json!({"identifier": {"system": "urn:ignis:record", "value": entity}})
            } else {
                json!({"reference": entity})
            };
            json!({"what": what, "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"}})
        })
        .collect();
    entities.extend(event.patients.iter().map(|patient| {
        json!({
            "what": {"reference": format!("Patient/{patient}")},
            "type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
            "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"},
        })
    }));
    entities
}

/// Narrows `query` by an AuditEvent search parameter and its value, or says why it cannot.
/// `date`, `_count` and `_cursor` are read by the caller.
pub(crate) fn narrow(query: &mut Query, name: &str, value: &str) -> Result<(), String> {
    let value = value.trim();
    if value.is_empty() {
        return Err(format!("the {name} parameter has no value"));
    }
    let code = || value.rsplit('|').next().unwrap_or(value).to_owned();
    match name {
        "agent" => match value.split_once(':') {
            Some(("user" | "client" | "device", _)) => query.terms.push(format!("agent:{value}")),
            _ => return Err(format!("agent '{value}': expected user:NAME, client:ID or device:ID")),
        },
        "account" => query.terms.push(format!("account:{value}")),
        "entity" => query.terms.push(format!("entity:{value}")),
        "patient" => query.terms.push(format!("patient:{}", value.strip_prefix("Patient/").unwrap_or(value))),
        "type" => query.category = Some(category_of_type(value).to_owned()),
        "subtype" => query.action = Some(code()),
        "outcome" => match value {
            "0" | "4" | "8" | "12" => query.outcome = Some(value.to_owned()),
            _ => return Err(format!("outcome '{value}': expected 0, 4, 8 or 12")),
        },
        other => return Err(format!("'{other}' is not an audit search parameter")),
    }
    Ok(())
}

/// The category a `type` value (`rest`, `110114`, `security`…, with or without a system)
/// names.
fn category_of_type(value: &str) -> &str {
    match value.rsplit('|').next().unwrap_or(value) {
        "110114" => "security",
        code => code,
    }
}

/// Entries a page of an export reads.
const EXPORT_PAGE: usize = 1_000;

/// Every entry recorded in `[since, until)` as an NDJSON line of its `AuditEvent`, newest
/// first, read page by page (the whole range is never held in memory).
pub fn export(
    store: Arc<dyn Store>,
    since: Option<OffsetDateTime>,
    until: Option<OffsetDateTime>,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, store::Error>> + Send + 'static {
    let first = Query { since, until, count: EXPORT_PAGE, ..Query::default() };
    futures_util::stream::try_unfold(Some(first), move |query| {
        let store = Arc::clone(&store);
        async move {
            let Some(query) = query else { return Ok(None) };
            let page = store.search_audit(query.clone()).await?;
            let next = (page.len() == EXPORT_PAGE)
                .then(|| page.last().map(|last| Query { before: Some(Position::of(last)), ..query }))
                .flatten();
            let mut lines = Vec::new();
            for entry in &page {
                serde_json::to_writer(&mut lines, &audit_event(entry)?)
                    .map_err(|error| store::Error::Database(error.to_string()))?;
                lines.push(b'\n');
            }
            Ok(if page.is_empty() { None } else { Some((lines, next)) })
        }
    })
}

/// A `date` search value (`ge2026-01-01`, `lt2026-02`, `2026-01-05`…) as the bounds it sets:
/// `(since, until)`, `until` exclusive.
pub(crate) fn date_bounds(value: &str) -> Result<(Option<OffsetDateTime>, Option<OffsetDateTime>), String> {
    let (prefix, text) = match value.get(..2) {
        Some(prefix @ ("eq" | "ge" | "gt" | "le" | "lt")) => (prefix, &value[2..]),
        _ => ("eq", value),
    };
    let (low, high) =
        fhir::instant::range(text).ok_or_else(|| format!("date '{value}' is not a FHIR date or dateTime"))?;
    let at = |micros: i64| OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000).ok();
    Ok(match prefix {
        "ge" => (at(low), None),
        "gt" => (at(high + 1), None),
        "le" => (None, at(high + 1)),
        "lt" => (None, at(low)),
        _ => (at(low), at(high + 1)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::audit::{Agent, Outcome};

    fn entry(event: &Event) -> Entry {
        Entry {
            chain: "c0ffee".into(),
            seq: 3,
            recorded: time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000),
            category: event.category.clone(),
            action: event.action.clone(),
            outcome: event.outcome.code().into(),
            body: serde_json::to_string(event).expect("json"),
            hash: "h".into(),
        }
    }

    /// Every rendering is a valid R4 AuditEvent.
    #[test]
    fn events_are_valid_audit_events() {
        let read = Event {
            category: "rest".into(),
            action: "read".into(),
            environment: Some("production".into()),
            agent: Agent { user: Some("alice".into()), client: Some("app".into()), ..Agent::default() },
            source: Some("127.0.0.1".into()),
            request: Some("GET /fhir/Observation/1".into()),
            status: Some(200),
            entities: vec!["Observation/1/_history/2".into()],
            patients: vec!["p1".into()],
            ..Event::default()
        };
        let refused = Event {
            category: "security".into(),
            action: "token".into(),
            outcome: Outcome::Minor,
            detail: Some("invalid_client".into()),
            ..Event::default()
        };
        let record = Event {
            category: "record".into(),
            action: "update".into(),
            entities: vec!["device/d1/_history/2".into()],
            ..Event::default()
        };
        for event in [read, refused, record] {
            let resource = audit_event(&entry(&event)).expect("render");
            let issues = fhir::Definitions::get().validate(&resource);
            let errors: Vec<_> = issues.iter().filter(|issue| issue.is_error()).collect();
            assert!(errors.is_empty(), "{resource:#}\n{errors:?}");
        }
    }

    #[test]
    fn search_parameters_narrow_the_query() {
        let mut query = Query::default();
        narrow(&mut query, "patient", "Patient/p1").expect("patient");
        narrow(&mut query, "agent", "user:alice").expect("agent");
        narrow(&mut query, "type", "http://dicom.nema.org/resources/ontology/DCM|110114").expect("type");
        narrow(&mut query, "subtype", "http://hl7.org/fhir/restful-interaction|read").expect("subtype");
        narrow(&mut query, "outcome", "4").expect("outcome");
        assert_eq!(query.terms, ["patient:p1", "agent:user:alice"]);
        let kind = (query.category.as_deref(), query.action.as_deref(), query.outcome.as_deref());
        assert_eq!(kind, (Some("security"), Some("read"), Some("4")));
        assert!(narrow(&mut query, "agent", "alice").is_err());
        assert!(narrow(&mut query, "outcome", "3").is_err());
        assert!(narrow(&mut query, "name", "x").is_err());
    }

    #[test]
    fn date_values_become_bounds() {
        let day = |text: &str| fhir::instant::parse_lower_bound(text);
        assert_eq!(date_bounds("ge2026-01-05"), Ok((day("2026-01-05"), None)));
        assert_eq!(date_bounds("lt2026-01-05"), Ok((None, day("2026-01-05"))));
        assert_eq!(date_bounds("le2026-01-05"), Ok((None, day("2026-01-06"))));
        assert_eq!(date_bounds("2026-01"), Ok((day("2026-01-01"), day("2026-02-01"))));
        assert!(date_bounds("ge2026-13").is_err());
    }
}
