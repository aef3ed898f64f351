//! What both stores share about custom search parameters: noting that a write touched a
//! `SearchParameter` (so the writer reloads its registry afterwards), and building a
//! registry from the bodies of the live `SearchParameter` resources.

use std::cell::Cell;
use std::sync::Arc;

use fhir::search::{Registry, custom_from_resource};
use serde_json::Value;

thread_local! {
    /// Set by a write of a `SearchParameter` on this thread (a write runs on the thread that
    /// holds its connection); the store reloads the registry after the write.
    static CHANGED: Cell<bool> = const { Cell::new(false) };
}

/// Notes that a resource of `resource_type` was written.
pub(crate) fn note_write(resource_type: &str) {
    if resource_type == "SearchParameter" {
        CHANGED.with(|changed| changed.set(true));
    }
}

/// True (once) if a `SearchParameter` was written on this thread since the last call.
pub(crate) fn take_changed() -> bool {
    CHANGED.with(|changed| changed.replace(false))
}

/// The official parameters plus those of `bodies` (stored `SearchParameter` JSON) that
/// search can use; the others are logged and skipped.
pub(crate) fn from_bodies(bodies: impl IntoIterator<Item = String>) -> Arc<Registry> {
    let mut custom = Vec::new();
    for body in bodies {
        match serde_json::from_str::<Value>(&body).ok().as_ref().and_then(custom_from_resource) {
            Some(parameter) => custom.push(parameter),
            None => tracing::warn!(
                "a SearchParameter resource cannot be used for search (no url, code, base, type or valid expression)"
            ),
        }
    }
    tracing::debug!(count = custom.len(), "custom search parameters registered");
    Registry::with_custom(custom)
}
