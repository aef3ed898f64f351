//! Parsing a FHIR query string into a [`SearchQuery`].

use crate::definitions::{SearchParamType, SearchParameter};
use crate::outcome::{Issue, IssueType};
use crate::search::limits::{
    MAX_CHAIN_DEPTH, MAX_CHAIN_TARGETS, MAX_CLAUSES, MAX_COUNT, MAX_HAS_DEPTH, MAX_INCLUDES, MAX_ITERATE_INCLUDES,
    MAX_OR_VALUES, MAX_SORT_KEYS, MAX_TOTAL_VALUES,
};
use crate::search::params::{ParamVariant, Parameter, Registry, composite_id, definition_by_url, variant_id};
use crate::search::{
    Clause, Include, Modifier, ParamClause, Prefix, SearchValue, SortField, SortKey, Summary, TokenValue, Total,
};
use crate::{Definitions, instant};

/// What to do with parameters the server does not know (`Prefer: handling=…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    /// Ignore them and report them in the result (the default).
    Lenient,
    /// Refuse the search.
    Strict,
}

/// A parsed search.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchQuery {
    /// The criteria, all of which must match.
    pub clauses: Vec<Clause>,
    pub includes: Vec<Include>,
    pub revincludes: Vec<Include>,
    pub sort: Vec<SortKey>,
    /// `_count`, capped at [`MAX_COUNT`]; `None` when not given.
    pub count: Option<usize>,
    pub summary: Summary,
    /// `_elements`: the top-level elements to keep.
    pub elements: Option<Vec<String>>,
    pub total: Total,
    /// `_cursor`: the opaque position of a page, from a `next` or `previous` link.
    pub cursor: Option<String>,
    /// Parameters ignored under lenient handling, as warnings to report.
    pub warnings: Vec<Issue>,
}

/// Why one parameter was not turned into a clause.
enum Problem {
    /// The server does not know or support it: ignored when lenient.
    Unknown(Issue),
    /// It is known but its value is malformed: always an error.
    Invalid(Issue),
}

impl SearchQuery {
    /// Parses decoded `(name, value)` pairs of a search on `resource_type`.
    ///
    /// A query that asks for more work than the [limits](crate::search::limits) allow is
    /// refused with a `too-costly` issue, whatever the handling.
    pub fn parse(
        registry: &Registry,
        resource_type: &str,
        pairs: &[(String, String)],
        handling: Handling,
    ) -> Result<SearchQuery, Issue> {
        let mut query = SearchQuery {
            clauses: Vec::new(),
            includes: Vec::new(),
            revincludes: Vec::new(),
            sort: Vec::new(),
            count: None,
            summary: Summary::False,
            elements: None,
            total: Total::Default,
            cursor: None,
            warnings: Vec::new(),
        };
        let mut spent = Spent::default();
        for (name, value) in pairs {
            if let Err(Problem::Invalid(issue) | Problem::Unknown(issue)) = spent.parameter(name, value) {
                return Err(issue);
            }
            let outcome = match name.as_str() {
                "_format" | "_pretty" | "_type" | "_contained" | "_containedType" => Ok(()),
                "_count" => parse_count(value).map(|count| query.count = Some(count)),
                "_cursor" => {
                    query.cursor = Some(value.clone());
                    Ok(())
                }
                "_summary" => parse_summary(value).map(|summary| query.summary = summary),
                "_total" => parse_total(value).map(|total| query.total = total),
                "_elements" => {
                    query.elements = Some(split_list(value));
                    Ok(())
                }
                "_sort" => parse_sort(registry, resource_type, value).map(|sort| query.sort = sort),
                _ if name.starts_with("_include") || name.starts_with("_revinclude") => {
                    parse_include(registry, resource_type, name, value).map(|(reverse, include)| {
                        if reverse { query.revincludes.push(include) } else { query.includes.push(include) }
                    })
                }
                _ => {
                    let mut cost = Cost { name, targets: 0, has_depth: 0 };
                    parse_parameter(registry, resource_type, name, value, 0, &mut cost)
                        .map(|clause| query.clauses.push(clause))
                }
            };
            match outcome {
                Ok(()) => {}
                Err(Problem::Invalid(issue)) => return Err(issue),
                Err(Problem::Unknown(issue)) if handling == Handling::Strict => return Err(issue),
                Err(Problem::Unknown(mut issue)) => {
                    issue.severity = crate::Severity::Warning;
                    query.warnings.push(issue);
                }
            }
        }
        Ok(query)
    }
}

/// What the parameters of one search have used of the query-wide limits so far.
#[derive(Default)]
struct Spent {
    clauses: usize,
    values: usize,
    includes: usize,
    iterate_includes: usize,
}

impl Spent {
    /// Counts parameter `name=value` against the query-wide limits.
    fn parameter(&mut self, name: &str, value: &str) -> Result<(), Problem> {
        match name {
            "_format" | "_pretty" | "_type" | "_contained" | "_containedType" | "_count" | "_cursor" | "_summary"
            | "_total" => Ok(()),
            "_sort" | "_elements" => {
                let entries = value.split(',').filter(|entry| !entry.trim().is_empty()).count();
                if entries > MAX_OR_VALUES {
                    return Err(too_costly(format!(
                        "{name} lists {entries} entries (limit max-or-values = {MAX_OR_VALUES})"
                    )));
                }
                if name == "_sort" && entries > MAX_SORT_KEYS {
                    return Err(too_costly(format!(
                        "_sort has {entries} keys (limit max-sort-keys = {MAX_SORT_KEYS})"
                    )));
                }
                Ok(())
            }
            _ if name.starts_with("_include") || name.starts_with("_revinclude") => {
                self.includes += 1;
                if self.includes > MAX_INCLUDES {
                    return Err(too_costly(format!(
                        "more than {MAX_INCLUDES} _include and _revinclude parameters (limit max-includes = \
                         {MAX_INCLUDES})"
                    )));
                }
                if name.ends_with(":iterate") || name.ends_with(":recurse") {
                    self.iterate_includes += 1;
                    if self.iterate_includes > MAX_ITERATE_INCLUDES {
                        return Err(too_costly(format!(
                            "more than {MAX_ITERATE_INCLUDES} :iterate includes (limit max-iterate-includes = \
                             {MAX_ITERATE_INCLUDES})"
                        )));
                    }
                }
                Ok(())
            }
            _ => {
                self.clauses += 1;
                if self.clauses > MAX_CLAUSES {
                    return Err(too_costly(format!(
                        "more than {MAX_CLAUSES} search parameters (limit max-clauses = {MAX_CLAUSES})"
                    )));
                }
                let values = split_values(value).len();
                if values > MAX_OR_VALUES {
                    return Err(too_costly(format!(
                        "'{name}' has {values} comma-separated values (limit max-or-values = {MAX_OR_VALUES})"
                    )));
                }
                self.values += values;
                if self.values > MAX_TOTAL_VALUES {
                    return Err(too_costly(format!(
                        "the parameters have more than {MAX_TOTAL_VALUES} values in all (limit max-total-values = \
                         {MAX_TOTAL_VALUES})"
                    )));
                }
                Ok(())
            }
        }
    }
}

/// What one parameter's chains and `_has` have used of their limits so far.
struct Cost<'n> {
    /// The parameter as written, for messages.
    name: &'n str,
    /// Target-type branches built so far, over all links.
    targets: usize,
    /// `_has` nesting at the current point.
    has_depth: usize,
}

impl Cost<'_> {
    /// Counts one more target-type branch of a chain.
    fn target(&mut self) -> Result<(), Problem> {
        self.targets += 1;
        if self.targets > MAX_CHAIN_TARGETS {
            return Err(too_costly(format!(
                "the chain '{}' expands to more than {MAX_CHAIN_TARGETS} target types (limit max-chain-targets = \
                 {MAX_CHAIN_TARGETS}); name the target type, as in 'subject:Patient.name'",
                self.name
            )));
        }
        Ok(())
    }
}

/// A refusal of work beyond the [limits](crate::search::limits): always an error.
fn too_costly(text: String) -> Problem {
    Problem::Invalid(Issue::error(IssueType::TooCostly, format!("search is too costly: {text}")))
}

fn unknown(text: String) -> Problem {
    Problem::Unknown(Issue::error(IssueType::NotSupported, text))
}

fn invalid(text: String) -> Problem {
    Problem::Invalid(Issue::error(IssueType::Invalid, text))
}

/// One criterion: `code[:modifier][.chain]=value`, `_has:…=value`, `_id`, `_lastUpdated`.
fn parse_parameter(
    registry: &Registry,
    resource_type: &str,
    name: &str,
    value: &str,
    depth: usize,
    cost: &mut Cost<'_>,
) -> Result<Clause, Problem> {
    if depth > MAX_CHAIN_DEPTH {
        return Err(too_costly(format!(
            "'{}' chains deeper than {MAX_CHAIN_DEPTH} links (limit max-chain-depth = {MAX_CHAIN_DEPTH})",
            cost.name
        )));
    }
    if value.is_empty() {
        return Err(invalid(format!("search parameter '{name}' has an empty value")));
    }
    if let Some(rest) = name.strip_prefix("_has:") {
        return parse_has(registry, resource_type, rest, value, depth, cost);
    }
    let (head, chain) = match name.split_once('.') {
        Some((head, chain)) => (head, Some(chain)),
        None => (name, None),
    };
    let (code, modifier) = match head.split_once(':') {
        Some((code, modifier)) => (code, Some(modifier)),
        None => (head, None),
    };
    // Inside a chain, every type that has the parameter is a branch; types without it are not.
    let is_branch = depth > 0;
    match (code, chain) {
        ("_id", None) => {
            if is_branch {
                cost.target()?;
            }
            return parse_id(modifier, value);
        }
        ("_lastUpdated", None) => {
            if is_branch {
                cost.target()?;
            }
            let values = split_values(value).iter().map(|value| parse_date(value)).collect::<Result<_, _>>()?;
            return Ok(Clause::LastUpdated(values));
        }
        _ => {}
    }
    let param = registry
        .find_param(resource_type, code)
        .filter(|param| param.expression.is_some())
        .cloned()
        .ok_or_else(|| unknown(format!("search parameter '{code}' is not supported for {resource_type}")))?;
    if is_branch {
        cost.target()?;
    }
    match chain {
        Some(chain) => parse_chain(registry, param, modifier, chain, value, depth, cost),
        None => parse_values(param, modifier, value),
    }
}

fn parse_id(modifier: Option<&str>, value: &str) -> Result<Clause, Problem> {
    let negate = match modifier {
        None | Some("exact") => false,
        Some("not") => true,
        Some(other) => return Err(invalid(format!("modifier ':{other}' is not supported on _id"))),
    };
    Ok(Clause::Id { ids: split_values(value).into_iter().map(unescape).collect(), negate })
}

fn parse_chain(
    registry: &Registry,
    reference: Parameter,
    modifier: Option<&str>,
    chain: &str,
    value: &str,
    depth: usize,
    cost: &mut Cost<'_>,
) -> Result<Clause, Problem> {
    if reference.kind != SearchParamType::Reference {
        return Err(invalid(format!("'{}' is not a reference parameter and cannot be chained", reference.code)));
    }
    let candidates: Vec<String> = match modifier {
        Some(target) => vec![target.to_owned()],
        None => reference.target.clone(),
    };
    let mut targets = Vec::new();
    let mut last_problem = None;
    for target in candidates {
        if !Definitions::get().is_resource_type(&target) {
            return Err(invalid(format!("'{target}' is not a resource type")));
        }
        match parse_parameter(registry, &target, chain, value, depth + 1, cost) {
            Ok(inner) => targets.push((target, Box::new(inner))),
            Err(Problem::Invalid(issue)) => return Err(Problem::Invalid(issue)),
            Err(problem) => last_problem = Some(problem),
        }
    }
    if targets.is_empty() {
        return Err(last_problem.unwrap_or_else(|| unknown(format!("'{}' has no target to chain to", reference.code))));
    }
    let reference_id = variant_id(&reference, ParamVariant::Value);
    Ok(Clause::Chain { reference, reference_id, targets })
}

/// `_has:Source:reference:rest=value`.
fn parse_has(
    registry: &Registry,
    resource_type: &str,
    rest: &str,
    value: &str,
    depth: usize,
    cost: &mut Cost<'_>,
) -> Result<Clause, Problem> {
    if cost.has_depth >= MAX_HAS_DEPTH {
        return Err(too_costly(format!(
            "'{}' nests _has more than {MAX_HAS_DEPTH} deep (limit max-has-depth = {MAX_HAS_DEPTH})",
            cost.name
        )));
    }
    let mut parts = rest.splitn(3, ':');
    let (Some(source_type), Some(reference_code), Some(inner_name)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(invalid(format!("'_has:{rest}' must be _has:Type:reference:parameter")));
    };
    if !Definitions::get().is_resource_type(source_type) {
        return Err(invalid(format!("'{source_type}' in _has is not a resource type")));
    }
    let reference = registry
        .find_param(source_type, reference_code)
        .filter(|param| param.kind == SearchParamType::Reference)
        .ok_or_else(|| invalid(format!("'{reference_code}' is not a reference parameter of {source_type}")))?;
    if !reference.target.is_empty() && !reference.target.iter().any(|target| target == resource_type) {
        return Err(invalid(format!("{source_type}.{reference_code} never points at {resource_type}")));
    }
    cost.has_depth += 1;
    let inner = parse_parameter(registry, source_type, inner_name, value, depth + 1, cost);
    cost.has_depth -= 1;
    let inner = inner?;
    Ok(Clause::Has {
        source_type: source_type.to_owned(),
        reference_id: variant_id(reference, ParamVariant::Value),
        inner: Box::new(inner),
    })
}

/// The values of a (non-chained) parameter, for its type and modifier.
fn parse_values(param: Parameter, modifier: Option<&str>, value: &str) -> Result<Clause, Problem> {
    let own_rows = variant_id(&param, ParamVariant::Value);
    if modifier == Some("missing") {
        let missing = match value {
            "true" => true,
            "false" => false,
            _ => return Err(invalid(format!("':missing' takes true or false, not '{value}'"))),
        };
        return Ok(clause(param, own_rows, Modifier::Missing(missing), Vec::new()));
    }
    let raw = split_values(value);
    let unsupported = |modifier: &str| invalid(format!("modifier ':{modifier}' is not supported on '{}'", param.code));
    match (param.kind, modifier) {
        (SearchParamType::Token, None | Some("not")) => {
            let modifier = if modifier.is_some() { Modifier::Not } else { Modifier::None };
            let values = raw.iter().map(|value| SearchValue::Token(parse_token(value))).collect();
            Ok(clause(param, own_rows, modifier, values))
        }
        (SearchParamType::Token, Some("text")) => {
            let values = raw.into_iter().map(|value| SearchValue::String(unescape(value))).collect();
            let rows = variant_id(&param, ParamVariant::Text);
            Ok(clause(param, rows, Modifier::Text, values))
        }
        (SearchParamType::Token, Some("of-type")) => {
            let values = raw.iter().map(|value| parse_of_type(value)).collect::<Result<_, _>>()?;
            let rows = variant_id(&param, ParamVariant::OfType);
            Ok(clause(param, rows, Modifier::None, values))
        }
        (SearchParamType::String, None | Some("exact") | Some("contains")) => {
            let modifier = match modifier {
                Some("exact") => Modifier::Exact,
                Some("contains") => Modifier::Contains,
                _ => Modifier::None,
            };
            let values = raw.into_iter().map(|value| SearchValue::String(unescape(value))).collect();
            Ok(clause(param, own_rows, modifier, values))
        }
        (SearchParamType::Date, None) => {
            let values = raw.iter().map(|value| parse_date(value)).collect::<Result<_, _>>()?;
            Ok(clause(param, own_rows, Modifier::None, values))
        }
        (SearchParamType::Number, None) => {
            let values = raw.iter().map(|value| parse_number(value)).collect::<Result<_, _>>()?;
            Ok(clause(param, own_rows, Modifier::None, values))
        }
        (SearchParamType::Quantity, None) => {
            let values = raw.iter().map(|value| parse_quantity(value)).collect::<Result<_, _>>()?;
            Ok(clause(param, own_rows, Modifier::None, values))
        }
        (SearchParamType::Reference, Some("identifier")) => {
            let values = raw.iter().map(|value| SearchValue::Token(parse_token(value))).collect();
            let rows = variant_id(&param, ParamVariant::Identifier);
            Ok(clause(param, rows, Modifier::None, values))
        }
        (SearchParamType::Reference, None) => {
            let values = raw.iter().map(|value| parse_reference(None, value)).collect::<Result<_, _>>()?;
            Ok(clause(param, own_rows, Modifier::None, values))
        }
        (SearchParamType::Reference, Some(target)) if Definitions::get().is_resource_type(target) => {
            let values = raw.iter().map(|value| parse_reference(Some(target), value)).collect::<Result<_, _>>()?;
            Ok(clause(param, own_rows, Modifier::None, values))
        }
        (SearchParamType::Uri, None | Some("above") | Some("below")) => {
            let modifier = match modifier {
                Some("above") => Modifier::Above,
                Some("below") => Modifier::Below,
                _ => Modifier::None,
            };
            let values = raw.into_iter().map(|value| SearchValue::Uri(unescape(value))).collect();
            Ok(clause(param, own_rows, modifier, values))
        }
        (SearchParamType::Composite, None) => parse_composite(&param, &raw),
        (SearchParamType::Composite | SearchParamType::Special, _) => {
            Err(unknown(format!("'{}' is a {:?} parameter, which is not supported yet", param.code, param.kind)))
        }
        (_, Some(modifier)) => Err(unsupported(modifier)),
    }
}

/// A composite parameter of two components whose first is a token: `code$value` (or
/// `system|code$value`) searches the second component's rows filed under that code (see
/// `index::add_composite`). Comma-separated pairs are alternatives.
fn parse_composite(param: &SearchParameter, raw: &[&str]) -> Result<Clause, Problem> {
    let [_, second] = param.components.as_slice() else {
        return Err(unknown(format!(
            "'{}' has {} components; only two are supported",
            param.code,
            param.components.len()
        )));
    };
    let second_definition = definition_by_url(&second.definition)
        .ok_or_else(|| unknown(format!("'{}' has a component this server does not know", param.code)))?;
    let mut alternatives = Vec::with_capacity(raw.len());
    for value in raw {
        let Some(dollar) = find_unescaped(value, '$') else {
            return Err(invalid(format!("'{}' takes pairs written code$value, not '{value}'", param.code)));
        };
        let token = parse_token(&value[..dollar]);
        let Some(code) = token.code.as_deref() else {
            return Err(invalid(format!("the first part of '{value}' needs a code")));
        };
        let system = token.system.as_deref().filter(|system| !system.is_empty());
        let rows = composite_id(param, system, code);
        let second_value = match second_definition.kind {
            SearchParamType::Token => SearchValue::Token(parse_token(&value[dollar + 1..])),
            SearchParamType::Quantity => parse_quantity(&value[dollar + 1..])?,
            SearchParamType::Date => parse_date(&value[dollar + 1..])?,
            SearchParamType::Number => parse_number(&value[dollar + 1..])?,
            SearchParamType::String => SearchValue::String(unescape(&value[dollar + 1..])),
            SearchParamType::Uri => SearchValue::Uri(unescape(&value[dollar + 1..])),
            SearchParamType::Reference => parse_reference(None, &value[dollar + 1..])?,
            SearchParamType::Composite | SearchParamType::Special => {
                return Err(unknown(format!("'{}' nests a composite", param.code)));
            }
        };
        alternatives.push(clause(Parameter::Official(second_definition), rows, Modifier::None, vec![second_value]));
    }
    Ok(if alternatives.len() == 1 { alternatives.remove(0) } else { Clause::AnyOf(alternatives) })
}

fn clause(param: Parameter, rows: i64, modifier: Modifier, values: Vec<SearchValue>) -> Clause {
    Clause::Param(ParamClause { param, rows, modifier, values })
}

pub(crate) fn parse_token(value: &str) -> TokenValue {
    match find_unescaped(value, '|') {
        None => TokenValue { system: None, code: Some(unescape(value)) },
        Some(bar) => {
            let (system, code) = (&value[..bar], &value[bar + 1..]);
            TokenValue { system: Some(unescape(system)), code: (!code.is_empty()).then(|| unescape(code)) }
        }
    }
}

/// `:of-type` values are `system|code|value`; stored as code `code|value` in that system.
fn parse_of_type(value: &str) -> Result<SearchValue, Problem> {
    let parts: Vec<&str> = value.splitn(3, '|').collect();
    match parts.as_slice() {
        [system, code, identifier] if !code.is_empty() && !identifier.is_empty() => {
            Ok(SearchValue::Token(TokenValue {
                system: (!system.is_empty()).then(|| unescape(system)),
                code: Some(format!("{}|{}", unescape(code), unescape(identifier))),
            }))
        }
        _ => Err(invalid(format!("':of-type' values are system|code|value, not '{value}'"))),
    }
}

fn split_prefix(value: &str) -> (Prefix, &str) {
    let prefix = match value.get(..2) {
        Some("eq") => Prefix::Eq,
        Some("ne") => Prefix::Ne,
        Some("gt") => Prefix::Gt,
        Some("lt") => Prefix::Lt,
        Some("ge") => Prefix::Ge,
        Some("le") => Prefix::Le,
        Some("sa") => Prefix::Sa,
        Some("eb") => Prefix::Eb,
        Some("ap") => Prefix::Ap,
        _ => return (Prefix::Eq, value),
    };
    (prefix, &value[2..])
}

fn parse_date(value: &str) -> Result<SearchValue, Problem> {
    let (prefix, text) = split_prefix(value);
    let (low, high) =
        instant::range(text).ok_or_else(|| invalid(format!("'{value}' is not a valid date search value")))?;
    Ok(SearchValue::Date { prefix, low, high })
}

fn parse_number(value: &str) -> Result<SearchValue, Problem> {
    let (prefix, text) = split_prefix(value);
    let (number, low, high) = number_range(text).ok_or_else(|| invalid(format!("'{value}' is not a number")))?;
    Ok(SearchValue::Number { prefix, value: number, low, high })
}

/// A number and the half-open range its written precision implies.
fn number_range(text: &str) -> Option<(f64, f64, f64)> {
    let number: f64 = text.parse().ok().filter(|number: &f64| number.is_finite())?;
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (mantissa, exponent.parse::<i32>().ok()?),
        None => (text, 0),
    };
    let decimals = mantissa.split_once('.').map_or(0, |(_, fraction)| fraction.len() as i32);
    let half = 0.5 * 10f64.powi(exponent - decimals);
    Some((number, number - half, number + half))
}

fn parse_quantity(value: &str) -> Result<SearchValue, Problem> {
    let (prefix, text) = split_prefix(value);
    let mut parts = text.splitn(3, '|');
    let number = parts.next().unwrap_or("");
    let (amount, low, high) = number_range(number).ok_or_else(|| invalid(format!("'{value}' is not a quantity")))?;
    let system = parts.next().filter(|system| !system.is_empty()).map(unescape);
    let code = parts.next().filter(|code| !code.is_empty()).map(unescape);
    Ok(SearchValue::Quantity { prefix, value: amount, low, high, system, code })
}

fn parse_reference(target: Option<&str>, value: &str) -> Result<SearchValue, Problem> {
    let value = unescape(value);
    if value.contains(':') {
        let local = crate::search::local_target(&value);
        return Ok(SearchValue::Reference {
            target_type: local.map(|(resource_type, _)| resource_type.to_owned()),
            id: local.map(|(_, id)| id.to_owned()),
            url: Some(value.split('|').next().unwrap_or(&value).to_owned()),
        });
    }
    let (resource_type, id) = match value.split_once('/') {
        Some((resource_type, id)) => (Some(resource_type), id),
        None => (target, value.as_str()),
    };
    if let Some(resource_type) = resource_type.filter(|name| !Definitions::get().is_resource_type(name)) {
        return Err(invalid(format!("'{resource_type}' is not a resource type")));
    }
    if !crate::id::is_valid_id(id) {
        return Err(invalid(format!("'{id}' is not a valid id")));
    }
    Ok(SearchValue::Reference { target_type: resource_type.map(str::to_owned), id: Some(id.to_owned()), url: None })
}

fn parse_count(value: &str) -> Result<usize, Problem> {
    value
        .parse::<usize>()
        .map(|count| count.min(MAX_COUNT))
        .map_err(|_| invalid(format!("_count '{value}' is not a non-negative integer")))
}

fn parse_summary(value: &str) -> Result<Summary, Problem> {
    Ok(match value {
        "true" => Summary::True,
        "false" => Summary::False,
        "count" => Summary::Count,
        "data" => Summary::Data,
        "text" => Summary::Text,
        _ => return Err(invalid(format!("_summary '{value}' is not one of true, false, count, data, text"))),
    })
}

fn parse_total(value: &str) -> Result<Total, Problem> {
    Ok(match value {
        "none" => Total::None,
        "estimate" => Total::Estimate,
        "accurate" => Total::Accurate,
        _ => return Err(invalid(format!("_total '{value}' is not one of none, estimate, accurate"))),
    })
}

fn parse_sort(registry: &Registry, resource_type: &str, value: &str) -> Result<Vec<SortKey>, Problem> {
    split_list(value)
        .into_iter()
        .map(|key| {
            let (descending, code) = match key.strip_prefix('-') {
                Some(code) => (true, code.to_owned()),
                None => (false, key),
            };
            let field = match code.as_str() {
                "_id" => SortField::Id,
                "_lastUpdated" => SortField::LastUpdated,
                _ => {
                    let param = registry
                        .find_param(resource_type, &code)
                        .filter(|param| param.expression.is_some())
                        .filter(|param| !matches!(param.kind, SearchParamType::Composite | SearchParamType::Special))
                        .ok_or_else(|| unknown(format!("cannot sort {resource_type} by '{code}'")))?;
                    SortField::Param { rows: variant_id(param, ParamVariant::Value), kind: param.kind }
                }
            };
            Ok(SortKey { field, descending })
        })
        .collect()
}

/// `_include[:iterate]=Source:param[:Target]` and `_revinclude[…]`; returns whether it is a
/// reverse include.
fn parse_include(
    registry: &Registry,
    resource_type: &str,
    name: &str,
    value: &str,
) -> Result<(bool, Include), Problem> {
    let (base_name, iterate) = match name.split_once(':') {
        Some((base, "iterate" | "recurse")) => (base, true),
        Some(_) => return Err(invalid(format!("'{name}' is not a supported include modifier"))),
        None => (name, false),
    };
    let reverse = match base_name {
        "_include" => false,
        "_revinclude" => true,
        _ => return Err(unknown(format!("'{name}' is not a search parameter"))),
    };
    let parts: Vec<&str> = value.split(':').collect();
    let (source_type, code, target_type) = match parts.as_slice() {
        [source, code] => (*source, *code, None),
        [source, code, target] => (*source, *code, Some((*target).to_owned())),
        _ => return Err(unknown(format!("{base_name}={value} is not supported (expected Type:parameter[:Target])"))),
    };
    if !reverse && !iterate && source_type != resource_type {
        return Err(unknown(format!("_include={value} does not start from {resource_type}")));
    }
    let reference = registry
        .find_param(source_type, code)
        .filter(|param| param.kind == SearchParamType::Reference)
        .ok_or_else(|| invalid(format!("'{code}' is not a reference parameter of {source_type}")))?;
    if let Some(target) = target_type.as_ref().filter(|name| !Definitions::get().is_resource_type(name)) {
        return Err(invalid(format!("'{target}' is not a resource type")));
    }
    let include = Include {
        source_type: source_type.to_owned(),
        reference_id: variant_id(reference, ParamVariant::Value),
        target_type,
        iterate,
    };
    Ok((reverse, include))
}

/// Splits a comma list (no escaping), dropping empty items.
fn split_list(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|item| !item.is_empty()).map(str::to_owned).collect()
}

/// Splits values on commas that are not escaped with a backslash.
fn split_values(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = value;
    while let Some(position) = find_unescaped(rest, ',') {
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

    fn parse(resource_type: &str, pairs: &[(&str, &str)]) -> Result<SearchQuery, Issue> {
        let pairs: Vec<(String, String)> =
            pairs.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect();
        SearchQuery::parse(&Registry::official(), resource_type, &pairs, Handling::Lenient)
    }

    fn parses(resource_type: &str, pairs: &[(&str, &str)]) -> SearchQuery {
        let query = parse(resource_type, pairs).unwrap_or_else(|issue| panic!("{pairs:?}: {}", issue.diagnostics));
        assert!(query.warnings.is_empty(), "{pairs:?}: {:?}", query.warnings);
        query
    }

    /// Asserts the search is refused as too costly, even under lenient handling, naming
    /// `limit = value`.
    fn refused(resource_type: &str, pairs: &[(&str, &str)], limit: &str, value: usize) {
        let started = std::time::Instant::now();
        let Err(issue) = parse(resource_type, pairs) else {
            panic!("{resource_type}?{pairs:?} should be refused by {limit}");
        };
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "refusing took {:?}", started.elapsed());
        assert_eq!(issue.code, IssueType::TooCostly, "{}", issue.diagnostics);
        assert!(issue.is_error());
        let named = format!("(limit {limit} = {value})");
        assert!(issue.diagnostics.contains(&named), "'{}' does not name {named}", issue.diagnostics);
        assert!(issue.diagnostics.starts_with("search is too costly: "), "{}", issue.diagnostics);
    }

    fn chain_targets(clause: &Clause) -> usize {
        match clause {
            Clause::Chain { targets, .. } => targets.iter().map(|(_, inner)| 1 + chain_targets(inner)).sum(),
            Clause::Has { inner, .. } => chain_targets(inner),
            _ => 0,
        }
    }

    #[test]
    fn ordinary_chains_and_has_still_parse() {
        for (resource_type, name) in [
            ("Observation", "patient.name"),
            ("Observation", "patient.identifier"),
            ("Observation", "subject.name"),
            ("Observation", "subject.identifier"),
            ("Observation", "subject:Patient.name"),
            ("Observation", "subject:Patient.birthdate"),
            ("Observation", "encounter:Encounter.subject:Patient.organization.name"),
            ("Observation", "encounter.subject:Patient.general-practitioner:Practitioner.name"),
            ("Observation", "subject._id"),
            ("Encounter", "patient.identifier"),
            ("Condition", "subject.identifier"),
            ("DiagnosticReport", "subject.name"),
            ("DiagnosticReport", "result.code"),
            ("MedicationRequest", "patient.name"),
            ("MedicationRequest", "requester.identifier"),
            ("Procedure", "patient.family"),
            ("Immunization", "patient.identifier"),
            ("CarePlan", "subject.identifier"),
            ("Goal", "subject.name"),
            ("Task", "subject:Patient.name"),
            ("Patient", "general-practitioner.name"),
            ("Patient", "organization.partof.partof.partof.name"),
            ("Patient", "_has:Observation:patient:code"),
            ("Patient", "_has:Observation:subject:code"),
            ("Patient", "_has:Observation:patient:_has:Provenance:target:agent"),
            ("Patient", "_has:Observation:patient:subject:Patient.name"),
        ] {
            let value = if name.ends_with("agent") { "Practitioner/1" } else { "1234" };
            let query = parses(resource_type, &[(name, value)]);
            assert_eq!(query.clauses.len(), 1, "{resource_type}?{name}");
            assert!(chain_targets(&query.clauses[0]) <= MAX_CHAIN_TARGETS);
        }
        let query = parses("Observation", &[("subject.name", "x")]);
        assert!(chain_targets(&query.clauses[0]) > 1, "subject.name should try several target types");
    }

    #[test]
    fn chains_fanning_out_are_refused_early() {
        refused("Task", &[("subject.subject.subject.subject.identifier", "x")], "max-chain-targets", MAX_CHAIN_TARGETS);
        refused("Task", &[("subject.subject.subject.subject.name", "x")], "max-chain-targets", MAX_CHAIN_TARGETS);
        refused("Provenance", &[("target._id", "1")], "max-chain-targets", MAX_CHAIN_TARGETS);
        let many = "subject.subject.subject.subject.nonsense";
        assert!(parse("Task", &[(many, "x")]).is_err_and(|issue| issue.code == IssueType::TooCostly));
    }

    #[test]
    fn chains_deeper_than_the_limit_are_refused() {
        parses("Organization", &[("partof.partof.partof.partof.name", "x")]);
        refused(
            "Organization",
            &[("partof.partof.partof.partof.partof.name", "x")],
            "max-chain-depth",
            MAX_CHAIN_DEPTH,
        );
    }

    #[test]
    fn nested_has_is_limited() {
        let two = "_has:Observation:patient:_has:Provenance:target:agent";
        parses("Patient", &[(two, "Practitioner/1")]);
        let three = "_has:Observation:patient:_has:Provenance:target:_has:AuditEvent:entity:agent";
        refused("Patient", &[(three, "Practitioner/1")], "max-has-depth", MAX_HAS_DEPTH);
    }

    #[test]
    fn values_and_parameters_are_limited() {
        let values = |count: usize| (0..count).map(|index| index.to_string()).collect::<Vec<_>>().join(",");
        let hundred = values(MAX_OR_VALUES);
        let query = parses("Observation", &[("code", &hundred)]);
        assert_eq!(query.clauses.len(), 1);
        refused("Observation", &[("code", &values(MAX_OR_VALUES + 1))], "max-or-values", MAX_OR_VALUES);
        refused("Observation", &[("_id", &values(MAX_OR_VALUES + 1))], "max-or-values", MAX_OR_VALUES);
        // An escaped comma is part of a value, not a separator.
        parses("Observation", &[("code", &vec!["a\\,b"; MAX_OR_VALUES].join(","))]);

        let all: Vec<(&str, &str)> = vec![("code", hundred.as_str()); MAX_TOTAL_VALUES / MAX_OR_VALUES];
        parses("Observation", &all);
        let mut over = all.clone();
        over.push(("status", "final"));
        refused("Observation", &over, "max-total-values", MAX_TOTAL_VALUES);

        let clauses = vec![("code", "1"); MAX_CLAUSES];
        assert_eq!(parses("Observation", &clauses).clauses.len(), MAX_CLAUSES);
        let mut over = clauses.clone();
        over.push(("unknown-parameter", "1"));
        refused("Observation", &over, "max-clauses", MAX_CLAUSES);

        let sort = ["date"; MAX_SORT_KEYS + 1].join(",");
        refused("Observation", &[("_sort", &sort)], "max-sort-keys", MAX_SORT_KEYS);
        let elements = ["id"; MAX_OR_VALUES + 1].join(",");
        refused("Observation", &[("_elements", &elements)], "max-or-values", MAX_OR_VALUES);
    }

    #[test]
    fn includes_are_limited() {
        let includes = vec![("_include", "Observation:patient"); MAX_INCLUDES];
        assert_eq!(parses("Observation", &includes).includes.len(), MAX_INCLUDES);
        let mut over = includes.clone();
        over.push(("_revinclude", "Provenance:target"));
        refused("Observation", &over, "max-includes", MAX_INCLUDES);

        let iterate = vec![("_include:iterate", "Observation:patient"); MAX_ITERATE_INCLUDES];
        assert!(parses("Observation", &iterate).includes.iter().all(|include| include.iterate));
        let mut over = iterate.clone();
        over.push(("_revinclude:iterate", "Provenance:target"));
        refused("Observation", &over, "max-iterate-includes", MAX_ITERATE_INCLUDES);
    }

    #[test]
    fn limits_hold_under_strict_handling_too() {
        let pairs = vec![("code".to_owned(), vec!["1"; MAX_OR_VALUES + 1].join(","))];
        let issue = SearchQuery::parse(&Registry::official(), "Observation", &pairs, Handling::Strict)
            .err()
            .unwrap_or_else(|| panic!("should be refused"));
        assert_eq!(issue.code, IssueType::TooCostly);
        let criteria = crate::search::Criteria::parse(&Registry::official(), "Observation", &pairs);
        assert!(criteria.is_err_and(|issue| issue.code == IssueType::TooCostly));
    }
}
