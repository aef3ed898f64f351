//! Evaluating a search parameter's FHIRPath expression against a resource.
//!
//! Many R4 expressions are unions over several resource types
//! (`AllergyIntolerance.patient | CarePlan.subject.where(…) | …`). Each parameter's
//! expression is therefore compiled once per resource type, keeping only the union branches
//! that start at that type, so indexing an Observation never evaluates CarePlan paths.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::Value;

use crate::definitions::SearchParameter;
use crate::fhirpath::{Expression, Item};

/// The values a parameter's `expression` (see [`compiled`]) reaches in `resource`: JSON nodes
/// of the resource, or computed values (strings, numbers, booleans) turned into JSON.
pub(crate) fn evaluate<'a>(expression: &'a Expression, resource: &'a Value) -> Vec<std::borrow::Cow<'a, Value>> {
    let Ok(items) = expression.evaluate(resource) else { return Vec::new() };
    items.into_iter().filter_map(item_value).collect()
}

fn item_value(item: Item<'_>) -> Option<std::borrow::Cow<'_, Value>> {
    use std::borrow::Cow;
    match item {
        Item::Node(node) => Some(Cow::Borrowed(node.json())),
        Item::Boolean(flag) => Some(Cow::Owned(Value::Bool(flag))),
        Item::String(text) => Some(Cow::Owned(Value::String(text.into_owned()))),
        Item::Integer(number) => Some(Cow::Owned(Value::from(number))),
        other => serde_json::from_str(&other.to_string()).ok().map(Cow::Owned),
    }
}

/// The values `expression` (relative to `focus`, a node of `resource`) reaches: the components
/// of a composite parameter, evaluated on each node the composite's own expression found.
pub(crate) fn evaluate_relative<'a>(
    expression: &'a Expression,
    focus: &'a Value,
    resource: &'a Value,
) -> Vec<std::borrow::Cow<'a, Value>> {
    let context = crate::fhirpath::Context::new(resource);
    let Ok(items) = expression.evaluate_with(focus, &context) else { return Vec::new() };
    items.into_iter().filter_map(item_value).collect()
}

/// The official composite components' expressions, by text (see [`compiled_text`]).
static COMPONENTS: Cache<String> = OnceLock::new();

/// The official parameters' expressions, by resource type and expression text (see [`compiled`]).
static EXPRESSIONS: Cache<(String, String)> = OnceLock::new();

/// A process-wide cache of compiled expressions (`None`: the text does not compile).
type Cache<Key> = OnceLock<Mutex<HashMap<Key, Option<Arc<Expression>>>>>;

/// The expression texts the process-wide caches hold (for tests to show what they keep).
#[cfg(test)]
pub(crate) fn cached_texts() -> Vec<String> {
    let mut texts = Vec::new();
    if let Some(Ok(components)) = COMPONENTS.get().map(Mutex::lock) {
        texts.extend(components.keys().cloned());
    }
    if let Some(Ok(expressions)) = EXPRESSIONS.get().map(Mutex::lock) {
        texts.extend(expressions.keys().map(|(_, text)| text.clone()));
    }
    texts
}

/// An official composite component's expression `text`, compiled once per process (the
/// definitions name a bounded set of them).
pub(crate) fn compiled_text(text: &str) -> Option<Arc<Expression>> {
    let cache = COMPONENTS.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(found) = cache.lock().ok().and_then(|cache| cache.get(text).cloned()) {
        return found;
    }
    let expression = Expression::parse(text).ok().map(Arc::new);
    if let Ok(mut cache) = cache.lock() {
        cache.insert(text.to_owned(), expression.clone());
    }
    expression
}

/// The expression of the official `parameter` restricted to `resource_type`, compiled once per
/// process (the official definitions are a bounded set); `None` when no branch applies or the
/// expression does not parse. Custom parameters go through [`compile`] instead, so that
/// nothing of them outlives the registry that uses them.
pub(crate) fn compiled(resource_type: &str, parameter: &'static SearchParameter) -> Option<Arc<Expression>> {
    let cache = EXPRESSIONS.get_or_init(|| Mutex::new(HashMap::new()));
    // Keyed by the expression text, which names what is compiled whatever the definitions hold.
    let key = (resource_type.to_owned(), parameter.expression.clone().unwrap_or_default());
    if let Some(found) = cache.lock().ok().and_then(|cache| cache.get(&key).cloned()) {
        return found;
    }
    let expression = compile(resource_type, parameter);
    if let Ok(mut cache) = cache.lock() {
        cache.insert(key, expression.clone());
    }
    expression
}

/// The expression of `parameter` restricted to `resource_type`, compiled afresh (see
/// [`compiled`] for the cached official ones).
pub(crate) fn compile(resource_type: &str, parameter: &SearchParameter) -> Option<Arc<Expression>> {
    let text = restrict(parameter.expression.as_deref()?, resource_type)?;
    Expression::parse(&text).ok().map(Arc::new)
}

/// The union branches of `expression` that start at `resource_type` (or at `Resource` /
/// `DomainResource`), joined again; `None` when there are none.
fn restrict(expression: &str, resource_type: &str) -> Option<String> {
    let branches: Vec<&str> = split_union(expression)
        .into_iter()
        .filter(|branch| {
            let start = branch.trim().trim_start_matches('(').trim_start();
            let root = start.split(|c: char| !c.is_ascii_alphanumeric()).next().unwrap_or("");
            root == resource_type || root == "Resource" || root == "DomainResource"
        })
        .collect();
    (!branches.is_empty()).then(|| branches.iter().map(|branch| branch.trim()).collect::<Vec<_>>().join(" | "))
}

/// Splits on `|` outside parentheses and string literals.
fn split_union(expression: &str) -> Vec<&str> {
    let mut branches = Vec::new();
    let (mut depth, mut quoted, mut start) = (0usize, false, 0);
    let mut previous = '\0';
    for (position, character) in expression.char_indices() {
        match character {
            '\'' if previous != '\\' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth = depth.saturating_sub(1),
            '|' if !quoted && depth == 0 => {
                branches.push(&expression[start..position]);
                start = position + 1;
            }
            _ => {}
        }
        previous = character;
    }
    branches.push(&expression[start..]);
    branches
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every official search parameter, on every resource of the R4 examples package, stays
    /// far inside the FHIRPath work budget: a hundredth of it is plenty.
    #[test]
    fn official_parameters_on_the_r4_examples_fit_a_fraction_of_the_work_budget() {
        use std::io::Read;
        let budget = crate::fhirpath::DEFAULT_WORK_BUDGET / 100;
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../data/packages/hl7.fhir.r4.examples-4.0.1.tgz");
        let file = std::fs::File::open(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
        let definitions = crate::Definitions::get();
        let (mut evaluated, mut over) = (0, Vec::new());
        for entry in archive.entries().unwrap_or_else(|error| panic!("{error}")) {
            let mut entry = entry.unwrap_or_else(|error| panic!("{error}"));
            let name = entry.path().map(|path| path.to_string_lossy().into_owned()).unwrap_or_default();
            if !name.ends_with(".json") || name.ends_with("package.json") || name.ends_with(".index.json") {
                continue;
            }
            let mut text = Vec::new();
            entry.read_to_end(&mut text).unwrap_or_else(|error| panic!("{name}: {error}"));
            let text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&text);
            let Ok(resource) = serde_json::from_slice::<Value>(text) else { continue };
            let Some(resource_type) = resource.get("resourceType").and_then(Value::as_str) else { continue };
            for parameter in definitions.search_parameters(resource_type) {
                let Some(expression) = compiled(resource_type, parameter) else { continue };
                evaluated += 1;
                let context = crate::fhirpath::Context::new(&resource).with_work_budget(budget);
                if let Err(error) = expression.evaluate_with(&resource, &context)
                    && error.is_over_budget()
                {
                    over.push(format!("{name} {}: {error}", parameter.url));
                }
            }
        }
        assert!(evaluated > 10_000, "only {evaluated} evaluations");
        assert!(over.is_empty(), "{} over a budget of {budget}:\n{}", over.len(), over.join("\n"));
    }

    #[test]
    fn keeps_only_the_branches_of_the_type() {
        let expression = "AllergyIntolerance.patient | CarePlan.subject.where(resolve() is Patient) | (Observation.value as Quantity)";
        assert_eq!(restrict(expression, "CarePlan").as_deref(), Some("CarePlan.subject.where(resolve() is Patient)"));
        assert_eq!(restrict(expression, "Observation").as_deref(), Some("(Observation.value as Quantity)"));
        assert_eq!(restrict(expression, "Patient"), None);
        assert_eq!(split_union("a.where(b | c) | 'x|y'"), vec!["a.where(b | c) ", " 'x|y'"]);
    }
}
