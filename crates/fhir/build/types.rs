//! Build step: StructureDefinitions (specializations of kind resource, complex-type and
//! primitive-type) into [`TypeDef`]s with their element trees.

use std::collections::HashMap;

use serde_json::Value;

use crate::model::{Element, Invariant, JsonKind, MANY, TypeDef, TypeKind};
use crate::value_sets::Bindings;
use crate::{Package, strip_version};

/// Prefix of the FHIRPath system types used for primitive values and a few ids.
const SYSTEM_TYPE_PREFIX: &str = "http://hl7.org/fhirpath/System.";
const FHIR_TYPE_EXTENSION: &str = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type";
const REGEX_EXTENSION: &str = "http://hl7.org/fhir/StructureDefinition/regex";

/// The compiled types plus, per element path (`ContactPoint.system`), its required binding URL;
/// profiles use it to leave out bindings the base type already checks.
pub(crate) struct Compiled {
    pub(crate) types: Vec<TypeDef>,
    pub(crate) base_bindings: HashMap<String, String>,
}

/// Compiles every type StructureDefinition of the core package.
pub(crate) fn compile(core: &Package, bindings: &mut Bindings) -> Compiled {
    let mut types = Vec::new();
    let mut base_bindings = HashMap::new();
    for sd in core.of_type("StructureDefinition") {
        let kind = match sd["kind"].as_str() {
            Some("resource") => TypeKind::Resource,
            Some("complex-type") => TypeKind::Complex,
            Some("primitive-type") => TypeKind::Primitive,
            _ => continue,
        };
        if sd["derivation"] == "constraint" || sd["snapshot"]["element"].as_array().is_none() {
            continue;
        }
        types.push(compile_type(sd, kind, bindings, &mut base_bindings));
    }
    types.sort_by(|a, b| a.name.cmp(&b.name));
    inherit_json_kinds(&mut types);
    Compiled { types, base_bindings }
}

/// A primitive that specializes another primitive is written in JSON like its base. R4 4.0.1
/// declares the `value` of `positiveInt` and `unsignedInt` as `System.String`, yet both are
/// integers and JSON numbers; their base type, `integer`, says so.
fn inherit_json_kinds(types: &mut [TypeDef]) {
    for index in 0..types.len() {
        let mut base = types[index].base.clone();
        for _ in 0..8 {
            let Some(base_type) = base.as_deref().and_then(|name| types.iter().find(|t| t.name == name)) else {
                break;
            };
            if base_type.kind != TypeKind::Primitive {
                break;
            }
            let (json, next) = (base_type.json, base_type.base.clone());
            types[index].json = json;
            base = next;
        }
    }
}

fn compile_type(
    sd: &Value,
    kind: TypeKind,
    bindings: &mut Bindings,
    base_bindings: &mut HashMap<String, String>,
) -> TypeDef {
    let name = sd["type"].as_str().expect("StructureDefinition.type").to_owned();
    let mut def = TypeDef {
        name: name.clone(),
        kind,
        is_abstract: sd["abstract"] == true,
        base: sd["baseDefinition"].as_str().and_then(|url| url.rsplit('/').next()).map(str::to_owned),
        json: JsonKind::String,
        regex: None,
        elements: Vec::new(),
    };
    let url = sd["url"].as_str().unwrap_or_default();
    let mut index_by_path: HashMap<String, u32> = HashMap::new();
    let mut content_references = Vec::new();
    let value_path = format!("{name}.value");
    for element in sd["snapshot"]["element"].as_array().into_iter().flatten() {
        let path = element["path"].as_str().expect("element path");
        if element["id"].as_str().is_some_and(|id| id.contains(':')) {
            continue;
        }
        if kind == TypeKind::Primitive && path == value_path {
            (def.json, def.regex) = primitive_value(element);
            continue;
        }
        let index = def.elements.len() as u32;
        let mut compiled = compile_element(element, bindings);
        compiled.invariants = match (index, kind) {
            (0, TypeKind::Primitive) => Vec::new(),
            (0, _) => invariants(element, |_| true),
            _ => invariants(element, |constraint| {
                constraint["key"] != "ele-1" && constraint["source"].as_str().is_none_or(|source| source == url)
            }),
        };
        if let Some(binding) = element_binding(element) {
            base_bindings.insert(path.to_owned(), binding.to_owned());
        }
        if let Some(reference) = element["contentReference"].as_str() {
            content_references.push((index, reference.trim_start_matches('#').to_owned()));
        }
        if let Some((parent, _)) = path.rsplit_once('.') {
            let parent = index_by_path.get(parent).unwrap_or_else(|| panic!("{path}: parent not seen"));
            def.elements[*parent as usize].children.push(index);
        }
        index_by_path.insert(path.to_owned(), index);
        def.elements.push(compiled);
    }
    for (index, target) in content_references {
        let target = index_by_path.get(&target).unwrap_or_else(|| panic!("contentReference {target}"));
        def.elements[index as usize].content_reference = Some(*target);
    }
    def
}

/// The invariants of `element` that `keep` keeps, with their FHIRPath expressions.
pub(crate) fn invariants(element: &Value, keep: impl Fn(&Value) -> bool) -> Vec<Invariant> {
    element["constraint"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|constraint| keep(constraint))
        .filter_map(|constraint| {
            Some(Invariant {
                key: constraint["key"].as_str()?.to_owned(),
                error: constraint["severity"] == "error",
                human: constraint["human"].as_str().unwrap_or_default().to_owned(),
                expression: constraint["expression"].as_str()?.to_owned(),
            })
        })
        .collect()
}

fn compile_element(element: &Value, bindings: &mut Bindings) -> Element {
    let path = element["path"].as_str().expect("element path");
    let last = path.rsplit('.').next().unwrap_or(path);
    let (name, choice) = match last.strip_suffix("[x]") {
        Some(name) => (name, true),
        None => (last, false),
    };
    Element {
        name: name.to_owned(),
        choice,
        min: element["min"].as_u64().unwrap_or(0) as u32,
        max: parse_max(element["max"].as_str().unwrap_or("*")),
        types: type_codes(element),
        children: Vec::new(),
        content_reference: None,
        binding: element_binding(element).map(|url| bindings.intern(url)),
        summary: element["isSummary"].as_bool().unwrap_or(false),
        invariants: Vec::new(),
    }
}

/// `"*"` → [`MANY`], a number → that number.
pub(crate) fn parse_max(max: &str) -> u32 {
    if max == "*" { MANY } else { max.parse().unwrap_or(MANY) }
}

/// The value set URL of a `required` binding, without version.
pub(crate) fn element_binding(element: &Value) -> Option<&str> {
    let binding = &element["binding"];
    if binding["strength"] != "required" {
        return None;
    }
    binding["valueSet"].as_str().map(strip_version)
}

/// The FHIR type codes of an element, resolving FHIRPath system types to the FHIR type named by
/// their `structuredefinition-fhir-type` extension.
pub(crate) fn type_codes(element: &Value) -> Vec<String> {
    let mut codes = Vec::new();
    for ty in element["type"].as_array().into_iter().flatten() {
        let Some(code) = ty["code"].as_str() else {
            continue;
        };
        let code = match code.strip_prefix(SYSTEM_TYPE_PREFIX) {
            // `xhtml.id` lacks the extension; the FHIR primitive of the same name (`System.String`
            // → `string`) is what every other element of that system type declares.
            Some(system) => extension_value(ty, FHIR_TYPE_EXTENSION).map_or_else(|| lower_first(system), str::to_owned),
            None => code.to_owned(),
        };
        if !codes.contains(&code) {
            codes.push(code);
        }
    }
    codes
}

/// The JSON shape and regex of a primitive type's `value` element.
fn primitive_value(element: &Value) -> (JsonKind, Option<String>) {
    let ty = &element["type"][0];
    let json = match ty["code"].as_str().and_then(|c| c.strip_prefix(SYSTEM_TYPE_PREFIX)) {
        Some("Boolean") => JsonKind::Boolean,
        Some("Integer") => JsonKind::Integer,
        Some("Decimal") => JsonKind::Decimal,
        _ => JsonKind::String,
    };
    (json, extension_value(ty, REGEX_EXTENSION).map(str::to_owned))
}

/// The string value (`valueString`, `valueUri`, `valueUrl`) of the extension `url` on `holder`.
fn extension_value<'a>(holder: &'a Value, url: &str) -> Option<&'a str> {
    let extension = holder["extension"].as_array()?.iter().find(|e| e["url"] == url)?;
    ["valueString", "valueUri", "valueUrl"].iter().find_map(|key| extension[*key].as_str())
}

fn lower_first(name: &str) -> String {
    let mut chars = name.chars();
    chars.next().map(|first| first.to_ascii_lowercase().to_string() + chars.as_str()).unwrap_or_default()
}
