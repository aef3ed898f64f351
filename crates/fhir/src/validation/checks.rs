//! What the official validator checks on base R4 that the definitions do not state as
//! invariants: resource ids, an Attachment's `size` and `hash` against its `data`, strings and
//! markdown that embed HTML, and the rules of Bundles. Each issue's diagnostics start with a
//! key of our own (`res-id`, `att-size`…), as invariants start with theirs, so clients and tests
//! can tell the rules apart.

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
        let allowed = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
        if id.len() > MAX_ID_LENGTH || !id.chars().all(allowed) {
            let shown: String = id.chars().take(MAX_ID_LENGTH + 1).collect();
            let message = format!(
                "res-id: '{shown}' is not a valid resource id: ids are 1 to {MAX_ID_LENGTH} letters, digits, '-' and '.'"
            );
            self.error(IssueType::Value, &path.key("id"), message);
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

    /// Records a warning at `path`.
    pub(crate) fn warning(&mut self, code: IssueType, path: &Path<'_>, diagnostics: impl Into<String>) {
        self.issues.push(Issue {
            severity: Severity::Warning,
            code,
            diagnostics: diagnostics.into(),
            expression: Some(path.render()),
        });
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::Definitions;

    /// The `(key, location)` pairs of the errors `resource` produces.
    fn errors(resource: &Value) -> Vec<(String, String)> {
        Definitions::get()
            .validate(resource)
            .into_iter()
            .filter(|issue| issue.is_error())
            .map(|issue| {
                let key = issue.diagnostics.split(':').next().unwrap_or_default().to_owned();
                (key, issue.expression.unwrap_or_default())
            })
            .collect()
    }

    fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected.iter().map(|(key, at)| ((*key).to_owned(), (*at).to_owned())).collect()
    }

    #[test]
    fn resource_ids_are_letters_digits_dashes_and_dots_up_to_64() {
        let long = "a".repeat(65);
        for bad in ["bad id", "a_b", "é", long.as_str()] {
            assert_eq!(
                errors(&json!({"resourceType": "Patient", "id": bad})),
                pairs(&[("res-id", "Patient.id")]),
                "{bad}"
            );
        }
        let contained = json!({"resourceType": "Patient", "managingOrganization": {"reference": "#o/1"},
            "contained": [{"resourceType": "Organization", "id": "o/1", "name": "x"}]});
        assert_eq!(errors(&contained), pairs(&[("res-id", "Patient.contained[0].id")]));
        for good in ["a", "A-1.b", "a".repeat(64).as_str()] {
            assert_eq!(errors(&json!({"resourceType": "Patient", "id": good})), pairs(&[]), "{good}");
        }
    }

    #[test]
    fn an_attachment_states_the_size_and_sha1_of_its_data() {
        // "hello" is aGVsbG8= in base64; its SHA-1 is qvTGHdzF6KLavt4PO0gs2a6pQ00= in base64.
        let patient = |attachment: Value| json!({"resourceType": "Patient", "photo": [attachment]});
        let right =
            json!({"contentType": "text/plain", "data": "aGVsbG8=", "size": 5, "hash": "qvTGHdzF6KLavt4PO0gs2a6pQ00="});
        assert_eq!(errors(&patient(right)), pairs(&[]));
        let wrong_size = json!({"contentType": "text/plain", "data": "aGVsbG8=", "size": 6});
        assert_eq!(errors(&patient(wrong_size)), pairs(&[("att-size", "Patient.photo[0].size")]));
        let wrong_hash =
            json!({"contentType": "text/plain", "data": "aGVsbG8=", "hash": "AAAAHdzF6KLavt4PO0gs2a6pQ00="});
        assert_eq!(errors(&patient(wrong_hash)), pairs(&[("att-hash", "Patient.photo[0].hash")]));
        // Without data there is nothing to compare (the attachment is elsewhere, at its url).
        let by_url = json!({"url": "http://example.org/x.pdf", "size": 6, "hash": "AAAAHdzF6KLavt4PO0gs2a6pQ00="});
        assert_eq!(errors(&patient(by_url)), pairs(&[]));
    }
}
