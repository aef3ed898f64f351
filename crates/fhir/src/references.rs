//! References inside a resource: listing them and rewriting them.
//!
//! A transaction Bundle names resources that do not exist yet by placeholder `fullUrl`s
//! (`urn:uuid:…`, `urn:oid:…`), and may name existing ones by search (`Patient?identifier=…`).
//! Once the server knows the real ids, every place that can hold such a name is rewritten:
//! `Reference.reference`, `Attachment.url`, and `href`/`src` links in the narrative
//! (`text.div`), as the spec's transaction rules ask.

use serde_json::Value;

/// Every `Reference.reference` string in `resource`, in document order.
pub fn references(resource: &Value) -> Vec<&str> {
    let mut found = Vec::new();
    collect(resource, &mut found);
    found
}

/// Rewrites, everywhere in `resource`, each reference, attachment URL and narrative link for
/// which `resolve` returns a replacement. Returns how many values changed.
pub fn rewrite(resource: &mut Value, resolve: &dyn Fn(&str) -> Option<String>) -> usize {
    match resource {
        Value::Object(fields) => {
            let mut changed = 0;
            for (key, value) in fields.iter_mut() {
                changed += match (key.as_str(), value) {
                    ("reference" | "url", Value::String(text)) => replace(text, resolve),
                    ("div", Value::String(html)) => rewrite_links(html, resolve),
                    (_, value) => rewrite(value, resolve),
                };
            }
            changed
        }
        Value::Array(items) => items.iter_mut().map(|item| rewrite(item, resolve)).sum(),
        _ => 0,
    }
}

/// The ids of the patients a resource, given as its compact JSON text, is about: itself for
/// a Patient, and every `Patient/…` its references name (relative or absolute, versioned or
/// not), each once, in document order. A scan of the text rather than a parse: the audit
/// log records it for every resource a request reads, and a parse would cost more than the
/// read.
pub fn patients_in_text(resource_type: &str, id: &str, text: &str) -> Vec<String> {
    const MARK: &str = "\"reference\":\"";
    let mut patients: Vec<String> = Vec::new();
    if resource_type == "Patient" {
        patients.push(id.to_owned());
    }
    let mut rest = text;
    while let Some(start) = rest.find(MARK) {
        rest = &rest[start + MARK.len()..];
        let reference = rest.split('"').next().unwrap_or_default();
        let target = match reference.strip_prefix("Patient/") {
            Some(target) => Some(target),
            None if reference.contains("://") => reference.split_once("/Patient/").map(|(_, target)| target),
            None => None,
        };
        if let Some(patient) = target.and_then(|target| target.split('/').next()).filter(|id| !id.is_empty())
            && !patients.iter().any(|known| known == patient)
        {
            patients.push(patient.to_owned());
        }
    }
    patients
}

/// True for the `fullUrl` forms that stand for a resource without a server id yet.
pub fn is_placeholder(url: &str) -> bool {
    url.starts_with("urn:uuid:") || url.starts_with("urn:oid:")
}

/// Splits a conditional reference (`Patient?identifier=a|b`) into its type and query.
pub fn conditional(reference: &str) -> Option<(&str, &str)> {
    if reference.contains("://") || reference.starts_with("urn:") || reference.starts_with('#') {
        return None;
    }
    let (resource_type, query) = reference.split_once('?')?;
    (!resource_type.is_empty() && !resource_type.contains('/')).then_some((resource_type, query))
}

fn collect<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
    match value {
        Value::Object(fields) => {
            for (key, value) in fields {
                match (key.as_str(), value) {
                    ("reference", Value::String(text)) => found.push(text),
                    (_, value) => collect(value, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect(item, found)),
        _ => {}
    }
}

fn replace(text: &mut String, resolve: &dyn Fn(&str) -> Option<String>) -> usize {
    match resolve(text) {
        Some(replacement) => {
            *text = replacement;
            1
        }
        None => 0,
    }
}

/// Rewrites `href="…"` and `src="…"` attribute values in narrative XHTML.
fn rewrite_links(html: &mut String, resolve: &dyn Fn(&str) -> Option<String>) -> usize {
    if !html.contains("urn:") && !html.contains('?') {
        return 0;
    }
    let mut out = String::with_capacity(html.len());
    let mut rest = html.as_str();
    let mut changed = 0;
    while let Some((before, quote, value, after)) = next_link(rest) {
        out.push_str(before);
        match resolve(value) {
            Some(replacement) => {
                out.push_str(&replacement);
                changed += 1;
            }
            None => out.push_str(value),
        }
        out.push(quote);
        rest = after;
    }
    out.push_str(rest);
    if changed > 0 {
        *html = out;
    }
    changed
}

/// Finds the next `href=` or `src=` attribute: the text up to and including its opening
/// quote, the quote, the value, and the text after the closing quote.
fn next_link(text: &str) -> Option<(&str, char, &str, &str)> {
    let start =
        ["href=", "src="].iter().filter_map(|attribute| text.find(attribute).map(|at| at + attribute.len())).min()?;
    let quote = text[start..].chars().next().filter(|quote| *quote == '"' || *quote == '\'')?;
    let value_start = start + 1;
    let value_end = value_start + text[value_start..].find(quote)?;
    Some((&text[..value_start], quote, &text[value_start..value_end], &text[value_end + 1..]))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn resolver(text: &str) -> Option<String> {
        (text == "urn:uuid:1").then(|| "Patient/p1".to_owned())
    }

    #[test]
    fn patients_of_a_resource_text() {
        let observation = json!({
            "resourceType": "Observation",
            "subject": {"reference": "Patient/p1"},
            "performer": [{"reference": "https://other.example/fhir/Patient/p2/_history/3"}, {"reference": "Practitioner/d"}],
            "hasMember": [{"reference": "Patient/p1"}],
            "note": [{"text": "see Patient/p9"}]
        });
        let text = observation.to_string();
        assert_eq!(patients_in_text("Observation", "o", &text), ["p1", "p2"]);
        assert_eq!(
            patients_in_text(
                "Patient",
                "p3",
                r#"{"resourceType":"Patient","link":[{"other":{"reference":"Patient/p4"}}]}"#
            ),
            ["p3", "p4"]
        );
        assert!(patients_in_text("Organization", "x", r#"{"resourceType":"Organization"}"#).is_empty());
    }

    #[test]
    fn rewrites_references_attachments_and_links() {
        let mut resource = json!({
            "resourceType": "DocumentReference",
            "text": {"status": "generated", "div": "<div><a href=\"urn:uuid:1\">x</a> <img src='other'/></div>"},
            "subject": {"reference": "urn:uuid:1"},
            "content": [{"attachment": {"url": "urn:uuid:1"}}],
            "identifier": [{"value": "urn:uuid:1"}],
        });
        assert_eq!(rewrite(&mut resource, &resolver), 3);
        assert_eq!(resource["subject"]["reference"], "Patient/p1");
        assert_eq!(resource["content"][0]["attachment"]["url"], "Patient/p1");
        assert_eq!(resource["text"]["div"], "<div><a href=\"Patient/p1\">x</a> <img src='other'/></div>");
        assert_eq!(resource["identifier"][0]["value"], "urn:uuid:1", "identifiers are data, not links");
    }

    #[test]
    fn lists_references_and_splits_conditionals() {
        let resource = json!({"subject": {"reference": "Patient?identifier=a|b"}, "a": [{"reference": "#c"}]});
        assert_eq!(references(&resource), vec!["Patient?identifier=a|b", "#c"]);
        assert_eq!(conditional("Patient?identifier=a|b"), Some(("Patient", "identifier=a|b")));
        assert_eq!(conditional("http://x/Patient?a=b"), None);
        assert_eq!(conditional("Patient/1"), None);
    }
}
