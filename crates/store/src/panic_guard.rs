//! A panic inside database work becomes an [`Error`] instead of unwinding through the store.
//!
//! Unwinding drops the open transaction (rusqlite and `postgres` roll back on drop), but it
//! would also poison the SQLite writer's mutex and stop every later write. [`catch`] stops the
//! unwind where the work started, so the lock is released normally and the next write runs.
//!
//! With the `test-hooks` feature, [`panic_on_write`] arms a panic in the middle of the next
//! write of a given logical id (after its version rows, before its index rows), so tests can
//! prove the rollback. Without the feature the hook compiles to nothing.

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::Error;

/// Runs `work`, turning a panic into [`Error::Database`] (a 500 that reveals nothing).
pub(crate) fn catch<T, E: From<Error>>(what: &str, work: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
    // The work's captured state (a connection whose transaction rolled back on unwind) is
    // left consistent, which is what AssertUnwindSafe vouches for.
    catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|text| (*text).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned());
        Err(E::from(Error::Database(format!("{what} panicked and was rolled back: {message}"))))
    })
}

#[cfg(feature = "test-hooks")]
mod hooks {
    use std::collections::HashSet;
    use std::sync::Mutex;

    static ARMED: Mutex<Option<HashSet<String>>> = Mutex::new(None);

    /// Makes the next write of a resource with logical id `id` panic midway (test builds
    /// only). Each arming fires once.
    pub fn panic_on_write(id: &str) {
        let mut armed = ARMED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        armed.get_or_insert_with(HashSet::new).insert(id.to_owned());
    }

    pub(crate) fn check(id: &str) {
        let fire = {
            let mut armed = ARMED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            armed.as_mut().is_some_and(|armed| armed.remove(id))
        };
        if fire {
            panic!("test hook: the write of '{id}' panics as asked");
        }
    }
}

#[cfg(feature = "test-hooks")]
pub use hooks::panic_on_write;

/// The point in a version write where an armed test hook panics; nothing without the
/// `test-hooks` feature.
#[inline]
pub(crate) fn write_checkpoint(_id: &str) {
    #[cfg(feature = "test-hooks")]
    hooks::check(_id);
}
