//! Search criteria: the typed form of a FHIR query string that the store evaluates.
//!
//! This is the first slice of search, enough for conditional create, update and delete:
//! `_id` and every token parameter (`identifier=system|value`, `code=…`). Any other parameter
//! is refused with an issue rather than ignored, because a conditional write that silently
//! dropped a criterion could change the wrong resource.

mod extract;

pub use extract::{TokenEntry, token_entries};

use crate::Definitions;
use crate::definitions::SearchParamType;
use crate::outcome::{Issue, IssueType};

/// A conjunction of clauses: a resource matches when it matches every clause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Criteria {
    clauses: Vec<Clause>,
}

/// One query parameter: matches when any of its values matches (comma OR).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Clause {
    /// `_id=a,b`.
    Id(Vec<String>),
    /// A token parameter, identified by the stable id of its definition URL.
    Token { param: i64, values: Vec<TokenValue> },
}

/// One token value as written in a query: `code`, `system|code`, `|code` or `system|`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenValue {
    /// `None` when the value names no system (any system matches); `Some("")` for `|code`
    /// (the resource's token must have no system).
    pub system: Option<String>,
    /// `None` for `system|` (any code in that system).
    pub code: Option<String>,
}

impl Criteria {
    /// Parses decoded `(name, value)` query pairs for `resource_type`.
    ///
    /// Result-shaping parameters (`_format`, `_pretty`, `_count`, …) are skipped; everything
    /// else must be understood, or the whole query is refused.
    pub fn parse(resource_type: &str, pairs: &[(String, String)]) -> Result<Criteria, Issue> {
        let definitions = Definitions::get();
        let mut clauses = Vec::new();
        for (name, value) in pairs {
            if is_result_parameter(name) {
                continue;
            }
            if value.is_empty() {
                return Err(Issue::error(IssueType::Invalid, format!("search parameter '{name}' has an empty value")));
            }
            if name == "_id" {
                clauses.push(Clause::Id(value.split(',').map(str::to_owned).collect()));
                continue;
            }
            let parameter = definitions
                .search_parameters(resource_type)
                .into_iter()
                .find(|parameter| parameter.code == *name)
                .ok_or_else(|| {
                    Issue::error(
                        IssueType::NotSupported,
                        format!("search parameter '{name}' is not supported for {resource_type} in this criteria"),
                    )
                })?;
            if parameter.kind != SearchParamType::Token {
                return Err(Issue::error(
                    IssueType::NotSupported,
                    format!("only token parameters and _id can be used in conditional criteria, not '{name}'"),
                ));
            }
            let values = split_escaped(value, ',').iter().map(|value| parse_token(value)).collect();
            clauses.push(Clause::Token { param: param_id(&parameter.url), values });
        }
        Ok(Criteria { clauses })
    }

    /// The clauses, all of which must match.
    pub fn clauses(&self) -> &[Clause] {
        &self.clauses
    }

    /// True when there is nothing to match on (every resource of the type would match).
    pub fn is_empty(&self) -> bool {
        self.clauses.is_empty()
    }
}

/// The stable 63-bit id of a search parameter, derived from its canonical URL so that index
/// rows stay narrow integers without a registry table to keep in sync across processes.
pub fn param_id(url: &str) -> i64 {
    use std::hash::Hasher;
    let mut hasher = fnv::FnvHasher::default();
    hasher.write(url.as_bytes());
    (hasher.finish() >> 1) as i64
}

fn is_result_parameter(name: &str) -> bool {
    matches!(
        name,
        "_format" | "_pretty" | "_count" | "_summary" | "_elements" | "_sort" | "_total" | "_include" | "_revinclude"
    )
}

fn parse_token(value: &str) -> TokenValue {
    match find_unescaped(value, '|') {
        None => TokenValue { system: None, code: Some(unescape(value)) },
        Some(bar) => {
            let (system, code) = (&value[..bar], &value[bar + 1..]);
            TokenValue { system: Some(unescape(system)), code: (!code.is_empty()).then(|| unescape(code)) }
        }
    }
}

/// Splits on `separator` except where it is escaped with a backslash (FHIR search escaping).
fn split_escaped(value: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = value;
    while let Some(position) = find_unescaped(rest, separator) {
        parts.push(&rest[..position]);
        rest = &rest[position + 1..];
    }
    parts.push(rest);
    parts
}

fn find_unescaped(value: &str, wanted: char) -> Option<usize> {
    let mut escaped = false;
    for (position, character) in value.char_indices() {
        match character {
            '\\' if !escaped => escaped = true,
            c if c == wanted && !escaped => return Some(position),
            _ => escaped = false,
        }
    }
    None
}

fn unescape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut characters = value.chars();
    while let Some(character) = characters.next() {
        if character == '\\' {
            if let Some(next) = characters.next() {
                out.push(next);
            }
        } else {
            out.push(character);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_forms() {
        assert_eq!(parse_token("abc"), TokenValue { system: None, code: Some("abc".into()) });
        assert_eq!(
            parse_token("http://s|abc"),
            TokenValue { system: Some("http://s".into()), code: Some("abc".into()) }
        );
        assert_eq!(parse_token("|abc"), TokenValue { system: Some(String::new()), code: Some("abc".into()) });
        assert_eq!(parse_token("http://s|"), TokenValue { system: Some("http://s".into()), code: None });
        assert_eq!(parse_token(r"a\|b"), TokenValue { system: None, code: Some("a|b".into()) });
    }

    #[test]
    fn comma_splits_unless_escaped() {
        assert_eq!(split_escaped(r"a,b\,c", ','), vec!["a", r"b\,c"]);
    }

    #[test]
    fn param_ids_are_stable_and_positive() {
        let id = param_id("http://hl7.org/fhir/SearchParameter/Patient-identifier");
        assert!(id > 0);
        assert_eq!(id, param_id("http://hl7.org/fhir/SearchParameter/Patient-identifier"));
    }
}
