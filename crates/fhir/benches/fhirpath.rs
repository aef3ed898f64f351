//! Times FHIRPath search-parameter extraction: every search parameter expression that applies
//! to Observation (R4 core and US Core), parsed once, evaluated against the official
//! `observation-example.json`. Run with `cargo bench -p fhir --bench fhirpath`; it prints the
//! parse time and the time of one full extraction (all expressions) and of one expression.
//!
//! Plain `Instant` timing with no harness keeps the dependency list short; the numbers are for
//! spotting regressions by an order of magnitude, not for fine comparisons.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use fhir::Definitions;
use fhir::fhirpath::Expression;

fn main() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/fhirpath-tests/json-inputs-r4/observation-example.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let observation: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|error| panic!("{error}"));
    let texts: Vec<&str> = Definitions::get()
        .search_parameters("Observation")
        .into_iter()
        .filter_map(|parameter| parameter.expression.as_deref())
        .collect();

    let rounds = 200;
    let started = Instant::now();
    for _ in 0..rounds {
        for text in &texts {
            black_box(Expression::parse(text).ok());
        }
    }
    let parse_each = started.elapsed().as_secs_f64() * 1e6 / (rounds * texts.len()) as f64;

    let expressions: Vec<Expression> = texts.iter().filter_map(|text| Expression::parse(text).ok()).collect();
    let rounds = 2_000;
    let mut values = 0;
    let started = Instant::now();
    for _ in 0..rounds {
        for expression in &expressions {
            values += expression.evaluate(&observation).map(|items| items.len()).unwrap_or(0);
        }
    }
    let elapsed = started.elapsed().as_secs_f64() * 1e6;
    if std::env::var_os("FHIRPATH_BENCH_DETAIL").is_some() {
        let mut timed: Vec<(f64, &str)> = expressions
            .iter()
            .zip(&texts)
            .map(|(expression, text)| {
                let started = Instant::now();
                for _ in 0..rounds {
                    black_box(expression.evaluate(&observation).ok());
                }
                (started.elapsed().as_secs_f64() * 1e6 / rounds as f64, *text)
            })
            .collect();
        timed.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (micros, text) in timed.iter().take(8) {
            eprintln!("{micros:8.2} µs  {}", text.chars().take(100).collect::<String>());
        }
    }
    eprintln!(
        "fhirpath: {} Observation expressions; parse {parse_each:.1} µs each; extraction {:.1} µs per resource \
         ({:.2} µs per expression, {} values)",
        expressions.len(),
        elapsed / rounds as f64,
        elapsed / (rounds * expressions.len()) as f64,
        values / rounds,
    );
}
