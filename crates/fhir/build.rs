//! Compiles the official FHIR packages in `data/packages/` into the compact definitions model
//! (`src/definitions/model.rs`) and writes it, postcard-encoded, to `$OUT_DIR/definitions.bin`.
//!
//! Doing this at build time keeps start-up fast (the library only decodes a few hundred
//! kilobytes) and keeps every type, element and code list out of hand-written source: they all
//! come from R4 core 4.0.1 and US Core 6.1.0 / 7.0.0.

#[path = "build/extensions.rs"]
mod extensions;
#[path = "src/definitions/model.rs"]
#[allow(dead_code, unreachable_pub)]
mod model;
#[path = "build/profiles.rs"]
mod profiles;
#[path = "build/search.rs"]
mod search;
#[path = "build/types.rs"]
mod types;
#[path = "build/value_sets.rs"]
mod value_sets;

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The packages, in the order their definitions take precedence.
const CORE: &str = "hl7.fhir.r4.core-4.0.1.tgz";
const US_CORE_7: &str = "hl7.fhir.us.core-7.0.0.tgz";
const US_CORE_6: &str = "hl7.fhir.us.core-6.1.0.tgz";

/// Resource types read from the packages; everything else (examples, narratives, maps) is
/// skipped without parsing.
const WANTED: &[&str] =
    &["StructureDefinition-", "ValueSet-", "CodeSystem-", "SearchParameter-", "CompartmentDefinition-"];

/// The definition resources of one package.
pub(crate) struct Package {
    pub(crate) resources: Vec<Value>,
}

impl Package {
    /// Resources of type `resource_type`.
    pub(crate) fn of_type<'a>(&'a self, resource_type: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.resources.iter().filter(move |r| r["resourceType"] == resource_type)
    }
}

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let packages_dir = manifest_dir.join("../../data/packages");
    println!("cargo:rerun-if-changed=src/definitions/model.rs");
    println!("cargo:rerun-if-changed=build");
    let core = read_package(&packages_dir.join(CORE));
    let us_core = [read_package(&packages_dir.join(US_CORE_7)), read_package(&packages_dir.join(US_CORE_6))];
    let all: Vec<&Package> = std::iter::once(&core).chain(us_core.iter()).collect();

    let mut bindings = value_sets::Bindings::default();
    let compiled = types::compile(&core, &mut bindings);
    let profiles = profiles::compile(&us_core, &compiled, &mut bindings);
    let model = model::Model {
        types: compiled.types,
        value_sets: value_sets::expand_all(&bindings, &all),
        profiles,
        search_parameters: search::compile(&all),
        compartments: search::compartments(&core),
        extensions: extensions::compile(&all),
    };
    let bytes = postcard::to_allocvec(&model).expect("encode definitions");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("definitions.bin");
    std::fs::write(out, bytes).expect("write definitions");
}

/// Reads the wanted definition resources of the package at `path`.
fn read_package(path: &Path) -> Package {
    println!("cargo:rerun-if-changed={}", path.display());
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut resources = Vec::new();
    for entry in archive.entries().expect("read package") {
        let mut entry = entry.expect("read package entry");
        let name = entry.path().expect("entry path").to_string_lossy().into_owned();
        let Some(file_name) = name.strip_prefix("package/") else {
            continue;
        };
        if file_name.contains('/') || !WANTED.iter().any(|prefix| file_name.starts_with(prefix)) {
            continue;
        }
        let mut text = Vec::new();
        entry.read_to_end(&mut text).expect("read package file");
        let value: Value = serde_json::from_slice(strip_bom(&text)).unwrap_or_else(|e| panic!("{name}: {e}"));
        resources.push(value);
    }
    Package { resources }
}

fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

/// A canonical URL without its `|version` suffix.
pub(crate) fn strip_version(url: &str) -> &str {
    url.split('|').next().unwrap_or(url)
}
