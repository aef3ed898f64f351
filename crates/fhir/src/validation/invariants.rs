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
use crate::definitions::{Invariant, TypeDef, TypeKind};
use crate::fhirpath::{Context, Expression, Item};
use crate::outcome::{Issue, IssueType, Severity};

/// Steps one invariant may take: generous for a large Bundle, bounded for a hostile one.
const WORK_BUDGET: usize = 1_000_000;

/// An element whose invariants apply to a value: the element at `index` in the tree of
/// `owner` (index 0 is the type itself), holding a value of `type_code`.
#[derive(Clone, Copy)]
pub(crate) struct Subject<'d> {
    pub(crate) owner: &'d TypeDef,
    pub(crate) index: u32,
    /// The value's type (the chosen one of a choice element); ignored at the root, and for
    /// backbone elements, whose children the tree types.
    pub(crate) type_code: &'d str,
}

impl<'d> Subject<'d> {
    /// The type `ty` itself.
    pub(crate) fn root(ty: &'d TypeDef) -> Subject<'d> {
        Subject { owner: ty, index: 0, type_code: &ty.name }
    }

    /// This subject holding the value of the JSON key `key` for the element `segment`: a
    /// choice (`value[x]`) takes the type its key names (`valueQuantity` → `Quantity`).
    pub(crate) fn typed_by(self, segment: &str, key: &str) -> Subject<'d> {
        let Some(prefix) = segment.strip_suffix("[x]") else { return self };
        let suffix = key.get(prefix.len()..).unwrap_or_default();
        let element = self.owner.elements.get(self.index as usize);
        let chosen = element.and_then(|e| e.types.iter().find(|ty| crate::validation::is_type_suffix(suffix, ty)));
        Subject { type_code: chosen.map_or(self.type_code, String::as_str), ..self }
    }

    /// The invariants that apply (see [`crate::definitions::Element::invariants`]).
    pub(crate) fn invariants(&self) -> &'d [Invariant] {
        self.owner.elements.get(self.index as usize).map_or(&[], |element| element.invariants.as_slice())
    }

    /// Evaluates `expression` on `node`, a value of this subject, typed as it is.
    fn evaluate<'a>(
        &self,
        expression: &'a Expression,
        node: &'a Value,
        context: &Context<'a>,
    ) -> Result<Vec<Item<'a>>, crate::fhirpath::EvalError> {
        let element = self.owner.elements.get(self.index as usize);
        match (self.index, self.owner.kind) {
            (0, TypeKind::Resource) => expression.evaluate_with(node, context),
            (0, _) => expression.evaluate_typed(node, type_name(&self.owner.name), context),
            _ if element.is_some_and(|e| !e.children.is_empty()) => {
                expression.evaluate_element(node, &self.owner.name, self.index, context)
            }
            _ => expression.evaluate_typed(node, type_name(self.type_code), context),
        }
    }
}

/// The `'static` name of a type code (the definitions own every type name).
fn type_name(code: &str) -> &'static str {
    Definitions::get().type_def(code).map_or("", |ty| ty.name.as_str())
}

/// An invariant compiled: its expression, the members of the value it can read, and whether
/// it holds on a value without any of them — when a value lacks them all, the invariant is
/// known to hold without evaluating it.
struct Compiled {
    expression: Expression,
    /// `None` when the expression may read the value otherwise (`%resource`, `$this`…).
    members: Option<BTreeSet<String>>,
    holds_when_absent: bool,
}

impl Compiled {
    fn new(subject: Subject<'_>, text: &str) -> Option<Compiled> {
        let expression = Expression::parse(text).ok()?;
        let members = expression.input_members();
        let bare = match (subject.index, subject.owner.kind) {
            (0, TypeKind::Resource) => serde_json::json!({"resourceType": subject.owner.name}),
            _ => serde_json::json!({}),
        };
        let holds_when_absent = members.is_some() && holds(&expression, &bare, subject, &context(&bare));
        Some(Compiled { expression, members, holds_when_absent })
    }

    /// Whether evaluating it can be skipped for `node`: it holds when none of the members it
    /// reads is present.
    fn holds_without_evaluation(&self, node: &Value) -> bool {
        let (Some(members), true) = (&self.members, self.holds_when_absent) else { return false };
        let Some(object) = node.as_object() else { return false };
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
    Context::new(resource).with_work_budget(WORK_BUDGET).with_r4_invariants()
}

/// Whether `expression` holds on `node`, a value of `subject`: anything but `false`, and an
/// evaluation that cannot finish is passed over (see the module documentation).
fn holds(expression: &Expression, node: &Value, subject: Subject<'_>, context: &Context<'_>) -> bool {
    match subject.evaluate(expression, node, context) {
        Ok(items) => !matches!(items.as_slice(), [Item::Boolean(false)]),
        Err(_) => true,
    }
}

/// See [`compiled`].
type CompiledInvariants = HashMap<(&'static str, u32), Vec<Option<Compiled>>>;

/// The compiled invariants of each element that has some, by type name and element index, in
/// the order of [`crate::definitions::Element::invariants`]; `None` where the engine cannot
/// parse one or the walk checks it natively.
fn compiled() -> &'static CompiledInvariants {
    static COMPILED: OnceLock<CompiledInvariants> = OnceLock::new();
    COMPILED.get_or_init(|| {
        let mut all = HashMap::new();
        for ty in Definitions::get().types() {
            for (index, element) in ty.elements.iter().enumerate() {
                if element.invariants.is_empty() {
                    continue;
                }
                let type_code = element.types.first().map_or("", String::as_str);
                let subject = Subject { owner: ty, index: index as u32, type_code };
                let compiled = element
                    .invariants
                    .iter()
                    .map(|invariant| match NATIVE.contains(&invariant.key.as_str()) {
                        true => None,
                        false => Compiled::new(subject, &invariant.expression),
                    })
                    .collect();
                all.insert((ty.name.as_str(), index as u32), compiled);
            }
        }
        all
    })
}

/// The invariants the walk checks natively rather than by their expression: `ele-1`, and the
/// narrative's `htmlChecks()` ([`crate::validation::narrative`]).
pub(crate) const NATIVE: &[&str] = &[ELE_1, "txt-1", "txt-2"];

/// All FHIR elements must have a value or children (checked natively, see the module notes).
pub(crate) const ELE_1: &str = "ele-1";

/// Whether a value of `subject` has invariants that must be evaluated on `node` (many
/// elements have none, and most of the others read elements `node` lacks).
pub(crate) fn applies(subject: Subject<'_>, node: &Value) -> bool {
    if subject.invariants().is_empty() {
        return false;
    }
    compiled()
        .get(&(subject.owner.name.as_str(), subject.index))
        .is_some_and(|all| all.iter().flatten().any(|compiled| !compiled.holds_without_evaluation(node)))
}

/// The issues of `node`, a value of `subject` inside `resource` (itself inside `root`, or
/// `root`), against its invariants; `path` renders its location.
pub(crate) fn check_at(
    subject: Subject<'_>,
    node: &Value,
    resource: &Value,
    root: &Value,
    path: impl Fn() -> String,
) -> Vec<Issue> {
    let Some(expressions) = compiled().get(&(subject.owner.name.as_str(), subject.index)) else {
        return Vec::new();
    };
    let pairs = subject
        .invariants()
        .iter()
        .zip(expressions)
        .filter_map(|(invariant, compiled)| Some((invariant, compiled.as_ref()?)));
    check_each(subject, pairs, node, resource, root, path)
}

/// The issues of `node`, a value of `subject` in `resource`, against invariants a profile adds
/// (`us-core-6`…), located by `path`.
pub(crate) fn check_profile<'i>(
    subject: Subject<'_>,
    invariants: impl IntoIterator<Item = &'i Invariant>,
    node: &Value,
    resource: &Value,
    path: impl Fn() -> String,
) -> Vec<Issue> {
    let compiled = profile_compiled();
    let pairs = invariants
        .into_iter()
        .filter_map(|invariant| Some((invariant, compiled.get(invariant.expression.as_str())?.as_ref()?)));
    check_each(subject, pairs, node, resource, resource, path)
}

/// The issues of `node` against each `(invariant, compiled)` pair.
fn check_each<'c>(
    subject: Subject<'_>,
    pairs: impl Iterator<Item = (&'c Invariant, &'c Compiled)>,
    node: &Value,
    resource: &Value,
    root: &Value,
    path: impl Fn() -> String,
) -> Vec<Issue> {
    let mut issues = Vec::new();
    let context = context(resource).with_root_resource(root);
    for (invariant, compiled) in pairs {
        if compiled.holds_without_evaluation(node) {
            continue;
        }
        if !holds(&compiled.expression, node, subject, &context) {
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

/// The expressions of the invariants profiles add, compiled once, by their text (`None` where
/// the engine cannot parse one).
fn profile_compiled() -> &'static HashMap<&'static str, Option<Compiled>> {
    static COMPILED: OnceLock<HashMap<&'static str, Option<Compiled>>> = OnceLock::new();
    COMPILED.get_or_init(|| {
        let profiles = Definitions::get().profiles();
        let on_elements = profiles.iter().flat_map(|profile| profile.invariants.iter().map(|(_, invariant)| invariant));
        let on_slices = profiles
            .iter()
            .flat_map(|profile| &profile.slicings)
            .flat_map(|slicing| &slicing.slices)
            .flat_map(|slice| &slice.invariants);
        on_elements
            .chain(on_slices)
            .map(|invariant| {
                let expression = Expression::parse(&invariant.expression).ok();
                let compiled =
                    expression.map(|expression| Compiled { expression, members: None, holds_when_absent: false });
                (invariant.expression.as_str(), compiled)
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::tests::{keyed, keyed_errors};

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
        let observation = compiled().get(&("Observation", 0)).expect("Observation's invariants");
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

    #[test]
    fn invariants_of_backbone_elements_hold_on_each_of_their_values() {
        let observation = |range: Value| {
            serde_json::json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},
                "referenceRange": range})
        };
        let broken_range = observation(serde_json::json!([{"text": "normal"}, {"appliesTo": [{"text": "adults"}]}]));
        assert_eq!(keyed_errors(&broken_range), keyed(&[("obs-3", "Observation.referenceRange[1]")]));
        let repaired = observation(serde_json::json!([{"text": "normal"}, {"low": {"value": 1}}]));
        assert_eq!(keyed_errors(&repaired), keyed(&[]));
    }

    #[test]
    fn invariants_follow_content_references_and_data_type_elements() {
        // que-1: a group needs items, at any depth (`item.item` reuses `item`'s definition).
        let questionnaire = serde_json::json!({"resourceType": "Questionnaire", "status": "draft", "item": [
            {"linkId": "1", "type": "group", "item": [{"linkId": "1.1", "type": "group"}]}
        ]});
        assert_eq!(keyed_errors(&questionnaire), keyed(&[("que-1", "Questionnaire.item[0].item[0]")]));
        // org-2: an organization's address is never a home address (a data-type element).
        let organization = serde_json::json!({"resourceType": "Organization", "name": "A",
            "address": [{"use": "work", "city": "X"}, {"use": "home", "city": "Y"}]});
        assert_eq!(keyed_errors(&organization), keyed(&[("org-2", "Organization.address[1]")]));
        // tim-1: the backbone element of a data type (Timing.repeat), inside a resource.
        let request = serde_json::json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
            "medicationCodeableConcept": {"text": "x"}, "subject": {"reference": "Patient/1"},
            "dosageInstruction": [{"timing": {"repeat": {"duration": 2}}}]});
        assert_eq!(keyed_errors(&request), keyed(&[("tim-1", "MedicationRequest.dosageInstruction[0].timing.repeat")]));
        let mut repaired = request.clone();
        repaired["dosageInstruction"][0]["timing"]["repeat"]["durationUnit"] = "h".into();
        assert_eq!(keyed_errors(&repaired), keyed(&[]));
    }
}
