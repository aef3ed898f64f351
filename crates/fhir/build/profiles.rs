//! Build step: US Core resource profiles into [`Profile`]s holding only what they tighten:
//! minimum and maximum cardinality, `required` bindings the base type does not already check,
//! fixed and pattern values, and slicings (their slices' discriminators, cardinality and
//! fixed and pattern values). A slicing whose discriminators cannot be read from the snapshot
//! (`profile` or `exists` discriminators, paths through `resolve()`) is left out rather than
//! guessed at, as are slices of slices.

use serde_json::Value;

use crate::Package;
use crate::model::{Discriminator, Fixed, Invariant, MANY, Profile, ProfileConstraint, Slice, Slicing};
use crate::types::{Compiled, element_binding, invariants, parse_max, type_codes};
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
    let elements = sd["snapshot"]["element"].as_array().map(Vec::as_slice).unwrap_or_default();
    let invariants = elements
        .iter()
        .filter_map(|element| {
            let id = element["id"].as_str().filter(|id| !id.contains(':'))?;
            let below =
                id.split_once('.').map_or(Vec::new(), |(_, below)| below.split('.').map(str::to_owned).collect());
            Some(own_invariants(element).into_iter().map(move |invariant| (below.clone(), invariant)))
        })
        .flatten()
        .collect();
    Profile { url: url.to_owned(), type_name, constraints, slicings: slicings(elements), invariants }
}

/// The invariants a profile adds to `element`: those the base definitions (whose sources are
/// R4's StructureDefinitions) do not state.
fn own_invariants(element: &Value) -> Vec<Invariant> {
    invariants(element, |constraint| {
        constraint["source"].as_str().is_none_or(|source| !source.starts_with(R4_DEFINITIONS))
    })
}

/// Where R4's own StructureDefinitions live.
const R4_DEFINITIONS: &str = "http://hl7.org/fhir/StructureDefinition/";

/// The slicings of a profile's snapshot `elements`.
fn slicings(elements: &[Value]) -> Vec<Slicing> {
    let mut slicings = Vec::new();
    for element in elements {
        let (Some(id), Some(slicing)) = (element["id"].as_str(), element["slicing"].as_object()) else { continue };
        let Some((_, below_type)) = id.split_once('.').filter(|_| !id.contains(':')) else { continue };
        let discriminators: Vec<(&str, &str)> = slicing["discriminator"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| Some((d["type"].as_str()?, d["path"].as_str()?)))
            .collect();
        let slices: Option<Vec<Slice>> = elements
            .iter()
            .filter_map(|slice| {
                let name = slice["id"].as_str()?.strip_prefix(id)?.strip_prefix(':')?;
                (!name.contains(['.', ':', '/'])).then_some((slice, name))
            })
            .map(|(slice, name)| compile_slice(elements, &format!("{id}:{name}"), name, slice, &discriminators))
            .collect();
        if let Some(slices) = slices.filter(|slices| !slices.is_empty()) {
            let path = below_type.split('.').map(str::to_owned).collect();
            slicings.push(Slicing { path, closed: slicing["rules"] == "closed", slices });
        }
    }
    slicings
}

/// One slice (`slice_id` = `Observation.category:us-core`); `None` when a discriminator cannot
/// be read.
fn compile_slice(
    elements: &[Value],
    slice_id: &str,
    name: &str,
    slice: &Value,
    discriminators: &[(&str, &str)],
) -> Option<Slice> {
    let by_id = |id: &str| elements.iter().find(|element| element["id"] == id);
    let mut compiled = Vec::new();
    for (kind, path) in discriminators {
        let segments: Vec<String> = match *path {
            "$this" => Vec::new(),
            path if path.contains('(') => return None,
            path => path.split('.').map(str::to_owned).collect(),
        };
        compiled.push(match *kind {
            "value" | "pattern" => {
                let at = if segments.is_empty() { slice_id.to_owned() } else { format!("{slice_id}.{path}") };
                let value = by_id(&at).and_then(fixed_value).or_else(|| {
                    // An extension slice names its extension by profile; its url is that profile.
                    let profile = slice["type"][0]["profile"][0].as_str().filter(|_| *path == "url")?;
                    Some(Fixed { pattern: false, json: Value::from(profile).to_string() })
                })?;
                Discriminator::Value { path: segments, value }
            }
            "type" if segments.is_empty() => Discriminator::Type(slice["type"][0]["code"].as_str()?.to_owned()),
            _ => return None,
        });
    }
    let values = elements
        .iter()
        .filter_map(|element| {
            let below = element["id"].as_str()?.strip_prefix(slice_id)?;
            let below = if below.is_empty() { below } else { below.strip_prefix('.')? };
            Some((relative_path(below)?, fixed_value(element)?))
        })
        .collect();
    Some(Slice {
        name: name.to_owned(),
        min: slice["min"].as_u64().unwrap_or(0) as u32,
        max: parse_max(slice["max"].as_str().unwrap_or("*")),
        discriminators: compiled,
        values,
        invariants: own_invariants(slice),
    })
}

/// The path segments of an element id below a slice (`value[x]:valueQuantity.code` →
/// `valueQuantity`, `code`); `None` through a named slice, which is left out.
fn relative_path(below: &str) -> Option<Vec<String>> {
    if below.is_empty() {
        return Some(Vec::new());
    }
    below
        .split('.')
        .map(|segment| match segment.split_once(':') {
            None => Some(segment.to_owned()),
            Some((choice, slice)) if choice.ends_with("[x]") => Some(slice.to_owned()),
            Some(_) => None,
        })
        .collect()
}

/// The `fixed[x]` or `pattern[x]` value of an element definition.
fn fixed_value(element: &Value) -> Option<Fixed> {
    element.as_object()?.iter().find_map(|(key, value)| {
        let pattern = key.starts_with("pattern");
        (pattern || key.starts_with("fixed")).then(|| Fixed { pattern, json: value.to_string() })
    })
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
    let value = fixed_value(element);
    if min == 0 && max == MANY && binding.is_none() && value.is_none() {
        return None;
    }
    Some(ProfileConstraint {
        path: below_type.split('.').map(str::to_owned).collect(),
        min,
        max,
        types: type_codes(element),
        binding: binding.map(|url| bindings.intern(url)),
        value,
    })
}
