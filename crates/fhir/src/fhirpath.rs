//! A FHIRPath (N1, FHIR R4 flavour) engine over FHIR JSON (`serde_json::Value`).
//!
//! [`Expression::parse`] compiles the text once into a tree (function names and type names
//! resolved, depth bounded); [`Expression::evaluate`] runs it against a resource and returns
//! [`Item`]s that borrow the resource's JSON nodes, so a search-parameter extraction copies no
//! subtree. Nodes are typed from the element trees of [`crate::Definitions`]: `value` finds
//! `valueQuantity` and knows it is a `Quantity`, `Patient.gender` knows it is a `code`.
//!
//! ```ignore
//! let expression = Expression::parse("Observation.value.as(Quantity).value")?;
//! let values = expression.evaluate(&observation)?;
//! ```
//!
//! Expressions and resources come from clients (custom SearchParameters, posted resources),
//! so nothing here panics on them: bad text is a [`ParseError`], an expression that goes
//! wrong at run time (a collection where one item is needed, a type mismatch) is an
//! [`EvalError`], and both parsing and evaluation bound their recursion.
//!
//! Evaluation also has a work budget ([`DEFAULT_WORK_BUDGET`] steps unless
//! [`Context::with_work_budget`] sets another): every node evaluated and every item produced
//! costs a step, and so do the pairwise comparisons of `distinct`, `|`, `repeat`, …, the bytes
//! string functions scan and build, and the compilation of a regular expression. An
//! evaluation that runs out fails with an [`EvalError`] (see [`EvalError::is_over_budget`])
//! instead of running on, and no collection may hold more than [`MAX_COLLECTION_ITEMS`]
//! items. Regular expressions written as literals are compiled once per parsed expression, not
//! once per call.
//!
//! Known limits: `resolve()` cannot fetch; it returns contained resources for `#id` and, for
//! other references, a stand-in that carries only the referenced type, so `resolve() is
//! Patient` and `resolve().ofType(Patient)` work on the reference text (`Patient/123`). `memberOf`
//! is always empty (no terminology server). Quantity units convert only within a small UCUM
//! table (mass, length, volume, time). The strict-mode semantic checks of the specification
//! (rejecting `name.given1` because the model has no such element) are not done: unknown names
//! simply find nothing.

mod ast;
mod datetime;
mod decimal;
mod eval;
mod functions;
mod lexer;
mod navigation;
mod parser;
mod patterns;
mod quantity;
mod reads;
mod text;
mod value;

use std::fmt;

use serde_json::Value;

pub use datetime::{DateTime, Precision, Time};
pub use decimal::Decimal;
pub(crate) use navigation::is_fhir_type;
pub use quantity::Quantity;
pub use value::{Item, Node};

pub use eval::{DEFAULT_WORK_BUDGET, MAX_COLLECTION_ITEMS};

use crate::fhirpath::eval::{Evaluator, Frame};
use crate::fhirpath::patterns::Patterns;

/// A parsed FHIRPath expression, ready to evaluate any number of times.
#[derive(Debug, Clone)]
pub struct Expression {
    root: ast::Expr,
    /// The regular expressions written as literals, each compiled on first use.
    patterns: Patterns,
}

/// The environment of an evaluation: `%resource`, `%rootResource`, `%context` and any
/// additional `%variables`.
#[derive(Debug, Clone, Default)]
pub struct Context<'a> {
    resource: Option<&'a Value>,
    root_resource: Option<&'a Value>,
    variables: Vec<(String, Vec<Item<'a>>)>,
    /// Steps an evaluation may take; `None` for [`DEFAULT_WORK_BUDGET`].
    work_budget: Option<usize>,
    /// See [`Context::with_r4_invariants`].
    r4_invariants: bool,
}

/// Why an expression's text was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    offset: usize,
    message: String,
}

/// Why an evaluation failed (a type mismatch, a collection where one item was needed, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalError {
    message: String,
    over_budget: bool,
}

impl Expression {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Expression, ParseError> {
        parser::parse(text).map(|root| {
            let patterns = Patterns::collect(&root);
            Expression { root, patterns }
        })
    }

    /// The members of its input the expression can read, or `None` when it may read the input
    /// otherwise (`$this`, `%resource`, `descendants()`…). When none of them is present, the
    /// expression gives what it gives on an input without them.
    pub fn input_members(&self) -> Option<std::collections::BTreeSet<String>> {
        reads::input_members(&self.root)
    }

    /// Evaluates the expression with `resource` as the input, `%resource` and `%context`.
    pub fn evaluate<'a>(&'a self, resource: &'a Value) -> Result<Vec<Item<'a>>, EvalError> {
        self.evaluate_with(resource, &Context::new(resource))
    }

    /// Evaluates the expression with `focus` as the input (a resource or any node of one)
    /// in `context`.
    pub fn evaluate_with<'a>(&'a self, focus: &'a Value, context: &Context<'a>) -> Result<Vec<Item<'a>>, EvalError> {
        let input = [Item::Node(navigation::root(focus))];
        let frame = Frame { this: Some(&input[0]), index: None, total: None };
        Evaluator::new(context, Some(&input[0]), &self.patterns).eval(&self.root, &input, frame)
    }

    /// Evaluates the expression with `focus`, a value of the FHIR type `type_name` (a data type:
    /// its JSON does not say), as the input, in `context`: its children are typed, so that a
    /// Period's `start` compares as a dateTime.
    pub fn evaluate_typed<'a>(
        &'a self,
        focus: &'a Value,
        type_name: &'a str,
        context: &Context<'a>,
    ) -> Result<Vec<Item<'a>>, EvalError> {
        let input = [Item::Node(navigation::typed_root(focus, type_name))];
        let frame = Frame { this: Some(&input[0]), index: None, total: None };
        Evaluator::new(context, Some(&input[0]), &self.patterns).eval(&self.root, &input, frame)
    }

    /// Evaluates the expression with `focus`, a value of the element at `element` in the element
    /// tree of the type `owner` (a backbone element such as `Observation.referenceRange`), as
    /// the input, in `context`; its children are typed from that element's children.
    pub fn evaluate_element<'a>(
        &'a self,
        focus: &'a Value,
        owner: &str,
        element: u32,
        context: &Context<'a>,
    ) -> Result<Vec<Item<'a>>, EvalError> {
        let input = [Item::Node(navigation::element_root(focus, owner, element))];
        let frame = Frame { this: Some(&input[0]), index: None, total: None };
        Evaluator::new(context, Some(&input[0]), &self.patterns).eval(&self.root, &input, frame)
    }

    /// Evaluates the expression with no input at all (for expressions made of literals).
    pub fn evaluate_without_input(&self) -> Result<Vec<Item<'_>>, EvalError> {
        let context = Context::default();
        Evaluator::new(&context, None, &self.patterns).eval(&self.root, &[], Frame::default())
    }
}

impl<'a> Context<'a> {
    /// A context whose `%resource` and `%rootResource` are `resource`.
    pub fn new(resource: &'a Value) -> Context<'a> {
        Context {
            resource: Some(resource),
            root_resource: Some(resource),
            variables: Vec::new(),
            work_budget: None,
            r4_invariants: false,
        }
    }

    /// Reads expressions as the R4 invariants were written and as the official validator
    /// reads them, where the FHIRPath specification says otherwise (which stays the default):
    /// the `as(type)` function filters a collection of several items, as `ofType` does,
    /// instead of failing (`descendants().as(canonical)` in `dom-3`), and `is` takes a FHIR
    /// primitive for the System type it maps to (`answer is Boolean` in `que-7`, where the
    /// answer is a FHIR `boolean`).
    pub fn with_r4_invariants(mut self) -> Context<'a> {
        self.r4_invariants = true;
        self
    }

    /// Sets `%rootResource` (the Bundle or container a resource sits in).
    pub fn with_root_resource(mut self, root: &'a Value) -> Context<'a> {
        self.root_resource = Some(root);
        self
    }

    /// Sets the steps an evaluation in this context may take (see the [module](self) notes);
    /// the default is [`DEFAULT_WORK_BUDGET`].
    pub fn with_work_budget(mut self, steps: usize) -> Context<'a> {
        self.work_budget = Some(steps);
        self
    }

    /// Adds the variable `%name`.
    pub fn with_variable(mut self, name: impl Into<String>, items: Vec<Item<'a>>) -> Context<'a> {
        self.variables.push((name.into(), items));
        self
    }
}

impl ParseError {
    pub(crate) fn new(offset: usize, message: impl Into<String>) -> ParseError {
        ParseError { offset, message: message.into() }
    }

    /// Byte offset in the expression text where the problem was found.
    pub fn offset(&self) -> usize {
        self.offset
    }
}

impl EvalError {
    pub(crate) fn new(message: impl Into<String>) -> EvalError {
        EvalError { message: message.into(), over_budget: false }
    }

    /// The error of an evaluation that ran out of its work budget of `steps`.
    pub(crate) fn over_budget(steps: usize) -> EvalError {
        EvalError {
            message: format!("FHIRPath evaluation exceeded its work budget of {steps} steps"),
            over_budget: true,
        }
    }

    /// The error of an evaluation that built a collection of more than `limit` items.
    pub(crate) fn too_many_items(limit: usize) -> EvalError {
        EvalError {
            message: format!("FHIRPath evaluation exceeded its limit of {limit} items in one collection"),
            over_budget: true,
        }
    }

    /// True when the evaluation was stopped because it exceeded its work budget (or the
    /// limit on the size of a collection), rather than because the expression does not fit
    /// the data.
    pub fn is_over_budget(&self) -> bool {
        self.over_budget
    }

    /// The explanation, without the `FHIRPath evaluation failed` prefix of `Display`.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "invalid FHIRPath at offset {}: {}", self.offset, self.message)
    }
}

impl fmt::Display for EvalError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.over_budget {
            formatter.write_str(&self.message)
        } else {
            write!(formatter, "FHIRPath evaluation failed: {}", self.message)
        }
    }
}

impl std::error::Error for ParseError {}
impl std::error::Error for EvalError {}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::Definitions;

    fn strings(expression: &str, resource: &Value) -> Vec<String> {
        let parsed = Expression::parse(expression).unwrap_or_else(|error| panic!("{expression}: {error}"));
        let items = parsed.evaluate(resource).unwrap_or_else(|error| panic!("{expression}: {error}"));
        items.iter().map(|item| item.to_string()).collect()
    }

    #[test]
    fn every_search_parameter_expression_parses_and_evaluates() {
        let definitions = Definitions::get();
        let mut checked = 0;
        let mut failures = Vec::new();
        for resource_type in definitions.resource_types() {
            let resource = json!({ "resourceType": resource_type });
            for parameter in definitions.search_parameters(resource_type) {
                let expressions = parameter.expression.iter().chain(parameter.components.iter().map(|c| &c.expression));
                for expression in expressions {
                    checked += 1;
                    match Expression::parse(expression) {
                        Err(error) => failures.push(format!("{} ({expression}): {error}", parameter.url)),
                        Ok(parsed) => {
                            if let Err(error) = parsed.evaluate(&resource) {
                                failures.push(format!("{} on {resource_type} ({expression}): {error}", parameter.url));
                            }
                        }
                    }
                }
            }
        }
        assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
        assert!(checked > 1000, "only {checked} expressions checked");
    }

    #[test]
    fn search_style_extraction() {
        let observation: Value = serde_json::from_str(r##"{
            "resourceType": "Observation",
            "status": "final",
            "code": { "coding": [{ "system": "http://loinc.org", "code": "8867-4" }] },
            "subject": { "reference": "Patient/example" },
            "performer": [{ "reference": "Practitioner/1" }, { "reference": "#org" }],
            "contained": [{ "resourceType": "Organization", "id": "org", "name": "Acme" }],
            "valueQuantity": { "value": 185.50, "unit": "lbs", "system": "http://unitsofmeasure.org", "code": "[lb_av]" },
            "effectiveDateTime": "2020-01-01T10:00:00Z"
        }"##)
        .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(strings("Observation.subject.where(resolve() is Patient)", &observation).len(), 1);
        assert!(strings("Observation.subject.where(resolve() is Group)", &observation).is_empty());
        assert_eq!(strings("Observation.performer.resolve().ofType(Organization).name", &observation), ["Acme"]);
        assert_eq!(strings("(Observation.value as Quantity).value", &observation), ["185.50"]);
        assert_eq!(strings("Observation.value.as(Quantity).value", &observation), ["185.50"]);
        assert_eq!(strings("Observation.effective.ofType(dateTime)", &observation), ["2020-01-01T10:00:00Z"]);
        assert!(strings("Observation.value.ofType(string)", &observation).is_empty());
        assert_eq!(strings("Observation.code.coding.code | Patient.name", &observation), ["8867-4"]);
        assert_eq!(strings("Observation.value > 100 '[lb_av]'", &observation), ["true"]);
    }

    #[test]
    fn primitive_extensions_pair_with_values() {
        let patient = json!({
            "resourceType": "Patient",
            "name": [{ "given": ["Ann", null], "_given": [null, { "extension": [{ "url": "u", "valueString": "x" }] }] }],
            "birthDate": "1974-12-25",
            "_birthDate": { "extension": [{ "url": "http://example.org/time", "valueDateTime": "1974-12-25T14:35:45-05:00" }] }
        });
        assert_eq!(strings("Patient.name.given.select($this.hasValue())", &patient), ["true", "false"]);
        assert_eq!(strings("Patient.birthDate.extension('http://example.org/time').value", &patient).len(), 1);
        assert_eq!(strings("Patient.birthDate < @2000-01-01", &patient), ["true"]);
    }

    #[test]
    fn hostile_input_is_an_error_not_a_crash() {
        let deep = format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(Expression::parse(&deep).is_err());
        let chain = format!("a{}", ".b".repeat(10_000));
        assert!(Expression::parse(&chain).is_err());
        let sum = vec!["1"; 10_000].join("+");
        assert!(Expression::parse(&sum).is_err());
        for bad in ["", "(", "a.", "1 +", "'open", "@", "@2020-13-01", "foo(", "unknownFunction()", "a is", "%"] {
            assert!(Expression::parse(bad).is_err(), "{bad}");
        }
        let resource = json!({ "resourceType": "Patient", "name": [{ "given": ["a", "b"] }] });
        let parsed = Expression::parse("Patient.name.given.single()").unwrap_or_else(|error| panic!("{error}"));
        assert!(parsed.evaluate(&resource).is_err());
        let parsed = Expression::parse("'a'.matches('(')").unwrap_or_else(|error| panic!("{error}"));
        assert!(parsed.evaluate(&resource).is_err());
    }

    /// Evaluates `expression` on `resource`, which must fail for exceeding the work budget,
    /// promptly.
    fn over_budget(expression: &str, resource: &Value) -> EvalError {
        let parsed = Expression::parse(expression).unwrap_or_else(|error| panic!("{expression}: {error}"));
        let started = std::time::Instant::now();
        let result = parsed.evaluate(resource);
        let elapsed = started.elapsed();
        let Err(error) = result else {
            panic!("{expression} should exceed the work budget");
        };
        assert!(error.is_over_budget(), "{expression}: {error}");
        assert!(elapsed < std::time::Duration::from_secs(5), "{expression} took {elapsed:?}");
        error
    }

    #[test]
    fn runaway_evaluation_stops_at_the_work_budget() {
        let resource = json!({
            "resourceType": "Patient",
            "name": (0..50).map(|index| json!({ "family": format!("F{index}"), "given": ["a", "b", "c"] })).collect::<Vec<_>>(),
        });
        let error = over_budget("(1|2|3|4|5|6|7|8|9|10).repeat($this + 10)", &resource);
        assert_eq!(
            error.to_string(),
            format!("FHIRPath evaluation exceeded its work budget of {DEFAULT_WORK_BUDGET} steps")
        );
        over_budget("descendants().select(%resource.descendants().select(%resource.descendants()))", &resource);
        let ten = "(1|2|3|4|5|6|7|8|9|10)";
        over_budget(&format!("{ten}.select({ten}.select({ten}.select({ten}.select({ten}.select({ten})))))"), &resource);
        over_budget(
            &format!(
                "{ten}.select({ten}.select({ten}.select({ten}.select({ten}.select($this.toString().matches($this.toString() + 'x'))))))"
            ),
            &resource,
        );
        // Long computed text costs its bytes each time it is copied or scanned.
        let long = "(1|2|3|4|5|6|7|8|9|10|11|12|13|14|15|16).aggregate($total & $total, 'abcdefghijklmnop')";
        over_budget(&format!("descendants().aggregate($total.substring(1) & 'x', {long})"), &resource);
        over_budget(&format!("descendants().select({long}.upper())"), &resource);

        // A smaller budget stops sooner; ordinary paths fit a small one.
        let parsed = Expression::parse("Patient.name.given").unwrap_or_else(|error| panic!("{error}"));
        let small = Context::new(&resource).with_work_budget(1_000);
        assert_eq!(parsed.evaluate_with(&resource, &small).map(|items| items.len()), Ok(150));
        let tiny = Context::new(&resource).with_work_budget(100);
        assert!(parsed.evaluate_with(&resource, &tiny).is_err_and(|error| error.is_over_budget()));
        // Other errors are not budget errors.
        let parsed = Expression::parse("Patient.name.family.single()").unwrap_or_else(|error| panic!("{error}"));
        assert!(parsed.evaluate(&resource).is_err_and(|error| !error.is_over_budget()));
    }

    #[test]
    fn collections_and_built_strings_are_bounded() {
        let resource = json!({ "resourceType": "Patient" });
        // Five nested selects over eleven items make 161,051; no collection may be that big,
        // whatever the budget.
        let eleven = "(1|2|3|4|5|6|7|8|9|10|11)";
        let nested = format!("{eleven}.select({eleven}.select({eleven}.select({eleven}.select({eleven}))))");
        let parsed = Expression::parse(&nested).unwrap_or_else(|error| panic!("{error}"));
        let context = Context::new(&resource).with_work_budget(usize::MAX);
        let error = parsed.evaluate_with(&resource, &context).err().unwrap_or_else(|| panic!("should fail"));
        assert!(error.is_over_budget(), "{error}");
        assert!(error.to_string().contains(&format!("limit of {MAX_COLLECTION_ITEMS} items")), "{error}");
        let long = "(1|2|3|4|5|6|7|8|9|10|11|12|13|14|15|16|17|18|19|20).aggregate($total & $total, 'a')";
        let parsed = Expression::parse(&format!("{long}.replace('', '{}')", "b".repeat(100)))
            .unwrap_or_else(|error| panic!("{error}"));
        assert!(parsed.evaluate(&resource).is_err_and(|error| error.to_string().contains("string too long")));
        let parsed = Expression::parse(&format!("{long}.replaceMatches('a', '$0$0$0$0$0')"))
            .unwrap_or_else(|error| panic!("{error}"));
        assert!(parsed.evaluate(&resource).is_err_and(|error| error.to_string().contains("string too long")));
        assert_eq!(strings("'abcabc'.replaceMatches('(b)(c)', '$2$1')", &resource), ["acbacb"]);
        assert_eq!(strings("'abc'.replace('', '-')", &resource), ["-a-b-c-"]);
        assert_eq!(strings("('a' | 'b' | 'c').join(', ')", &resource), ["a, b, c"]);
    }

    #[test]
    fn literal_regular_expressions_are_compiled_once() {
        let resource = json!({
            "resourceType": "Patient",
            "name": [{ "given": ["Ann", "Bob", "Anna", "Al"] }, { "given": ["Alice"] }],
        });
        let before = patterns::compilations();
        let expression =
            "Patient.name.given.where(matches('^A') and matchesFull('A[a-z]+') and replaceMatches('n', 'N') != $this)";
        let parsed = Expression::parse(expression).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(parsed.patterns.len(), 3);
        assert_eq!(patterns::compilations(), before, "parsing compiles nothing");
        for _ in 0..10 {
            let given = parsed.evaluate(&resource).unwrap_or_else(|error| panic!("{error}"));
            let given: Vec<String> = given.iter().map(ToString::to_string).collect();
            assert_eq!(given, ["Ann", "Anna"]);
        }
        assert_eq!(parsed.patterns.compiled_count(), 3);
        assert_eq!(patterns::compilations(), before + 3, "each literal pattern is compiled once");

        // A pattern computed at run time is compiled once per evaluation, not once per item.
        let before = patterns::compilations();
        let parsed =
            Expression::parse("Patient.name.given.where(matches(%pattern))").unwrap_or_else(|error| panic!("{error}"));
        let pattern = vec![Item::String(std::borrow::Cow::Borrowed("^A"))];
        let context = Context::new(&resource).with_variable("pattern", pattern);
        let given = parsed.evaluate_with(&resource, &context).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(given.len(), 4);
        assert_eq!(patterns::compilations(), before + 1);

        // An invalid literal pattern is still an evaluation error, every time.
        let parsed =
            Expression::parse("Patient.name.given.first().matches('(')").unwrap_or_else(|error| panic!("{error}"));
        assert!(parsed.evaluate(&resource).is_err());
        assert!(parsed.evaluate(&resource).is_err());
    }
}
