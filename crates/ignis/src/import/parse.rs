//! Turning a document into resources to import: a Bundle's entries (placeholder `fullUrl`s
//! resolved to the ids the resources carry), a single resource, or NDJSON lines; each one
//! validated. Bad resources become problems with their location and are left out.

use std::collections::HashMap;

use fhir::id::{LogicalId, ResourceType};
use fhir::references;
use fhir::search::Registry;
use serde_json::Value;
use store::ImportResource;

use crate::import::source::Document;

/// A resource or file that could not be imported, and where it is.
#[derive(Debug, Clone)]
pub(crate) struct Problem {
    /// `file:line` for NDJSON, `file: entry[i]` in a Bundle, or the file.
    pub(crate) location: String,
    pub(crate) message: String,
}

/// What one document holds.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    pub(crate) resources: Vec<ImportResource>,
    pub(crate) problems: Vec<Problem>,
}

/// Parses and validates every resource in `document`, indexing with `registry` (the search
/// parameters of the partition it goes to).
pub(crate) fn parse(document: &Document, registry: &Registry) -> Parsed {
    if document.ndjson {
        return parse_ndjson(document, registry);
    }
    let mut parsed = Parsed::default();
    match serde_json::from_slice::<Value>(&document.bytes) {
        Ok(value) if value.get("resourceType").and_then(Value::as_str) == Some("Bundle") => {
            parse_bundle(&document.name, value, registry, &mut parsed);
        }
        Ok(value) => accept(registry, document.name.clone(), value, None, &mut parsed),
        Err(error) => parsed.problems.push(Problem {
            location: format!("{}:{}", document.name, error.line()),
            message: format!("not valid JSON: {error}"),
        }),
    }
    parsed
}

fn parse_ndjson(document: &Document, registry: &Registry) -> Parsed {
    let mut parsed = Parsed::default();
    for (index, line) in document.bytes.split(|byte| *byte == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let location = format!("{}:{}", document.name, index + 1);
        match serde_json::from_slice::<Value>(line) {
            Ok(value) => accept(registry, location, value, None, &mut parsed),
            Err(error) => parsed.problems.push(Problem { location, message: format!("not valid JSON: {error}") }),
        }
    }
    parsed
}

/// A Bundle's resources, each at its own id, references to placeholders rewritten.
fn parse_bundle(name: &str, mut bundle: Value, registry: &Registry, parsed: &mut Parsed) {
    let Some(Value::Array(entries)) = bundle.get_mut("entry").map(Value::take) else { return };
    let mut targets = HashMap::new();
    let identities: Vec<Option<(String, String)>> = entries.iter().map(identity).collect();
    for (entry, identity) in entries.iter().zip(&identities) {
        if let (Some(full_url), Some((resource_type, id))) = (entry.get("fullUrl").and_then(Value::as_str), identity)
            && references::is_placeholder(full_url)
        {
            targets.insert(full_url.to_owned(), format!("{resource_type}/{id}"));
        }
    }
    for (index, (mut entry, identity)) in entries.into_iter().zip(identities).enumerate() {
        let location = format!("{name}: entry[{index}]");
        let Some(mut resource) = entry.get_mut("resource").map(Value::take) else {
            parsed.problems.push(Problem { location, message: "the entry has no resource to import".into() });
            continue;
        };
        references::rewrite(&mut resource, &|text| targets.get(text).cloned());
        accept(registry, location, resource, identity.map(|(_, id)| id), parsed);
    }
}

/// The type and id an entry's resource is imported at: the resource's own id, else the id in
/// a `PUT Type/id` request, else the placeholder's UUID (so re-imports land on the same id).
fn identity(entry: &Value) -> Option<(String, String)> {
    let resource = entry.get("resource")?;
    let resource_type = resource.get("resourceType")?.as_str()?.to_owned();
    let from_request = entry
        .pointer("/request/url")
        .and_then(Value::as_str)
        .and_then(|url| url.split('?').next()?.split('/').nth(1))
        .filter(|id| !id.is_empty());
    let from_full_url = entry.get("fullUrl").and_then(Value::as_str).and_then(|url| url.rsplit([':', '/']).next());
    let id = resource.get("id").and_then(Value::as_str).or(from_request).or(from_full_url)?;
    Some((resource_type, id.to_owned()))
}

/// Validates `resource` and queues it, or records why not.
fn accept(registry: &Registry, location: String, resource: Value, id: Option<String>, parsed: &mut Parsed) {
    match checked(registry, resource, id) {
        Ok(resource) => parsed.resources.push(resource),
        Err(message) => parsed.problems.push(Problem { location, message }),
    }
}

fn checked(registry: &Registry, mut resource: Value, id: Option<String>) -> Result<ImportResource, String> {
    let type_name = resource.get("resourceType").and_then(Value::as_str).unwrap_or("");
    let resource_type =
        ResourceType::parse(type_name).ok_or_else(|| format!("'{type_name}' is not an R4 resource type"))?;
    let id = match id.or_else(|| resource.get("id").and_then(Value::as_str).map(str::to_owned)) {
        Some(id) => LogicalId::parse(&id).ok_or_else(|| format!("'{id}' is not a valid id"))?,
        None => return Err(format!("the {resource_type} has no id; imported resources keep their ids")),
    };
    resource["id"] = Value::String(id.to_string());
    let errors: Vec<String> = fhir::Definitions::get()
        .validate(&resource)
        .into_iter()
        .filter(|issue| issue.is_error())
        .map(|issue| match issue.expression {
            Some(expression) => format!("{expression}: {}", issue.diagnostics),
            None => issue.diagnostics,
        })
        .collect();
    if !errors.is_empty() {
        return Err(format!("{}/{} is invalid: {}", resource_type, id, errors.join("; ")));
    }
    // Serialized and indexed here, on the worker threads, so the single writer only inserts.
    ImportResource::new(registry, resource_type, id, resource).map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn document(name: &str, value: &Value) -> Document {
        Document { name: name.into(), bytes: value.to_string().into_bytes(), ndjson: false }
    }

    #[test]
    fn bundle_placeholders_become_the_resources_ids() {
        let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:5d1c7a52-0000-4000-8000-000000000001",
             "resource": {"resourceType": "Patient"},
             "request": {"method": "PUT", "url": "Patient/p1"}},
            {"fullUrl": "urn:uuid:5d1c7a52-0000-4000-8000-000000000002",
             "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                          "subject": {"reference": "urn:uuid:5d1c7a52-0000-4000-8000-000000000001"}},
             "request": {"method": "POST", "url": "Observation"}},
            {"resource": {"resourceType": "Observation", "status": "bogus", "id": "bad", "code": {"text": "x"}}},
        ]});
        let parsed = parse(&document("b.json", &bundle), &Registry::official());
        assert_eq!(parsed.resources.len(), 2);
        assert_eq!(parsed.resources[0].id.as_str(), "p1");
        assert_eq!(parsed.resources[1].id.as_str(), "5d1c7a52-0000-4000-8000-000000000002");
        let stored = parsed.resources[1].body.stamp(1, "t");
        assert!(stored.contains(r#""subject":{"reference":"Patient/p1"}"#), "{stored}");
        assert_eq!(parsed.problems.len(), 1);
        assert!(parsed.problems[0].location.ends_with("entry[2]"), "{:?}", parsed.problems);
    }

    #[test]
    fn ndjson_problems_name_their_line() {
        let text = "{\"resourceType\":\"Patient\",\"id\":\"a\"}\n\nnot json\n{\"resourceType\":\"Patient\"}\n";
        let document = Document { name: "p.ndjson".into(), bytes: text.as_bytes().to_vec(), ndjson: true };
        let parsed = parse(&document, &Registry::official());
        assert_eq!(parsed.resources.len(), 1);
        let locations: Vec<&str> = parsed.problems.iter().map(|problem| problem.location.as_str()).collect();
        assert_eq!(locations, ["p.ndjson:3", "p.ndjson:4"]);
    }
}
