//! Evaluating a search parameter's expression against a resource, giving the JSON nodes it
//! reaches.
//!
//! This walks the simple path subset of FHIRPath (`Type.a.b`, unions with `|`, `(x as Type)`);
//! parts that need more of FHIRPath (`where(…)`, `resolve()`) are skipped until the FHIRPath
//! engine replaces this walker.

use serde_json::Value;

/// The nodes `expression` reaches in `resource` (a `resource_type`).
pub(crate) fn evaluate<'a>(resource_type: &str, expression: &str, resource: &'a Value) -> Vec<&'a Value> {
    let mut values = Vec::new();
    for part in expression.split('|') {
        collect_path(resource_type, part.trim(), resource, &mut values);
    }
    values
}

/// Walks `part` (one branch of a union) from the resource root, collecting the values reached.
/// A trailing `.where(resolve() is Type)` keeps the references whose target is that type.
fn collect_path<'a>(resource_type: &str, part: &str, resource: &'a Value, out: &mut Vec<&'a Value>) {
    let part = part.trim_start_matches('(').trim_end_matches(')').trim();
    let (part, target) = match part.split_once(".where(resolve() is ") {
        Some((path, target)) => (path, Some(target.trim_end_matches(')').trim())),
        None => (part, None),
    };
    if part.contains('(') {
        return;
    }
    let (path, cast) = match part.split_once(" as ") {
        Some((path, cast)) => (path.trim(), Some(cast.trim())),
        None => (part, None),
    };
    let mut segments = path.split('.');
    match segments.next() {
        Some(root) if root == resource_type || root == "Resource" || root == "DomainResource" => {}
        _ => return,
    }
    let segments: Vec<&str> = segments.collect();
    let start = out.len();
    walk(resource, &segments, cast, out);
    if let Some(target) = target {
        let mut kept = out.split_off(start);
        kept.retain(|node| reference_type(node) == Some(target));
        out.extend(kept);
    }
}

/// The resource type a Reference node points at (`Patient/1` → `Patient`).
fn reference_type(node: &Value) -> Option<&str> {
    let reference = node.get("reference")?.as_str()?;
    crate::search::local_target(reference).map(|(resource_type, _)| resource_type)
}

fn walk<'a>(value: &'a Value, segments: &[&str], cast: Option<&str>, out: &mut Vec<&'a Value>) {
    let Some((first, rest)) = segments.split_first() else {
        out.push(value);
        return;
    };
    match value {
        Value::Array(items) => items.iter().for_each(|item| walk(item, segments, cast, out)),
        Value::Object(map) => {
            let child = if rest.is_empty() {
                match cast {
                    Some(cast) => map.get(&format!("{first}{cast}")),
                    None => map.get(*first).or_else(|| choice_variant(map, first)),
                }
            } else {
                map.get(*first)
            };
            if let Some(child) = child {
                match child {
                    Value::Array(items) => items.iter().for_each(|item| walk(item, rest, None, out)),
                    _ => walk(child, rest, None, out),
                }
            }
        }
        _ => {}
    }
}

/// The `value[x]` style variant of `name`, e.g. `valueCodeableConcept` for `value`.
fn choice_variant<'a>(map: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a Value> {
    map.iter()
        .find(|(key, _)| {
            key.len() > name.len()
                && key.starts_with(name)
                && key[name.len()..].starts_with(|c: char| c.is_ascii_uppercase())
        })
        .map(|(_, value)| value)
}
