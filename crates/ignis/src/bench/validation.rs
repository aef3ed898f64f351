//! `ignis bench --validate PATH`: how long validation takes per resource, over every resource
//! of the Bundles at `PATH`, each validated once per round after a warm-up round; no IO in the
//! measured part.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::bench::bundles::read_bundles;

/// Rounds measured after the warm-up.
const ROUNDS: usize = 5;

pub(crate) fn run(path: &Path) -> anyhow::Result<()> {
    let definitions = fhir::Definitions::get();
    let mut resources = Vec::new();
    for (text, _) in read_bundles(path)? {
        let bundle: Value = serde_json::from_str(&text)?;
        for entry in bundle["entry"].as_array().into_iter().flatten() {
            resources.push(entry["resource"].clone());
        }
    }
    if resources.is_empty() {
        anyhow::bail!("no resources in the Bundles at {}", path.display());
    }
    let mut latencies = Vec::with_capacity(resources.len() * ROUNDS);
    let mut issues = 0;
    for round in 0..=ROUNDS {
        for resource in &resources {
            let started = Instant::now();
            let found = definitions.validate(resource);
            let elapsed = started.elapsed();
            if round > 0 {
                latencies.push(elapsed);
                issues += found.len();
            }
        }
    }
    latencies.sort();
    let total: Duration = latencies.iter().sum();
    let micros = |duration: Duration| duration.as_secs_f64() * 1e6;
    let at = |quantile: f64| latencies[((latencies.len() - 1) as f64 * quantile) as usize];
    #[allow(clippy::print_stdout)] // The table is the command's output.
    {
        println!("| validations | resources/s | mean µs | p50 µs | p99 µs | max µs | issues |");
        println!("|---:|---:|---:|---:|---:|---:|---:|");
        println!(
            "| {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {} |",
            latencies.len(),
            latencies.len() as f64 / total.as_secs_f64().max(f64::EPSILON),
            micros(total) / latencies.len().max(1) as f64,
            micros(at(0.5)),
            micros(at(0.99)),
            micros(at(1.0)),
            issues / ROUNDS,
        );
    }
    Ok(())
}
