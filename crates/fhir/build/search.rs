//! Build step: SearchParameters (deduplicated by URL) and CompartmentDefinitions.

use std::collections::HashSet;

use serde_json::Value;

use crate::Package;
use crate::model::{Compartment, SearchParamComponent, SearchParamType, SearchParameter};

/// Every SearchParameter of the packages, one per URL (the first package that has it wins).
pub(crate) fn compile(packages: &[&Package]) -> Vec<SearchParameter> {
    let mut seen = HashSet::new();
    let mut parameters = Vec::new();
    for package in packages {
        for resource in package.of_type("SearchParameter") {
            let url = resource["url"].as_str().expect("SearchParameter.url");
            if seen.insert(url.to_owned()) {
                parameters.push(parameter(resource, url));
            }
        }
    }
    parameters.sort_by(|a, b| (&a.code, &a.url).cmp(&(&b.code, &b.url)));
    parameters
}

fn parameter(resource: &Value, url: &str) -> SearchParameter {
    SearchParameter {
        url: url.to_owned(),
        code: resource["code"].as_str().expect("SearchParameter.code").to_owned(),
        kind: kind(resource["type"].as_str().unwrap_or_default()),
        base: strings(&resource["base"]),
        expression: resource["expression"].as_str().map(str::to_owned),
        target: strings(&resource["target"]),
        description: resource["description"].as_str().unwrap_or_default().to_owned(),
        components: resource["component"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| SearchParamComponent {
                definition: c["definition"].as_str().unwrap_or_default().to_owned(),
                expression: c["expression"].as_str().unwrap_or_default().to_owned(),
            })
            .collect(),
    }
}

fn kind(code: &str) -> SearchParamType {
    match code {
        "number" => SearchParamType::Number,
        "date" => SearchParamType::Date,
        "string" => SearchParamType::String,
        "token" => SearchParamType::Token,
        "reference" => SearchParamType::Reference,
        "composite" => SearchParamType::Composite,
        "quantity" => SearchParamType::Quantity,
        "uri" => SearchParamType::Uri,
        "special" => SearchParamType::Special,
        other => panic!("unknown search parameter type {other}"),
    }
}

fn strings(value: &Value) -> Vec<String> {
    value.as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_owned).collect()
}

/// The core CompartmentDefinitions; the package's `example` definition (whose URL does not name
/// its compartment) is left out.
pub(crate) fn compartments(core: &Package) -> Vec<Compartment> {
    let mut compartments = Vec::new();
    for definition in core.of_type("CompartmentDefinition") {
        let (Some(url), Some(code)) = (definition["url"].as_str(), definition["code"].as_str()) else {
            continue;
        };
        if !url.rsplit('/').next().is_some_and(|last| last.eq_ignore_ascii_case(code)) {
            continue;
        }
        let mut resources: Vec<(String, Vec<String>)> = definition["resource"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| Some((r["code"].as_str()?.to_owned(), strings(&r["param"]))))
            .collect();
        resources.sort();
        compartments.push(Compartment { code: code.to_owned(), resources });
    }
    compartments.sort_by(|a, b| a.code.cmp(&b.code));
    compartments
}
