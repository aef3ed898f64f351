//! The FHIRPath invariants of a resource's root element (`dom-2` to `dom-6` on every domain
//! resource, and the resource's own, such as `obs-6` and `obs-7`) and of each data type where
//! a value of it sits (`per-1` on a Period, `ref-1` on a Reference, `txt-1` on a Narrative,
//! `ext-1` on an Extension), evaluated with the FHIRPath engine, `%resource` being the
//! enclosing resource: an `error` invariant that is false rejects the resource with its key
//! and human text; a `warning` one is reported as a warning. `ele-1` (an element has a value
//! or children), stated in FHIRPath over `children()` on every element, is checked natively
//! by the structural walk instead.
//!
//! Each expression is compiled once, on first use, for every resource type. An invariant
//! whose expression the engine cannot parse (a function it does not have) or cannot finish on
//! this resource (past its work budget) is passed over rather than guessed at: a server must
//! not refuse what the specification allows.

use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;

use serde_json::Value;

use crate::Definitions;
use crate::definitions::{TypeDef, TypeKind};
use crate::fhirpath::{Context, Expression, Item};
use crate::outcome::{Issue, IssueType, Severity};
use crate::validation::path::Path;

/// Steps one invariant may take: generous for a large Bundle, bounded for a hostile one.
const WORK_BUDGET: usize = 1_000_000;

/// An invariant compiled: its expression, the members of the resource it can read, and
/// whether it holds on a resource without any of them — when that resource lacks them all,
/// the invariant is known to hold without evaluating it.
struct Compiled {
    expression: Expression,
    /// `None` when the expression may read the resource otherwise (`%resource`, `$this`…).
    members: Option<BTreeSet<String>>,
    holds_when_absent: bool,
}

impl Compiled {
    fn new(ty: &TypeDef, text: &str) -> Option<Compiled> {
        let expression = Expression::parse(text).ok()?;
        let members = expression.input_members();
        let bare = match ty.kind {
            TypeKind::Resource => serde_json::json!({"resourceType": ty.name}),
            _ => serde_json::json!({}),
        };
        let holds_when_absent = members.is_some() && holds(&expression, &bare, ty, &context(&bare));
        Some(Compiled { expression, members, holds_when_absent })
    }

    /// Whether evaluating it can be skipped for `resource`: it holds when none of the members
    /// it reads is present.
    fn holds_without_evaluation(&self, resource: &Value) -> bool {
        let (Some(members), true) = (&self.members, self.holds_when_absent) else { return false };
        let Some(object) = resource.as_object() else { return false };
        !object.keys().any(|key| members.iter().any(|member| names(key, member)))
    }
}

/// Whether the JSON key `key` holds the element `member`: the element itself, its primitive
/// extension (`_member`), or a choice of it (`valueQuantity` for `value`).
fn names(key: &str, member: &str) -> bool {
    let key = key.strip_prefix('_').unwrap_or(key);
    key.strip_prefix(member).is_some_and(|rest| rest.is_empty() || rest.starts_with(|c: char| c.is_ascii_uppercase()))
}

/// The context invariants are evaluated in.
fn context(resource: &Value) -> Context<'_> {
    Context::new(resource).with_work_budget(WORK_BUDGET).with_filtering_as()
}

/// Whether `expression` holds on `node`, a value of `ty`: anything but `false`, and an
/// evaluation that cannot finish is passed over (see the module documentation).
fn holds(expression: &Expression, node: &Value, ty: &TypeDef, context: &Context<'_>) -> bool {
    let evaluated = match ty.kind {
        TypeKind::Resource => expression.evaluate_with(node, context),
        _ => expression.evaluate_typed(node, &ty.name, context),
    };
    match evaluated {
        Ok(items) => !matches!(items.as_slice(), [Item::Boolean(false)]),
        Err(_) => true,
    }
}

/// The compiled invariants of each resource type, in the order of [`TypeDef::invariants`];
/// `None` where the engine cannot parse one.
fn compiled() -> &'static HashMap<&'static str, Vec<Option<Compiled>>> {
    static COMPILED: OnceLock<HashMap<&'static str, Vec<Option<Compiled>>>> = OnceLock::new();
    COMPILED.get_or_init(|| {
        Definitions::get()
            .types()
            .iter()
            .filter(|ty| matches!(ty.kind, TypeKind::Resource | TypeKind::Complex) && !ty.invariants.is_empty())
            .map(|ty| {
                let compiled = ty
                    .invariants
                    .iter()
                    .map(|invariant| match invariant.key.as_str() {
                        NATIVE => None,
                        _ => Compiled::new(ty, &invariant.expression),
                    })
                    .collect();
                (ty.name.as_str(), compiled)
            })
            .collect()
    })
}

/// The invariant checked by the structural walk rather than by its expression.
pub(crate) const NATIVE: &str = "ele-1";

/// The issues of `resource` (of type `ty`) against its invariants, located at `path`.
pub(crate) fn check(ty: &TypeDef, resource: &Value, path: &Path<'_>) -> Vec<Issue> {
    check_at(ty, resource, resource, resource, || path.render())
}

/// Whether a value of `ty` has invariants that must be evaluated on `node` (some data types
/// have none, and most of the others read elements `node` lacks).
pub(crate) fn applies(ty: &TypeDef, node: &Value) -> bool {
    compiled()
        .get(ty.name.as_str())
        .is_some_and(|all| all.iter().flatten().any(|compiled| !compiled.holds_without_evaluation(node)))
}

/// The issues of `node`, a value of `ty` inside `resource` (itself inside `root`, or `root`),
/// against the invariants of `ty`; `path` renders its location.
pub(crate) fn check_at(
    ty: &TypeDef,
    node: &Value,
    resource: &Value,
    root: &Value,
    path: impl Fn() -> String,
) -> Vec<Issue> {
    let Some(expressions) = compiled().get(ty.name.as_str()) else { return Vec::new() };
    let mut issues = Vec::new();
    let context = context(resource).with_root_resource(root);
    for (invariant, compiled) in ty.invariants.iter().zip(expressions) {
        let Some(compiled) = compiled else { continue };
        if compiled.holds_without_evaluation(node) {
            continue;
        }
        if !holds(&compiled.expression, node, ty, &context) {
            let severity = if invariant.error { Severity::Error } else { Severity::Warning };
            issues.push(Issue {
                severity,
                code: IssueType::Invariant,
                diagnostics: format!("{}: {}", invariant.key, invariant.human),
                expression: Some(path()),
            });
        }
    }
    issues
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_is_named_by_itself_its_extension_and_its_choices() {
        assert!(names("value", "value"));
        assert!(names("valueQuantity", "value"));
        assert!(names("_status", "status"));
        assert!(!names("valueSet", "valueSet2"));
        assert!(!names("values", "value"), "a longer name in lower case is another element");
        assert!(!names("contained", "contain"));
    }

    #[test]
    fn invariants_on_absent_elements_are_known_to_hold() {
        let observation = compiled().get("Observation").expect("Observation's invariants");
        let bare = serde_json::json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}});
        let skipped = observation.iter().flatten().filter(|compiled| compiled.holds_without_evaluation(&bare)).count();
        assert!(skipped >= 4, "dom-2 to dom-5 and obs-6/obs-7 read absent elements: {skipped} skipped");
        let with_value =
            serde_json::json!({"resourceType": "Observation", "valueString": "x", "dataAbsentReason": {"text": "y"}});
        let obs6 = observation
            .iter()
            .flatten()
            .find(|compiled| compiled.members.as_ref().is_some_and(|members| members.contains("dataAbsentReason")));
        assert!(obs6.is_some_and(|compiled| !compiled.holds_without_evaluation(&with_value)));
    }
}
