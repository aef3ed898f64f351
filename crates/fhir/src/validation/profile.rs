//! US Core profile constraints: for each known profile in `meta.profile`, the minimum and
//! maximum cardinality, required bindings and fixed and pattern values the profile adds to the
//! base type, and its slicings ([`crate::validation::slicing`]). Profiles the definitions do
//! not know are reported as information and otherwise ignored.

use serde_json::{Map, Value};

use crate::definitions::{MANY, Profile, ProfileConstraint, Slicing, TypeDef};
use crate::outcome::{Issue, IssueType};
use crate::validation::invariants::{self, Subject};
use crate::validation::path::Path;
use crate::validation::{Validator, is_type_suffix};

impl<'d> Validator<'d> {
    /// Applies the profiles `resource` claims.
    pub(crate) fn profiles(&mut self, resource: &Value, ty: &'d TypeDef, path: &Path<'_>) {
        let claimed = resource.get("meta").and_then(|meta| meta.get("profile")).and_then(Value::as_array);
        for url in claimed.into_iter().flatten().filter_map(Value::as_str) {
            let canonical = url.split('|').next().unwrap_or(url);
            match self.definitions.profile(canonical) {
                Some(profile) if profile.type_name == ty.name => self.profile(resource, ty, profile, path),
                Some(profile) => {
                    let message = format!("profile {canonical} is for {}, not {}", profile.type_name, ty.name);
                    self.error(IssueType::Structure, &path.key("meta"), message);
                }
                None => self.issues.push(Issue::information(
                    IssueType::NotSupported,
                    format!("profile {canonical} is not known; only the base definition was checked"),
                )),
            }
        }
    }

    fn profile(&mut self, resource: &Value, ty: &'d TypeDef, profile: &'d Profile, path: &Path<'_>) {
        let Some(object) = resource.as_object() else { return };
        for constraint in &profile.constraints {
            walk(self, object, &constraint.path, path, &mut |validator, node, segment, at| {
                validator.check(node, segment, constraint, profile, at)
            });
        }
        for slicing in &profile.slicings {
            let sliced = Sliced { slicing, profile, resource, subject: subject_at(ty, &slicing.path) };
            walk(self, object, &slicing.path, path, &mut |validator, node, segment, at| {
                validator.slicing(node, segment, &sliced, at)
            });
        }
        for (below, invariant) in &profile.invariants {
            if below.is_empty() {
                let issues =
                    invariants::check_profile(Subject::root(ty), [invariant], resource, resource, || path.render());
                self.issues.extend(issues);
                continue;
            }
            let Some(subject) = subject_at(ty, below) else { continue };
            walk(self, object, below, path, &mut |validator, node, segment, at| {
                for (key, value) in
                    node.iter().filter(|(key, _)| !key.starts_with('_') && matches_segment(key, segment))
                {
                    let subject = subject.typed_by(segment, key);
                    for_each_item(value, &at.key(key), &mut |item, item_path| {
                        let issues =
                            invariants::check_profile(subject, [invariant], item, resource, || item_path.render());
                        validator.issues.extend(issues);
                    });
                }
            });
        }
    }

    /// Checks the element `segment` of `node` against the constraint.
    fn check(
        &mut self,
        node: &Map<String, Value>,
        segment: &str,
        constraint: &ProfileConstraint,
        profile: &Profile,
        path: &Path<'_>,
    ) {
        let mut count = 0;
        for (key, value) in node.iter() {
            let name = key.strip_prefix('_').unwrap_or(key);
            if !matches_segment(name, segment) {
                continue;
            }
            let items = value.as_array().map_or(1, Vec::len);
            count = count.max(items);
            if key.starts_with('_') {
                continue;
            }
            if let Some(binding) = constraint.binding {
                self.profile_binding(value, key, segment, constraint, binding, &path.key(key));
            }
            if let Some(fixed) = &constraint.value {
                self.fixed_value(value, fixed, profile, &path.key(key));
            }
        }
        let name = segment.strip_suffix("[x]").unwrap_or(segment);
        if (count as u32) < constraint.min {
            let message = format!("'{name}' is required (at least {}) by profile {}", constraint.min, profile.url);
            self.error(IssueType::Required, &path.key(name), message);
        }
        if constraint.max != MANY && count as u32 > constraint.max {
            let message = match constraint.max {
                0 => format!("'{name}' is not allowed by profile {}", profile.url),
                max => format!("at most {max} '{name}' allowed by profile {}", profile.url),
            };
            self.error(IssueType::Value, &path.key(name), message);
        }
    }

    fn profile_binding(
        &mut self,
        value: &Value,
        key: &str,
        segment: &str,
        constraint: &ProfileConstraint,
        binding: u32,
        path: &Path<'_>,
    ) {
        let type_code = match segment.strip_suffix("[x]") {
            Some(prefix) => {
                let suffix = &key[prefix.len()..];
                constraint.types.iter().find(|t| is_type_suffix(suffix, t)).map_or("", String::as_str)
            }
            None => constraint.types.first().map_or("", String::as_str),
        };
        for_each_item(value, path, &mut |item, at| self.binding(item, type_code, binding, at));
    }
}

/// A slicing of a profile, with what its values' invariants are evaluated with: the resource,
/// and the sliced element.
pub(crate) struct Sliced<'a, 'd> {
    pub(crate) slicing: &'d Slicing,
    pub(crate) profile: &'d Profile,
    pub(crate) resource: &'a Value,
    pub(crate) subject: Option<Subject<'d>>,
}

/// The element of `ty` at `segments` below its root (a choice with its `[x]`).
fn subject_at<'d>(ty: &'d TypeDef, segments: &[String]) -> Option<Subject<'d>> {
    let mut index = 0u32;
    for segment in segments {
        let name = segment.strip_suffix("[x]").unwrap_or(segment);
        let element = ty.elements.get(index as usize)?;
        index =
            *element.children.iter().find(|&&child| ty.elements.get(child as usize).is_some_and(|e| e.name == name))?;
    }
    let element = ty.elements.get(index as usize)?;
    Some(Subject { owner: ty, index, type_code: element.types.first().map_or("", String::as_str) })
}

/// Calls `visit` with each item of `value` (each of an array, or the value) and its location.
pub(crate) fn for_each_item(value: &Value, path: &Path<'_>, visit: &mut dyn FnMut(&Value, &Path<'_>)) {
    match value {
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                visit(item, &path.index(index));
            }
        }
        _ => visit(value, path),
    }
}

/// What [`walk`] calls with each object it reaches.
type Visit<'v, 'd> = dyn FnMut(&mut Validator<'d>, &Map<String, Value>, &str, &Path<'_>) + 'v;

/// Follows `segments` down from `node` and calls `visit` with every object found that holds the
/// last segment, that segment, and the object's location.
fn walk<'d>(
    validator: &mut Validator<'d>,
    node: &Map<String, Value>,
    segments: &[String],
    path: &Path<'_>,
    visit: &mut Visit<'_, 'd>,
) {
    let Some((first, rest)) = segments.split_first() else {
        return;
    };
    if rest.is_empty() {
        return visit(validator, node, first, path);
    }
    for (key, value) in node.iter().filter(|(key, _)| matches_segment(key, first)) {
        let at = path.key(key);
        match value {
            Value::Object(child) => walk(validator, child, rest, &at, visit),
            Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    if let Value::Object(child) = item {
                        walk(validator, child, rest, &at.index(index), visit);
                    }
                }
            }
            _ => {}
        }
    }
}

/// True if JSON key `key` stands for profile path segment `segment` (`effective[x]` matches
/// `effectiveDateTime`).
pub(crate) fn matches_segment(key: &str, segment: &str) -> bool {
    match segment.strip_suffix("[x]") {
        Some(prefix) => key
            .strip_prefix(prefix)
            .and_then(|suffix| suffix.chars().next())
            .is_some_and(|first| first.is_ascii_uppercase()),
        None => key == segment,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::Definitions;
    use crate::validation::tests::{assert_valid, issues_of, keyed_errors};

    const US_CORE_PATIENT: &str = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient";

    fn us_core_patient() -> serde_json::Value {
        json!({"resourceType": "Patient", "meta": {"profile": [US_CORE_PATIENT]},
               "identifier": [{"system": "http://hospital.example/mrn", "value": "1"}],
               "name": [{"family": "Shaw"}], "gender": "female"})
    }

    #[test]
    fn a_conformant_us_core_patient_passes() {
        assert_valid(&us_core_patient());
    }

    #[test]
    fn profile_required_elements() {
        let mut patient = us_core_patient();
        patient.as_object_mut().expect("object").remove("name");
        patient["identifier"][0].as_object_mut().expect("object").remove("system");
        assert_eq!(
            issues_of(&patient),
            [("required", "Patient.identifier[0].system".into()), ("required", "Patient.name".into())]
        );
    }

    #[test]
    fn profile_version_suffix_is_ignored() {
        let mut patient = us_core_patient();
        patient["meta"]["profile"] = json!([format!("{US_CORE_PATIENT}|7.0.0")]);
        patient.as_object_mut().expect("object").remove("identifier");
        assert_eq!(issues_of(&patient), [("required", "Patient.identifier".into())]);
    }

    #[test]
    fn profile_choice_and_prohibited_elements() {
        let average_bp = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-average-blood-pressure";
        let loinc = |code: &str| json!({"coding": [{"system": "http://loinc.org", "code": code}]});
        let mm_hg = |value: u32| json!({"value": value, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"});
        let vital_signs = json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}]);
        let observation = json!({"resourceType": "Observation", "meta": {"profile": [average_bp]}, "status": "final",
            "category": vital_signs, "code": loinc("96607-7"), "subject": {"reference": "Patient/1"},
            "valueString": "120/80", "component": [{"code": loinc("96608-5"), "valueQuantity": mm_hg(120)},
                {"code": loinc("96609-3"), "valueQuantity": mm_hg(80)}]});
        assert_eq!(
            issues_of(&observation),
            [("required", "Observation.effective".into()), ("value", "Observation.value".into())]
        );
    }

    #[test]
    fn profile_tightened_maximum() {
        let careteam = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-careteam";
        let role = json!([{"text": "nurse"}, {"text": "coach"}]);
        let resource = json!({"resourceType": "CareTeam", "meta": {"profile": [careteam]}, "status": "active",
            "subject": {"reference": "Patient/1"},
            "participant": [{"role": role, "member": {"reference": "Practitioner/1"}}]});
        assert_eq!(issues_of(&resource), [("value", "CareTeam.participant[0].role".into())]);
    }

    #[test]
    fn profile_bindings() {
        let careplan = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-careplan";
        let resource = json!({"resourceType": "CarePlan", "meta": {"profile": [careplan]}, "status": "active", "intent": "plan",
            "category": [{"coding": [{"system": "http://hl7.org/fhir/us/core/CodeSystem/careplan-category", "code": "assess-plan"}]}],
            "subject": {"reference": "Patient/1"}, "text": {"status": "empty", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"}});
        assert_eq!(issues_of(&resource), [("code-invalid", "CarePlan.text.status".into())]);
    }

    #[test]
    fn unknown_profiles_are_information() {
        let patient =
            json!({"resourceType": "Patient", "meta": {"profile": ["http://example.org/StructureDefinition/mine"]}});
        // Besides the profile note, only dom-6's warning (no narrative).
        let issues: Vec<_> = Definitions::get()
            .validate(&patient)
            .into_iter()
            .filter(|issue| !issue.diagnostics.starts_with("dom-6"))
            .collect();
        assert_eq!(issues.len(), 1);
        assert!(!issues[0].is_error());
    }

    #[test]
    fn the_invariants_a_profile_adds_hold_where_it_puts_them() {
        // us-core-6 on each Patient.name: a family or given name, or a data-absent-reason.
        let mut patient = us_core_patient();
        patient["name"] = json!([{"family": "Shaw"}, {"text": "Shaw"}]);
        assert_eq!(keyed_errors(&patient), [("us-core-6".to_owned(), "Patient.name[1]".to_owned())]);
        patient["name"][1]["given"] = json!(["Amy"]);
        assert_eq!(keyed_errors(&patient), []);
        // us-core-1 on Observation.effective[x], typed by its key: a dateTime to the day at least.
        let lab = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-observation-lab";
        let mut observation = json!({"resourceType": "Observation", "meta": {"profile": [lab]}, "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
            "code": {"text": "glucose"}, "subject": {"reference": "Patient/1"}, "effectiveDateTime": "2024-01",
            "valueQuantity": {"value": 5, "system": "http://unitsofmeasure.org", "code": "mmol/L"}});
        assert_eq!(keyed_errors(&observation), [("us-core-1".to_owned(), "Observation.effectiveDateTime".to_owned())]);
        observation["effectiveDateTime"] = "2024-01-02".into();
        assert_eq!(keyed_errors(&observation), []);
        // us-core-2 on the resource: a value, components or members, or a reason for none.
        observation.as_object_mut().expect("object").remove("valueQuantity");
        assert_eq!(keyed_errors(&observation), [("us-core-2".to_owned(), "Observation".to_owned())]);
        // us-core-16 on the NPI slice of Practitioner.identifier: ten digits.
        let practitioner = |npi: &str| {
            json!({"resourceType": "Practitioner",
            "meta": {"profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-practitioner"]},
            "name": [{"family": "Jones"}], "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": npi}]})
        };
        let keys: Vec<String> = keyed_errors(&practitioner("12345")).into_iter().map(|(key, _)| key).collect();
        assert!(keys.contains(&"us-core-16".to_owned()), "{keys:?}");
        assert_eq!(keyed_errors(&practitioner("1234567893")), []);
    }
}
