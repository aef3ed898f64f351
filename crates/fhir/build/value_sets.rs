//! Build step: expands the value sets of `required` bindings from the packages' ValueSets and
//! CodeSystems. A value set that needs anything the packages cannot answer (a filter, a code
//! system that is not in the packages or only a fragment of it) is marked not checkable, so the
//! validator never reports a code it cannot judge.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;

use crate::model::{SystemCodes, ValueSet};
use crate::{Package, strip_version};

/// Codes per system.
type Codes = BTreeMap<String, BTreeSet<String>>;

/// Imports deeper than this are treated as a cycle.
const MAX_IMPORT_DEPTH: u32 = 16;

/// The value set URLs bindings refer to, numbered in order of first use.
#[derive(Default)]
pub(crate) struct Bindings {
    urls: Vec<String>,
    index: HashMap<String, u32>,
}

impl Bindings {
    /// The number of `url`, adding it if new.
    pub(crate) fn intern(&mut self, url: &str) -> u32 {
        if let Some(index) = self.index.get(url) {
            return *index;
        }
        let index = self.urls.len() as u32;
        self.urls.push(url.to_owned());
        self.index.insert(url.to_owned(), index);
        index
    }
}

/// ValueSets and CodeSystems of all packages by URL. US Core 6.1.0 and 7.0.0 publish the same
/// URLs with different content, so every version is kept and a value set is the union of them.
struct Terminology<'a> {
    value_sets: HashMap<&'a str, Vec<&'a Value>>,
    code_systems: HashMap<&'a str, Vec<&'a Value>>,
}

/// Expands every bound value set, in binding order.
pub(crate) fn expand_all(bindings: &Bindings, packages: &[&Package]) -> Vec<ValueSet> {
    let mut terminology = Terminology { value_sets: HashMap::new(), code_systems: HashMap::new() };
    for package in packages {
        for resource in &package.resources {
            let Some(url) = resource["url"].as_str() else {
                continue;
            };
            match resource["resourceType"].as_str() {
                Some("ValueSet") => terminology.value_sets.entry(url).or_default().push(resource),
                Some("CodeSystem") => terminology.code_systems.entry(url).or_default().push(resource),
                _ => {}
            }
        }
    }
    bindings
        .urls
        .iter()
        .map(|url| ValueSet { url: url.clone(), expansion: terminology.expand(url, 0).map(into_model) })
        .collect()
}

fn into_model(codes: Codes) -> Vec<SystemCodes> {
    codes.into_iter().map(|(system, codes)| SystemCodes { system, codes: codes.into_iter().collect() }).collect()
}

impl Terminology<'_> {
    fn expand(&self, url: &str, depth: u32) -> Option<Codes> {
        if depth > MAX_IMPORT_DEPTH {
            return None;
        }
        let mut codes = Codes::new();
        for value_set in self.value_sets.get(strip_version(url))? {
            for (system, set) in self.expand_one(value_set, depth)? {
                codes.entry(system).or_default().extend(set);
            }
        }
        Some(codes)
    }

    fn expand_one(&self, value_set: &Value, depth: u32) -> Option<Codes> {
        let compose = &value_set["compose"];
        if compose.is_null() {
            return expansion_contains(&value_set["expansion"]["contains"]);
        }
        let mut codes = Codes::new();
        for include in compose["include"].as_array()? {
            for (system, set) in self.include(include, depth)? {
                codes.entry(system).or_default().extend(set);
            }
        }
        for exclude in compose["exclude"].as_array().into_iter().flatten() {
            // An exclude we cannot evaluate leaves a superset, which can only accept more codes.
            if let Some(excluded) = self.include(exclude, depth) {
                for (system, set) in excluded {
                    if let Some(kept) = codes.get_mut(&system) {
                        kept.retain(|code| !set.contains(code));
                    }
                }
            }
        }
        Some(codes)
    }

    /// The codes one `include` (or `exclude`) selects.
    fn include(&self, include: &Value, depth: u32) -> Option<Codes> {
        if include["filter"].as_array().is_some_and(|f| !f.is_empty()) {
            return None;
        }
        let from_system = match include["system"].as_str() {
            Some(system) => Some(self.system_codes(system, include)?),
            None => None,
        };
        let mut from_value_sets: Option<Codes> = None;
        for imported in include["valueSet"].as_array().into_iter().flatten() {
            let imported = self.expand(imported.as_str()?, depth + 1)?;
            from_value_sets = Some(match from_value_sets {
                None => imported,
                Some(previous) => intersect(previous, &imported),
            });
        }
        match (from_system, from_value_sets) {
            (Some(system), Some(imported)) => Some(intersect(system, &imported)),
            (Some(codes), None) | (None, Some(codes)) => Some(codes),
            (None, None) => None,
        }
    }

    /// The codes of `system` an include selects: its `concept` list, or the whole code system.
    fn system_codes(&self, system: &str, include: &Value) -> Option<Codes> {
        let mut set = BTreeSet::new();
        if let Some(concepts) = include["concept"].as_array() {
            set.extend(concepts.iter().filter_map(|c| c["code"].as_str()).map(str::to_owned));
        } else {
            for code_system in self.code_systems.get(strip_version(system))? {
                if code_system["content"] != "complete" {
                    return None;
                }
                collect_concepts(&code_system["concept"], &mut set);
            }
        }
        Some(Codes::from([(strip_version(system).to_owned(), set)]))
    }
}

/// All codes of a CodeSystem concept list, nested concepts included.
fn collect_concepts(concepts: &Value, set: &mut BTreeSet<String>) {
    for concept in concepts.as_array().into_iter().flatten() {
        if let Some(code) = concept["code"].as_str() {
            set.insert(code.to_owned());
        }
        collect_concepts(&concept["concept"], set);
    }
}

/// Codes of a precomputed `ValueSet.expansion.contains` tree.
fn expansion_contains(contains: &Value) -> Option<Codes> {
    let mut codes = Codes::new();
    let mut stack = vec![contains.as_array()?];
    while let Some(items) = stack.pop() {
        for item in items {
            if let (Some(system), Some(code)) = (item["system"].as_str(), item["code"].as_str()) {
                codes.entry(system.to_owned()).or_default().insert(code.to_owned());
            }
            if let Some(nested) = item["contains"].as_array() {
                stack.push(nested);
            }
        }
    }
    Some(codes)
}

fn intersect(mut left: Codes, right: &Codes) -> Codes {
    left.retain(|system, set| match right.get(system) {
        Some(other) => {
            set.retain(|code| other.contains(code));
            true
        }
        None => false,
    });
    left
}
