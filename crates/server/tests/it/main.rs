//! Integration tests: each test starts a real server on `127.0.0.1:0` over a fresh database
//! and speaks HTTP to it, as a client would. The database is SQLite, or a fresh schema in
//! PostgreSQL when `IGNIS_TEST_POSTGRES_URL` names one (`.ci/with-postgres` starts one).
//!
//! - `crud`: read, vread, create, update, delete, patch, conditional interactions, headers.
//! - `history`: instance, type and system history with `_since`, `_at`, `_count` and paging.
//! - `import`: bulk import through the store, checked over HTTP.
//! - `errors`: bad input of every kind gets the right status and an OperationOutcome.
//! - `examples`: the official R4 examples round-trip through create and read.
//! - `invariants`: the definitions' FHIRPath invariants (`dom-*`, `obs-6`, `obs-7`) on writes.
//! - `hardening`: panicking writes, dates at the edges, search limits, forged cursors.
//! - `capability`: the generated CapabilityStatement.
//! - `export`: Bulk Data `$export` kick-off, polling, manifest, files and cancellation.
//! - `transaction`: transaction and batch Bundles posted to the base.
//! - `search`: every parameter type, modifier, chain, include, sort and paging.
//! - `us_core`: the (g)(10) US Core searches over the conformance patients.
//! - `authorization`: bearer tokens, scopes and patient-compartment isolation on every interaction.
//! - `smart`: SMART App Launch played as an app and a browser would, through real HTTP.
//! - `browser`: the authorization pages in headless Chromium (`#[ignore]`d unless run with
//!   `--include-ignored`; `.ci/run` installs Chromium and chromedriver).
//! - `postgres`: several servers over one PostgreSQL database (`#[ignore]`d unless run with
//!   `--include-ignored` under `.ci/with-postgres`).

mod access;
mod audit;
mod authorization;
mod browser;
mod capability;
mod crud;
mod errors;
mod examples;
mod export;
mod hardening;
mod history;
mod import;
mod interop;
mod invariants;
mod monitoring;
mod mtls;
mod postgres;
mod search;
mod smart;
mod support;
mod transaction;
mod us_core;
