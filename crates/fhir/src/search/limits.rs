//! Hard limits on the work one search may ask for.
//!
//! A query string is client input, and a few characters of it can ask for a great deal: a
//! chain through parameters that may point at any resource type fans out into one branch per
//! type at every link, nested `_has` multiplies the same way, and thousands of OR-ed values or
//! parameters each become SQL. [`SearchQuery::parse`](crate::search::SearchQuery::parse)
//! refuses a query that goes past any of these limits with an `OperationOutcome` issue of type
//! `too-costly` (always an error, also under lenient handling) whose text names the limit and
//! its value, for example `(limit max-chain-targets = 64)`.
//!
//! The limits are public so the server can describe them and the store can rely on them.

/// The largest page a client may ask for with `_count`; larger counts are lowered to it.
pub const MAX_COUNT: usize = 1000;

/// Links a chained parameter may have after its first (`subject.organization.name` has one),
/// counting the links of `_has` as well. Named `max-chain-depth` in messages.
pub const MAX_CHAIN_DEPTH: usize = 4;

/// Target-type branches one parameter's chain may expand to, summed over all its links.
///
/// Without an explicit type (`subject:Patient.name`), a chain link tries every type its
/// reference may point at, and each type that has the next parameter becomes a branch (and a
/// SQL subquery); types without it cost nothing. `Observation?subject.name` makes a handful of
/// branches; a chain through parameters that may point at any type (`Task?subject.subject…`)
/// makes thousands and is refused as soon as the count passes this limit. Named
/// `max-chain-targets` in messages.
pub const MAX_CHAIN_TARGETS: usize = 64;

/// How deeply `_has` may nest inside `_has` (`_has:A:r:_has:B:s:code=x` nests two deep).
/// Named `max-has-depth` in messages.
pub const MAX_HAS_DEPTH: usize = 2;

/// Comma-separated values one parameter may have (also the entries of `_sort` and
/// `_elements`). Named `max-or-values` in messages.
pub const MAX_OR_VALUES: usize = 100;

/// Values all the criteria of one search may have together. Named `max-total-values` in
/// messages.
pub const MAX_TOTAL_VALUES: usize = 500;

/// Criteria (every parameter other than the result parameters `_count`, `_sort`, `_include`,
/// …, known or not) one search may have. Named `max-clauses` in messages.
pub const MAX_CLAUSES: usize = 50;

/// Keys `_sort` may have. Named `max-sort-keys` in messages.
pub const MAX_SORT_KEYS: usize = 8;

/// `_include` and `_revinclude` parameters one search may have, `:iterate` ones included.
/// Named `max-includes` in messages.
pub const MAX_INCLUDES: usize = 10;

/// `_include:iterate` and `_revinclude:iterate` parameters one search may have (the store
/// separately caps how many rounds of iteration it runs). Named `max-iterate-includes` in
/// messages.
pub const MAX_ITERATE_INCLUDES: usize = 4;
