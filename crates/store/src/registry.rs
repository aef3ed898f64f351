//! What both stores share about custom search parameters: one registry per partition (a
//! `SearchParameter` written in the sandbox changes nothing in production), and building a
//! registry from the bodies of the live `SearchParameter` resources. A write that touches a
//! `SearchParameter` notes it in its [`crate::clock::WriteContext`]; the store then reloads.

use std::sync::{Arc, RwLock};

use crate::Environment;

use fhir::search::{Registry, custom_from_resource};
use serde_json::Value;

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

/// A store's registries, one per partition; each is replaced (never edited) when a
/// `SearchParameter` changes.
pub(crate) struct Registries {
    production: RwLock<Arc<Registry>>,
    sandbox: RwLock<Arc<Registry>>,
}

impl Registries {
    /// Registries built by `load` for each partition.
    pub(crate) fn load<E>(mut load: impl FnMut(Environment) -> Result<Arc<Registry>, E>) -> Result<Registries, E> {
        Ok(Registries {
            production: RwLock::new(load(Environment::Production)?),
            sandbox: RwLock::new(load(Environment::Sandbox)?),
        })
    }

    fn slot(&self, env: Environment) -> &RwLock<Arc<Registry>> {
        match env {
            Environment::Production => &self.production,
            Environment::Sandbox => &self.sandbox,
        }
    }

    /// The registry in effect for `env`.
    pub(crate) fn get(&self, env: Environment) -> Arc<Registry> {
        // A poisoned lock still holds a whole registry: it is only ever replaced.
        Arc::clone(&self.slot(env).read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Replaces both registries with what `load` builds.
    pub(crate) fn reload<E>(&self, mut load: impl FnMut(Environment) -> Result<Arc<Registry>, E>) -> Result<(), E> {
        for env in [Environment::Production, Environment::Sandbox] {
            let registry = load(env)?;
            *self.slot(env).write().unwrap_or_else(std::sync::PoisonError::into_inner) = registry;
        }
        Ok(())
    }
}
