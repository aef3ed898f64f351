//! Validates every resource of the official R4 examples package (`hl7.fhir.r4.examples-4.0.1`)
//! and the examples shipped inside the US Core 6.1.0 and 7.0.0 packages, and checks that exactly
//! the examples listed in [`EXPECTED_INVALID`] and [`EXPECTED_INVALID_US_CORE`] are rejected: the
//! validator must accept what the specs publish, except where an example truly breaks a rule.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

use fhir::{Definitions, Issue};

/// Examples with real errors, each with the rule it breaks (checked by reading the file).
const EXPECTED_INVALID: &[(&str, &str)] = &[
    ("ImplementationGuide-fhir.json", "no ImplementationGuide.name and no .status, both 1..1"),
    ("ig-r4.json", "the same ImplementationGuide as ImplementationGuide-fhir.json: no name, no status"),
    (
        "Questionnaire-qs1.json",
        "32 nested display items (item[0].item[n].item[0], …) lack Questionnaire.item.linkId (1..1)",
    ),
    (
        "Bundle-types.json",
        "ext-value: R4's own type definitions give structuredefinition-fhir-type a valueString (its \
         definition takes a valueUrl); they also use it, regex and structuredefinition-normative-version \
         outside their R4 contexts (ext-context warnings)",
    ),
    (
        "DiagnosticReport-example-pgx.json",
        "att-hash: presentedForm.hash is the SHA-1 in hex, not in base64 as the Attachment.hash type says",
    ),
    (
        "Observation-example-genetics-brcapat.json",
        "ext-context, ext-value: us-core-ethnicity on an Observation (its contexts are Patient, \
         RelatedPerson, Person, Practitioner and FamilyMemberHistory), with a value instead of its parts",
    ),
    ("ActivityDefinition-blood-tubes-supply.json", "txt-2: the narrative div holds only whitespace"),
    ("ActivityDefinition-heart-valve-replacement.json", "txt-2: the narrative div holds only whitespace"),
    ("EventDefinition-example.json", "txt-2: the narrative div holds only whitespace"),
    ("Questionnaire-zika-virus-exposure-assessment.json", "txt-2: the narrative div holds only whitespace"),
    ("Bundle-10bb101f-a121-4264-a920-67be9cb82c74.json", "bdl-url: fullUrl …/Patient/pat12 holds Patient pat2"),
    ("Bundle-3a0707d3-549e-4467-b8b8-5a2ab3800efe.json", "bdl-url: fullUrl …/Endpoint/Endpoint-71 holds Endpoint 71"),
    (
        "Bundle-lri-example.json",
        "bdl-url: fullUrls …/Observation/lri-gramstain1 (and the other lri- Observations) hold ids without `lri-`",
    ),
];

/// US Core examples with real errors, named `<package version>/<file name>`.
const EXPECTED_INVALID_US_CORE: &[(&str, &str)] = &[
    ("6.1.0/Bundle-66c8856b-ba11-4876-8aa8-467aad8c11a2.json", "bdl-url: fullUrl …/Patient/pat12 holds Patient pat2"),
    (
        "6.1.0/Bundle-docref-example-2.json",
        "bdl-url: fullUrl …/DocumentReference/discharge-summary789 holds DocumentReference discharge",
    ),
];

/// Every example file name under `folder` of `package` with the error issues it produces.
fn example_errors(package: &str, folder: &str) -> BTreeMap<String, Vec<Issue>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/packages").join(package);
    let file = std::fs::File::open(&path).expect("examples package");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let definitions = Definitions::get();
    let mut results = BTreeMap::new();
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let name = entry.path().expect("path").to_string_lossy().into_owned();
        let Some(file_name) = name.strip_prefix(folder) else {
            continue;
        };
        let skipped = ["package.json", ".index.json"].contains(&file_name) || file_name.contains('/');
        if !file_name.ends_with(".json") || skipped {
            continue;
        }
        let mut text = Vec::new();
        entry.read_to_end(&mut text).expect("read");
        let text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&text);
        let resource: serde_json::Value = serde_json::from_slice(text).expect("example is JSON");
        let errors = definitions.validate(&resource).into_iter().filter(Issue::is_error).collect();
        results.insert(file_name.to_owned(), errors);
    }
    results
}

/// Files whose error state differs from `expected`, with their issues.
fn unexpected(results: &BTreeMap<String, Vec<Issue>>, expected: &[(&str, &str)]) -> Vec<String> {
    let mut problems = Vec::new();
    for (file_name, errors) in results {
        let listed = expected.iter().any(|(name, _)| name == file_name);
        if errors.is_empty() == listed {
            problems.push(format!("{file_name} (listed as invalid: {listed}): {errors:#?}"));
        }
    }
    for (name, _) in expected {
        if !results.contains_key(*name) {
            problems.push(format!("{name} is listed but not in the package"));
        }
    }
    problems
}

#[test]
fn official_r4_examples_validate_except_the_known_invalid_ones() {
    let results = example_errors("hl7.fhir.r4.examples-4.0.1.tgz", "package/");
    assert_eq!(results.len(), 720, "examples read");
    let problems = unexpected(&results, EXPECTED_INVALID);
    assert!(problems.is_empty(), "{} unexpected results:\n{}", problems.len(), problems.join("\n"));
}

#[test]
fn us_core_examples_validate_except_the_known_invalid_ones() {
    let mut results = BTreeMap::new();
    for version in ["6.1.0", "7.0.0"] {
        let package = format!("hl7.fhir.us.core-{version}.tgz");
        for (file_name, errors) in example_errors(&package, "package/example/") {
            results.insert(format!("{version}/{file_name}"), errors);
        }
    }
    assert!(results.len() > 350, "only {} US Core examples read", results.len());
    let problems = unexpected(&results, EXPECTED_INVALID_US_CORE);
    assert!(problems.is_empty(), "{} unexpected results:\n{}", problems.len(), problems.join("\n"));
}
