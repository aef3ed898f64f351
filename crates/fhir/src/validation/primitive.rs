//! Primitive values: the JSON shape their type demands (boolean, number or string), the 32-bit
//! range of integers, non-blank strings, the type's regex from its StructureDefinition, real
//! calendar dates for `date`, `dateTime` and `instant`; XHTML narrative is parsed and checked
//! by [`crate::validation::narrative`].

use serde_json::Value;

use crate::definitions::{JsonKind, TypeDef};
use crate::instant;
use crate::outcome::{IssueType, Severity};
use crate::validation::Validator;
use crate::validation::path::Path;

/// The primitive type whose values are XHTML fragments; they have no regex, and are checked
/// by [`crate::validation::narrative`].
const XHTML: &str = "xhtml";

/// The primitive type whose HTML-like tags are a warning (`md-html`); in every other text they
/// are information (`str-html`), as the official validator reports them unless its security
/// checks are on.
const MARKDOWN: &str = "markdown";

/// The primitive type that cannot hold a `<` (its regex says so), and whose values are the
/// largest: not scanned for tags.
const BASE64: &str = "base64Binary";

/// The primitive types whose values name instants: their regexes accept `2023-02-29`, so each
/// value is also read with [`instant::range`], which search indexing uses too.
const TEMPORAL: [&str; 3] = ["date", "dateTime", "instant"];

impl Validator<'_> {
    /// Checks one primitive value of type `ty`.
    pub(crate) fn primitive(&mut self, value: &Value, ty: &TypeDef, path: &Path<'_>) {
        let text = match (ty.json, value) {
            (JsonKind::Boolean, Value::Bool(_)) => return,
            (JsonKind::Integer, Value::Number(number)) => {
                if number.as_str().parse::<i32>().is_err() {
                    let message = format!("{} must be a whole number in the 32-bit range", ty.name);
                    return self.error(IssueType::Value, path, message);
                }
                number.as_str()
            }
            (JsonKind::Decimal, Value::Number(number)) => number.as_str(),
            (JsonKind::String, Value::String(text)) => {
                if text.trim().is_empty() {
                    return self.error(IssueType::Value, path, format!("{} must not be empty or blank", ty.name));
                }
                text
            }
            (_, Value::Null) => {
                return self.error(IssueType::Structure, path, "null is not a valid value");
            }
            (kind, _) => return self.error(IssueType::Structure, path, wrong_kind(ty, kind)),
        };
        self.primitive_text(text, ty, path);
    }

    fn primitive_text(&mut self, text: &str, ty: &TypeDef, path: &Path<'_>) {
        if ty.name == XHTML {
            return self.narrative(text, path);
        }
        if ty.name == MARKDOWN && markdown_holds_html(text) {
            let message = "md-html: the markdown holds what looks like an HTML tag, which the presentation layer \
                will (or should) escape";
            self.report(Severity::Warning, IssueType::Value, path, message);
        } else if ty.name != MARKDOWN && ty.name != BASE64 && contains_html_tags(text) {
            let message = "str-html: the value holds what looks like HTML tags; rendered as HTML without escaping, \
                it would be a security risk";
            self.report(Severity::Information, IssueType::Value, path, message);
        }
        let Some(regex) = self.definitions.regex(ty) else {
            return;
        };
        if !regex.is_match(text) {
            let shown: String = text.chars().take(64).collect();
            self.error(IssueType::Value, path, format!("'{shown}' is not a valid {}", ty.name));
        } else if TEMPORAL.contains(&ty.name.as_str()) && instant::range(text).is_none() {
            let shown: String = text.chars().take(64).collect();
            self.error(IssueType::Value, path, format!("'{shown}' is not a real calendar date ({})", ty.name));
        }
    }
}

/// Whether `text` holds what the official validator takes for HTML tags: a `<`, then a name
/// (a letter, then letters, digits or `_`) that ends the text or a space, then `>` before the
/// next `<` (so a last `<` never counts, as there).
fn contains_html_tags(text: &str) -> bool {
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        rest = &rest[start + 1..];
        // The `>` is looked for up to the next `<` only, so each character is read once or
        // twice however many `<` the text holds.
        let Some(next) = rest.find('<') else { return false };
        let Some(close) = rest[..next].find('>') else { continue };
        let candidate = &rest[..close];
        let name_end = candidate.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(candidate.len());
        let named = candidate.starts_with(|c: char| c.is_ascii_alphabetic());
        if named && (name_end == candidate.len() || candidate[name_end..].starts_with(char::is_whitespace)) {
            return true;
        }
    }
    false
}

/// Whether markdown holds what its renderer would have to escape: a `<` (not escaped with `\`)
/// opening or closing a tag (`<b>`, `</p `), or starting `<!` or `<?`.
fn markdown_holds_html(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.iter().enumerate().any(|(index, &byte)| {
        if byte != b'<' || (index > 0 && bytes[index - 1] == b'\\') {
            return false;
        }
        let rest = &bytes[index + 1..];
        if matches!(rest.first(), Some(b'!' | b'?')) {
            return true;
        }
        let rest = rest.strip_prefix(b"/").unwrap_or(rest);
        let Some((_, tail)) = rest.split_first().filter(|(first, _)| first.is_ascii_alphabetic()) else {
            return false;
        };
        let name_end = tail.iter().position(|c| !(c.is_ascii_alphanumeric() || *c == b'-'));
        name_end.is_some_and(|end| tail[end].is_ascii_whitespace() || tail[end] == b'>')
    })
}

fn wrong_kind(ty: &TypeDef, kind: JsonKind) -> String {
    let expected = match kind {
        JsonKind::Boolean => "a JSON boolean",
        JsonKind::Integer | JsonKind::Decimal => "a JSON number",
        JsonKind::String => "a JSON string",
    };
    format!("a {} value must be {expected}", ty.name)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::validation::tests::{assert_valid, issues_of};

    fn patient_with(key: &str, value: serde_json::Value) -> serde_json::Value {
        let mut patient = json!({"resourceType": "Patient"});
        patient[key] = value;
        patient
    }

    #[test]
    fn booleans_must_be_json_booleans() {
        assert_valid(&patient_with("active", json!(true)));
        assert_eq!(issues_of(&patient_with("active", json!("true"))), [("structure", "Patient.active".into())]);
    }

    #[test]
    fn dates_follow_the_regex() {
        for good in ["2024", "2024-02", "2024-02-29"] {
            assert_valid(&patient_with("birthDate", json!(good)));
        }
        for bad in ["2024-13-01", "24-01-01", "2024-02-29T10:00:00Z", "2024/01/01"] {
            assert_eq!(issues_of(&patient_with("birthDate", json!(bad))), [("value", "Patient.birthDate".into())]);
        }
    }

    #[test]
    fn dates_are_real_calendar_dates_from_year_1_to_9999() {
        for good in ["9999-12-31", "9999-12", "9999", "0001-01-01", "0001", "2000-02-29", "2024-04-30"] {
            assert_valid(&patient_with("birthDate", json!(good)));
        }
        for bad in ["2023-02-29", "1900-02-29", "2024-04-31", "2024-02-30", "0000", "0000-01-01", "10000-01-01"] {
            assert_eq!(
                issues_of(&patient_with("birthDate", json!(bad))),
                [("value", "Patient.birthDate".into())],
                "{bad}"
            );
        }
        let deceased = |value: &str| patient_with("deceasedDateTime", json!(value));
        for good in [
            "9999-12-31T23:59:59Z",
            "9999-12-31T23:59:59.999999999Z",
            "9999-12-31T23:00:00-05:00",
            "9999-12-31T23:00:00-14:00",
            "0001-01-01T00:00:00+14:00",
            "0001-01-01T00:00:00.000Z",
            "2016-12-31T23:59:60Z",
        ] {
            assert_valid(&deceased(good));
        }
        for bad in ["2023-02-29T10:00:00Z", "2023-06-31", "0000-01-01T00:00:00Z"] {
            assert_eq!(issues_of(&deceased(bad)), [("value", "Patient.deceasedDateTime".into())], "{bad}");
        }
    }

    #[test]
    fn date_times_and_instants() {
        let observation = |key: &str, value: &str| {
            let mut resource = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}});
            resource[key] = json!(value);
            resource
        };
        assert_valid(&observation("effectiveDateTime", "2024-01-02T03:04:05+01:00"));
        assert_valid(&observation("issued", "2024-01-02T03:04:05.123Z"));
        assert_eq!(issues_of(&observation("issued", "2024-01-02")), [("value", "Observation.issued".into())]);
        assert_valid(&observation("issued", "9999-12-31T23:59:59.999Z"));
        assert_valid(&observation("issued", "0001-01-01T00:00:00+14:00"));
        assert_eq!(issues_of(&observation("issued", "2023-02-29T03:04:05Z")), [("value", "Observation.issued".into())]);
        assert_eq!(
            issues_of(&observation("effectiveDateTime", "2024-01-02T03:04")),
            [("value", "Observation.effectiveDateTime".into())]
        );
    }

    #[test]
    fn integers_are_whole_and_32_bit() {
        let with_births = |value: serde_json::Value| patient_with("multipleBirthInteger", value);
        assert_valid(&with_births(json!(2)));
        for bad in ["2.0", "1e3", "2147483648"] {
            let number: serde_json::Value = serde_json::from_str(bad).expect("number");
            assert_eq!(issues_of(&with_births(number)), [("value", "Patient.multipleBirthInteger".into())], "{bad}");
        }
        assert_eq!(issues_of(&with_births(json!("2"))), [("structure", "Patient.multipleBirthInteger".into())]);
    }

    #[test]
    fn positive_and_unsigned_ints() {
        let repeat = |frequency: &str| {
            let frequency: serde_json::Value = serde_json::from_str(frequency).expect("number");
            json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
                   "medicationCodeableConcept": {"text": "x"}, "subject": {"reference": "Patient/1"},
                   "dosageInstruction": [{"timing": {"repeat": {"frequency": frequency, "period": 1, "periodUnit": "d"}}}]})
        };
        assert_valid(&repeat("1"));
        let at = "MedicationRequest.dosageInstruction[0].timing.repeat.frequency";
        assert_eq!(issues_of(&repeat("0")), [("value", at.into())]);
        assert_eq!(issues_of(&repeat("-1")), [("value", at.into())]);
    }

    #[test]
    fn decimals_keep_their_text() {
        let quantity = |value: &str| {
            let value: serde_json::Value = serde_json::from_str(value).expect("number");
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueQuantity": {"value": value}})
        };
        assert_valid(&quantity("1.50"));
        assert_valid(&quantity("-0.001"));
        assert_valid(&quantity("1e-3"));
    }

    #[test]
    fn strings_must_not_be_blank() {
        assert_eq!(
            issues_of(&patient_with("name", json!([{"family": ""}]))),
            [("value", "Patient.name[0].family".into())]
        );
        assert_eq!(
            issues_of(&patient_with("name", json!([{"family": "  "}]))),
            [("value", "Patient.name[0].family".into())]
        );
    }

    #[test]
    fn ids_codes_uris_and_oids() {
        // R4 declares `Resource.id` as System.String with fhir-type `string`: a blank id is a
        // blank string here, and `res-id` (validation/checks.rs) checks the rest of its format.
        assert_eq!(issues_of(&patient_with("id", json!(" "))), [("value", "Patient.id".into())]);
        assert_eq!(issues_of(&patient_with("language", json!("en US"))), []);
        let gender = issues_of(&patient_with("gender", json!("male ")));
        assert_eq!(gender, [("value", "Patient.gender".into()), ("code-invalid", "Patient.gender".into())]);
        assert_eq!(
            issues_of(&patient_with("implicitRules", json!("http://a b"))),
            [("value", "Patient.implicitRules".into())]
        );
        let oid = json!([{"system": "urn:oid:1.2.x", "value": "1"}]);
        assert_eq!(issues_of(&patient_with("identifier", oid)).len(), 0, "system is a uri, not an oid");
    }

    #[test]
    fn strings_that_embed_html_are_noted_and_markdown_is_warned_about() {
        for html in ["<b>bold</b>", "see <a href='x'>this</a> <", "<i>x</i>"] {
            assert!(super::contains_html_tags(html), "{html}");
        }
        // As the official validator: a last `<`, a self-closing tag and comparisons are no tags.
        for plain in ["<div>", "a<br/>b<", "3 < 5 > 2", "x</p><", "<3 <", "email <me@example.org> <"] {
            assert!(!super::contains_html_tags(plain), "{plain}");
        }
        // A `>` past the next `<` closes nothing; a run of `<` is read in one pass.
        assert!(!super::contains_html_tags("<b <i>"));
        assert!(!super::contains_html_tags(&"<".repeat(100_000)));
        assert!(super::contains_html_tags(&format!("{}<b>x<", "<".repeat(100_000))));
        for html in ["<b>x", "a </p> b", "<!-- c -->", "<img src=x>"] {
            assert!(super::markdown_holds_html(html), "{html}");
        }
        for plain in ["a < b", "\\<b>", "<3", "<me@example.org>"] {
            assert!(!super::markdown_holds_html(plain), "{plain}");
        }
        let severities = |resource: &serde_json::Value, key: &str| -> Vec<crate::outcome::Severity> {
            let issues = crate::Definitions::get().validate(resource);
            issues.into_iter().filter(|issue| issue.diagnostics.starts_with(key)).map(|issue| issue.severity).collect()
        };
        let name = patient_with("name", json!([{"text": "<b>Amy</b> Shaw"}]));
        assert_eq!(severities(&name, "str-html"), [crate::outcome::Severity::Information]);
        let note = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "note": [{"text": "see <b>this</b>"}]});
        assert_eq!(severities(&note, "md-html"), [crate::outcome::Severity::Warning]);
    }

    #[test]
    fn narrative_div() {
        let text = |div: &str| json!({"status": "generated", "div": div});
        let issues = |div: &str| {
            let issues = crate::Definitions::get().validate(&patient_with("text", text(div)));
            issues
                .into_iter()
                .map(|issue| (issue.severity, issue.diagnostics.chars().take(5).collect::<String>()))
                .collect::<Vec<_>>()
        };
        use crate::outcome::Severity::Error;
        // With narrative, a Patient has no dom-6 warning: the issues are the narrative's own.
        let none = Vec::<(crate::outcome::Severity, String)>::new();
        let xhtml = |inner: &str| format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{inner}</div>");
        assert_eq!(
            issues(&xhtml("Hi <b>there</b>, see <a href=\"http://x\">this</a> &amp; <img src=\"#p\" alt=\"p\"/>")),
            none
        );
        assert_eq!(issues(&xhtml("<table border=\"1\"><tr><td colspan=\"2\">x</td></tr></table>")), none);
        let txt_1 = vec![(Error, "txt-1".to_owned())];
        assert_eq!(issues("<p>Hi</p>"), txt_1, "the root is a div");
        assert_eq!(issues("<div>Hi</div>"), txt_1, "in the XHTML namespace");
        assert_eq!(issues(&xhtml("<script>alert(1)</script>")), txt_1);
        assert_eq!(issues(&xhtml("<p onclick=\"alert(1)\">x</p>")), txt_1);
        assert_eq!(issues(&xhtml("<a href=\"javascript:alert(1)\">x</a>")), txt_1);
        assert_eq!(issues(&xhtml("<form>x</form>")), txt_1);
        assert_eq!(issues(&xhtml("<p>unclosed")), txt_1, "not well-formed");
        assert_eq!(issues(&xhtml(" \n ")), vec![(Error, "txt-2".to_owned())]);
        assert_eq!(issues(&xhtml("<img src=\"#p\" alt=\"\"/>")), none, "an image is content");
        assert_eq!(issues(&xhtml("<a href=\"VBScript:x\">x</a>")), txt_1);
    }
}
