//! Build step: US Core resource profiles into [`Profile`]s holding only what they tighten:
//! minimum and maximum cardinality and `required` bindings the base type does not already
//! check. Slices (element ids with `:`), fixed and pattern values are left out.

use serde_json::Value;

use crate::Package;
use crate::model::{MANY, Profile, ProfileConstraint};
use crate::types::{Compiled, element_binding, parse_max, type_codes};
use crate::value_sets::Bindings;

/// Compiles the resource profiles of the US Core packages; the first package wins when two
/// publish the same URL.
pub(crate) fn compile(packages: &[Package], base: &Compiled, bindings: &mut Bindings) -> Vec<Profile> {
    let mut profiles: Vec<Profile> = Vec::new();
    for package in packages {
        for sd in package.of_type("StructureDefinition") {
            if sd["kind"] != "resource" || sd["derivation"] != "constraint" {
                continue;
            }
            let url = sd["url"].as_str().expect("profile url");
            if profiles.iter().any(|p| p.url == url) {
                continue;
            }
            profiles.push(compile_profile(sd, url, base, bindings));
        }
    }
    profiles.sort_by(|a, b| a.url.cmp(&b.url));
    profiles
}

fn compile_profile(sd: &Value, url: &str, base: &Compiled, bindings: &mut Bindings) -> Profile {
    let type_name = sd["type"].as_str().expect("profile type").to_owned();
    let mut constraints = Vec::new();
    for element in sd["snapshot"]["element"].as_array().into_iter().flatten() {
        let (Some(id), Some(path)) = (element["id"].as_str(), element["path"].as_str()) else {
            continue;
        };
        let Some((_, below_type)) = path.split_once('.') else {
            continue;
        };
        if id.contains(':') {
            continue;
        }
        if let Some(constraint) = constraint(element, below_type, base, bindings) {
            constraints.push(constraint);
        }
    }
    Profile { url: url.to_owned(), type_name, constraints }
}

/// The constraint `element` adds to its base definition, if any.
fn constraint(
    element: &Value,
    below_type: &str,
    base: &Compiled,
    bindings: &mut Bindings,
) -> Option<ProfileConstraint> {
    let min = element["min"].as_u64().unwrap_or(0) as u32;
    let max = parse_max(element["max"].as_str().unwrap_or("*"));
    let base_min = element["base"]["min"].as_u64().unwrap_or(0) as u32;
    let base_max = parse_max(element["base"]["max"].as_str().unwrap_or("*"));
    let base_path = element["base"]["path"].as_str().unwrap_or_default();
    let binding =
        element_binding(element).filter(|url| base.base_bindings.get(base_path).is_none_or(|base_url| base_url != url));
    let min = if min > base_min { min } else { 0 };
    let max = if max < base_max { max } else { MANY };
    if min == 0 && max == MANY && binding.is_none() {
        return None;
    }
    Some(ProfileConstraint {
        path: below_type.split('.').map(str::to_owned).collect(),
        min,
        max,
        types: type_codes(element),
        binding: binding.map(|url| bindings.intern(url)),
    })
}
