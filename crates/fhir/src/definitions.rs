//! The FHIR definitions Ignis knows: types with their element trees, required value sets, US Core
//! profiles, search parameters and compartments.
//!
//! `build.rs` compiles them from the official packages into a postcard blob (the layout is
//! [`model`]); [`Definitions::get`] decodes it once per process and compiles the primitive
//! types' regexes. Nothing here is typed by hand.

mod model;

use std::collections::HashMap;
use std::sync::OnceLock;

use fnv::FnvBuildHasher;
use regex::Regex;

pub(crate) use model::{
    Discriminator, Element, ExtensionDef, Fixed, Invariant, JsonKind, MANY, Model, Profile, ProfileConstraint, Slice,
    Slicing, TypeDef, TypeKind, ValueSet,
};
pub use model::{SearchParamComponent, SearchParamType, SearchParameter};

/// The compiled model, written by `build.rs`.
static ENCODED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/definitions.bin"));

/// All definitions the server uses.
pub struct Definitions {
    model: Model,
    /// The compiled value regex of each entry of `model.types` (same index); `None` for
    /// non-primitive types and primitives without a usable regex.
    regexes: Vec<Option<Regex>>,
    /// The index in `model.types` of each type name: validation and FHIRPath navigation look
    /// types up by name for every element they visit, so this is a hash lookup, not a search.
    type_indexes: HashMap<String, usize, FnvBuildHasher>,
}

impl Definitions {
    /// The process-wide definitions, decoded on first use.
    pub fn get() -> &'static Definitions {
        static DEFINITIONS: OnceLock<Definitions> = OnceLock::new();
        DEFINITIONS.get_or_init(Definitions::decode)
    }

    /// True if `name` is a concrete (non-abstract) R4 resource type.
    pub fn is_resource_type(&self, name: &str) -> bool {
        self.type_def(name).is_some_and(|ty| ty.kind == TypeKind::Resource && !ty.is_abstract)
    }

    /// Concrete resource type names, sorted.
    pub fn resource_types(&self) -> impl Iterator<Item = &str> {
        self.model.types.iter().filter(|ty| ty.kind == TypeKind::Resource && !ty.is_abstract).map(|ty| ty.name.as_str())
    }

    /// Search parameters that apply to `resource_type` (including those on `Resource` and, for
    /// domain resources, `DomainResource`), sorted by code. R4 core and US Core parameters are
    /// distinct definitions (different URLs), so a code can appear more than once.
    pub fn search_parameters(&self, resource_type: &str) -> Vec<&SearchParameter> {
        let ancestry = self.ancestry(resource_type);
        self.model
            .search_parameters
            .iter()
            .filter(|param| param.base.iter().any(|base| ancestry.contains(&base.as_str())))
            .collect()
    }

    /// Canonical URLs of the US Core profiles (6.1.0 and 7.0.0) on `resource_type`, sorted and
    /// without duplicates.
    pub fn profiles_for(&self, resource_type: &str) -> Vec<&str> {
        self.model
            .profiles
            .iter()
            .filter(|profile| profile.type_name == resource_type)
            .map(|profile| profile.url.as_str())
            .collect()
    }

    /// True when the R4 CompartmentDefinitions define a compartment of this type (`Patient`,
    /// `Encounter`, `RelatedPerson`, `Practitioner`, `Device`).
    pub fn is_compartment(&self, compartment: &str) -> bool {
        self.model.compartments.iter().any(|definition| definition.code == compartment)
    }

    /// The search parameter codes that put a `resource_type` resource in a `compartment`
    /// (`Patient`, `Encounter`, `RelatedPerson`, `Practitioner` or `Device`), from the R4
    /// CompartmentDefinitions. Empty when the type is never in that compartment.
    pub fn compartment_params(&self, compartment: &str, resource_type: &str) -> &[String] {
        let Some(definition) = self.model.compartments.iter().find(|c| c.code == compartment) else {
            return &[];
        };
        match definition.resources.binary_search_by(|(name, _)| name.as_str().cmp(resource_type)) {
            Ok(found) => &definition.resources[found].1,
            Err(_) => &[],
        }
    }

    /// The top-level elements of `resource_type` as `(name, is_choice, is_summary, is_mandatory)`,
    /// for shaping `_summary` and `_elements` views.
    pub fn top_level_elements(&self, resource_type: &str) -> Vec<(&str, bool, bool, bool)> {
        let Some(ty) = self.type_def(resource_type) else { return Vec::new() };
        let Some(root) = ty.elements.first() else { return Vec::new() };
        root.children
            .iter()
            .filter_map(|index| ty.elements.get(*index as usize))
            .map(|element| (element.name.as_str(), element.choice, element.summary, element.min > 0))
            .collect()
    }

    /// Every type, sorted by name.
    pub(crate) fn types(&self) -> &[TypeDef] {
        &self.model.types
    }

    /// The type named `name` (a resource, complex datatype or primitive type).
    pub(crate) fn type_def(&self, name: &str) -> Option<&TypeDef> {
        self.type_index(name).map(|index| &self.model.types[index])
    }

    /// The compiled value regex of the primitive type `ty`.
    pub(crate) fn regex(&self, ty: &TypeDef) -> Option<&Regex> {
        self.type_index(&ty.name).and_then(|index| self.regexes[index].as_ref())
    }

    /// Every US Core profile, sorted by URL.
    pub(crate) fn profiles(&self) -> &[Profile] {
        &self.model.profiles
    }

    /// The US Core profile with canonical URL `url` (without `|version`).
    pub(crate) fn profile(&self, url: &str) -> Option<&Profile> {
        let found = self.model.profiles.binary_search_by(|p| p.url.as_str().cmp(url)).ok()?;
        Some(&self.model.profiles[found])
    }

    /// The extension definition with canonical URL `url` (without `|version`).
    pub(crate) fn extension(&self, url: &str) -> Option<&ExtensionDef> {
        let found = self.model.extensions.binary_search_by(|e| e.url.as_str().cmp(url)).ok()?;
        Some(&self.model.extensions[found])
    }

    /// The value set a binding index refers to.
    pub(crate) fn value_set(&self, index: u32) -> Option<&ValueSet> {
        self.model.value_sets.get(index as usize)
    }

    fn type_index(&self, name: &str) -> Option<usize> {
        self.type_indexes.get(name).copied()
    }

    /// `resource_type` and the types it specializes (`DomainResource`, `Resource`).
    fn ancestry<'a>(&'a self, resource_type: &'a str) -> Vec<&'a str> {
        let mut chain = Vec::new();
        let mut current = self.type_def(resource_type);
        while let Some(ty) = current {
            if chain.len() > 8 {
                break;
            }
            chain.push(ty.name.as_str());
            current = ty.base.as_deref().and_then(|base| self.type_def(base));
        }
        chain
    }

    /// Decodes the blob `build.rs` wrote. It is produced by this very build, so a failure is a
    /// build bug, not bad input.
    fn decode() -> Definitions {
        let model: Model = postcard::from_bytes(ENCODED).expect("definitions blob written by build.rs decodes");
        let regexes = model.types.iter().map(|ty| ty.regex.as_deref().and_then(compile_regex)).collect();
        let type_indexes = model.types.iter().enumerate().map(|(index, ty)| (ty.name.clone(), index)).collect();
        Definitions { model, regexes, type_indexes }
    }
}

/// Compiles a primitive type's regex, anchored to the whole value.
///
/// The definitions' regexes follow XML Schema, where `\s` is only space, tab, CR and LF; in the
/// `regex` crate `\s` is Unicode whitespace, which would reject a no-break space inside a
/// `string`. So `\s` and `\S` are rewritten to the XML Schema classes first (nested classes
/// work inside `[...]` too). Every R4 primitive regex then compiles (none uses lookaround);
/// should one ever fail, the type keeps only its JSON-kind and integer-range checks rather than
/// rejecting every value.
fn compile_regex(pattern: &str) -> Option<Regex> {
    Regex::new(&format!("^(?:{})$", xml_schema_whitespace(pattern))).ok()
}

fn xml_schema_whitespace(pattern: &str) -> String {
    let mut translated = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            translated.push(c);
            continue;
        }
        match chars.next() {
            Some('s') => translated.push_str("[ \\t\\n\\r]"),
            Some('S') => translated.push_str("[^ \\t\\n\\r]"),
            Some(other) => {
                translated.push('\\');
                translated.push(other);
            }
            None => translated.push('\\'),
        }
    }
    translated
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_types_are_concrete_and_sorted() {
        let definitions = Definitions::get();
        let types: Vec<&str> = definitions.resource_types().collect();
        assert!(types.contains(&"Patient") && types.contains(&"Bundle") && types.contains(&"Parameters"));
        assert!(!types.contains(&"Resource") && !types.contains(&"DomainResource"));
        assert!(types.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(definitions.is_resource_type("Observation"));
        assert!(!definitions.is_resource_type("HumanName"));
        assert!(!definitions.is_resource_type("string"));
        assert!(!definitions.is_resource_type("DomainResource"));
    }

    #[test]
    fn search_parameters_include_inherited_ones() {
        let definitions = Definitions::get();
        let patient = definitions.search_parameters("Patient");
        let codes: Vec<&str> = patient.iter().map(|p| p.code.as_str()).collect();
        for code in ["_id", "_lastUpdated", "_text", "birthdate", "family", "gender", "name"] {
            assert!(codes.contains(&code), "{code} missing");
        }
        assert!(codes.windows(2).all(|pair| pair[0] <= pair[1]));
        let bundle: Vec<&str> = definitions.search_parameters("Bundle").iter().map(|p| p.code.as_str()).collect();
        assert!(bundle.contains(&"_id") && !bundle.contains(&"_text"), "Bundle is not a DomainResource");
        let observation = definitions.search_parameters("Observation");
        let composite = observation.iter().find(|p| p.code == "code-value-quantity");
        assert!(composite.is_some_and(|p| p.kind == SearchParamType::Composite && p.components.len() == 2));
        assert!(definitions.search_parameters("NoSuchType").is_empty());
    }

    #[test]
    fn us_core_search_parameters_are_present_once() {
        let observation = Definitions::get().search_parameters("Observation");
        let us_core: Vec<&str> =
            observation.iter().map(|p| p.url.as_str()).filter(|url| url.contains("/us/core/")).collect();
        assert!(us_core.contains(&"http://hl7.org/fhir/us/core/SearchParameter/us-core-observation-code"));
        let mut deduplicated = us_core.clone();
        deduplicated.sort();
        deduplicated.dedup();
        assert_eq!(deduplicated.len(), us_core.len());
    }

    #[test]
    fn profiles_for_patient() {
        let profiles = Definitions::get().profiles_for("Patient");
        assert_eq!(profiles, ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"]);
        let observation = Definitions::get().profiles_for("Observation");
        assert!(observation.contains(&"http://hl7.org/fhir/us/core/StructureDefinition/us-core-blood-pressure"));
        assert!(observation.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn patient_compartment() {
        let definitions = Definitions::get();
        assert_eq!(definitions.compartment_params("Patient", "Observation"), ["subject", "performer"]);
        assert_eq!(definitions.compartment_params("Patient", "Patient"), ["link"]);
        assert!(definitions.compartment_params("Patient", "CodeSystem").is_empty());
        assert!(definitions.compartment_params("Nope", "Observation").is_empty());
        for compartment in ["Patient", "Encounter", "RelatedPerson", "Practitioner", "Device"] {
            assert!(definitions.is_compartment(compartment), "{compartment}");
        }
        assert!(!definitions.is_compartment("Observation"));
    }

    #[test]
    fn primitive_regexes_compile() {
        let definitions = Definitions::get();
        for name in ["date", "dateTime", "instant", "time", "id", "uri", "code", "oid", "uuid", "positiveInt"] {
            let ty = definitions.type_def(name).expect(name);
            assert!(definitions.regex(ty).is_some(), "{name} has no usable regex");
        }
        let positive = definitions.regex(definitions.type_def("positiveInt").expect("positiveInt")).expect("regex");
        assert!(positive.is_match("12") && !positive.is_match("0"));
        let string = definitions.regex(definitions.type_def("string").expect("string")).expect("regex");
        assert!(string.is_match("a\u{a0}b") && string.is_match(" ") && !string.is_match(""));
    }
}
