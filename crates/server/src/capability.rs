//! The CapabilityStatement, generated from what the server really supports: every resource
//! type of the definitions, the interactions the router serves, and the US Core profiles the
//! definitions hold. Built once per base.

use fhir::Definitions;
use fhir::definitions::{SearchParamType, SearchParameter};
use fhir::search::{Parameter, Registry};
use serde_json::{Value, json};

/// Interactions served for every resource type (see `router.rs`).
const TYPE_INTERACTIONS: &[&str] =
    &["read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create"];

/// The Bulk Data Access CapabilityStatement the server instantiates (`$export` at system,
/// Patient and Group level).
const BULK_DATA_CAPABILITY: &str = "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data";

/// The Bulk Data export operation of a type's entry: `Patient/$export` and `Group/[id]/$export`.
fn export_operation(resource_type: &str) -> Option<Value> {
    let definition = match resource_type {
        "Patient" => "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export",
        "Group" => "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export",
        _ => return None,
    };
    Some(json!({"name": "export", "definition": definition}))
}

/// The CapabilityStatement of the FHIR base at `base`, with `security` (SMART's OAuth
/// endpoints) when the server requires tokens.
pub(crate) fn capability_statement(base: &str, security: Option<Value>) -> Value {
    let definitions = Definitions::get();
    let resources: Vec<Value> =
        definitions.resource_types().map(|resource_type| resource_capability(definitions, resource_type)).collect();
    let mut statement = json!({
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
        "instantiates": [BULK_DATA_CAPABILITY],
        "rest": [{
            "mode": "server",
            "resource": resources,
            "interaction": [{"code": "history-system"}, {"code": "search-system"}, {"code": "transaction"}, {"code": "batch"}],
            "operation": [
                {"name": "validate", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"},
                {"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"},
            ],
        }],
    });
    if let Some(security) = security {
        statement["rest"][0]["security"] = security;
    }
    statement
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
    let params: Vec<Value> = searchable(resource_type)
        .map(|param| {
            json!({
                "name": param.code,
                "definition": param.url,
                "type": type_code(param.kind),
                "documentation": param.description,
            })
        })
        .collect();
    resource["searchParam"] = json!(params);
    let includes: Vec<String> = searchable(resource_type)
        .filter(|param| param.kind == SearchParamType::Reference)
        .map(|param| format!("{resource_type}:{}", param.code))
        .collect();
    resource["searchInclude"] = json!(includes);
    resource["searchRevInclude"] = json!(revincludes(definitions, resource_type));
    if let Some(operation) = export_operation(resource_type) {
        resource["operation"] = json!([operation]);
    }
    let profiles = definitions.profiles_for(resource_type);
    if !profiles.is_empty() {
        resource["supportedProfile"] = json!(profiles);
    }
    resource
}

/// The parameters search supports on `resource_type`: those with an expression, of a kind the
/// store can index.
fn searchable(resource_type: &str) -> impl Iterator<Item = &'static SearchParameter> {
    let registry = Registry::official();
    // The official registry holds official definitions only, which are `'static`.
    let searchable: Vec<&'static SearchParameter> = registry
        .params_for(resource_type)
        .iter()
        .filter_map(Parameter::as_official)
        .filter(|param| {
            let composite_pair = param.kind == SearchParamType::Composite && param.components.len() == 2;
            param.expression.is_some()
                && (composite_pair || !matches!(param.kind, SearchParamType::Composite | SearchParamType::Special))
        })
        .collect();
    searchable.into_iter()
}

/// `Source:param` for every reference parameter of any type that can point at `resource_type`.
fn revincludes(definitions: &Definitions, resource_type: &str) -> Vec<String> {
    let mut revincludes = Vec::new();
    for source in definitions.resource_types() {
        for param in searchable(source).filter(|param| param.kind == SearchParamType::Reference) {
            if param.target.iter().any(|target| target == resource_type) {
                revincludes.push(format!("{source}:{}", param.code));
            }
        }
    }
    revincludes
}

fn type_code(kind: SearchParamType) -> &'static str {
    match kind {
        SearchParamType::Number => "number",
        SearchParamType::Date => "date",
        SearchParamType::String => "string",
        SearchParamType::Token => "token",
        SearchParamType::Reference => "reference",
        SearchParamType::Composite => "composite",
        SearchParamType::Quantity => "quantity",
        SearchParamType::Uri => "uri",
        SearchParamType::Special => "special",
    }
}
