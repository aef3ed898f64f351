//! FHIR R4 knowledge, with no IO.
//!
//! - [`definitions::Definitions`]: resource types, element trees, value sets, search parameters
//!   and compartments, compiled at build time from the official packages in `data/packages/`
//!   (R4 core 4.0.1, US Core 6.1.0 and 7.0.0) and decoded once at start.
//! - [`validation`]: checks a resource (a `serde_json::Value`) against its base
//!   StructureDefinition and the US Core profiles it claims in `meta.profile`.
//! - [`fhirpath`]: a FHIRPath engine over resource JSON, for search-parameter extraction and
//!   invariants; expressions are parsed once and evaluated without copying the resource.
//! - [`outcome`]: the `OperationOutcome` issue model every error is reported in.
//! - [`id`]: the typed identifiers (resource type names and logical ids) that cross into the
//!   store.
//!
//! Resources stay JSON values: generated typed models for all of R4 cost minutes of compile
//! time, and the server only reasons about a few fields of each resource.

pub mod definitions;
pub mod fhirpath;
pub mod id;
pub mod instant;
pub mod outcome;
pub mod references;
pub mod search;
pub mod summary;
pub mod validation;

pub use definitions::Definitions;
pub use outcome::{Issue, IssueType, Severity};
