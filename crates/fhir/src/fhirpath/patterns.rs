//! Regular expressions of `matches`, `matchesFull` and `replaceMatches`, compiled at most once.
//!
//! A pattern written as a string literal in the expression (the normal case) gets a slot in
//! the compiled [`Expression`](crate::fhirpath::Expression) when it is parsed; the first
//! evaluation that needs it compiles it into the slot, and every later evaluation, on any
//! thread, reuses it. Compiling lazily keeps parsing cheap (a hostile expression full of
//! patterns it never uses costs nothing), and an invalid literal pattern stays an evaluation
//! error, as it was, rather than a parse error.
//!
//! A pattern computed at run time (`matches(%pattern)`) is compiled when first seen in one
//! evaluation and kept in a small per-evaluation cache ([`RegexCache`]). Every compilation is
//! charged to the evaluation's work budget, and all are bounded in size.

use std::sync::OnceLock;

use regex::{Regex, RegexBuilder};

use crate::fhirpath::EvalError;
use crate::fhirpath::ast::{Expr, Function, Literal};

/// Compiled size limit for regular expressions taken from expressions.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Run-time patterns one evaluation keeps compiled.
const MAX_CACHED: usize = 16;

/// The literal patterns of one expression.
#[derive(Debug, Clone, Default)]
pub(crate) struct Patterns {
    literals: Vec<LiteralPattern>,
}

#[derive(Debug, Clone)]
struct LiteralPattern {
    text: String,
    /// `matchesFull`: anchored at both ends.
    whole: bool,
    compiled: OnceLock<Result<Regex, String>>,
}

/// A compiled pattern, and whether it was compiled just now (to be charged for).
pub(crate) struct Found<'r> {
    pub(crate) regex: &'r Regex,
    pub(crate) compiled_now: bool,
}

impl Patterns {
    /// The literal patterns in `root`, not compiled yet.
    pub(crate) fn collect(root: &Expr) -> Patterns {
        let mut literals: Vec<LiteralPattern> = Vec::new();
        let mut pending = vec![root];
        while let Some(expr) = pending.pop() {
            match expr {
                Expr::Call { target, function, args } => {
                    let whole = *function == Function::MatchesFull;
                    let takes_pattern = matches!(function, Function::Matches | Function::ReplaceMatches) || whole;
                    if takes_pattern
                        && let Some(Expr::Literal(Literal::String(text))) = args.first()
                        && !literals.iter().any(|known| known.whole == whole && known.text == *text)
                    {
                        literals.push(LiteralPattern { text: text.clone(), whole, compiled: OnceLock::new() });
                    }
                    pending.extend(target.as_deref());
                    pending.extend(args);
                }
                Expr::Member(target, _) | Expr::Negate(target) => pending.push(target),
                Expr::Type { target, .. } => pending.extend(target.as_deref()),
                Expr::Index(left, right) | Expr::Binary(_, left, right) => {
                    pending.push(left);
                    pending.push(right);
                }
                Expr::Literal(_)
                | Expr::Empty
                | Expr::Identifier(_)
                | Expr::TypeFilter(_)
                | Expr::This
                | Expr::IndexVariable
                | Expr::Total
                | Expr::Variable(_) => {}
            }
        }
        Patterns { literals }
    }

    /// The compiled form of `pattern` when it is one of the literals, compiling it on first
    /// use.
    pub(crate) fn find(&self, pattern: &str, whole: bool) -> Option<Result<Found<'_>, EvalError>> {
        let literal = self.literals.iter().find(|literal| literal.whole == whole && literal.text == pattern)?;
        let mut compiled_now = false;
        let compiled = literal.compiled.get_or_init(|| {
            compiled_now = true;
            compile(pattern, whole).map_err(|error| error.message().to_owned())
        });
        Some(match compiled {
            Ok(regex) => Ok(Found { regex, compiled_now }),
            Err(message) => Err(EvalError::new(message.clone())),
        })
    }

    /// How many literal patterns have been compiled so far.
    #[cfg(test)]
    pub(crate) fn compiled_count(&self) -> usize {
        self.literals.iter().filter(|literal| literal.compiled.get().is_some()).count()
    }

    /// How many literal patterns the expression has.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.literals.len()
    }
}

/// The run-time patterns one evaluation has compiled; empty (and unallocated) until one is
/// needed.
#[derive(Default)]
pub(crate) struct RegexCache {
    entries: Vec<(String, bool, Result<Regex, String>)>,
}

impl RegexCache {
    /// `pattern` compiled, from the cache when it was compiled before in this evaluation.
    pub(crate) fn get(&mut self, pattern: &str, whole: bool) -> Result<Found<'_>, EvalError> {
        let (position, compiled_now) =
            match self.entries.iter().position(|(text, anchored, _)| *anchored == whole && text == pattern) {
                Some(position) => (position, false),
                None => {
                    if self.entries.len() >= MAX_CACHED {
                        drop(self.entries.remove(0));
                    }
                    let compiled = compile(pattern, whole).map_err(|error| error.message().to_owned());
                    self.entries.push((pattern.to_owned(), whole, compiled));
                    (self.entries.len() - 1, true)
                }
            };
        match self.entries.get(position) {
            Some((_, _, Ok(regex))) => Ok(Found { regex, compiled_now }),
            Some((_, _, Err(message))) => Err(EvalError::new(message.clone())),
            None => Err(EvalError::new("regular expression cache out of step")),
        }
    }
}

#[cfg(test)]
thread_local! {
    /// Regular expressions compiled on this thread, for tests that check they are not
    /// compiled again.
    static COMPILATIONS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Regular expressions compiled so far on this thread.
#[cfg(test)]
pub(crate) fn compilations() -> usize {
    COMPILATIONS.with(std::cell::Cell::get)
}

/// Compiles `pattern` (anchored at both ends when `whole`), with `.` matching newlines and a
/// bounded compiled size.
fn compile(pattern: &str, whole: bool) -> Result<Regex, EvalError> {
    #[cfg(test)]
    COMPILATIONS.with(|count| count.set(count.get() + 1));
    let anchored;
    let pattern = if whole {
        anchored = format!("^(?:{pattern})$");
        anchored.as_str()
    } else {
        pattern
    };
    RegexBuilder::new(pattern)
        .dot_matches_new_line(true)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|error| EvalError::new(format!("invalid regular expression: {error}")))
}
