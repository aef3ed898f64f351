//! Token values of a resource, as written to the token index.
//!
//! This evaluates the simple path subset of SearchParameter expressions (`Type.a.b`, unions
//! with `|`, `(x as Type)`); parts that need more of FHIRPath (`where(…)`, `resolve()`) are
//! skipped. The full FHIRPath engine replaces this walker when search arrives.

use serde_json::Value;

use crate::Definitions;
use crate::definitions::SearchParamType;
use crate::search::param_id;

/// One row of the token index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenEntry {
    pub param: i64,
    /// The token's system; `None` when the value has none.
    pub system: Option<String>,
    pub code: String,
}

/// Every token index entry of `resource` (whose type is `resource_type`).
pub fn token_entries(resource_type: &str, resource: &Value) -> Vec<TokenEntry> {
    let mut entries = Vec::new();
    for parameter in Definitions::get().search_parameters(resource_type) {
        if parameter.kind != SearchParamType::Token {
            continue;
        }
        let Some(expression) = &parameter.expression else { continue };
        let param = param_id(&parameter.url);
        for part in expression.split('|') {
            let mut values = Vec::new();
            collect_path(resource_type, part.trim(), resource, &mut values);
            for value in values {
                push_tokens(param, value, &mut entries);
            }
        }
    }
    entries.sort_by(|a, b| (a.param, &a.system, &a.code).cmp(&(b.param, &b.system, &b.code)));
    entries.dedup();
    entries
}

/// Walks `part` (one branch of a union) from the resource root, collecting the values reached.
fn collect_path<'a>(resource_type: &str, part: &str, resource: &'a Value, out: &mut Vec<&'a Value>) {
    let part = part.trim_start_matches('(').trim_end_matches(')').trim();
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
    walk(resource, &segments, cast, out);
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

fn push_tokens(param: i64, value: &Value, entries: &mut Vec<TokenEntry>) {
    match value {
        Value::String(code) => entries.push(TokenEntry { param, system: None, code: code.clone() }),
        Value::Bool(flag) => entries.push(TokenEntry { param, system: None, code: flag.to_string() }),
        Value::Object(map) => {
            if let Some(Value::Array(codings)) = map.get("coding") {
                for coding in codings {
                    push_tokens(param, coding, entries);
                }
                return;
            }
            let code = map.get("code").or_else(|| map.get("value")).and_then(Value::as_str);
            if let Some(code) = code {
                let system = map.get("system").and_then(Value::as_str).map(str::to_owned);
                entries.push(TokenEntry { param, system, code: code.to_owned() });
            }
        }
        _ => {}
    }
}
