//! Required bindings: a `code`, `Coding`, `CodeableConcept` (or another coded value such as a
//! `Quantity` unit) bound with strength `required` must take its code from the value set.
//! Value sets the build could not expand are skipped rather than guessed at.

use serde_json::Value;

use crate::definitions::ValueSet;
use crate::outcome::IssueType;
use crate::validation::Validator;
use crate::validation::path::Path;

impl Validator<'_> {
    /// Checks `value` of type `type_code` against the value set at binding index `binding`.
    pub(crate) fn binding(&mut self, value: &Value, type_code: &str, binding: u32, path: &Path<'_>) {
        let Some(value_set) = self.definitions.value_set(binding) else {
            return;
        };
        if value_set.expansion.is_none() {
            return;
        }
        let valid = match (value, type_code) {
            (Value::String(code), _) => contains(value_set, None, code),
            (Value::Object(concept), "CodeableConcept") => concept_matches(value_set, concept.get("coding")),
            (Value::Object(coding), _) => coding_matches(value_set, coding),
            _ => true,
        };
        if !valid {
            let shown = shown_code(value, type_code);
            let message = format!("{shown} is not in the required value set {}", value_set.url);
            self.error(IssueType::CodeInvalid, path, message);
        }
    }
}

/// A CodeableConcept matches when one of its codings does; a concept with only text carries no
/// code to check and is let through.
fn concept_matches(value_set: &ValueSet, codings: Option<&Value>) -> bool {
    let Some(codings) = codings.and_then(Value::as_array) else {
        return true;
    };
    let mut codings = codings.iter().filter_map(Value::as_object).peekable();
    codings.peek().is_none() || codings.any(|coding| coding_matches(value_set, coding))
}

/// A Coding (or Quantity) matches when its code is in the value set for its system; one
/// without a code is not judged.
fn coding_matches(value_set: &ValueSet, coding: &serde_json::Map<String, Value>) -> bool {
    let Some(code) = coding.get("code").and_then(Value::as_str) else {
        return true;
    };
    contains(value_set, coding.get("system").and_then(Value::as_str), code)
}

/// True if `code` (in `system`, or in any system when none is given) is in the value set.
fn contains(value_set: &ValueSet, system: Option<&str>, code: &str) -> bool {
    let Some(expansion) = &value_set.expansion else {
        return true;
    };
    expansion
        .iter()
        .filter(|codes| system.is_none_or(|system| codes.system == system))
        .any(|codes| codes.codes.binary_search_by(|c| c.as_str().cmp(code)).is_ok())
}

fn shown_code(value: &Value, type_code: &str) -> String {
    match value {
        Value::String(code) => format!("'{code}'"),
        Value::Object(_) if type_code == "CodeableConcept" => "no coding of this concept".to_owned(),
        Value::Object(object) => {
            let system = object.get("system").and_then(Value::as_str).unwrap_or("");
            let code = object.get("code").and_then(Value::as_str).unwrap_or("");
            format!("'{system}#{code}'")
        }
        _ => "the value".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::validation::tests::{assert_valid, issues_of};

    #[test]
    fn codes_of_required_bindings() {
        assert_valid(&json!({"resourceType": "Patient", "gender": "female"}));
        assert_eq!(
            issues_of(&json!({"resourceType": "Patient", "gender": "F"})),
            [("code-invalid", "Patient.gender".into())]
        );
        let telecom = json!({"resourceType": "Patient", "telecom": [{"system": "fax", "value": "1"}, {"system": "pager2", "value": "2"}]});
        assert_eq!(issues_of(&telecom), [("code-invalid", "Patient.telecom[1].system".into())]);
    }

    #[test]
    fn codeable_concepts_of_required_bindings() {
        let condition = |clinical_status: serde_json::Value| json!({"resourceType": "Condition", "subject": {"reference": "Patient/1"}, "clinicalStatus": clinical_status});
        let system = "http://terminology.hl7.org/CodeSystem/condition-clinical";
        assert_valid(&condition(json!({"coding": [{"system": system, "code": "active"}]})));
        assert_valid(&condition(
            json!({"coding": [{"system": "http://other", "code": "x"}, {"system": system, "code": "active"}]}),
        ));
        assert_valid(&condition(json!({"text": "active"})));
        assert_eq!(
            issues_of(&condition(json!({"coding": [{"system": system, "code": "dormant"}]}))),
            [("code-invalid", "Condition.clinicalStatus".into())]
        );
        assert_eq!(
            issues_of(&condition(json!({"coding": [{"system": "http://other", "code": "active"}]}))),
            [("code-invalid", "Condition.clinicalStatus".into())]
        );
    }

    #[test]
    fn unexpandable_value_sets_are_not_checked() {
        // Attachment.contentType is bound (required) to BCP-13 mime types, which no package holds.
        let photo = json!({"resourceType": "Patient", "photo": [{"contentType": "image/x-made-up"}]});
        assert_valid(&photo);
        // Money.currency is bound to ISO 4217, also not in the packages.
        let claim_item = json!({"resourceType": "Account", "status": "active", "extension": [{"url": "http://e/x", "valueMoney": {"currency": "XXQ"}}]});
        assert_valid(&claim_item);
    }
}
