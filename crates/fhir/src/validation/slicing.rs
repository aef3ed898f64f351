//! What a profile says beyond cardinality: fixed and pattern values, and slicing — each value
//! of a sliced element goes to the first slice whose discriminators it meets (a value or
//! pattern at a path below it, or its type); each slice takes as many values as its
//! cardinality allows, holds its own fixed and pattern values, and a closed slicing takes no
//! value outside its slices. Diagnostics start with `slice:`, `fixed:` or `pattern:`.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::{Map, Value};

use crate::definitions::{Discriminator, Fixed, MANY, Profile, Slice};
use crate::outcome::IssueType;
use crate::validation::invariants;
use crate::validation::path::Path;
use crate::validation::profile::{Sliced, for_each_item, matches_segment};
use crate::validation::{Validator, is_type_suffix};

impl Validator<'_> {
    /// Sorts the values of the element `segment` of `node` into the slices of the slicing.
    pub(crate) fn slicing(
        &mut self,
        node: &Map<String, Value>,
        segment: &str,
        sliced: &Sliced<'_, '_>,
        path: &Path<'_>,
    ) {
        let Sliced { slicing, profile, resource, subject } = *sliced;
        let mut counts = vec![0u32; slicing.slices.len()];
        for (key, value) in node.iter().filter(|(key, _)| !key.starts_with('_') && matches_segment(key, segment)) {
            let at = path.key(key);
            let suffix = segment.strip_suffix("[x]").map(|prefix| &key[prefix.len()..]);
            for_each_item(value, &at, &mut |item, item_path| {
                let found = slicing.slices.iter().position(|slice| in_slice(slice, suffix, item));
                match found {
                    Some(found) => {
                        counts[found] += 1;
                        let slice = &slicing.slices[found];
                        self.fixed_values(item, slice, profile, item_path);
                        if let Some(subject) = subject.filter(|_| !slice.invariants.is_empty()) {
                            let subject = subject.typed_by(segment, key);
                            let issues = invariants::check_profile(subject, &slice.invariants, item, resource, || {
                                item_path.render()
                            });
                            self.issues.extend(issues);
                        }
                    }
                    None if slicing.closed => {
                        let message = format!(
                            "slice: this {key} is in none of the slices of profile {}, and its slicing is closed",
                            profile.url
                        );
                        self.error(IssueType::Structure, item_path, message);
                    }
                    None => {}
                }
            });
        }
        let element = segment.strip_suffix("[x]").unwrap_or(segment);
        for (slice, count) in slicing.slices.iter().zip(counts) {
            if count < slice.min || count > slice.max {
                let max = if slice.max == MANY { "*".to_owned() } else { slice.max.to_string() };
                let message = format!(
                    "slice: profile {} takes {}..{max} {element} in its slice '{}', found {count}",
                    profile.url, slice.min, slice.name
                );
                self.error(IssueType::Structure, &path.key(element), message);
            }
        }
    }

    /// Checks the fixed and pattern values of `slice` on `item`, one of its values.
    fn fixed_values(&mut self, item: &Value, slice: &Slice, profile: &Profile, path: &Path<'_>) {
        for (below, fixed) in &slice.values {
            let mut nodes = Vec::new();
            collect(item, below, &mut nodes);
            for node in nodes {
                if !holds(node, fixed) {
                    self.error(IssueType::Value, path, fixed_message(fixed, profile));
                }
            }
        }
    }

    /// Checks a fixed or pattern value the profile gives the element `key` of an object, whose
    /// value is `value`.
    pub(crate) fn fixed_value(&mut self, value: &Value, fixed: &Fixed, profile: &Profile, path: &Path<'_>) {
        for_each_item(value, path, &mut |item, item_path| {
            if !holds(item, fixed) {
                self.error(IssueType::Value, item_path, fixed_message(fixed, profile));
            }
        });
    }
}

fn fixed_message(fixed: &Fixed, profile: &Profile) -> String {
    match fixed.pattern {
        true => format!("pattern: the value must hold {} (profile {})", fixed.json, profile.url),
        false => format!("fixed: the value must be {} (profile {})", fixed.json, profile.url),
    }
}

/// Whether `item` (of the type `suffix` names, for a choice) meets every discriminator of
/// `slice`.
fn in_slice(slice: &Slice, suffix: Option<&str>, item: &Value) -> bool {
    slice.discriminators.iter().all(|discriminator| match discriminator {
        Discriminator::Type(code) => suffix.is_none_or(|suffix| is_type_suffix(suffix, code)),
        Discriminator::Value { path, value } => {
            let mut nodes = Vec::new();
            collect(item, path, &mut nodes);
            nodes.into_iter().any(|node| holds(node, value))
        }
    })
}

/// Appends the values at `path` below `node` (arrays flattened).
fn collect<'v>(node: &'v Value, path: &[String], out: &mut Vec<&'v Value>) {
    let Some((first, rest)) = path.split_first() else {
        match node {
            Value::Array(items) => out.extend(items),
            _ => out.push(node),
        }
        return;
    };
    match node {
        Value::Array(items) => items.iter().for_each(|item| collect(item, path, out)),
        Value::Object(object) if first.ends_with("[x]") => {
            for (_, child) in object.iter().filter(|(key, _)| matches_segment(key, first)) {
                collect(child, rest, out);
            }
        }
        Value::Object(object) => {
            if let Some(child) = object.get(first.as_str()) {
                collect(child, rest, out);
            }
        }
        _ => {}
    }
}

/// Whether `value` meets `fixed`: equal to a fixed value, holding all of a pattern.
fn holds(value: &Value, fixed: &Fixed) -> bool {
    let Some(expected) = parsed().get(fixed.json.as_str()) else { return true };
    match fixed.pattern {
        true => contains(value, expected),
        false => value == expected,
    }
}

/// Every fixed and pattern value of the profiles, parsed once, by its JSON text (which the
/// build wrote, so it parses).
fn parsed() -> &'static HashMap<&'static str, Value> {
    static PARSED: OnceLock<HashMap<&'static str, Value>> = OnceLock::new();
    PARSED.get_or_init(|| {
        let profiles = crate::Definitions::get().profiles();
        let constraints = profiles.iter().flat_map(|p| &p.constraints).filter_map(|c| c.value.as_ref());
        let slices = profiles.iter().flat_map(|p| &p.slicings).flat_map(|s| &s.slices);
        let discriminators = slices.clone().flat_map(|slice| &slice.discriminators).filter_map(|d| match d {
            Discriminator::Value { value, .. } => Some(value),
            Discriminator::Type(_) => None,
        });
        let values = slices.flat_map(|slice| slice.values.iter().map(|(_, fixed)| fixed));
        constraints
            .chain(discriminators)
            .chain(values)
            .filter_map(|fixed| Some((fixed.json.as_str(), serde_json::from_str(&fixed.json).ok()?)))
            .collect()
    })
}

/// Whether `value` holds everything `pattern` holds: every member of an object (recursively),
/// a match for every item of an array, and equal primitives.
fn contains(value: &Value, pattern: &Value) -> bool {
    match (value, pattern) {
        (Value::Object(value), Value::Object(pattern)) => {
            pattern.iter().all(|(key, wanted)| value.get(key).is_some_and(|found| contains(found, wanted)))
        }
        (Value::Array(values), Value::Array(patterns)) => {
            patterns.iter().all(|wanted| values.iter().any(|found| contains(found, wanted)))
        }
        _ => value == pattern,
    }
}

#[cfg(test)]
mod tests {
    use crate::validation::tests::{keyed, keyed_errors};
    use serde_json::{Value, json};

    const US_CORE: &str = "http://hl7.org/fhir/us/core/StructureDefinition/";

    fn body_weight() -> Value {
        json!({"resourceType": "Observation", "meta": {"profile": [format!("{US_CORE}us-core-body-weight")]},
            "status": "final", "subject": {"reference": "Patient/1"}, "effectiveDateTime": "2024-01-01",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
            "valueQuantity": {"value": 70, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}})
    }

    #[test]
    fn a_slice_takes_the_values_its_discriminators_select() {
        assert_eq!(keyed_errors(&body_weight()), []);
        // VSCat (1..1) is selected by coding.code and coding.system: a laboratory category is no vital sign.
        let mut no_vital_signs = body_weight();
        no_vital_signs["category"][0]["coding"][0]["code"] = "laboratory".into();
        assert_eq!(keyed_errors(&no_vital_signs), keyed(&[("slice", "Observation.category")]));
        // Another category besides it is allowed (the slicing is open).
        let mut two = body_weight();
        two["category"].as_array_mut().expect("array").push(json!({"text": "other"}));
        assert_eq!(keyed_errors(&two), []);
    }

    #[test]
    fn patterns_and_fixed_values_hold() {
        let mut wrong_code = body_weight();
        wrong_code["code"]["coding"][0]["code"] = "8302-2".into();
        assert_eq!(keyed_errors(&wrong_code), keyed(&[("pattern", "Observation.code")]));
        // A pattern may be part of more: another coding beside it is fine.
        let mut more = body_weight();
        more["code"]["coding"]
            .as_array_mut()
            .expect("array")
            .push(json!({"system": "http://snomed.info/sct", "code": "27113001"}));
        more["code"]["text"] = "weight".into();
        assert_eq!(keyed_errors(&more), []);
        // The valueQuantity slice fixes the unit system.
        let mut pounds = body_weight();
        pounds["valueQuantity"]["system"] = "http://example.org/units".into();
        assert_eq!(keyed_errors(&pounds), keyed(&[("fixed", "Observation.valueQuantity")]));
    }

    #[test]
    fn a_closed_slicing_takes_nothing_outside_its_slices() {
        let status = json!({"resourceType": "Observation", "status": "final",
            "meta": {"profile": [format!("{US_CORE}us-core-observation-pregnancystatus")]},
            "subject": {"reference": "Patient/1"}, "effectiveDateTime": "2024-01-01",
            "code": {"coding": [{"system": "http://loinc.org", "code": "82810-3"}]},
            "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "77386006"}]}});
        assert_eq!(keyed_errors(&status), []);
        let mut period = status.clone();
        period.as_object_mut().expect("object").remove("effectiveDateTime");
        period["effectivePeriod"] = json!({"start": "2024-01-01"});
        let found = keyed_errors(&period);
        assert!(found.contains(&("slice".to_owned(), "Observation.effectivePeriod".to_owned())), "{found:?}");
    }

    #[test]
    fn extension_slices_count_by_url() {
        let race = |text: &str| json!({"url": format!("{US_CORE}us-core-race"), "extension": [{"url": "text", "valueString": text}]});
        let patient = |extensions: Value| {
            json!({"resourceType": "Patient", "meta": {"profile": [format!("{US_CORE}us-core-patient")]},
                "identifier": [{"system": "http://hospital.example/mrn", "value": "1"}],
                "name": [{"family": "Shaw"}], "gender": "female", "extension": extensions})
        };
        assert_eq!(keyed_errors(&patient(json!([race("White")]))), []);
        assert_eq!(
            keyed_errors(&patient(json!([race("White"), race("Asian")]))),
            keyed(&[("slice", "Patient.extension")])
        );
    }
}
