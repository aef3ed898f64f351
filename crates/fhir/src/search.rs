//! FHIR search: the typed form of a query string, and the index rows resources are found by.
//!
//! [`SearchQuery::parse`] turns decoded `name=value` pairs into [`Clause`]s (AND across
//! parameters, OR across comma-separated values) plus the result controls (`_sort`,
//! `_count`, `_include`, …). The store compiles clauses to SQL over the index tables that
//! [`index::index_rows`] fills on every write. [`Criteria`] is the strict subset used by
//! conditional interactions, where an unknown parameter is an error rather than ignored.

mod index;
pub mod limits;
mod nodes;
mod params;
mod parse;
mod text;

pub use index::{
    DateRow, IndexRows, NumberRow, QuantityRow, ReferenceRow, StringRow, TokenRow, UriRow, index_rows, local_target,
};
pub use limits::MAX_COUNT;
pub use params::{Parameter, Registry, custom_from_resource, param_id};
pub use parse::{Handling, SearchQuery};
pub use text::normalize;

use crate::outcome::Issue;

/// A conjunction of clauses: a resource matches when it matches every clause.
#[derive(Debug, Clone, PartialEq)]
pub struct Criteria {
    clauses: Vec<Clause>,
}

impl Criteria {
    /// Parses conditional criteria (`If-None-Exist`, conditional update/delete, conditional
    /// references) for `resource_type`. Result-shaping parameters are skipped; an unknown or
    /// unsupported parameter is an error, because a conditional write that dropped a criterion
    /// could change the wrong resource.
    pub fn parse(registry: &Registry, resource_type: &str, pairs: &[(String, String)]) -> Result<Criteria, Issue> {
        let query = SearchQuery::parse(registry, resource_type, pairs, Handling::Strict)?;
        Ok(Criteria { clauses: query.clauses })
    }

    /// Criteria made of `clauses`.
    pub fn from_clauses(clauses: Vec<Clause>) -> Criteria {
        Criteria { clauses }
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

/// One query parameter (AND-ed with the others).
#[derive(Debug, Clone, PartialEq)]
pub enum Clause {
    /// `_id=a,b` (or `_id:not=…` when `negate`).
    Id { ids: Vec<String>, negate: bool },
    /// `_lastUpdated`, compared with the stored write instant.
    LastUpdated(Vec<SearchValue>),
    /// A parameter compared with its index rows.
    Param(ParamClause),
    /// `ref:Type.param=…`: resources whose reference `reference` points at a resource
    /// matching the inner clause; one inner clause per possible target type.
    Chain { reference: Parameter, reference_id: i64, targets: Vec<(String, Box<Clause>)> },
    /// `_has:Source:ref:param=…`: resources that a `source_type` resource matching `inner`
    /// points at through `reference`.
    Has { source_type: String, reference_id: i64, inner: Box<Clause> },
    /// Any of the clauses (the comma-separated pairs of a composite parameter).
    AnyOf(Vec<Clause>),
    /// Every one of the clauses (one alternative of a token's granted filters).
    AllOf(Vec<Clause>),
    /// Membership of a compartment (`Patient/123/Observation`): any of the reference
    /// parameters the CompartmentDefinition names points at `target_type/id`, for one of
    /// `ids`, or for any resource of the type when `ids` is `None` (a bulk export of every
    /// patient's data).
    Compartment { reference_ids: Vec<i64>, target_type: String, ids: Option<Vec<String>> },
}

impl Clause {
    /// The clause restricting `resource_type` resources to the compartment of
    /// `compartment_type/id`; `None` when no resource of that type can be in it.
    pub fn compartment(registry: &Registry, compartment_type: &str, id: &str, resource_type: &str) -> Option<Clause> {
        Clause::compartments(registry, compartment_type, Some(vec![id.to_owned()]), resource_type)
    }

    /// The clause restricting `resource_type` resources to the compartments of the
    /// `compartment_type` resources `ids` (of every one when `None`); `None` when no
    /// resource of that type can be in such a compartment.
    pub fn compartments(
        registry: &Registry,
        compartment_type: &str,
        ids: Option<Vec<String>>,
        resource_type: &str,
    ) -> Option<Clause> {
        let codes = crate::Definitions::get().compartment_params(compartment_type, resource_type);
        let reference_ids = reference_ids(registry, resource_type, codes);
        let is_compartment_owner = resource_type == compartment_type && !codes.is_empty();
        if reference_ids.is_empty() && !is_compartment_owner {
            return None;
        }
        Some(Clause::Compartment { reference_ids, target_type: compartment_type.to_owned(), ids })
    }

    /// The clause restricting `resource_type` resources to those whose reference parameters
    /// `codes` (any of them) point at one of the `target_type` resources `ids` (any when
    /// `None`), or that are one of them; `None` when the type has none of those parameters.
    /// A compartment is one such set of codes; a bulk export adds others (`Device.patient`).
    pub fn linked(
        registry: &Registry,
        resource_type: &str,
        codes: &[String],
        target_type: &str,
        ids: Option<Vec<String>>,
    ) -> Option<Clause> {
        let reference_ids = reference_ids(registry, resource_type, codes);
        (!reference_ids.is_empty()).then(|| Clause::Compartment {
            reference_ids,
            target_type: target_type.to_owned(),
            ids,
        })
    }
}

/// The index row ids of the reference parameters `codes` of `resource_type`.
fn reference_ids(registry: &Registry, resource_type: &str, codes: &[String]) -> Vec<i64> {
    codes
        .iter()
        .filter_map(|code| registry.find_param(resource_type, code))
        .filter(|param| param.kind == crate::definitions::SearchParamType::Reference)
        .map(|param| param_id(&param.url))
        .collect()
}

/// A parameter, the modifier it was used with, and its OR-ed values.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamClause {
    pub param: Parameter,
    /// The id of the index rows to search: the parameter's own, or those a modifier needs
    /// (`:text`, `:of-type`, `:identifier`).
    pub rows: i64,
    pub modifier: Modifier,
    pub values: Vec<SearchValue>,
}

/// Search modifiers Ignis supports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Modifier {
    None,
    /// `:missing=true|false`.
    Missing(bool),
    Exact,
    Contains,
    /// `:text` on tokens: search the display text.
    Text,
    /// `:not` on tokens: resources without a matching code (including those with none).
    Not,
    /// `:above` on URIs: the stored URI is a prefix of the value.
    Above,
    /// `:below` on URIs: the value is a prefix of the stored URI.
    Below,
}

/// Comparison prefixes of ordered values (`eq` when none is written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Sa,
    Eb,
    Ap,
}

/// One value of a parameter, parsed for its type.
#[derive(Debug, Clone, PartialEq)]
pub enum SearchValue {
    /// `code`, `system|code`, `|code` or `system|`.
    Token(TokenValue),
    /// The text as written (normalised by the store when the modifier needs it).
    String(String),
    /// The instants the value covers, both inclusive, in microseconds.
    Date {
        prefix: Prefix,
        low: i64,
        high: i64,
    },
    /// A number with the range its precision implies (`100` is `[99.5, 100.5)`).
    Number {
        prefix: Prefix,
        value: f64,
        low: f64,
        high: f64,
    },
    /// A quantity: number, optional system and code-or-unit.
    Quantity {
        prefix: Prefix,
        value: f64,
        low: f64,
        high: f64,
        system: Option<String>,
        code: Option<String>,
    },
    /// A reference: a local target (`[Type/]id`) and/or an absolute or canonical URL.
    Reference {
        target_type: Option<String>,
        id: Option<String>,
        url: Option<String>,
    },
    Uri(String),
}

/// One token value as written in a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenValue {
    /// `None` when the value names no system (any system matches); `Some("")` for `|code`
    /// (the resource's token must have no system).
    pub system: Option<String>,
    /// `None` for `system|` (any code in that system).
    pub code: Option<String>,
}

/// One `_sort` key.
#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    pub field: SortField,
    pub descending: bool,
}

/// What a sort key sorts on.
#[derive(Debug, Clone, PartialEq)]
pub enum SortField {
    Id,
    LastUpdated,
    /// A parameter's index rows (the first value for ascending, the last for descending).
    Param {
        rows: i64,
        kind: crate::definitions::SearchParamType,
    },
}

/// An `_include` or `_revinclude`: resources of `source_type` reference others through
/// `reference` (limited to `target_type` when given).
#[derive(Debug, Clone, PartialEq)]
pub struct Include {
    pub source_type: String,
    pub reference_id: i64,
    pub target_type: Option<String>,
    /// `:iterate`: apply again to the resources this include added.
    pub iterate: bool,
}

/// `_summary`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Summary {
    /// Whole resources.
    False,
    /// The elements the definitions mark as summary.
    True,
    /// Only the total.
    Count,
    /// Without the narrative.
    Data,
    /// The narrative, id, meta and mandatory elements.
    Text,
}

/// `_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Total {
    /// Give a total only when it costs nothing (the whole result fits on the first page).
    Default,
    None,
    Estimate,
    Accurate,
}
