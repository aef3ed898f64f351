//! Property tests ("fuzzing"): nothing a client controls makes the search-query parser, the
//! FHIRPath parser and evaluator, the date parser or the validator panic.
//!
//! Each property runs 256 generated cases by default; `PROPTEST_CASES=20000 cargo test -p fhir
//! --test fuzz --release` runs a longer campaign. Failing inputs that proptest finds are saved
//! in `proptest-regressions/fuzz.txt` and replayed first on every run (commit that file). The
//! seed corpus in `tests/fuzz-corpus/` holds nasty inputs, one per line (`#` starts a comment
//! line), which run deterministically on every test run.

use std::path::PathBuf;

use fhir::Definitions;
use fhir::fhirpath::{Context, Expression};
use fhir::instant;
use fhir::search::{Clause, Criteria, Handling, Registry, SearchQuery};
use fhir::summary::View;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Value, json};

/// 256 cases per property unless `PROPTEST_CASES` says otherwise.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|cases| cases.parse().ok()).unwrap_or(256);
    ProptestConfig { cases, ..ProptestConfig::default() }
}

/// The non-comment, non-empty lines of `tests/fuzz-corpus/<name>`.
fn corpus(name: &str) -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-corpus").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    text.lines().filter(|line| !line.is_empty() && !line.starts_with('#')).map(str::to_owned).collect()
}

// ---------------------------------------------------------------------------------------------
// Search queries
// ---------------------------------------------------------------------------------------------

const RESOURCE_TYPES: &[&str] = &[
    "Patient",
    "Observation",
    "Encounter",
    "Practitioner",
    "Organization",
    "Condition",
    "MedicationRequest",
    "DiagnosticReport",
    "Provenance",
    "Bundle",
    "SearchParameter",
    "Questionnaire",
    "QuestionnaireResponse",
    "Resource",
    "DomainResource",
    "Unknown",
    "patient",
    "",
];

const PARAM_NAMES: &[&str] = &[
    "name",
    "family",
    "given",
    "birthdate",
    "gender",
    "identifier",
    "subject",
    "patient",
    "code",
    "value-quantity",
    "value-concept",
    "value-string",
    "value-date",
    "date",
    "status",
    "category",
    "_id",
    "_lastUpdated",
    "_has:Observation:patient:code",
    "_has:Observation:subject:_has:Provenance:target:agent",
    "_has:Observation:patient",
    "_has",
    "subject:Patient.name",
    "subject:Patient.organization.name",
    "patient.name",
    "general-practitioner:Practitioner.name",
    "_include",
    "_revinclude",
    "_include:iterate",
    "_revinclude:iterate",
    "_sort",
    "_count",
    "_summary",
    "_elements",
    "_total",
    "_cursor",
    "_format",
    "_pretty",
    "_type",
    "_contained",
    "code:text",
    "code:not",
    "code:in",
    "code:below",
    "name:exact",
    "name:contains",
    "name:missing",
    "birthdate:missing",
    "identifier:of-type",
    "subject:identifier",
    "component-code-value-quantity",
    "code-value-quantity",
    "combo-code-value-quantity",
    "url",
    "url:below",
    "url:above",
    "_tag",
    "_profile",
    "_security",
    "_source",
    "_text",
    "_content",
    "_list",
    "_query",
    "general-practitioner",
    "organization",
    "address-postalcode",
    "phone",
    "telecom",
    "death-date",
    "deceased",
    "link",
    "active",
    "encounter",
    "performer",
    "based-on",
    "has-member",
    "derived-from",
    "probability",
    "length",
];

const MODIFIERS: &[&str] = &[
    "exact",
    "contains",
    "missing",
    "text",
    "not",
    "in",
    "not-in",
    "below",
    "above",
    "of-type",
    "identifier",
    "iterate",
    "Patient",
    "Observation",
    "Patient.name",
    "type",
    "",
    ":",
];

const VALUE_PIECES: &[&str] = &[
    "ge",
    "le",
    "gt",
    "lt",
    "eq",
    "ne",
    "sa",
    "eb",
    "ap",
    "2024",
    "2024-03",
    "2024-03-05",
    "2024-03-05T10:00",
    "2024-03-05T10:00:00Z",
    "2024-03-05T10:00:00.123456789+01:00",
    "9999",
    "9999-12",
    "9999-12-31",
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:00:00-05:00",
    "9999-12-31T23:59:59.999999999-14:00",
    "0001",
    "0001-01-01",
    "0001-01-01T00:00:00+14:00",
    "0000",
    "10000",
    "2023-02-29",
    "2016-12-31T23:59:60Z",
    "T",
    "Z",
    "+14:00",
    "-14:00",
    "+99:99",
    ":",
    "|",
    "$",
    ",",
    "\\",
    "\\,",
    "\\|",
    "\\$",
    "http://loinc.org",
    "urn:oid:1.2",
    "8867-4",
    "Patient/1",
    "Patient/",
    "/",
    "Observation",
    "http://example.org/fhir/Patient/1/_history/2",
    "#",
    "1",
    "0",
    "-1",
    "1.5",
    "1e400",
    "-0",
    ".5",
    "5.",
    "1e-400",
    "1e2147483648",
    "NaN",
    "inf",
    "99999999999999999999999999999999",
    "mg",
    "kg",
    "[lb_av]",
    "'",
    "\"",
    "%",
    "%20",
    "&",
    "=",
    "*",
    "true",
    "false",
    "asc",
    "-date",
    "-",
    "name",
    "Patient:subject",
    "Observation:patient:Patient",
    "*",
    "*:*",
    "é",
    "ß",
    "İ",
    "𝄞",
    "\u{0}",
    "\u{200b}",
    "\u{feff}",
    "\u{301}",
    " ",
    "\t",
    "count",
    "accurate",
    "estimate",
    "none",
    "text",
    "data",
];

fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => select(VALUE_PIECES).prop_map(str::to_owned),
        1 => any::<String>(),
        1 => "[a-z0-9:|$,\\\\. -]{0,12}",
        1 => (select(VALUE_PIECES), 1..300usize).prop_map(|(piece, count)| piece.repeat(count)),
    ]
}

fn search_value() -> impl Strategy<Value = String> {
    prop::collection::vec(piece(), 0..6).prop_map(|pieces| pieces.concat())
}

fn search_name() -> impl Strategy<Value = String> {
    let name = || select(PARAM_NAMES).prop_map(str::to_owned);
    prop_oneof![
        5 => name(),
        2 => (name(), select(MODIFIERS)).prop_map(|(name, modifier)| format!("{name}:{modifier}")),
        2 => prop::collection::vec(name(), 1..6).prop_map(|names| names.join(".")),
        2 => prop::collection::vec((select(RESOURCE_TYPES), name(), name()), 1..6).prop_map(|hops| {
            let has: Vec<String> = hops.iter().map(|(ty, reference, _)| format!("_has:{ty}:{reference}")).collect();
            format!("{}:{}", has.join(":"), hops[0].2)
        }),
        1 => search_value(),
    ]
}

fn check_search(resource_type: &str, pairs: &[(String, String)]) {
    let registry = Registry::official();
    for handling in [Handling::Lenient, Handling::Strict] {
        let _ = SearchQuery::parse(&registry, resource_type, pairs, handling);
    }
    let _ = Criteria::parse(&registry, resource_type, pairs);
    if let Some((_, id)) = pairs.first() {
        let _ = Clause::compartment(&registry, "Patient", id, resource_type);
    }
}

/// `Type?name=value&name=value`, without percent-decoding (the corpus holds raw text).
fn query_pairs(line: &str) -> (&str, Vec<(String, String)>) {
    let (resource_type, query) = line.split_once('?').unwrap_or(("Patient", line));
    let pairs = query
        .split('&')
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (name.to_owned(), value.to_owned())
        })
        .collect();
    (resource_type, pairs)
}

#[test]
fn search_corpus() {
    let lines = corpus("search.txt");
    assert!(lines.len() > 20);
    for line in &lines {
        let (resource_type, pairs) = query_pairs(line);
        check_search(resource_type, &pairs);
    }
}

#[test]
fn search_dates_at_the_edges_are_accepted() {
    let registry = Registry::official();
    for value in ["9999-12-31", "ge9999", "lt9999-12", "9999-12-31T23:59:59Z", "ap0001-01-01T00:00:00+14:00"] {
        let pairs = [("birthdate".to_owned(), value.to_owned())];
        assert!(SearchQuery::parse(&registry, "Patient", &pairs, Handling::Strict).is_ok(), "{value}");
        let pairs = [("_lastUpdated".to_owned(), value.to_owned())];
        assert!(SearchQuery::parse(&registry, "Patient", &pairs, Handling::Strict).is_ok(), "{value}");
    }
    for value in ["0000", "10000", "2023-02-29", "9999-12-32", "2024-03-05T10:00:00+15:00"] {
        let pairs = [("birthdate".to_owned(), value.to_owned())];
        assert!(SearchQuery::parse(&registry, "Patient", &pairs, Handling::Lenient).is_err(), "{value}");
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn search_queries_never_panic(
        resource_type in select(RESOURCE_TYPES),
        pairs in prop::collection::vec((search_name(), search_value()), 0..6),
    ) {
        check_search(resource_type, &pairs);
    }

    #[test]
    fn arbitrary_search_text_never_panics(resource_type in any::<String>(), pairs in prop::collection::vec(any::<(String, String)>(), 0..4)) {
        check_search(&resource_type, &pairs);
    }
}

// ---------------------------------------------------------------------------------------------
// FHIRPath
// ---------------------------------------------------------------------------------------------

const FHIRPATH_TOKENS: &[&str] = &[
    // Names and paths.
    "Patient",
    "Observation",
    "Resource",
    "name",
    "given",
    "family",
    "birthDate",
    "telecom",
    "value",
    "valueQuantity",
    "code",
    "coding",
    "system",
    "display",
    "id",
    "extension",
    "url",
    "subject",
    "reference",
    "component",
    "effective",
    "issued",
    "contained",
    "text",
    "div",
    "unit",
    "`given`",
    "`a b`",
    "$this",
    "$index",
    "$total",
    "%resource",
    "%rootResource",
    "%context",
    "%ucum",
    "%`vs-administrative-gender`",
    "%'sct'",
    "%undefined",
    // Types.
    "Quantity",
    "String",
    "FHIR.string",
    "System.Integer",
    "HumanName",
    "Reference",
    "Coding",
    "Date",
    "DateTime",
    // Functions.
    "where(",
    "select(",
    "repeat(",
    "ofType(",
    "resolve()",
    "matches(",
    "replaceMatches(",
    "toDate()",
    "toDateTime()",
    "toTime()",
    "toString()",
    "toInteger()",
    "toDecimal()",
    "toQuantity(",
    "toBoolean()",
    "convertsToDate()",
    "convertsToQuantity(",
    "exists(",
    "all(",
    "allTrue()",
    "anyFalse()",
    "empty()",
    "count()",
    "first()",
    "last()",
    "tail()",
    "single()",
    "skip(",
    "take(",
    "substring(",
    "indexOf(",
    "startsWith(",
    "endsWith(",
    "contains(",
    "replace(",
    "length()",
    "upper()",
    "lower()",
    "toChars()",
    "split(",
    "join(",
    "trim()",
    "encode(",
    "decode(",
    "iif(",
    "children()",
    "descendants()",
    "trace(",
    "aggregate(",
    "combine(",
    "union(",
    "intersect(",
    "exclude(",
    "subsetOf(",
    "supersetOf(",
    "distinct()",
    "isDistinct()",
    "not()",
    "as(",
    "is(",
    "type()",
    "extension(",
    "hasValue()",
    "getValue()",
    "lowBoundary(",
    "highBoundary(",
    "precision()",
    "now()",
    "today()",
    "timeOfDay()",
    "abs()",
    "ceiling()",
    "floor()",
    "ln()",
    "log(",
    "power(",
    "sqrt()",
    "round(",
    "truncate()",
    "exp()",
    "memberOf(",
    "conformsTo(",
    "htmlChecks()",
    "sort(",
    "unknownFunction(",
    // Operators and punctuation.
    ".",
    ".",
    "|",
    "+",
    "-",
    "*",
    "/",
    "div",
    "mod",
    "&",
    "=",
    "!=",
    "~",
    "!~",
    "<",
    ">",
    "<=",
    ">=",
    "and",
    "or",
    "xor",
    "implies",
    "in",
    "contains",
    "is",
    "as",
    "not",
    "(",
    "(",
    ")",
    ")",
    ")",
    "[",
    "]",
    "{",
    "}",
    "{}",
    ",",
    ",",
    "//",
    "/*",
    "*/",
    // Literals.
    "'abc'",
    "''",
    "'\\u0041'",
    "'\\''",
    "'\\uZZZZ'",
    "'unterminated",
    "'(a|b)*c'",
    "'^.*$'",
    "'[a-'",
    "'(?<n>x)\\\\k<n>'",
    "'a{1000000}'",
    "\"double\"",
    "0",
    "1",
    "-1",
    "2",
    "9223372036854775807",
    "9223372036854775808",
    "2147483648",
    "99999999999999999999999999999999999",
    "1.5",
    "0.0000000000000000000000000000001",
    "1e5",
    "1.",
    "true",
    "false",
    "@2024",
    "@2024-01",
    "@2024-01-01",
    "@2024-01-01T",
    "@2024-01-01T10:00:00Z",
    "@2024-01-01T10:00:00.123+14:00",
    "@9999-12-31",
    "@9999-12-31T23:59:59.999-14:00",
    "@0001-01-01",
    "@0001-01-01T00:00:00+14:00",
    "@0000",
    "@2024-02-30",
    "@T10:00",
    "@T24:00",
    "@T10:00:00.000",
    "5 'mg'",
    "5 'kg'",
    "1 'wk'",
    "3 days",
    "1 year",
    "9999 years",
    "1000000 months",
    "1 'ms'",
    "2 'cm'",
    "5 '%'",
    "1 '{'",
];

const SEPARATORS: &[&str] = &["", "", " ", ".", "\n", "\t"];

fn fhirpath_text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => fhirpath_expression(),
        6 => prop::collection::vec((select(FHIRPATH_TOKENS), select(SEPARATORS)), 0..20).prop_map(|tokens| {
            tokens.into_iter().flat_map(|(token, separator)| [token, separator]).collect::<String>()
        }),
        1 => any::<String>(),
        1 => "[a-zA-Z0-9().,'@%$ +*/<>=|&~!\\[\\]{}`\\\\-]{0,40}",
    ]
}

const LEAVES: &[&str] = &[
    "name",
    "name.given",
    "birthDate",
    "deceased",
    "telecom.value",
    "extension",
    "contained",
    "value",
    "component",
    "effective",
    "issued",
    "code.coding",
    "subject",
    "Patient",
    "Observation.value",
    "$this",
    "$index",
    "$total",
    "%resource",
    "%context",
    "{}",
    "true",
    "0",
    "1",
    "-1",
    "9223372036854775807",
    "1.5",
    "0.001",
    "'abc'",
    "''",
    "'9999-12-31'",
    "'2024-01-01T10:00:00Z'",
    "'5 mg'",
    "'a.*'",
    "@2024",
    "@2024-01",
    "@9999-12-31",
    "@0001-01-01T00:00:00+14:00",
    "@9999-12-31T23:59:59.999-14:00",
    "@T10:00",
    "5 'mg'",
    "1 year",
    "3 days",
    "1 'ms'",
];
const UNARY_FUNCTIONS: &[&str] = &[
    "empty",
    "exists",
    "count",
    "first",
    "last",
    "tail",
    "single",
    "distinct",
    "isDistinct",
    "not",
    "children",
    "descendants",
    "toDate",
    "toDateTime",
    "toTime",
    "toString",
    "toInteger",
    "toDecimal",
    "toQuantity",
    "toBoolean",
    "convertsToDate",
    "convertsToInteger",
    "length",
    "upper",
    "lower",
    "toChars",
    "trim",
    "abs",
    "ceiling",
    "floor",
    "ln",
    "sqrt",
    "exp",
    "truncate",
    "round",
    "now",
    "today",
    "timeOfDay",
    "hasValue",
    "getValue",
    "resolve",
    "allTrue",
    "anyTrue",
    "precision",
    "lowBoundary",
    "highBoundary",
    "type",
];
const BINARY_FUNCTIONS: &[&str] = &[
    "where",
    "select",
    "all",
    "exists",
    "skip",
    "take",
    "substring",
    "indexOf",
    "startsWith",
    "endsWith",
    "contains",
    "matches",
    "split",
    "join",
    "combine",
    "union",
    "intersect",
    "exclude",
    "subsetOf",
    "supersetOf",
    "log",
    "power",
    "round",
    "extension",
    "lowBoundary",
    "highBoundary",
    "toQuantity",
    "trace",
    "encode",
    "decode",
    "memberOf",
    "iif",
];
const TERNARY_FUNCTIONS: &[&str] = &["replace", "replaceMatches", "substring", "iif", "trace"];
const OPERATORS: &[&str] = &[
    "|", "+", "-", "*", "/", "div", "mod", "&", "=", "!=", "~", "!~", "<", ">", "<=", ">=", "and", "or", "xor",
    "implies", "in", "contains",
];
const TYPE_NAMES: &[&str] = &["Quantity", "String", "FHIR.string", "System.Integer", "HumanName", "Date", "Patient"];

/// Expressions that parse (mostly): paths, literals, operators and function calls nested a few
/// levels. Two known resource bombs are left out so that a run stays short: `repeat` only gets
/// path arguments (`(1).repeat($this + 1)` runs to 100,000 items with a quadratic duplicate
/// check), and there is no `aggregate` (`descendants().aggregate($total.combine($total), 1)`
/// doubles its collection per item, without bound).
fn fhirpath_expression() -> impl Strategy<Value = String> {
    let leaf = select(LEAVES).prop_map(str::to_owned);
    leaf.prop_recursive(5, 48, 3, |inner| {
        prop_oneof![
            (inner.clone(), select(OPERATORS), inner.clone()).prop_map(|(a, op, b)| format!("{a} {op} {b}")),
            inner.clone().prop_map(|a| format!("({a})")),
            inner.clone().prop_map(|a| format!("-{a}")),
            (inner.clone(), select(UNARY_FUNCTIONS)).prop_map(|(a, f)| format!("{a}.{f}()")),
            (inner.clone(), select(BINARY_FUNCTIONS), inner.clone()).prop_map(|(a, f, b)| format!("{a}.{f}({b})")),
            (inner.clone(), select(TERNARY_FUNCTIONS), inner.clone(), inner.clone())
                .prop_map(|(a, f, b, c)| format!("{a}.{f}({b}, {c})")),
            (inner.clone(), select(&["children()", "item", "extension", "name", "descendants()"][..]))
                .prop_map(|(a, path)| format!("{a}.repeat({path})")),
            (inner.clone(), select(LEAVES)).prop_map(|(a, path)| format!("{a}.{path}")),
            (inner.clone(), inner.clone()).prop_map(|(a, index)| format!("{a}[{index}]")),
            (inner, select(TYPE_NAMES), select(&[" is ", " as ", ".ofType(", ".is(", ".as("][..])).prop_map(
                |(a, ty, how)| if how.starts_with('.') { format!("{a}{how}{ty})") } else { format!("{a}{how}{ty}") }
            ),
        ]
    })
}

fn sample_resources() -> [Value; 3] {
    [
        json!({
            "resourceType": "Patient",
            "id": "p1",
            "meta": {"lastUpdated": "2024-01-01T00:00:00Z"},
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Hi <a href=\"#x\">x</a></div>"},
            "extension": [{"url": "http://example.org/e", "valueDate": "9999-12-31"}],
            "active": true,
            "name": [{"use": "official", "family": "Émile", "given": ["A", "B"]}, {"text": "𝄞"}],
            "birthDate": "0001-01-01",
            "_birthDate": {"extension": [{"url": "http://example.org/t", "valueTime": "23:59:59"}]},
            "deceasedDateTime": "9999-12-31T23:00:00-05:00",
            "telecom": [{"system": "phone", "value": "555"}],
            "contained": [{"resourceType": "Organization", "id": "o1", "name": "Org"}],
            "managingOrganization": {"reference": "#o1"},
            "generalPractitioner": [{"reference": "Practitioner/1"}, {"reference": "urn:uuid:1"}],
            "multipleBirthInteger": 2147483647,
        }),
        json!({
            "resourceType": "Observation",
            "id": "o1",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}], "text": "HR"},
            "subject": {"reference": "Patient/p1"},
            "effectivePeriod": {"start": "0001-01-01T00:00:00+14:00", "end": "9999-12-31T23:59:59.999999999Z"},
            "issued": "9999-12-31T23:59:59Z",
            "valueQuantity": {"value": 1e308, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"},
            "component": [
                {"code": {"text": "a"}, "valueQuantity": {"value": -0.0000000001, "code": "mg"}},
                {"code": {"text": "b"}, "valueString": "x"},
                {"code": {"text": "c"}, "valueDateTime": "2024-02-29"},
            ],
        }),
        serde_json::from_str(
            r#"{"resourceType": "Parameters", "parameter": [{"name": "n", "valueDecimal": 99999999999999999999999999.999e99}]}"#,
        )
        .expect("JSON"),
    ]
}

fn check_fhirpath(text: &str, resources: &[Value]) {
    let Ok(expression) = Expression::parse(text) else { return };
    let _ = expression.evaluate_without_input();
    for resource in resources {
        let _ = expression.evaluate(resource);
        let context = Context::new(resource).with_root_resource(&resources[0]);
        let _ = expression.evaluate_with(resource, &context);
    }
}

#[test]
fn fhirpath_corpus() {
    let lines = corpus("fhirpath.txt");
    assert!(lines.len() > 20);
    let resources = sample_resources();
    for line in &lines {
        check_fhirpath(line, &resources);
    }
}

#[test]
fn fhirpath_deep_nesting_is_refused_or_evaluated() {
    let resources = sample_resources();
    for depth in [100, 127, 128, 129, 200, 1000, 10_000] {
        for text in [
            format!("{}1{}", "(".repeat(depth), ")".repeat(depth)),
            format!("Patient{}", ".name".repeat(depth)),
            format!("{}name{}", "where(".repeat(depth), ")".repeat(depth)),
            format!("1{}", " + 1".repeat(depth)),
            format!("{}1", "-".repeat(depth)),
            format!("{}true", "not ".repeat(depth)),
            format!("name{}", ".select($this)".repeat(depth)),
            format!("{}{{}}{}", "iif(true, ".repeat(depth), ")".repeat(depth)),
            format!("({})", "1 | ".repeat(depth) + "1"),
            format!("'{}'", "a".repeat(depth * 100)),
        ] {
            check_fhirpath(&text, &resources);
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fhirpath_never_panics(text in fhirpath_text()) {
        check_fhirpath(&text, &sample_resources());
    }
}

// ---------------------------------------------------------------------------------------------
// Dates
// ---------------------------------------------------------------------------------------------

/// What `instant::range` must give for any text: nothing, or an ordered pair that agrees with
/// `parse_lower_bound`, whose `format` reads back to the same lower bound.
fn check_date(text: &str) -> Option<(i64, i64)> {
    let range = instant::range(text);
    let lower = instant::parse_lower_bound(text);
    assert_eq!(range.is_some(), lower.is_some(), "{text:?}: range {range:?}, lower bound {lower:?}");
    let (range, lower) = (range?, lower?);
    assert!(range.0 <= range.1, "{text:?}: {range:?}");
    let micros = i64::try_from(lower.unix_timestamp_nanos().div_euclid(1000)).expect("micros");
    assert_eq!(micros, range.0, "{text:?}");
    let formatted = instant::format(lower);
    assert_eq!(instant::range(&formatted).map(|r| r.0), Some(range.0), "{text:?} formats as {formatted:?}");
    Some(range)
}

#[test]
fn date_corpus() {
    let lines = corpus("dates.txt");
    assert!(lines.len() > 20);
    for line in &lines {
        let (expected, text) = line.split_once(' ').unwrap_or((line, ""));
        let range = check_date(text);
        match expected {
            "ok" => assert!(range.is_some(), "{text:?} should parse"),
            "bad" => assert!(range.is_none(), "{text:?} should not parse"),
            other => panic!("dates.txt: a line starts with ok or bad, not {other:?}"),
        }
    }
}

/// A well-formed FHIR date, dateTime or instant and the number of microseconds its precision
/// covers (`None` for years and months, whose lengths vary).
fn well_formed_date() -> impl Strategy<Value = (String, Option<i64>)> {
    let date = (1..=9999i32, 1..=12u32, 1..=31u32).prop_map(|(year, month, day)| {
        let days = match month {
            2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        (year, month, day.min(days))
    });
    let zone = prop_oneof![
        1 => Just(String::new()),
        2 => Just("Z".to_owned()),
        4 => (0..=14u32, 0..=59u32, any::<bool>()).prop_map(|(hours, minutes, east)| {
            let minutes = if hours == 14 { 0 } else { minutes };
            format!("{}{hours:02}:{minutes:02}", if east { '+' } else { '-' })
        }),
    ];
    let fraction = (0..=9usize, any::<u32>()).prop_map(|(digits, value)| {
        if digits == 0 { String::new() } else { format!(".{:09}", value % 1_000_000_000)[..=digits].to_owned() }
    });
    (date, 0..6u32, 0..=23u32, 0..=59u32, 0..=60u32, fraction, zone).prop_map(
        |((year, month, day), precision, hour, minute, second, fraction, zone)| match precision {
            0 => (format!("{year:04}"), None),
            1 => (format!("{year:04}-{month:02}"), None),
            2 => (format!("{year:04}-{month:02}-{day:02}"), Some(86_400_000_000)),
            3 => (format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}{zone}"), Some(60_000_000)),
            4 => (format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{zone}"), Some(1_000_000)),
            _ => {
                let digits = u32::try_from(fraction.len().saturating_sub(1)).unwrap_or(9);
                let span = if second == 60 { 1 } else { 10_i64.pow(6_u32.saturating_sub(digits)) };
                let span = if fraction.is_empty() { 1_000_000 } else { span };
                (format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{fraction}{zone}"), Some(span))
            }
        },
    )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn well_formed_dates_have_ordered_ranges((text, span) in well_formed_date()) {
        let range = check_date(&text);
        prop_assert!(range.is_some(), "{} should parse", text);
        let (low, high) = range.unwrap_or_default();
        let is_leap_second = text.get(17..19) == Some("60");
        match span {
            Some(_) if is_leap_second => prop_assert_eq!(high, low, "{}", text),
            Some(span) => prop_assert_eq!(high - low + 1, span, "{}", text),
            None => prop_assert!(high - low + 1 >= 28 * 86_400_000_000, "{}", text),
        }
    }

    #[test]
    fn arbitrary_date_text_never_panics(text in prop_oneof![any::<String>(), "[0-9T:Z+.-]{0,40}", "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\\.[0-9]{0,12})?)?(Z|[+-][0-9]{2}:[0-9]{2})?"]) {
        check_date(&text);
    }

    /// What the validator accepts as a date, dateTime or instant is what search indexing can
    /// read: nothing is skipped silently.
    #[test]
    fn valid_temporal_values_are_indexable(text in prop_oneof![
        "[0-9]{4}(-[0-9]{2}(-[0-9]{2})?)?",
        "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,12})?(Z|[+-][0-9]{2}:[0-9]{2})",
        well_formed_date().prop_map(|(text, _)| text),
    ]) {
        let definitions = Definitions::get();
        let patient = json!({"resourceType": "Patient", "birthDate": text, "deceasedDateTime": text});
        let observation = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "issued": text});
        for (resource, key) in [(&patient, "Patient.birthDate"), (&patient, "Patient.deceasedDateTime"), (&observation, "Observation.issued")] {
            let refused = definitions
                .validate(resource)
                .iter()
                .any(|issue| issue.is_error() && issue.expression.as_deref() == Some(key));
            prop_assert!(refused || instant::range(&text).is_some(), "{} accepted as {} but not indexable", text, key);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Validation (and the other walks over client resources: indexing, references, summaries)
// ---------------------------------------------------------------------------------------------

const KEYS: &[&str] = &[
    "resourceType",
    "id",
    "meta",
    "profile",
    "lastUpdated",
    "text",
    "status",
    "div",
    "name",
    "family",
    "given",
    "_given",
    "birthDate",
    "_birthDate",
    "gender",
    "active",
    "deceasedBoolean",
    "deceasedDateTime",
    "multipleBirthInteger",
    "extension",
    "modifierExtension",
    "url",
    "valueString",
    "valueQuantity",
    "valueDateTime",
    "valueCodeableConcept",
    "valueBoolean",
    "value",
    "unit",
    "system",
    "code",
    "coding",
    "display",
    "subject",
    "reference",
    "identifier",
    "contained",
    "entry",
    "resource",
    "fullUrl",
    "component",
    "effectiveDateTime",
    "effectivePeriod",
    "start",
    "end",
    "issued",
    "telecom",
    "address",
    "link",
    "other",
    "type",
    "category",
    "low",
    "high",
    "performer",
    "note",
    "item",
    "linkId",
    "answer",
    "request",
    "method",
    "period",
    "use",
    "expression",
    "base",
    "",
    "_",
    "__proto__",
];

const STRINGS: &[&str] = &[
    "Patient",
    "Observation",
    "Bundle",
    "Organization",
    "Resource",
    "final",
    "male",
    "official",
    "transaction",
    "POST",
    "2024",
    "9999-12-31",
    "0001-01-01",
    "9999-12-31T23:00:00-05:00",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59.999999999Z",
    "2023-02-29",
    "0000",
    "10000-01-01",
    "Patient/1",
    "#o1",
    "#",
    "urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0",
    "Patient?identifier=a|b",
    "http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient",
    "http://hl7.org/fhir/us/core/StructureDefinition/us-core-observation-lab",
    "http://hl7.org/fhir/us/core/StructureDefinition/us-core-vital-signs",
    "http://hl7.org/fhir/StructureDefinition/vitalsigns",
    "http://loinc.org",
    "<div xmlns=\"http://www.w3.org/1999/xhtml\"><a href=\"urn:uuid:1\">x</a></div>",
    "<div",
    "",
    " ",
    "𝄞",
    "\u{0}",
];

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        1 => Just(Value::Null),
        2 => any::<bool>().prop_map(Value::Bool),
        2 => any::<i64>().prop_map(Value::from),
        1 => any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
        1 => select(&["1e999999", "-0", "0.000", "2147483648", "1e-400", "123456789012345678901234567890.5"][..])
            .prop_filter_map("number", |text| serde_json::from_str(text).ok()),
        6 => select(STRINGS).prop_map(|text| Value::String(text.to_owned())),
        1 => any::<String>().prop_map(Value::String),
    ]
}

fn json_key() -> impl Strategy<Value = String> {
    prop_oneof![8 => select(KEYS).prop_map(str::to_owned), 1 => any::<String>(), 1 => "[a-z]{1,8}[A-Z][a-z]{1,8}"]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(6, 64, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((json_key(), inner), 0..5)
                .prop_map(|fields| Value::Object(fields.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

/// A resource-shaped object: a `resourceType` from the list, maybe a US Core profile, and
/// random elements; sometimes wrapped many levels deep.
fn resource() -> impl Strategy<Value = Value> {
    let body = (
        select(RESOURCE_TYPES),
        prop::option::of(select(&STRINGS[24..28])),
        prop::collection::vec((json_key(), json_value()), 0..8),
    )
        .prop_map(|(resource_type, profile, fields)| {
            let mut object: Map<String, Value> = fields.into_iter().collect();
            object.insert("resourceType".into(), json!(resource_type));
            if let Some(profile) = profile {
                object.insert("meta".into(), json!({"profile": [profile]}));
            }
            Value::Object(object)
        });
    (body, 0..3u8, 0..160usize).prop_map(|(resource, wrapping, depth)| match wrapping {
        0 => resource,
        1 => (0..depth).fold(
            resource,
            |inner, _| json!({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": inner}]}),
        ),
        _ => {
            let mut resource = resource;
            let nested = (0..depth).fold(
                json!({"url": "http://x", "valueString": "x"}),
                |inner, _| json!({"url": "http://x", "extension": [inner]}),
            );
            if let Value::Object(object) = &mut resource {
                object.insert("extension".into(), json!([nested]));
            }
            resource
        }
    })
}

fn check_resource(resource: &Value) {
    let _ = Definitions::get().validate(resource);
    let _ = fhir::references::references(resource);
    let mut rewritten = resource.clone();
    let _ = fhir::references::rewrite(&mut rewritten, &|url| {
        url.starts_with("urn:").then(|| format!("Patient/{}", url.len()))
    });
    let elements = ["name".to_owned(), "_birthDate".to_owned(), String::new()];
    for view in [View::Summary, View::Data, View::Text, View::Elements(&elements)] {
        let mut viewed = resource.clone();
        fhir::summary::apply(&mut viewed, view);
    }
    if let Some(resource_type) = resource.get("resourceType").and_then(Value::as_str) {
        let _ = fhir::search::index_rows(&fhir::search::Registry::official(), resource_type, resource);
    }
}

#[test]
fn resource_corpus() {
    let lines = corpus("resources.txt");
    assert!(lines.len() > 10);
    for line in &lines {
        let resource: Value = serde_json::from_str(line).unwrap_or_else(|error| panic!("{line}: {error}"));
        check_resource(&resource);
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn validation_and_indexing_never_panic(resource in resource()) {
        check_resource(&resource);
    }

    #[test]
    fn custom_search_parameters_never_panic(
        expression in fhirpath_text(),
        kind in select(&["number", "date", "string", "token", "reference", "quantity", "uri", "composite"][..]),
        base in select(&RESOURCE_TYPES[..4]),
    ) {
        let parameter = json!({
            "resourceType": "SearchParameter",
            "url": format!("http://example.org/SearchParameter/fuzz-{kind}"),
            "code": format!("fuzz-{kind}"),
            "base": [base],
            "type": kind,
            "expression": expression,
            "status": "active",
        });
        if let Some(custom) = fhir::search::custom_from_resource(&parameter) {
            let registry = Registry::with_custom(vec![custom]);
            for resource in sample_resources() {
                if let Some(resource_type) = resource.get("resourceType").and_then(Value::as_str) {
                    let _ = fhir::search::index_rows(&registry, resource_type, &resource);
                }
            }
            let pairs = [(format!("fuzz-{kind}"), "ge9999-12-31".to_owned())];
            let _ = SearchQuery::parse(&registry, base, &pairs, Handling::Strict);
        }
    }
}
