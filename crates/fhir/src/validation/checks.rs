//! What the official validator checks on base R4 that the definitions do not state as
//! invariants: resource ids (`res-id`), an Attachment's `size` and `hash` against its `data`
//! (`att-size`, `att-hash`), strings and markdown that embed HTML (`str-html`, information, and
//! `md-html`, a warning; see `validation/primitive.rs`), and
//! the rules of Bundles: an absolute `fullUrl` that names the entry's resource when it is a
//! RESTful URL (`bdl-url`; every entry has one outside transactions and batches), link relations
//! that occur once and paging links only where paging is (`bdl-link`), and a document whose
//! Composition's references resolve inside it and whose entries are all linked to the
//! Composition (`bdl-ref`); duplicate entries are R4's own `bdl-7`. Each issue's
//! diagnostics start with the key, as invariants start with theirs, so clients and tests can
//! tell the rules apart.

use std::collections::HashMap;

use base64::Engine;
use serde_json::{Map, Value};
use sha1::{Digest, Sha1};

use crate::outcome::{Issue, IssueType, Severity};
use crate::validation::Validator;
use crate::validation::path::Path;

/// Longest resource id (R4, `id` datatype).
const MAX_ID_LENGTH: usize = 64;

impl Validator<'_> {
    /// `res-id`: a resource id is 1 to 64 letters, digits, `-` and `.`. The definitions cannot say
    /// so: R4 types `Resource.id` as a plain `string`.
    pub(crate) fn resource_id(&mut self, resource: &Map<String, Value>, path: &Path<'_>) {
        // A blank id is reported as a blank string.
        let Some(Value::String(id)) =
            resource.get("id").filter(|id| id.as_str().is_some_and(|id| !id.trim().is_empty()))
        else {
            return;
        };
        if id.len() > MAX_ID_LENGTH || !id.chars().all(is_id_char) {
            let shown: String = id.chars().take(MAX_ID_LENGTH + 1).collect();
            let message = format!(
                "res-id: '{shown}' is not a valid resource id: ids are 1 to {MAX_ID_LENGTH} letters, digits, '-' and '.'"
            );
            self.error(IssueType::Value, &path.key("id"), message);
        }
    }

    /// `res-id` on contained resources: each has an id (it is how it is referenced), and no two
    /// share one.
    pub(crate) fn contained_ids(&mut self, resource: &Map<String, Value>, path: &Path<'_>) {
        let Some(contained) = resource.get("contained").and_then(Value::as_array) else { return };
        let at = path.key("contained");
        for (index, item) in contained.iter().enumerate() {
            let Some(item) = item.as_object() else { continue };
            match item.get("id").and_then(Value::as_str) {
                None => self.error(IssueType::Required, &at.index(index), "res-id: a contained resource needs an id"),
                Some(id)
                    if contained[..index].iter().any(|other| other.get("id").and_then(Value::as_str) == Some(id)) =>
                {
                    let message = format!("res-id: another contained resource has the id '{id}'");
                    self.error(IssueType::Duplicate, &at.index(index).key("id"), message);
                }
                Some(_) => {}
            }
        }
    }

    /// `att-size` and `att-hash`: an Attachment's `size` and `hash` describe its `data` (when it has
    /// some): the number of bytes, and their SHA-1 in base64.
    pub(crate) fn attachment(&mut self, attachment: &Map<String, Value>, path: &Path<'_>) {
        let Some(Value::String(data)) = attachment.get("data") else { return };
        // A `data` that is not base64 is reported by its primitive's regex.
        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(data.as_bytes()) else { return };
        if let Some(size) = attachment.get("size").and_then(Value::as_u64)
            && size != bytes.len() as u64
        {
            let message = format!("att-size: the stated size is {size} bytes, but the data holds {}", bytes.len());
            self.error(IssueType::Value, &path.key("size"), message);
        }
        if let Some(Value::String(hash)) = attachment.get("hash") {
            let stated = base64::engine::general_purpose::STANDARD.decode(hash.as_bytes()).ok();
            let actual = Sha1::digest(&bytes);
            if stated.as_deref() != Some(actual.as_slice()) {
                let actual = base64::engine::general_purpose::STANDARD.encode(actual);
                let message = format!("att-hash: the stated hash is not the SHA-1 of the data, which is {actual}");
                self.error(IssueType::Value, &path.key("hash"), message);
            }
        }
    }

    /// The Bundle rules the invariants leave out (see the module notes).
    pub(crate) fn bundle(&mut self, bundle: &Map<String, Value>, path: &Path<'_>) {
        let kind = bundle.get("type").and_then(Value::as_str).unwrap_or_default();
        self.bundle_links(bundle, kind, path);
        let entries = bundle.get("entry").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        let at = path.key("entry");
        let identified = !matches!(kind, "transaction" | "transaction-response" | "batch" | "batch-response");
        for (index, entry) in entries.iter().enumerate() {
            // A search's OperationOutcome (`search.mode` outcome) is about the search, not a
            // resource with an identity.
            let outcome = entry.pointer("/search/mode").and_then(Value::as_str) == Some("outcome");
            if identified && !outcome && entry.get("resource").is_some() && entry.get("fullUrl").is_none() {
                let message =
                    "bdl-url: except in transactions and batches, an entry has a fullUrl, its resource's identity";
                self.error(IssueType::Required, &at.index(index), message);
            }
            self.full_url(entry, &at.index(index));
        }
        if kind == "document" {
            self.document_references(entries, &at);
        }
    }

    /// `bdl-link`: a link relation occurs once (`self` in any Bundle; `first`, `previous`,
    /// `next` and `last` too in search and history Bundles, and nowhere else).
    fn bundle_links(&mut self, bundle: &Map<String, Value>, kind: &str, path: &Path<'_>) {
        let links = bundle.get("link").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        let paging = ["first", "previous", "next", "last"];
        let searched = matches!(kind, "searchset" | "history");
        let relations: Vec<Option<&str>> =
            links.iter().map(|link| link.get("relation").and_then(Value::as_str)).collect();
        let link = path.key("link");
        for (index, relation) in relations.iter().enumerate() {
            let Some(relation) = *relation else { continue };
            let at = link.index(index);
            let is_paging = paging.contains(&relation);
            if is_paging && !searched {
                let message =
                    format!("bdl-link: the '{relation}' link is for search and history Bundles, not a {kind}");
                self.error(IssueType::Invalid, &at, message);
            } else if (relation == "self" || is_paging) && relations[..index].contains(&Some(relation)) {
                self.error(IssueType::Invalid, &at, format!("bdl-link: a Bundle has one '{relation}' link at most"));
            }
        }
    }

    /// `bdl-url`: an entry's `fullUrl` is absolute, and a RESTful one (`…/Patient/1`) ends with
    /// the type and id of the entry's resource.
    fn full_url(&mut self, entry: &Value, path: &Path<'_>) {
        let Some(url) = entry.get("fullUrl").and_then(Value::as_str) else { return };
        let at = path.key("fullUrl");
        if !has_scheme(url) {
            return self.error(IssueType::Value, &at, format!("bdl-url: the fullUrl '{url}' must be an absolute URL"));
        }
        let Some((resource_type, id)) = restful_identity(url) else { return };
        let resource = entry.get("resource");
        let actual_type = resource.and_then(|r| r.get("resourceType")).and_then(Value::as_str);
        let actual_id = resource.and_then(|r| r.get("id")).and_then(Value::as_str);
        // As the official validator: a resource under a RESTful fullUrl has that id, whatever
        // the Bundle's type (a transaction names what it creates with `urn:uuid:` instead).
        if actual_type.is_some() && (actual_type, actual_id) != (Some(resource_type), Some(id)) {
            let message = format!(
                "bdl-url: the fullUrl '{url}' is a RESTful URL, so it must end with the type and id of its resource ({}/{})",
                actual_type.unwrap_or_default(),
                actual_id.unwrap_or("no id")
            );
            self.error(IssueType::Value, &at, message);
        }
    }

    /// `bdl-ref`: every reference of a document's Composition names an entry of the document,
    /// and every entry is reached by following references from or to the Composition.
    fn document_references(&mut self, entries: &[Value], path: &Path<'_>) {
        let index = EntryIndex::new(entries);
        // The Composition's references, as the official validator checks them: what the
        // document is about and made of. Its `relatesTo` names other documents, and the other
        // entries' references may lead outside the document.
        let Some(mut composition) = entries.first().and_then(|entry| entry.get("resource")).cloned() else { return };
        if composition.get("resourceType").and_then(Value::as_str) != Some("Composition") {
            return;
        }
        if let Some(object) = composition.as_object_mut() {
            object.remove("relatesTo");
        }
        for reference in crate::references::references(&composition) {
            if reference.starts_with('#') || reference.contains('?') || index.find(reference).is_some() {
                continue;
            }
            let message = format!("bdl-ref: the document holds no entry for the Composition's reference '{reference}'");
            self.error(IssueType::NotFound, &path.index(0).key("resource"), message);
        }
        for orphan in index.unreached(entries) {
            let message = "bdl-ref: no reference leads from or to the Composition to this entry";
            self.error(IssueType::Invalid, &path.index(orphan), message);
        }
    }

    /// Records an issue of `severity` (a warning, or information) at `path`.
    pub(crate) fn report(
        &mut self,
        severity: Severity,
        code: IssueType,
        path: &Path<'_>,
        diagnostics: impl Into<String>,
    ) {
        self.issues.push(Issue { severity, code, diagnostics: diagnostics.into(), expression: Some(path.render()) });
    }
}

/// Whether `c` may be part of a resource id.
fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '.'
}

/// Whether `url` starts with a URI scheme (`http:`, `urn:`).
fn has_scheme(url: &str) -> bool {
    url.split_once(':').is_some_and(|(scheme, _)| {
        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    })
}

/// The resource type and id an `http(s)` URL ending in `Type/id` (or `Type/id/_history/v`)
/// names, when `Type` is a resource type and `id` an id.
fn restful_identity(url: &str) -> Option<(&str, &str)> {
    if !url.starts_with("http://") && !url.starts_with("https://") {
        return None;
    }
    let url = url.split_once("/_history/").map_or(url, |(before, _)| before);
    let (rest, id) = url.rsplit_once('/')?;
    let (_, resource_type) = rest.rsplit_once('/')?;
    let is_id = id.len() <= MAX_ID_LENGTH && !id.is_empty() && id.chars().all(is_id_char);
    (is_id && crate::Definitions::get().is_resource_type(resource_type)).then_some((resource_type, id))
}

/// The entries of a Bundle by what names them: their `fullUrl`, and `Type/id` (of the
/// resource, and the end of a RESTful `fullUrl`); versions left out.
struct EntryIndex<'a> {
    by_url: HashMap<&'a str, usize>,
    by_identity: HashMap<String, usize>,
}

impl<'a> EntryIndex<'a> {
    fn new(entries: &'a [Value]) -> EntryIndex<'a> {
        let mut index = EntryIndex { by_url: HashMap::new(), by_identity: HashMap::new() };
        for (position, entry) in entries.iter().enumerate() {
            if let Some(url) = entry.get("fullUrl").and_then(Value::as_str) {
                index.by_url.entry(without_version(url)).or_insert(position);
                if let Some((resource_type, id)) = restful_identity(url) {
                    index.by_identity.entry(format!("{resource_type}/{id}")).or_insert(position);
                }
            }
            let resource = entry.get("resource");
            let resource_type = resource.and_then(|r| r.get("resourceType")).and_then(Value::as_str);
            if let Some((resource_type, id)) =
                resource_type.zip(resource.and_then(|r| r.get("id")).and_then(Value::as_str))
            {
                index.by_identity.entry(format!("{resource_type}/{id}")).or_insert(position);
            }
        }
        index
    }

    /// The entry `reference` names: an absolute reference by its `fullUrl`, a relative one
    /// (`Type/id`) by its type and id.
    fn find(&self, reference: &str) -> Option<usize> {
        let reference = without_version(reference);
        match has_scheme(reference) {
            true => self.by_url.get(reference).copied(),
            false => self.by_identity.get(reference).copied(),
        }
    }

    /// The entries no chain of references, followed either way, links to the first.
    fn unreached(&self, entries: &[Value]) -> Vec<usize> {
        let mut links: Vec<Vec<usize>> = vec![Vec::new(); entries.len()];
        for (from, entry) in entries.iter().enumerate() {
            let Some(resource) = entry.get("resource") else { continue };
            for to in crate::references::references(resource).into_iter().filter_map(|r| self.find(r)) {
                links[from].push(to);
                links[to].push(from);
            }
        }
        let mut reached = vec![false; entries.len()];
        let mut pending = vec![0];
        while let Some(at) = pending.pop() {
            if std::mem::replace(&mut reached[at], true) {
                continue;
            }
            pending.extend(links[at].iter().copied().filter(|&next| !reached[next]));
        }
        (0..entries.len()).filter(|&position| !reached[position]).collect()
    }
}

/// `url` without a `/_history/…` version.
fn without_version(url: &str) -> &str {
    url.split_once("/_history/").map_or(url, |(before, _)| before)
}

#[cfg(test)]
mod tests {
    use crate::validation::tests::{keyed, keyed_errors};
    use serde_json::{Value, json};

    #[test]
    fn resource_ids_are_letters_digits_dashes_and_dots_up_to_64() {
        let long = "a".repeat(65);
        for bad in ["bad id", "a_b", "é", long.as_str()] {
            assert_eq!(
                keyed_errors(&json!({"resourceType": "Patient", "id": bad})),
                keyed(&[("res-id", "Patient.id")]),
                "{bad}"
            );
        }
        let contained = json!({"resourceType": "Patient", "managingOrganization": {"reference": "#o/1"},
            "contained": [{"resourceType": "Organization", "id": "o/1", "name": "x"}]});
        assert_eq!(keyed_errors(&contained), keyed(&[("res-id", "Patient.contained[0].id")]));
        let twice = json!({"resourceType": "Patient", "managingOrganization": {"reference": "#o1"},
            "contained": [{"resourceType": "Organization", "id": "o1", "name": "x"}, {"resourceType": "Organization", "id": "o1", "name": "y"}]});
        assert_eq!(keyed_errors(&twice), keyed(&[("res-id", "Patient.contained[1].id")]));
        for good in ["a", "A-1.b", "a".repeat(64).as_str()] {
            assert_eq!(keyed_errors(&json!({"resourceType": "Patient", "id": good})), keyed(&[]), "{good}");
        }
    }

    #[test]
    fn an_attachment_states_the_size_and_sha1_of_its_data() {
        // "hello" is aGVsbG8= in base64; its SHA-1 is qvTGHdzF6KLavt4PO0gs2a6pQ00= in base64.
        let patient = |attachment: Value| json!({"resourceType": "Patient", "photo": [attachment]});
        let right =
            json!({"contentType": "text/plain", "data": "aGVsbG8=", "size": 5, "hash": "qvTGHdzF6KLavt4PO0gs2a6pQ00="});
        assert_eq!(keyed_errors(&patient(right)), keyed(&[]));
        let wrong_size = json!({"contentType": "text/plain", "data": "aGVsbG8=", "size": 6});
        assert_eq!(keyed_errors(&patient(wrong_size)), keyed(&[("att-size", "Patient.photo[0].size")]));
        let wrong_hash =
            json!({"contentType": "text/plain", "data": "aGVsbG8=", "hash": "AAAAHdzF6KLavt4PO0gs2a6pQ00="});
        assert_eq!(keyed_errors(&patient(wrong_hash)), keyed(&[("att-hash", "Patient.photo[0].hash")]));
        // Without data there is nothing to compare (the attachment is elsewhere, at its url).
        let by_url = json!({"url": "http://example.org/x.pdf", "size": 6, "hash": "AAAAHdzF6KLavt4PO0gs2a6pQ00="});
        assert_eq!(keyed_errors(&patient(by_url)), keyed(&[]));
    }

    #[test]
    fn bundle_entries_name_their_resources_and_documents_hold_what_they_reference() {
        let patient = json!({"resourceType": "Patient", "id": "p1"});
        let collection = |full_url: &str| json!({"resourceType": "Bundle", "type": "collection", "entry": [{"fullUrl": full_url, "resource": patient}]});
        assert_eq!(keyed_errors(&collection("http://example.org/fhir/Patient/p1")), keyed(&[]));
        assert_eq!(keyed_errors(&collection("urn:uuid:0b4b2a9e-5d0e-4f59-9a4e-0d6a5b0c1e2f")), keyed(&[]));
        assert_eq!(
            keyed_errors(&collection("http://example.org/fhir/Patient/p2")),
            keyed(&[("bdl-url", "Bundle.entry[0].fullUrl")])
        );
        assert_eq!(keyed_errors(&collection("Patient/p1")), keyed(&[("bdl-url", "Bundle.entry[0].fullUrl")]));
        let links = json!({"resourceType": "Bundle", "type": "searchset",
            "link": [{"relation": "self", "url": "http://a/Patient"}, {"relation": "self", "url": "http://a/Patient?x=1"}]});
        assert_eq!(keyed_errors(&links), keyed(&[("bdl-link", "Bundle.link[1]")]));
        let paged = json!({"resourceType": "Bundle", "type": "collection", "link": [{"relation": "next", "url": "http://a/x"}]});
        assert_eq!(keyed_errors(&paged), keyed(&[("bdl-link", "Bundle.link[0]")]));
        let unnamed = json!({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": patient}]});
        assert_eq!(keyed_errors(&unnamed), keyed(&[("bdl-url", "Bundle.entry[0]")]));
        let transaction = json!({"resourceType": "Bundle", "type": "transaction",
            "entry": [{"resource": patient, "request": {"method": "PUT", "url": "Patient/p1"}}]});
        assert_eq!(keyed_errors(&transaction), keyed(&[]));
        // R4's bdl-7: the same fullUrl twice (without distinct versions).
        let twice = json!({"resourceType": "Bundle", "type": "collection", "entry": [
            {"fullUrl": "http://example.org/fhir/Patient/p1", "resource": patient},
            {"fullUrl": "http://example.org/fhir/Patient/p1", "resource": patient}]});
        assert_eq!(keyed_errors(&twice), keyed(&[("bdl-7", "Bundle")]));
        let document = |subject: &str| {
            json!({"resourceType": "Bundle", "type": "document", "timestamp": "2024-01-01T00:00:00Z",
                "identifier": {"system": "urn:ietf:rfc:3986", "value": "urn:uuid:8f1e5c6a-2b7d-4c3e-9a1f-6d5e4c3b2a10"},
                "entry": [
                    {"fullUrl": "http://example.org/fhir/Composition/c1", "resource": {"resourceType": "Composition", "id": "c1",
                        "status": "final", "type": {"text": "note"}, "date": "2024-01-01", "title": "Note",
                        "author": [{"reference": "Patient/p1"}], "subject": {"reference": subject}}},
                    {"fullUrl": "http://example.org/fhir/Patient/p1", "resource": patient}]})
        };
        assert_eq!(keyed_errors(&document("Patient/p1")), keyed(&[]));
        assert_eq!(keyed_errors(&document("http://example.org/fhir/Patient/p1")), keyed(&[]));
        assert_eq!(keyed_errors(&document("Patient/p9")), keyed(&[("bdl-ref", "Bundle.entry[0].resource")]));
        // Other entries may refer outside the document, as the official validator allows.
        let mut outward = document("Patient/p1");
        outward["entry"][1]["resource"]["generalPractitioner"] = json!([{"reference": "Practitioner/elsewhere"}]);
        assert_eq!(keyed_errors(&outward), keyed(&[]));
        // An entry nothing links to the Composition is an orphan; linked backwards, it is not.
        let mut orphan = document("Patient/p1");
        let stray = json!({"fullUrl": "http://example.org/fhir/Observation/o1",
            "resource": {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "x"}}});
        orphan["entry"].as_array_mut().expect("entries").push(stray);
        assert_eq!(keyed_errors(&orphan), keyed(&[("bdl-ref", "Bundle.entry[2]")]));
        orphan["entry"][2]["resource"]["subject"] = json!({"reference": "Patient/p1"});
        assert_eq!(keyed_errors(&orphan), keyed(&[]));
    }
}
