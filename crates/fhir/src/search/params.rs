//! The search parameters of each resource type, as search and indexing use them: one
//! definition per code (R4 core first, US Core filling in codes core lacks), looked up once
//! and cached, with stable integer ids for index rows.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::Definitions;
use crate::definitions::SearchParameter;

/// Which index rows of a parameter: its values, or the extra rows some modifiers search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParamVariant {
    /// The parameter's own values.
    Value,
    /// `:text` on tokens: the display text of codes.
    Text,
    /// `:of-type` on identifiers: `type-code|value`.
    OfType,
    /// `:identifier` on references: the reference's identifier.
    Identifier,
}

/// The search parameters of `resource_type`, one per code, sorted by code.
pub fn params_for(resource_type: &str) -> &'static [&'static SearchParameter] {
    static BY_TYPE: OnceLock<HashMap<String, Vec<&'static SearchParameter>>> = OnceLock::new();
    let by_type = BY_TYPE.get_or_init(|| {
        let definitions = Definitions::get();
        definitions
            .resource_types()
            .map(|name| {
                let mut chosen: Vec<&'static SearchParameter> = Vec::new();
                for parameter in definitions.search_parameters(name) {
                    let is_core = parameter.url.starts_with("http://hl7.org/fhir/SearchParameter/");
                    match chosen.iter_mut().find(|existing| existing.code == parameter.code) {
                        Some(existing)
                            if is_core && !existing.url.starts_with("http://hl7.org/fhir/SearchParameter/") =>
                        {
                            *existing = parameter;
                        }
                        Some(_) => {}
                        None => chosen.push(parameter),
                    }
                }
                chosen.sort_by(|a, b| a.code.cmp(&b.code));
                (name.to_owned(), chosen)
            })
            .collect()
    });
    by_type.get(resource_type).map_or(&[], Vec::as_slice)
}

/// The search parameter `code` of `resource_type`.
pub fn find_param(resource_type: &str, code: &str) -> Option<&'static SearchParameter> {
    let params = params_for(resource_type);
    params.binary_search_by(|parameter| parameter.code.as_str().cmp(code)).ok().map(|found| params[found])
}

/// The stable 63-bit id of a search parameter's index rows, derived from its canonical URL
/// so that index rows stay narrow integers without a registry table to keep in sync across
/// processes.
pub fn param_id(url: &str) -> i64 {
    use std::hash::Hasher;
    let mut hasher = fnv::FnvHasher::default();
    hasher.write(url.as_bytes());
    (hasher.finish() >> 1) as i64
}

/// The id of one variant of a parameter's rows.
pub(crate) fn variant_id(parameter: &SearchParameter, variant: ParamVariant) -> i64 {
    match variant {
        ParamVariant::Value => param_id(&parameter.url),
        ParamVariant::Text => param_id(&format!("{}#text", parameter.url)),
        ParamVariant::OfType => param_id(&format!("{}#of-type", parameter.url)),
        ParamVariant::Identifier => param_id(&format!("{}#identifier", parameter.url)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_definition_per_code_core_first() {
        let params = params_for("Patient");
        let names: Vec<&str> = params.iter().filter(|p| p.code == "name").map(|p| p.url.as_str()).collect();
        assert_eq!(names, ["http://hl7.org/fhir/SearchParameter/Patient-name"]);
        assert!(find_param("Patient", "birthdate").is_some());
        assert!(find_param("Patient", "_id").is_some());
        assert!(find_param("Patient", "nonsense").is_none());
        assert!(find_param("Observation", "patient").is_some());
    }

    #[test]
    fn param_ids_are_stable_and_positive() {
        let id = param_id("http://hl7.org/fhir/SearchParameter/Patient-identifier");
        assert!(id > 0);
        assert_eq!(id, param_id("http://hl7.org/fhir/SearchParameter/Patient-identifier"));
    }
}
