//! Prints how long `Definitions::get()` takes to decode the compiled definitions, and how fast
//! `validate` runs over the official R4 examples. Run it in release mode to measure start-up:
//! `cargo run --release -p fhir --example definitions_timing`.

#![allow(clippy::print_stdout)] // Printing the measurements is this example's whole job.

use std::io::Read;
use std::path::PathBuf;
use std::time::Instant;

use fhir::Definitions;

fn main() -> anyhow_free::Result {
    let start = Instant::now();
    let definitions = Definitions::get();
    println!("Definitions::get() first call: {:?}", start.elapsed());

    let examples = read_examples()?;
    let bytes: usize = examples.iter().map(|(_, size)| size).sum();
    let start = Instant::now();
    let rounds = 5;
    let mut errors = 0;
    for _ in 0..rounds {
        for (resource, _) in &examples {
            errors += definitions.validate(resource).iter().filter(|issue| issue.is_error()).count();
        }
    }
    let elapsed = start.elapsed() / rounds;
    println!(
        "validated {} examples ({bytes} bytes of JSON) in {elapsed:?} per round; {} errors",
        examples.len(),
        errors / rounds as usize
    );
    Ok(())
}

/// The R4 example resources with their JSON sizes.
fn read_examples() -> anyhow_free::Result<Vec<(serde_json::Value, usize)>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/packages/hl7.fhir.r4.examples-4.0.1.tgz");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(std::fs::File::open(path)?));
    let mut examples = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let name = entry.path()?.to_string_lossy().into_owned();
        if !name.ends_with(".json") || name.ends_with("package.json") || name.ends_with(".index.json") {
            continue;
        }
        let mut text = Vec::new();
        entry.read_to_end(&mut text)?;
        let json = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&text);
        examples.push((serde_json::from_slice(json)?, text.len()));
    }
    Ok(examples)
}

/// A boxed error, so the example needs no error-handling dependency.
mod anyhow_free {
    pub(crate) type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;
}
