//! Index rows of a resource: the values of every search parameter that applies to it, in the
//! narrow forms the index tables hold. Computed on every write.
//!
//! Values are reached by evaluating each parameter's expression (see `nodes`), then converted
//! by the shape of the JSON reached (a `Period` has `start`/`end`, a `CodeableConcept` has
//! `coding`, …), which also covers choice elements such as `Observation.effective[x]`.

use serde_json::Value;

use crate::definitions::{SearchParamType, SearchParameter};
use crate::instant;
use crate::search::nodes::evaluate_relative;
use crate::search::params::{Composite, Registry, VariantIds, composite_id};
use crate::search::text::normalize;

/// Every index row of one resource.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct IndexRows {
    pub tokens: Vec<TokenRow>,
    pub strings: Vec<StringRow>,
    pub dates: Vec<DateRow>,
    pub numbers: Vec<NumberRow>,
    pub quantities: Vec<QuantityRow>,
    pub references: Vec<ReferenceRow>,
    pub uris: Vec<UriRow>,
}

/// A code in a system (`system` is `None` when the value has none).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TokenRow {
    pub param: i64,
    pub system: Option<String>,
    pub code: String,
}

/// A string, normalised for case- and accent-insensitive prefix search, and as written.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct StringRow {
    pub param: i64,
    pub normalized: String,
    pub exact: String,
}

/// The instants a date value covers, in microseconds, both inclusive.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DateRow {
    pub param: i64,
    pub low: i64,
    pub high: i64,
}

/// A number.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
pub struct NumberRow {
    pub param: i64,
    pub value: f64,
}

/// A quantity with its unit system and code (and the human unit, which `||unit` searches may
/// name).
#[derive(Debug, Clone, PartialEq, PartialOrd)]
pub struct QuantityRow {
    pub param: i64,
    pub value: f64,
    pub system: Option<String>,
    pub code: Option<String>,
    pub unit: Option<String>,
}

/// A reference: the local target when the reference names one (`Type/id`, possibly inside an
/// absolute URL), and the URL as written for absolute and canonical references.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReferenceRow {
    pub param: i64,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub url: Option<String>,
}

/// A URI.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct UriRow {
    pub param: i64,
    pub value: String,
}

/// Computes every index row of `resource`, a `resource_type`, for the parameters of
/// `registry` (the official ones plus its partition's custom ones).
pub fn index_rows(registry: &Registry, resource_type: &str, resource: &Value) -> IndexRows {
    let mut rows = IndexRows::default();
    for indexed in registry.indexing(resource_type) {
        let Some(expression) = indexed.expression.as_deref() else { continue };
        let parameter = &indexed.parameter;
        for value in crate::search::nodes::evaluate(expression, resource) {
            if parameter.kind == SearchParamType::Composite {
                if let Some(composite) = &indexed.composite {
                    add_composite(&mut rows, parameter, composite, &value, resource);
                }
            } else {
                add_node(&mut rows, parameter.kind, &indexed.ids, indexed.ids.value, &value);
            }
        }
    }
    rows.tokens.sort();
    rows.tokens.dedup();
    rows.strings.sort();
    rows.strings.dedup();
    rows.dates.sort();
    rows.dates.dedup();
    rows.references.sort();
    rows.references.dedup();
    rows.uris.sort();
    rows.uris.dedup();
    rows
}

/// The rows of one node of a composite parameter whose first component is a token: the
/// second component's values, filed under an id that folds in each code of the first (see
/// [`composite_id`]), so both come from the same node (the same `Observation.component`).
fn add_composite(
    rows: &mut IndexRows,
    parameter: &SearchParameter,
    composite: &Composite,
    node: &Value,
    resource: &Value,
) {
    let mut codes = IndexRows::default();
    for value in evaluate_relative(&composite.first, node, resource) {
        add_token(&mut codes, &NO_VARIANTS, 0, &value);
    }
    let values = evaluate_relative(&composite.second, node, resource);
    for token in codes.tokens.iter().filter(|token| token.param == 0) {
        let mut ids = vec![composite_id(parameter, None, &token.code)];
        if let Some(system) = &token.system {
            ids.push(composite_id(parameter, Some(system), &token.code));
        }
        for id in ids {
            for value in &values {
                add_node(rows, composite.second_definition.kind, &composite.second_ids, id, value);
            }
        }
    }
}

/// Row ids for values whose extra rows are not kept (the codes of a composite's first
/// component, of which only the `param == 0` tokens are read).
const NO_VARIANTS: VariantIds = VariantIds { value: 0, text: -1, of_type: -1, identifier: -1 };

/// The rows of one value of a parameter of type `kind`, filed under `param` (and, for the
/// extra rows of some modifiers, under the parameter's other `ids`).
fn add_node(rows: &mut IndexRows, kind: SearchParamType, ids: &VariantIds, param: i64, node: &Value) {
    match kind {
        SearchParamType::Token => add_token(rows, ids, param, node),
        SearchParamType::String => add_strings(rows, param, node),
        SearchParamType::Date => add_date(rows, param, node),
        SearchParamType::Number => {
            if let Some(value) = number(node) {
                rows.numbers.push(NumberRow { param, value });
            }
        }
        SearchParamType::Quantity => add_quantity(rows, param, node),
        SearchParamType::Reference => add_reference(rows, ids, param, node),
        SearchParamType::Uri => {
            if let Some(text) = node.as_str() {
                rows.uris.push(UriRow { param, value: text.to_owned() });
            }
        }
        SearchParamType::Composite | SearchParamType::Special => {}
    }
}

fn add_token(rows: &mut IndexRows, ids: &VariantIds, param: i64, node: &Value) {
    match node {
        Value::String(code) => rows.tokens.push(TokenRow { param, system: None, code: code.clone() }),
        Value::Bool(flag) => rows.tokens.push(TokenRow { param, system: None, code: flag.to_string() }),
        Value::Object(map) => {
            let text_param = ids.text;
            let mut push_text = |text: &str| {
                rows.strings.push(StringRow { param: text_param, normalized: normalize(text), exact: text.to_owned() })
            };
            if let Some(text) = map.get("text").and_then(Value::as_str) {
                push_text(text);
            }
            if let Some(display) = map.get("display").and_then(Value::as_str) {
                push_text(display);
            }
            if let Some(Value::Array(codings)) = map.get("coding") {
                for coding in codings {
                    add_token(rows, ids, param, coding);
                }
                return;
            }
            let code = map.get("code").or_else(|| map.get("value")).and_then(Value::as_str);
            let Some(code) = code else { return };
            let system = map.get("system").and_then(Value::as_str).map(str::to_owned);
            rows.tokens.push(TokenRow { param, system, code: code.to_owned() });
            if let Some(Value::Array(type_codings)) = map.get("type").and_then(|kind| kind.get("coding")) {
                let of_type = ids.of_type;
                for coding in type_codings {
                    let Some(type_code) = coding.get("code").and_then(Value::as_str) else { continue };
                    let system = coding.get("system").and_then(Value::as_str).map(str::to_owned);
                    rows.tokens.push(TokenRow { param: of_type, system, code: format!("{type_code}|{code}") });
                }
            }
        }
        _ => {}
    }
}

/// Strings of a node: a string itself, or the parts of a HumanName or Address (and, for other
/// complex values, their direct string fields).
fn add_strings(rows: &mut IndexRows, param: i64, node: &Value) {
    let mut push =
        |text: &str| rows.strings.push(StringRow { param, normalized: normalize(text), exact: text.to_owned() });
    match node {
        Value::String(text) => push(text),
        Value::Object(map) => {
            for (key, value) in map {
                if matches!(key.as_str(), "use" | "id" | "extension" | "period" | "type") {
                    continue;
                }
                match value {
                    Value::String(text) => push(text),
                    Value::Array(items) => items.iter().filter_map(Value::as_str).for_each(&mut push),
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

fn add_date(rows: &mut IndexRows, param: i64, node: &Value) {
    match node {
        Value::String(text) => {
            if let Some((low, high)) = instant::range(text) {
                rows.dates.push(DateRow { param, low, high });
            }
        }
        Value::Object(map) => {
            if map.contains_key("start") || map.contains_key("end") {
                let low = map.get("start").and_then(Value::as_str).and_then(instant::range).map_or(i64::MIN, |r| r.0);
                let high = map.get("end").and_then(Value::as_str).and_then(instant::range).map_or(i64::MAX, |r| r.1);
                rows.dates.push(DateRow { param, low, high });
            } else if let Some(Value::Array(events)) = map.get("event") {
                for event in events {
                    add_date(rows, param, event);
                }
            } else if let Some(bounds) = map.get("repeat").and_then(|repeat| repeat.get("boundsPeriod")) {
                add_date(rows, param, bounds);
            }
        }
        _ => {}
    }
}

fn add_quantity(rows: &mut IndexRows, param: i64, node: &Value) {
    let Value::Object(map) = node else { return };
    if let (Some(low), Some(high)) = (map.get("low"), map.get("high")) {
        add_quantity(rows, param, low);
        add_quantity(rows, param, high);
        return;
    }
    let Some(value) = map.get("value").and_then(number) else { return };
    let text = |key: &str| map.get(key).and_then(Value::as_str).map(str::to_owned);
    let code = text("code").or_else(|| text("currency"));
    rows.quantities.push(QuantityRow { param, value, system: text("system"), code, unit: text("unit") });
}

fn add_reference(rows: &mut IndexRows, ids: &VariantIds, param: i64, node: &Value) {
    match node {
        Value::String(canonical) => push_reference(rows, param, canonical),
        Value::Object(map) => {
            if let Some(reference) = map.get("reference").and_then(Value::as_str) {
                push_reference(rows, param, reference);
            }
            if let Some(identifier) = map.get("identifier") {
                let identifier_param = ids.identifier;
                let system = identifier.get("system").and_then(Value::as_str).map(str::to_owned);
                if let Some(value) = identifier.get("value").and_then(Value::as_str) {
                    rows.tokens.push(TokenRow { param: identifier_param, system, code: value.to_owned() });
                }
            }
        }
        _ => {}
    }
}

fn push_reference(rows: &mut IndexRows, param: i64, reference: &str) {
    if reference.starts_with('#') {
        return;
    }
    let (target_type, target_id) = match local_target(reference) {
        Some((target_type, target_id)) => (Some(target_type.to_owned()), Some(target_id.to_owned())),
        None => (None, None),
    };
    let absolute = reference.contains(':');
    let url = absolute.then(|| reference.split('|').next().unwrap_or(reference).to_owned());
    if target_type.is_some() || url.is_some() {
        rows.references.push(ReferenceRow { param, target_type, target_id, url });
    }
}

/// The `Type/id` a reference names, relative or at the end of an absolute URL (a
/// `/_history/n` suffix is dropped): the type must be a resource type and the id valid.
pub fn local_target(reference: &str) -> Option<(&str, &str)> {
    let path = reference.split(['?', '#']).next().unwrap_or(reference);
    let path = match path.find("/_history/") {
        Some(history) => &path[..history],
        None => path,
    };
    let mut segments = path.rsplit('/');
    let id = segments.next()?;
    let resource_type = segments.next()?;
    let definitions = crate::Definitions::get();
    (definitions.is_resource_type(resource_type) && crate::id::is_valid_id(id)).then_some((resource_type, id))
}

/// A JSON number (or numeric string, as `positiveInt` extensions sometimes carry) as `f64`.
fn number(node: &Value) -> Option<f64> {
    match node {
        Value::Number(number) => number.to_string().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn local_targets() {
        assert_eq!(local_target("Patient/123"), Some(("Patient", "123")));
        assert_eq!(local_target("http://example.org/fhir/Patient/123/_history/2"), Some(("Patient", "123")));
        assert_eq!(local_target("urn:uuid:0a1b"), None);
        assert_eq!(local_target("Foo/123"), None);
    }

    #[test]
    fn observation_rows() {
        let observation = json!({
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}], "text": "HR"},
            "subject": {"reference": "Patient/p1"},
            "effectivePeriod": {"start": "2024-03-05", "end": "2024-03-06"},
            "valueQuantity": {"value": 72.5, "unit": "beats/min", "system": "http://unitsofmeasure.org", "code": "/min"}
        });
        let rows = index_rows(&Registry::official(), "Observation", &observation);
        assert!(
            rows.tokens.iter().any(|row| row.code == "8867-4" && row.system.as_deref() == Some("http://loinc.org"))
        );
        assert!(rows.tokens.iter().any(|row| row.code == "final"));
        assert!(rows.references.iter().any(|row| row.target_id.as_deref() == Some("p1")));
        assert!(rows.quantities.iter().any(|row| row.value == 72.5 && row.code.as_deref() == Some("/min")));
        assert!(rows.dates.iter().any(|row| row.high > row.low + 86_400_000_000));
        assert!(rows.strings.iter().any(|row| row.normalized == "heart rate"), "code:text rows");
    }

    #[test]
    fn composite_rows_pair_components_of_one_node() {
        let observation = json!({
            "resourceType": "Observation", "status": "final", "code": {"text": "BP"},
            "component": [
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]}, "valueQuantity": {"value": 120}},
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]}, "valueQuantity": {"value": 80}}
            ]
        });
        let rows = index_rows(&Registry::official(), "Observation", &observation);
        let parameter = crate::search::params::definition_by_url(
            "http://hl7.org/fhir/SearchParameter/Observation-component-code-value-quantity",
        )
        .unwrap();
        let systolic = composite_id(parameter, Some("http://loinc.org"), "8480-6");
        let values: Vec<f64> =
            rows.quantities.iter().filter(|row| row.param == systolic).map(|row| row.value).collect();
        assert_eq!(values, [120.0], "only the systolic component's value");
    }

    #[test]
    fn ids_and_last_updated_are_columns_not_rows() {
        let patient = json!({"resourceType": "Patient", "id": "p1", "meta": {"lastUpdated": "2024-01-01T00:00:00Z"}});
        let rows = index_rows(&Registry::official(), "Patient", &patient);
        assert!(rows.tokens.iter().all(|row| row.code != "p1"), "{:?}", rows.tokens);
        assert!(rows.dates.is_empty(), "{:?}", rows.dates);
    }

    #[test]
    fn patient_name_strings() {
        let patient =
            json!({"resourceType": "Patient", "name": [{"family": "Müller", "given": ["Zoë"]}], "birthDate": "1970"});
        let rows = index_rows(&Registry::official(), "Patient", &patient);
        assert!(rows.strings.iter().any(|row| row.normalized == "muller" && row.exact == "Müller"));
        assert!(rows.strings.iter().any(|row| row.normalized == "zoe"));
        assert!(!rows.dates.is_empty());
    }
}
