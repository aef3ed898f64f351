//! The FHIRPath invariants of a resource's root element (`dom-2` to `dom-6` on every domain
//! resource, and the resource's own, such as `obs-6` and `obs-7`), evaluated with the
//! FHIRPath engine: an `error` invariant that is false rejects the resource with its key and
//! human text; a `warning` one is reported as a warning.
//!
//! Each expression is compiled once, on first use, for every resource type. An invariant
//! whose expression the engine cannot parse (a function it does not have) or cannot finish on
//! this resource (past its work budget) is passed over rather than guessed at: a server must
//! not refuse what the specification allows.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::Value;

use crate::Definitions;
use crate::definitions::{TypeDef, TypeKind};
use crate::fhirpath::{Context, Expression, Item};
use crate::outcome::{Issue, IssueType, Severity};
use crate::validation::path::Path;

/// Steps one invariant may take: generous for a large Bundle, bounded for a hostile one.
const WORK_BUDGET: usize = 1_000_000;

/// The compiled expressions of each resource type's invariants, in the order of
/// [`TypeDef::invariants`]; `None` where the engine cannot parse one.
fn compiled() -> &'static HashMap<&'static str, Vec<Option<Expression>>> {
    static COMPILED: OnceLock<HashMap<&'static str, Vec<Option<Expression>>>> = OnceLock::new();
    COMPILED.get_or_init(|| {
        Definitions::get()
            .types()
            .iter()
            .filter(|ty| ty.kind == TypeKind::Resource && !ty.invariants.is_empty())
            .map(|ty| {
                let expressions =
                    ty.invariants.iter().map(|invariant| Expression::parse(&invariant.expression).ok()).collect();
                (ty.name.as_str(), expressions)
            })
            .collect()
    })
}

/// The issues of `resource` (of type `ty`) against its invariants, located at `path`.
pub(crate) fn check(ty: &TypeDef, resource: &Value, path: &Path<'_>) -> Vec<Issue> {
    let Some(expressions) = compiled().get(ty.name.as_str()) else { return Vec::new() };
    let mut issues = Vec::new();
    for (invariant, expression) in ty.invariants.iter().zip(expressions) {
        let Some(expression) = expression else { continue };
        let context = Context::new(resource).with_work_budget(WORK_BUDGET).with_filtering_as();
        let holds = match expression.evaluate_with(resource, &context) {
            Ok(items) => !matches!(items.as_slice(), [Item::Boolean(false)]),
            // Not evaluable here: passed over (see the module documentation).
            Err(_) => true,
        };
        if !holds {
            let severity = if invariant.error { Severity::Error } else { Severity::Warning };
            issues.push(Issue {
                severity,
                code: IssueType::Invariant,
                diagnostics: format!("{}: {}", invariant.key, invariant.human),
                expression: Some(path.render()),
            });
        }
    }
    issues
}
