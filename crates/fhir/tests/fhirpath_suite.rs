//! Runs the official FHIRPath R4 test suite (`data/fhirpath-tests/official-r4/tests-fhir-r4.xml`)
//! against `fhir::fhirpath`, reading each test's input as JSON from `data/fhirpath-tests/`.
//!
//! Every case must pass except those in [`SKIPPED`], each listed with the reason. Listed cases
//! are still run, and one that starts passing fails the test too, so the list stays honest.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use fhir::fhirpath::{Decimal, Expression, Item};
use serde_json::Value;

/// Cases the engine does not pass, with the reason.
const SKIPPED: &[(&str, &str)] = &[
    ("testSimpleFail", "strict mode: rejecting names the model lacks (name.given1) is not implemented"),
    ("testSimpleWithWrongContext", "strict mode: rejecting a type name that cannot match (Encounter on Patient)"),
    ("testPolymorphismB", "strict mode: valueQuantity is followed as a JSON key instead of rejected"),
    ("testPolymorphismAsB", "strict mode: `as Period` on a Quantity-only path is not rejected statically"),
    ("testDollarOrderNotAllowed", "strict mode: skip() after the unordered children() is not rejected"),
    (
        "testPolymorphicsB",
        "semantic check: valueQuantity is followed as a JSON key (lenient navigation, kept on purpose)",
    ),
    ("LowBoundaryDecimal15", "expects -0.0; the decimal type has no negative zero and gives 0.0"),
    (
        "HighBoundaryDateTimeMillisecond1",
        "expects 08:00:59.999 for an hour-precision value; the engine gives 08:59:59.999, the hour's last instant",
    ),
    ("HighBoundaryDateTimeMillisecond3", "same case as HighBoundaryDateTimeMillisecond1"),
];

/// At least this many cases must pass.
const MINIMUM_PASSING: usize = 850;

/// One `<test>` of the suite.
struct Case {
    name: String,
    input_file: Option<String>,
    expression: String,
    /// `invalid="…"`: the expression must be rejected (at parse or evaluation time).
    invalid: bool,
    /// `predicate="true"`: the result is compared as `exists()`.
    predicate: bool,
    ordered: bool,
    /// `(type, text)` of each expected output; the type is missing on a few 2.1 cases.
    outputs: Vec<(Option<String>, String)>,
}

#[test]
fn official_fhirpath_suite() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/fhirpath-tests");
    let cases = read_cases(&root.join("official-r4/tests-fhir-r4.xml"));
    let skipped: HashMap<&str, &str> = SKIPPED.iter().copied().collect();
    let mut inputs: HashMap<String, Option<Value>> = HashMap::new();
    let (mut passed, mut skipped_count) = (0, 0);
    let mut failures = Vec::new();
    let mut stale_skips = Vec::new();
    for case in &cases {
        let input = case
            .input_file
            .as_ref()
            .and_then(|file| inputs.entry(file.clone()).or_insert_with(|| load_input(&root, file)).as_ref());
        let outcome = run(case, input);
        match (outcome, skipped.contains_key(case.name.as_str())) {
            (Ok(()), false) => passed += 1,
            (Ok(()), true) => stale_skips.push(case.name.clone()),
            (Err(_), true) => skipped_count += 1,
            (Err(problem), false) => failures.push(format!("{}: {}\n    {problem}", case.name, case.expression.trim())),
        }
    }
    eprintln!("fhirpath suite: {passed} passed, {skipped_count} skipped");
    let unknown: Vec<&str> =
        SKIPPED.iter().map(|(name, _)| *name).filter(|name| !cases.iter().any(|case| case.name == *name)).collect();
    assert!(failures.is_empty(), "{} unlisted cases fail:\n{}", failures.len(), failures.join("\n"));
    assert!(stale_skips.is_empty(), "listed in SKIPPED but passing now: {stale_skips:?}");
    assert!(unknown.is_empty(), "SKIPPED names no such case: {unknown:?}");
    assert!(passed >= MINIMUM_PASSING, "only {passed} cases pass");
}

/// Evaluates one case; `Err` says how the result differs from the expected one.
fn run(case: &Case, input: Option<&Value>) -> Result<(), String> {
    let evaluated = Expression::parse(&case.expression).map_err(|error| error.to_string()).and_then(|expression| {
        let result = match input {
            Some(input) => expression.evaluate(input),
            None => expression.evaluate_without_input(),
        };
        result.map(|items| items.iter().map(render).collect::<Vec<_>>()).map_err(|error| error.to_string())
    });
    if case.invalid {
        return match evaluated {
            Err(_) => Ok(()),
            Ok(actual) => Err(format!("expected an error, got {actual:?}")),
        };
    }
    let mut actual = evaluated?;
    if case.predicate {
        actual = vec![("boolean".to_owned(), (!actual.is_empty()).to_string())];
    }
    let mut expected = case.outputs.clone();
    if !case.ordered {
        actual.sort_by(|a, b| a.1.cmp(&b.1));
        expected.sort_by(|a, b| a.1.cmp(&b.1));
    }
    let matches = actual.len() == expected.len()
        && actual.iter().zip(&expected).all(|((actual_type, actual_text), (expected_type, expected_text))| {
            let same_type = expected_type.as_ref().is_none_or(|expected_type| expected_type == actual_type);
            let same_value = if expected_type.as_deref() == Some("decimal") {
                Decimal::parse(actual_text)
                    .zip(Decimal::parse(expected_text))
                    .is_some_and(|(a, b)| a.to_string() == b.to_string() || a.to_f64() == b.to_f64())
            } else {
                actual_text == expected_text
            };
            same_type && same_value
        });
    if matches { Ok(()) } else { Err(format!("expected {expected:?}, got {actual:?}")) }
}

/// `(type, text)` of a result item in the suite's notation (`date` `@1974-12-25`).
fn render(item: &Item<'_>) -> (String, String) {
    let node_type = item.as_node().and_then(|node| node.type_name()).map(str::to_owned);
    let system = item.to_system();
    let (system_type, text) = match &system {
        Some(Item::Boolean(value)) => ("boolean", value.to_string()),
        Some(Item::Integer(value)) => ("integer", value.to_string()),
        Some(Item::Decimal(value)) => ("decimal", value.to_string()),
        Some(Item::String(value)) => ("string", value.to_string()),
        Some(Item::Date(value)) => ("date", format!("@{value}")),
        Some(Item::DateTime(value)) => ("dateTime", format!("@{value}")),
        Some(Item::Time(value)) => ("time", format!("@T{value}")),
        Some(Item::Quantity(value)) => ("Quantity", value.to_string()),
        Some(other) => ("", other.to_string()),
        None => ("", String::new()),
    };
    (node_type.unwrap_or_else(|| system_type.to_owned()), text)
}

/// The JSON version of an input file: `x.xml` is read as `json-inputs-r4/x.json`.
fn load_input(root: &Path, file: &str) -> Option<Value> {
    let path = match file.strip_suffix(".xml") {
        Some(stem) => root.join("json-inputs-r4").join(format!("{stem}.json")),
        None => root.join("official-r4").join(file),
    };
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    Some(serde_json::from_str(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display())))
}

fn read_cases(path: &Path) -> Vec<Case> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let document = roxmltree::Document::parse(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let mut cases = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for group in document.root_element().children().filter(|node| node.has_tag_name("group")) {
        let group_name = group.attribute("name").unwrap_or("group");
        let tests = group.children().filter(|node| node.has_tag_name("test") || node.has_tag_name("modeTest"));
        for (index, test) in tests.enumerate() {
            let Some(expression) = test.children().find(|node| node.has_tag_name("expression")) else {
                continue;
            };
            let base_name = test.attribute("name").map_or_else(|| format!("{group_name}[{index}]"), str::to_owned);
            // A few names repeat; later ones get a `#n` suffix.
            let occurrence = seen.entry(base_name.clone()).or_insert(0);
            *occurrence += 1;
            let name = if *occurrence == 1 { base_name } else { format!("{base_name}#{occurrence}") };
            cases.push(Case {
                name,
                input_file: test.attribute("inputfile").map(str::to_owned),
                expression: expression.text().unwrap_or_default().to_owned(),
                invalid: expression.attribute("invalid").is_some(),
                predicate: test.attribute("predicate") == Some("true"),
                ordered: test.attribute("ordered") != Some("false"),
                outputs: test
                    .children()
                    .filter(|node| node.has_tag_name("output"))
                    .map(|node| (node.attribute("type").map(str::to_owned), node.text().unwrap_or_default().to_owned()))
                    .collect(),
            });
        }
    }
    assert!(cases.len() >= 900, "read only {} cases from {}", cases.len(), path.display());
    cases
}
