//! Build step: the extension definitions of R4 core and US Core (StructureDefinitions of type
//! `Extension` with derivation `constraint`) into [`ExtensionDef`]s: where each may be used,
//! the types and cardinality of its value, and the parts of a complex extension.

use serde_json::Value;

use crate::Package;
use crate::model::{ExtensionDef, ExtensionPart, MANY};
use crate::types::{parse_max, type_codes};

/// Compiles every extension definition; the first package wins when two publish one URL.
pub(crate) fn compile(packages: &[&Package]) -> Vec<ExtensionDef> {
    let mut extensions: Vec<ExtensionDef> = Vec::new();
    for package in packages {
        for sd in package.of_type("StructureDefinition") {
            if sd["type"] != "Extension" || sd["derivation"] != "constraint" {
                continue;
            }
            let Some(url) = sd["url"].as_str() else { continue };
            if !extensions.iter().any(|known| known.url == url) {
                extensions.push(compile_one(sd, url));
            }
        }
    }
    extensions.sort_by(|a, b| a.url.cmp(&b.url));
    extensions
}

fn compile_one(sd: &Value, url: &str) -> ExtensionDef {
    let elements = sd["snapshot"]["element"].as_array().map(Vec::as_slice).unwrap_or_default();
    let by_id = |id: &str| elements.iter().find(|element| element["id"] == id);
    let contexts = sd["context"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|context| context["type"] == "element")
        .filter_map(|context| context["expression"].as_str().map(str::to_owned))
        .collect();
    let mut parts = Vec::new();
    for element in elements {
        let Some(id) = element["id"].as_str() else { continue };
        let Some(slice) = id.strip_prefix("Extension.extension:").filter(|slice| !slice.contains('.')) else {
            continue;
        };
        let prefix = format!("Extension.extension:{slice}");
        let part_url = by_id(&format!("{prefix}.url")).and_then(|e| e["fixedUri"].as_str()).unwrap_or(slice);
        let (value_min, value_max, value_types) = cardinality(by_id(&format!("{prefix}.value[x]")));
        parts.push(ExtensionPart {
            url: part_url.to_owned(),
            min: element["min"].as_u64().unwrap_or(0) as u32,
            max: parse_max(element["max"].as_str().unwrap_or("*")),
            value_min,
            value_max,
            value_types,
        });
    }
    let (value_min, value_max, value_types) = cardinality(by_id("Extension.value[x]"));
    let (_, extensions_max, _) = cardinality(by_id("Extension.extension"));
    ExtensionDef { url: url.to_owned(), contexts, value_min, value_max, value_types, extensions_max, parts }
}

/// The minimum, maximum and types of an element (none: `0..*`, any type).
fn cardinality(element: Option<&Value>) -> (u32, u32, Vec<String>) {
    let Some(element) = element else { return (0, MANY, Vec::new()) };
    let min = element["min"].as_u64().unwrap_or(0) as u32;
    let max = parse_max(element["max"].as_str().unwrap_or("*"));
    (min, max, type_codes(element))
}
