//! Extensions checked against their definitions (R4 core and US Core): used only where their
//! context allows (`ext-context`; a warning for R4's own extensions, see [`R4_EXTENSIONS`]), with a value of an allowed type when they take one
//! (`ext-value`), and, for complex extensions, with their parts in number and shape
//! (`ext-part`). Extensions the definitions do not know are checked by structure only.

use serde_json::{Map, Value};

use crate::definitions::{ExtensionDef, TypeDef};
use crate::fhirpath::is_fhir_type;
use crate::outcome::{IssueType, Severity};
use crate::validation::path::Path;
use crate::validation::{Site, Validator, is_type_suffix};

impl<'d> Validator<'d> {
    /// Checks each extension of `items` (an `extension` or `modifierExtension` array) held by
    /// the element being walked.
    pub(crate) fn extensions(&mut self, items: &Value, path: &Path<'_>) {
        let Some(items) = items.as_array() else { return };
        for (index, item) in items.iter().enumerate() {
            let Some(object) = item.as_object() else { continue };
            let Some(url) = object.get("url").and_then(Value::as_str) else { continue };
            let Some(definition) = self.definitions.extension(url.split('|').next().unwrap_or(url)) else {
                continue;
            };
            let at = path.index(index);
            if let Some(&(holder, type_code)) = self.holders.last()
                && !allowed_on(definition, holder, type_code)
            {
                let here = element_path(holder).unwrap_or_else(|| type_code.to_owned());
                let allowed = definition.contexts.join(", ");
                let message = format!("ext-context: the extension {url} may be used on {allowed}, not on {here}");
                // R4's own extensions had their contexts widened since (the extensions pack the
                // official validator loads lets `capabilitystatement-expectation` on a
                // SearchParameter): outside R4's contexts they are a warning, not an error.
                match definition.url.starts_with(R4_EXTENSIONS) {
                    true => self.report(Severity::Warning, IssueType::Extension, &at, message),
                    false => self.error(IssueType::Extension, &at, message),
                }
            }
            let value = Shape { min: definition.value_min, max: definition.value_max, types: &definition.value_types };
            self.extension_value(object, url, value, &at);
            self.extension_parts(object, definition, &at);
        }
    }

    /// Checks the `value[x]` of the extension `object` against `shape`.
    fn extension_value(&mut self, object: &Map<String, Value>, url: &str, shape: Shape<'_>, path: &Path<'_>) {
        let value = object.keys().find_map(|key| key.strip_prefix("value").filter(|suffix| !suffix.is_empty()));
        match value {
            None if shape.min > 0 => {
                self.error(IssueType::Required, path, format!("ext-value: the extension {url} needs a value"));
            }
            Some(_) if shape.max == 0 => {
                let message = format!("ext-value: the extension {url} takes no value, only nested extensions");
                self.error(IssueType::Structure, path, message);
            }
            Some(suffix) if !shape.types.is_empty() && !shape.types.iter().any(|ty| is_type_suffix(suffix, ty)) => {
                let allowed = shape.types.join(", ");
                let message = format!("ext-value: the value of the extension {url} must be one of {allowed}");
                self.error(IssueType::Structure, &path.key(&format!("value{suffix}")), message);
            }
            _ => {}
        }
    }

    /// Checks the nested extensions of the extension `object`: none for a simple extension,
    /// and each part of a complex one in number and shape.
    fn extension_parts(&mut self, object: &Map<String, Value>, definition: &ExtensionDef, path: &Path<'_>) {
        let nested = object.get("extension").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        if definition.extensions_max == 0 && !nested.is_empty() {
            let message = format!("ext-part: the extension {} has no nested extensions", definition.url);
            return self.error(IssueType::Structure, &path.key("extension"), message);
        }
        for part in &definition.parts {
            let mut count = 0;
            for (index, item) in nested.iter().enumerate() {
                let Some(item) =
                    item.as_object().filter(|item| item.get("url") == Some(&Value::from(part.url.as_str())))
                else {
                    continue;
                };
                count += 1;
                let shape = Shape { min: part.value_min, max: part.value_max, types: &part.value_types };
                let at = path.key("extension");
                self.extension_value(item, &part.url, shape, &at.index(index));
            }
            if count < part.min || count > part.max {
                let max = if part.max == u32::MAX { "*".to_owned() } else { part.max.to_string() };
                let message = format!(
                    "ext-part: the extension {} takes {}..{max} '{}' parts, found {count}",
                    definition.url, part.min, part.url
                );
                self.error(IssueType::Structure, path, message);
            }
        }
    }
}

/// Where R4's own extension definitions live.
const R4_EXTENSIONS: &str = "http://hl7.org/fhir/StructureDefinition/";

/// The cardinality and types a definition gives a value.
#[derive(Clone, Copy)]
struct Shape<'a> {
    min: u32,
    max: u32,
    types: &'a [String],
}

/// Whether a context of `definition` is the element at `holder`, whose value is a `type_code`:
/// `Element` (anywhere), that type or one it specializes, or the element's path in the type
/// that defines it (`Patient.contact`, `HumanName.family`; a nested `Questionnaire.item` is
/// the path of the `item` it repeats).
fn allowed_on(definition: &ExtensionDef, holder: Site<'_>, type_code: &str) -> bool {
    let mut path = None;
    definition.contexts.iter().any(|context| {
        let context = context.strip_suffix("[x]").unwrap_or(context);
        context == "Element"
            || is_fhir_type(type_code, context)
            || path.get_or_insert_with(|| element_path(holder)).as_deref() == Some(context)
    })
}

/// The path of the element at `site` in the type that defines it (`Patient.contact.name`),
/// following a content reference to the element it repeats.
fn element_path(site: Site<'_>) -> Option<String> {
    let target = site.element.content_reference.unwrap_or(site.index);
    let mut names = Vec::new();
    if !find(site.ty, 0, target, &mut names) {
        return None;
    }
    names.reverse();
    Some(std::iter::once(site.ty.name.as_str()).chain(names).collect::<Vec<_>>().join("."))
}

/// Whether `target` is `index` or below it in the tree of `ty`; pushes the names from
/// `target` up to just below `index`.
fn find<'t>(ty: &'t TypeDef, index: u32, target: u32, names: &mut Vec<&'t str>) -> bool {
    if index == target {
        return true;
    }
    let Some(element) = ty.elements.get(index as usize) else { return false };
    for &child in &element.children {
        if find(ty, child, target, names) {
            names.push(&ty.elements[child as usize].name);
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::Definitions;
    use crate::validation::tests::{keyed, keyed_errors};

    const BIRTH_SEX: &str = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex";
    const RACE: &str = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race";

    #[test]
    fn an_extension_is_used_only_where_its_context_allows() {
        let birth_sex = json!([{"url": BIRTH_SEX, "valueCode": "F"}]);
        assert_eq!(keyed_errors(&json!({"resourceType": "Patient", "extension": birth_sex})), []);
        let observation = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "extension": birth_sex});
        assert_eq!(keyed_errors(&observation), keyed(&[("ext-context", "Observation.extension[0]")]));
        // On a primitive, its context is the element's path in its type (HumanName.family).
        let prefix =
            json!([{"url": "http://hl7.org/fhir/StructureDefinition/humanname-own-prefix", "valueString": "van"}]);
        let on_family =
            json!({"resourceType": "Patient", "name": [{"family": "Dijk", "_family": {"extension": prefix}}]});
        assert_eq!(keyed_errors(&on_family), []);
        let on_given =
            json!({"resourceType": "Patient", "name": [{"given": ["A"], "_given": [{"extension": prefix}]}]});
        // R4's own extensions outside their contexts are warned about (see R4_EXTENSIONS).
        assert_eq!(keyed_errors(&on_given), []);
        let issues = Definitions::get().validate(&on_given);
        let warned = issues.iter().filter(|issue| issue.diagnostics.starts_with("ext-context"));
        let warned: Vec<_> =
            warned.map(|issue| (issue.severity, issue.expression.clone().unwrap_or_default())).collect();
        let at = "Patient.name[0].given[0].extension[0]".to_owned();
        assert_eq!(warned, [(crate::outcome::Severity::Warning, at)]);
        // Extensions the definitions do not know are left to their structure.
        let unknown = json!([{"url": "http://example.org/anything", "valueString": "x"}]);
        assert_eq!(
            keyed_errors(
                &json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "extension": unknown})
            ),
            []
        );
    }

    #[test]
    fn an_extension_holds_the_value_and_parts_its_definition_gives() {
        let patient = |extension: Value| json!({"resourceType": "Patient", "extension": [extension]});
        let wrong_type = patient(json!({"url": BIRTH_SEX, "valueString": "F"}));
        assert_eq!(keyed_errors(&wrong_type), keyed(&[("ext-value", "Patient.extension[0].valueString")]));
        let ombudsman = json!({"url": "ombCategory", "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238", "code": "2106-3"}});
        let no_text = patient(json!({"url": RACE, "extension": [ombudsman]}));
        assert_eq!(keyed_errors(&no_text), keyed(&[("ext-part", "Patient.extension[0]")]));
        let text_as_code =
            patient(json!({"url": RACE, "extension": [ombudsman, {"url": "text", "valueCode": "White"}]}));
        assert_eq!(keyed_errors(&text_as_code), keyed(&[("ext-value", "Patient.extension[0].extension[1].valueCode")]));
        let complete = patient(json!({"url": RACE, "extension": [ombudsman, {"url": "text", "valueString": "White"}]}));
        assert_eq!(keyed_errors(&complete), []);
        let nested_in_simple = patient(json!({"url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
            "extension": [{"url": "city", "valueString": "X"}]}));
        // A simple extension with parts instead of its value: ext-1 holds, and both rules name it.
        let keys: Vec<String> = keyed_errors(&nested_in_simple).into_iter().map(|(key, _)| key).collect();
        assert_eq!(keys, ["ext-value", "ext-part"]);
    }
}
