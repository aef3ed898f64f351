//! The CapabilityStatement, generated from what the server really supports: every resource
//! type of the definitions, the interactions the router serves, and the US Core profiles the
//! definitions hold. Built once per base.

use fhir::Definitions;
use serde_json::{Value, json};

/// Interactions served for every resource type (see `router.rs`).
const TYPE_INTERACTIONS: &[&str] =
    &["read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create"];

/// The CapabilityStatement of the FHIR base at `base`.
pub(crate) fn capability_statement(base: &str) -> Value {
    let definitions = Definitions::get();
    let resources: Vec<Value> =
        definitions.resource_types().map(|resource_type| resource_capability(definitions, resource_type)).collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": fhir::instant::format(time::OffsetDateTime::now_utc()),
        "publisher": "Ignis",
        "kind": "instance",
        "software": {"name": "Ignis", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": "Ignis FHIR R4 server", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [{
            "mode": "server",
            "resource": resources,
            "interaction": [{"code": "history-system"}],
            "operation": [{"name": "validate", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"}],
        }],
    })
}

fn resource_capability(definitions: &Definitions, resource_type: &str) -> Value {
    let mut resource = json!({
        "type": resource_type,
        "profile": format!("http://hl7.org/fhir/StructureDefinition/{resource_type}"),
        "interaction": TYPE_INTERACTIONS.iter().map(|code| json!({"code": code})).collect::<Vec<_>>(),
        "versioning": "versioned-update",
        "readHistory": true,
        "updateCreate": true,
        "conditionalCreate": true,
        "conditionalUpdate": true,
        "conditionalDelete": "single",
    });
    let profiles = definitions.profiles_for(resource_type);
    if !profiles.is_empty() {
        resource["supportedProfile"] = json!(profiles);
    }
    resource
}
