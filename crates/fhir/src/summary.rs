//! `_summary` and `_elements` views of a resource: the top-level elements a client asked for,
//! always with `resourceType`, `id` and `meta`, and the `SUBSETTED` tag that marks a partial
//! resource.

use serde_json::{Map, Value, json};

use crate::Definitions;

/// Which elements a view keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View<'a> {
    /// The elements the definitions mark `isSummary`.
    Summary,
    /// Everything but the narrative.
    Data,
    /// The narrative and the mandatory elements.
    Text,
    /// The named top-level elements.
    Elements(&'a [String]),
}

/// Reduces `resource` to `view` in place and tags it `SUBSETTED`.
pub fn apply(resource: &mut Value, view: View<'_>) {
    let Some(resource_type) = resource.get("resourceType").and_then(Value::as_str).map(str::to_owned) else { return };
    let Value::Object(fields) = resource else { return };
    let elements = Definitions::get().top_level_elements(&resource_type);
    let keep = |key: &str| -> bool {
        if matches!(key, "resourceType" | "id" | "meta") {
            return true;
        }
        let name = key.strip_prefix('_').unwrap_or(key);
        let element = elements.iter().find(|(element, choice, _, _)| {
            name == *element
                || (*choice
                    && name.starts_with(element)
                    && name[element.len()..].starts_with(|c: char| c.is_ascii_uppercase()))
        });
        match view {
            View::Summary => element.is_some_and(|(_, _, summary, _)| *summary),
            View::Data => name != "text",
            View::Text => name == "text" || element.is_some_and(|(_, _, _, mandatory)| *mandatory),
            View::Elements(wanted) => {
                element.is_some_and(|(element, _, _, _)| wanted.iter().any(|wanted| wanted == element))
            }
        }
    };
    fields.retain(|key, _| keep(key));
    tag_subsetted(fields);
}

fn tag_subsetted(fields: &mut Map<String, Value>) {
    let tag = json!({"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"});
    let meta = fields.entry("meta").or_insert_with(|| json!({}));
    if let Value::Object(meta) = meta {
        match meta.get_mut("tag") {
            Some(Value::Array(tags)) => tags.push(tag),
            _ => {
                meta.insert("tag".into(), json!([tag]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_keeps_summary_elements() {
        let mut patient = json!({"resourceType": "Patient", "id": "p", "text": {"status": "generated", "div": "<div/>"},
            "name": [{"family": "A"}], "photo": [{"contentType": "image/png"}], "birthDate": "1970"});
        apply(&mut patient, View::Summary);
        assert!(patient.get("name").is_some());
        assert!(patient.get("birthDate").is_some());
        assert!(patient.get("photo").is_none());
        assert!(patient.get("text").is_none());
        assert_eq!(patient["meta"]["tag"][0]["code"], "SUBSETTED");
    }

    #[test]
    fn elements_keep_what_was_named_and_choices() {
        let mut observation = json!({"resourceType": "Observation", "id": "o", "status": "final", "code": {"text": "x"},
            "valueQuantity": {"value": 1}, "subject": {"reference": "Patient/p"}});
        let wanted = vec!["value".to_owned(), "status".to_owned()];
        apply(&mut observation, View::Elements(&wanted));
        assert!(observation.get("valueQuantity").is_some());
        assert!(observation.get("status").is_some());
        assert!(observation.get("code").is_none());
        assert!(observation.get("subject").is_none());
    }
}
