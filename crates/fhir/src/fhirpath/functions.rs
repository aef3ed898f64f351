//! The FHIRPath function library: existence, filtering and projection, subsetting,
//! combining, conversion, string, math, tree navigation, utility and the FHIR additions
//! (`extension`, `resolve`, `hasValue`, `getValue`, `memberOf`, `conformsTo`).
//!
//! Functions that take criteria (`where`, `select`, `all`, `exists`, `repeat`, `aggregate`,
//! `sort`, `iif`) evaluate their argument once per item with `$this` set; the others evaluate
//! their arguments once, in the caller's scope. `resolve()` cannot fetch anything: it finds
//! contained resources (`#id`) and otherwise returns a stand-in that knows only the referenced
//! type, which is what `where(resolve() is Patient)` in search parameters needs.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::Value;

use crate::Definitions;
use crate::fhirpath::ast::{Expr, Function};
use crate::fhirpath::datetime::{DateTime, Time};
use crate::fhirpath::decimal::Decimal;
use crate::fhirpath::eval::{
    Evaluator, Frame, MAX_COLLECTION_ITEMS, MAX_STRING_LENGTH, boolean, contains_item, single,
};
use crate::fhirpath::navigation;
use crate::fhirpath::quantity::Quantity;
use crate::fhirpath::value::{self, Item, Node};
use crate::fhirpath::{EvalError, text};

/// Most items `repeat()` and `descendants()` may produce.
const MAX_REPEAT_ITEMS: usize = MAX_COLLECTION_ITEMS;

type Items<'a> = Vec<Item<'a>>;

/// Calls `function` on `input`; `scope` and `frame` are the caller's, where arguments are
/// evaluated.
pub(crate) fn call<'a>(
    evaluator: &mut Evaluator<'_, 'a>,
    function: Function,
    input: &[Item<'a>],
    args: &'a [Expr],
    scope: &[Item<'a>],
    frame: Frame<'_, 'a>,
) -> Result<Items<'a>, EvalError> {
    use Function as F;
    let mut call = Call { evaluator, args, scope, frame };
    let boolean_result = |value: bool| Ok(vec![Item::Boolean(value)]);
    match function {
        F::Empty => boolean_result(input.is_empty()),
        F::Exists => {
            if args.is_empty() {
                return boolean_result(!input.is_empty());
            }
            let matching = call.filter(input)?;
            boolean_result(!matching.is_empty())
        }
        F::All => {
            for (index, item) in input.iter().enumerate() {
                if call.criterion(item, index)? != Some(true) {
                    return boolean_result(false);
                }
            }
            boolean_result(true)
        }
        F::AllTrue | F::AnyTrue | F::AllFalse | F::AnyFalse => {
            let mut values = Vec::with_capacity(input.len());
            for item in input {
                match item.to_system() {
                    Some(Item::Boolean(value)) => values.push(value),
                    None => {}
                    Some(other) => {
                        return Err(EvalError::new(format!(
                            "{function:?} needs Booleans, found {}",
                            other.type_name()
                        )));
                    }
                }
            }
            boolean_result(match function {
                F::AllTrue => values.iter().all(|v| *v),
                F::AnyTrue => values.iter().any(|v| *v),
                F::AllFalse => values.iter().all(|v| !*v),
                _ => values.iter().any(|v| !*v),
            })
        }
        F::SubsetOf => {
            let other = call.arg(0)?;
            call.evaluator.charge_comparisons(input.len().saturating_mul(other.len()))?;
            boolean_result(input.iter().all(|item| contains_item(&other, item)))
        }
        F::SupersetOf => {
            let other = call.arg(0)?;
            call.evaluator.charge_comparisons(input.len().saturating_mul(other.len()))?;
            boolean_result(other.iter().all(|item| contains_item(input, item)))
        }
        F::Count => Ok(vec![Item::Integer(i64::try_from(input.len()).unwrap_or(i64::MAX))]),
        F::Distinct => call.evaluator.union(input, &[]),
        F::IsDistinct => boolean_result(call.evaluator.union(input, &[])?.len() == input.len()),
        F::Where => call.filter(input),
        F::Select => {
            let mut out = Vec::new();
            for (index, item) in input.iter().enumerate() {
                out.extend(call.per_item(0, item, index)?);
            }
            Ok(out)
        }
        F::Repeat => call.repeat(input),
        F::Aggregate => call.aggregate(input),
        F::First => Ok(input.first().cloned().into_iter().collect()),
        F::Last => Ok(input.last().cloned().into_iter().collect()),
        F::Tail => Ok(input.iter().skip(1).cloned().collect()),
        F::Skip => {
            let count = call.integer_arg(0)?.unwrap_or(0);
            Ok(input.iter().skip(usize::try_from(count).unwrap_or(0)).cloned().collect())
        }
        F::Take => {
            let count = call.integer_arg(0)?.unwrap_or(0);
            Ok(input.iter().take(usize::try_from(count).unwrap_or(0)).cloned().collect())
        }
        F::Intersect => {
            let other = call.arg(0)?;
            call.evaluator.charge_comparisons(input.len().saturating_mul(other.len()))?;
            let common: Items<'a> = input.iter().filter(|item| contains_item(&other, item)).cloned().collect();
            call.evaluator.union(&common, &[])
        }
        F::Exclude => {
            let other = call.arg(0)?;
            call.evaluator.charge_comparisons(input.len().saturating_mul(other.len()))?;
            Ok(input.iter().filter(|item| !contains_item(&other, item)).cloned().collect())
        }
        F::Single => Ok(single(input)?.cloned().into_iter().collect()),
        F::Union => {
            let other = call.arg(0)?;
            call.evaluator.union(input, &other)
        }
        F::Combine => {
            let mut out = input.to_vec();
            out.extend(call.arg(0)?);
            Ok(out)
        }
        F::Iif => call.iif(input),
        F::ToBoolean | F::ConvertsToBoolean => convert(function, input, to_boolean),
        F::ToInteger | F::ConvertsToInteger => convert(function, input, to_integer),
        F::ToDecimal | F::ConvertsToDecimal => convert(function, input, to_decimal),
        F::ToString | F::ConvertsToString => convert(function, input, to_text),
        F::ToDate | F::ConvertsToDate => convert(function, input, to_date),
        F::ToDateTime | F::ConvertsToDateTime => convert(function, input, to_date_time),
        F::ToTime | F::ConvertsToTime => convert(function, input, to_time),
        F::ToQuantity | F::ConvertsToQuantity => convert(function, input, to_quantity),
        F::IndexOf
        | F::Substring
        | F::StartsWith
        | F::EndsWith
        | F::ContainsText
        | F::Upper
        | F::Lower
        | F::Replace
        | F::Matches
        | F::MatchesFull
        | F::ReplaceMatches
        | F::Length
        | F::ToChars
        | F::Trim
        | F::Split
        | F::Encode
        | F::Decode
        | F::Escape
        | F::Unescape => call.string_function(function, input),
        F::Join => {
            let separator = match args.first() {
                Some(_) => call.string_arg(0)?.unwrap_or_default(),
                None => String::new(),
            };
            let mut joined = String::new();
            let mut first = true;
            for item in input {
                let part = match item.to_system() {
                    Some(Item::String(text)) => text,
                    Some(other) => Cow::Owned(other.to_string()),
                    None => continue,
                };
                if !first {
                    joined.push_str(&separator);
                }
                first = false;
                joined.push_str(&part);
                if joined.len() > MAX_STRING_LENGTH {
                    return Err(EvalError::new("string too long"));
                }
            }
            call.evaluator.charge_bytes(joined.len())?;
            Ok(vec![Item::String(Cow::Owned(joined))])
        }
        F::Abs | F::Ceiling | F::Floor | F::Truncate | F::Round | F::Exp | F::Ln | F::Log | F::Power | F::Sqrt => {
            call.math(function, input)
        }
        F::Not => Ok(boolean(input)?.map(|value| Item::Boolean(!value)).into_iter().collect()),
        F::Children => {
            let mut out = Vec::new();
            for item in input {
                if let Item::Node(node) = item {
                    navigation::all_children(node, &mut out);
                }
            }
            Ok(out)
        }
        F::Descendants => descendants(input),
        F::Trace => Ok(input.to_vec()),
        F::Now => Ok(vec![Item::DateTime(DateTime::now())]),
        F::Today => Ok(vec![Item::Date(DateTime::now().date_part())]),
        F::TimeOfDay => Ok(DateTime::now().time_part().map(Item::Time).into_iter().collect()),
        F::HasValue => boolean_result(match single(input)? {
            Some(Item::Node(node)) => !node.value.is_null() && !node.value.is_object() && !node.value.is_array(),
            Some(Item::Type { .. }) | None => false,
            Some(_) => true,
        }),
        F::GetValue => match single(input)? {
            Some(item @ Item::Node(node)) if !node.value.is_object() && !node.value.is_array() => {
                Ok(item.to_system().into_iter().collect())
            }
            _ => Ok(Vec::new()),
        },
        F::Resolve => Ok(input.iter().filter_map(|item| resolve(call.evaluator, item)).collect()),
        F::Extension | F::HasExtension => {
            let Some(url) = call.string_arg(0)? else {
                return Ok(Vec::new());
            };
            let extensions = crate::fhirpath::eval::member(input, "extension");
            let matching: Items<'a> = extensions
                .into_iter()
                .filter(|extension| match extension {
                    Item::Node(node) => node.value.get("url").and_then(Value::as_str) == Some(url.as_str()),
                    _ => false,
                })
                .collect();
            if function == F::HasExtension { boolean_result(!matching.is_empty()) } else { Ok(matching) }
        }
        // Terminology is not available here: membership is unknown.
        F::MemberOf => Ok(Vec::new()),
        F::ConformsTo => {
            let Some(url) = call.string_arg(0)? else {
                return Ok(Vec::new());
            };
            let Some(type_name) = url.strip_prefix("http://hl7.org/fhir/StructureDefinition/") else {
                return Err(EvalError::new(format!("unknown profile {url}")));
            };
            Ok(input.iter().map(|item| Item::Boolean(navigation::is_fhir_type(item.type_name(), type_name))).collect())
        }
        F::Type => Ok(input
            .iter()
            .map(|item| match item {
                Item::Node(node) => Item::Type { namespace: "FHIR", name: Cow::Borrowed(node.type_name) },
                other => Item::Type { namespace: "System", name: Cow::Owned(other.type_name().to_owned()) },
            })
            .collect()),
        F::Sort => call.sort(input),
        F::Precision => Ok(match single(input)?.and_then(Item::to_system) {
            Some(Item::Decimal(value)) => vec![Item::Integer(i64::from(value.scale()))],
            Some(Item::Integer(_)) => vec![Item::Integer(0)],
            Some(Item::Date(value) | Item::DateTime(value)) => vec![Item::Integer(value.precision_digits())],
            Some(Item::Time(value)) => vec![Item::Integer(value.precision_digits())],
            _ => Vec::new(),
        }),
        F::LowBoundary | F::HighBoundary => call.boundary(input, function == F::HighBoundary),
        F::Comparable => {
            let other = call.arg(0)?;
            match (single(input)?.and_then(Item::to_system), single(&other)?.and_then(Item::to_system)) {
                (Some(Item::Quantity(a)), Some(Item::Quantity(b))) => boolean_result(a.compare(&b).is_some()),
                _ => Ok(Vec::new()),
            }
        }
    }
}

/// One function call's arguments and the scope they are evaluated in.
struct Call<'c, 'e, 'a> {
    evaluator: &'c mut Evaluator<'e, 'a>,
    args: &'a [Expr],
    scope: &'c [Item<'a>],
    frame: Frame<'c, 'a>,
}

impl<'a> Call<'_, '_, 'a> {
    /// Argument `index` evaluated in the caller's scope.
    fn arg(&mut self, index: usize) -> Result<Items<'a>, EvalError> {
        let Some(expr) = self.args.get(index) else {
            return Ok(Vec::new());
        };
        self.evaluator.eval(expr, self.scope, self.frame)
    }

    fn string_arg(&mut self, index: usize) -> Result<Option<String>, EvalError> {
        let items = self.arg(index)?;
        match single(&items)?.and_then(Item::to_system) {
            None => Ok(None),
            Some(item) => match item.as_str() {
                Some(text) => Ok(Some(text.to_owned())),
                None => Err(EvalError::new("expected a string argument")),
            },
        }
    }

    fn integer_arg(&mut self, index: usize) -> Result<Option<i64>, EvalError> {
        let items = self.arg(index)?;
        match single(&items)?.and_then(Item::to_system) {
            None => Ok(None),
            Some(Item::Integer(value)) => Ok(Some(value)),
            Some(_) => Err(EvalError::new("expected an integer argument")),
        }
    }

    /// Argument `arg` evaluated with `$this` = `item`.
    fn per_item(&mut self, arg: usize, item: &Item<'a>, index: usize) -> Result<Items<'a>, EvalError> {
        let Some(expr) = self.args.get(arg) else {
            return Ok(Vec::new());
        };
        let frame = Frame { this: Some(item), index: i64::try_from(index).ok(), total: self.frame.total };
        self.evaluator.eval(expr, std::slice::from_ref(item), frame)
    }

    fn criterion(&mut self, item: &Item<'a>, index: usize) -> Result<Option<bool>, EvalError> {
        let result = self.per_item(0, item, index)?;
        boolean(&result)
    }

    fn filter(&mut self, input: &[Item<'a>]) -> Result<Items<'a>, EvalError> {
        let mut out = Vec::new();
        for (index, item) in input.iter().enumerate() {
            if self.criterion(item, index)? == Some(true) {
                out.push(item.clone());
            }
        }
        Ok(out)
    }

    fn repeat(&mut self, input: &[Item<'a>]) -> Result<Items<'a>, EvalError> {
        let mut out: Items<'a> = Vec::new();
        let mut pending: Items<'a> = input.to_vec();
        while !pending.is_empty() {
            let mut next = Vec::new();
            for (index, item) in pending.iter().enumerate() {
                for produced in self.per_item(0, item, index)? {
                    self.evaluator.charge_comparisons(out.len())?;
                    if !already_seen(&out, &produced) {
                        out.push(produced.clone());
                        next.push(produced);
                    }
                }
                if out.len() > MAX_REPEAT_ITEMS {
                    return Err(EvalError::too_many_items(MAX_REPEAT_ITEMS));
                }
            }
            pending = next;
        }
        Ok(out)
    }

    fn aggregate(&mut self, input: &[Item<'a>]) -> Result<Items<'a>, EvalError> {
        let mut total = self.arg(1)?;
        let Some(expr) = self.args.first() else {
            return Ok(total);
        };
        for (index, item) in input.iter().enumerate() {
            let frame = Frame { this: Some(item), index: i64::try_from(index).ok(), total: Some(&total) };
            total = self.evaluator.eval(expr, std::slice::from_ref(item), frame)?;
        }
        Ok(total)
    }

    /// `iif(criterion, then, else)`: on an explicit input, the arguments see it as `$this`.
    fn iif(&mut self, input: &[Item<'a>]) -> Result<Items<'a>, EvalError> {
        let explicit_input = !std::ptr::eq(input, self.scope);
        let this = if explicit_input { single(input)?.cloned() } else { self.frame.this.cloned() };
        let scope: Items<'a> = if explicit_input { input.to_vec() } else { self.scope.to_vec() };
        let frame = Frame { this: this.as_ref(), index: self.frame.index, total: self.frame.total };
        let Some(criterion) = self.args.first() else {
            return Err(EvalError::new("iif() needs a criterion"));
        };
        let criterion = self.evaluator.eval(criterion, &scope, frame)?;
        let chosen = match criterion.as_slice() {
            [] => false,
            [item] => match item.to_system() {
                Some(Item::Boolean(value)) => value,
                _ => return Err(EvalError::new("iif() criterion must be a Boolean")),
            },
            _ => return Err(EvalError::new("iif() criterion must be a single Boolean")),
        };
        match (chosen, self.args.get(1), self.args.get(2)) {
            (true, Some(then), _) => self.evaluator.eval(then, &scope, frame),
            (false, _, Some(otherwise)) => self.evaluator.eval(otherwise, &scope, frame),
            _ => Ok(Vec::new()),
        }
    }

    fn sort(&mut self, input: &[Item<'a>]) -> Result<Items<'a>, EvalError> {
        let mut keyed: Vec<(Vec<Option<Item<'a>>>, Item<'a>)> = Vec::with_capacity(input.len());
        let mut descending = Vec::with_capacity(self.args.len());
        for (index, item) in input.iter().enumerate() {
            let mut keys = Vec::with_capacity(self.args.len().max(1));
            if self.args.is_empty() {
                keys.push(item.to_system());
            }
            for arg in self.args {
                // `-key` sorts descending, also for strings (which cannot be negated).
                let (expr, reverse) = match arg {
                    Expr::Negate(inner) => (&**inner, true),
                    other => (other, false),
                };
                if index == 0 {
                    descending.push(reverse);
                }
                let frame = Frame { this: Some(item), index: i64::try_from(index).ok(), total: None };
                let key = self.evaluator.eval(expr, std::slice::from_ref(item), frame)?;
                keys.push(single(&key)?.and_then(Item::to_system));
            }
            keyed.push((keys, item.clone()));
        }
        let count = keyed.len();
        let log = usize::try_from(usize::BITS - count.leading_zeros()).unwrap_or(usize::MAX);
        self.evaluator.charge_comparisons(count.saturating_mul(log))?;
        keyed.sort_by(|(left, _), (right, _)| {
            for (position, (a, b)) in left.iter().zip(right).enumerate() {
                // Items without a key come first, in either direction.
                let order = match (a, b) {
                    (None, None) => Ordering::Equal,
                    (None, Some(_)) => return Ordering::Less,
                    (Some(_), None) => return Ordering::Greater,
                    (Some(a), Some(b)) => value::compare(a, b).ok().flatten().unwrap_or(Ordering::Equal),
                };
                let order = if descending.get(position).copied().unwrap_or(false) { order.reverse() } else { order };
                if order != Ordering::Equal {
                    return order;
                }
            }
            Ordering::Equal
        });
        Ok(keyed.into_iter().map(|(_, item)| item).collect())
    }

    fn string_function(&mut self, function: Function, input: &[Item<'a>]) -> Result<Items<'a>, EvalError> {
        use Function as F;
        let Some(item) = single(input)?.and_then(Item::to_system) else {
            return Ok(Vec::new());
        };
        let Some(text) = item.as_str() else {
            return Err(EvalError::new(format!("{function:?} needs a string, found {}", item.type_name())));
        };
        // Every string function scans its input at least once.
        self.evaluator.charge_bytes(text.len())?;
        let string = |value: String| Ok(vec![Item::String(Cow::Owned(value))]);
        let integer = |value: usize| Ok(vec![Item::Integer(i64::try_from(value).unwrap_or(i64::MAX))]);
        let boolean_result = |value: bool| Ok(vec![Item::Boolean(value)]);
        match function {
            F::IndexOf => match self.string_arg(0)? {
                None => Ok(Vec::new()),
                Some(needle) => match text.find(&needle) {
                    Some(at) => integer(text[..at].chars().count()),
                    None => Ok(vec![Item::Integer(-1)]),
                },
            },
            F::Substring => {
                let Some(start) = self.integer_arg(0)? else {
                    return Ok(Vec::new());
                };
                let length = if self.args.len() > 1 { self.integer_arg(1)? } else { None };
                let count = text.chars().count();
                let Some(start) = usize::try_from(start).ok().filter(|start| *start < count) else {
                    return Ok(Vec::new());
                };
                let take = length.map_or(count, |length| usize::try_from(length).unwrap_or(0));
                string(text.chars().skip(start).take(take).collect())
            }
            F::StartsWith => match self.string_arg(0)? {
                None => Ok(Vec::new()),
                Some(prefix) => boolean_result(text.starts_with(&prefix)),
            },
            F::EndsWith => match self.string_arg(0)? {
                None => Ok(Vec::new()),
                Some(suffix) => boolean_result(text.ends_with(&suffix)),
            },
            F::ContainsText => match self.string_arg(0)? {
                None => Ok(Vec::new()),
                Some(needle) => boolean_result(text.contains(&needle)),
            },
            F::Upper => string(text.to_uppercase()),
            F::Lower => string(text.to_lowercase()),
            F::Replace => match (self.string_arg(0)?, self.string_arg(1)?) {
                (Some(pattern), Some(substitution)) => {
                    // An empty pattern matches between every character.
                    let matches =
                        if pattern.is_empty() { text.chars().count() + 1 } else { text.matches(&pattern).count() };
                    let length = (text.len() - matches * pattern.len())
                        .saturating_add(matches.saturating_mul(substitution.len()));
                    if length > MAX_STRING_LENGTH {
                        return Err(EvalError::new("string too long"));
                    }
                    self.evaluator.charge_bytes(length)?;
                    string(text.replace(&pattern, &substitution))
                }
                _ => Ok(Vec::new()),
            },
            F::Matches | F::MatchesFull => match self.string_arg(0)? {
                None => Ok(Vec::new()),
                Some(pattern) => {
                    boolean_result(self.evaluator.regex(&pattern, function == F::MatchesFull)?.is_match(text))
                }
            },
            F::ReplaceMatches => match (self.string_arg(0)?, self.string_arg(1)?) {
                (Some(pattern), Some(_)) if pattern.is_empty() => string(text.to_owned()),
                (Some(pattern), Some(substitution)) => {
                    let regex = self.evaluator.regex(&pattern, false)?;
                    let replaced = replace_matches(regex, text, &substitution)?;
                    self.evaluator.charge_bytes(replaced.len())?;
                    string(replaced)
                }
                _ => Ok(Vec::new()),
            },
            F::Length => integer(text.chars().count()),
            F::ToChars => {
                if text.chars().count() > MAX_COLLECTION_ITEMS {
                    return Err(EvalError::too_many_items(MAX_COLLECTION_ITEMS));
                }
                Ok(text.chars().map(|c| Item::String(Cow::Owned(c.to_string()))).collect())
            }
            F::Trim => string(text.trim().to_owned()),
            F::Split => match self.string_arg(0)? {
                None => Ok(Vec::new()),
                Some(separator) if separator.is_empty() => {
                    if text.chars().count() > MAX_COLLECTION_ITEMS {
                        return Err(EvalError::too_many_items(MAX_COLLECTION_ITEMS));
                    }
                    Ok(text.chars().map(|c| Item::String(Cow::Owned(c.to_string()))).collect())
                }
                Some(separator) => {
                    Ok(text.split(separator.as_str()).map(|part| Item::String(Cow::Owned(part.to_owned()))).collect())
                }
            },
            F::Encode | F::Decode | F::Escape | F::Unescape => {
                let Some(format) = self.string_arg(0)? else {
                    return Ok(Vec::new());
                };
                let converted = match function {
                    F::Encode => text::encode(text, &format),
                    F::Decode => text::decode(text, &format),
                    F::Escape => text::escape(text, &format),
                    _ => text::unescape(text, &format),
                };
                Ok(converted.map(|value| Item::String(Cow::Owned(value))).into_iter().collect())
            }
            _ => Err(EvalError::new(format!("{function:?} is not a string function"))),
        }
    }

    fn math(&mut self, function: Function, input: &[Item<'a>]) -> Result<Items<'a>, EvalError> {
        use Function as F;
        let Some(item) = single(input)?.and_then(Item::to_system) else {
            return Ok(Vec::new());
        };
        if let Item::Quantity(quantity) = &item {
            return match function {
                F::Abs => Ok(vec![Item::Quantity(quantity.with_value(quantity.value().abs()))]),
                _ => Err(EvalError::new(format!("{function:?} needs a number"))),
            };
        }
        let Some(number) = value::number(&item) else {
            return Err(EvalError::new(format!("{function:?} needs a number, found {}", item.type_name())));
        };
        let integer = |value: Option<Decimal>| -> Result<Items<'a>, EvalError> {
            let value = value.and_then(|value| value.to_i64()).ok_or_else(|| EvalError::new("number out of range"))?;
            Ok(vec![Item::Integer(value)])
        };
        let decimal = |value: Option<Decimal>| Ok(value.map(Item::Decimal).into_iter().collect());
        let float = |value: f64| Ok(Decimal::from_f64(value).map(Item::Decimal).into_iter().collect());
        match function {
            F::Abs => match item {
                Item::Integer(value) => {
                    Ok(vec![Item::Integer(value.checked_abs().ok_or_else(|| EvalError::new("overflow"))?)])
                }
                _ => decimal(Some(number.abs())),
            },
            F::Ceiling => integer(number.ceiling()),
            F::Floor => integer(number.floor()),
            F::Truncate => integer(number.truncate()),
            F::Round => {
                let digits = if self.args.is_empty() { Some(0) } else { self.integer_arg(0)? };
                let Some(digits) = digits.and_then(|d| u32::try_from(d).ok()) else {
                    return Err(EvalError::new("round() needs a non-negative precision"));
                };
                decimal(number.round(digits))
            }
            F::Exp => float(number.to_f64().exp()),
            F::Ln => float(number.to_f64().ln()),
            F::Sqrt => float(number.to_f64().sqrt()),
            F::Log => {
                let base = self.arg(0)?;
                match single(&base)?.and_then(Item::to_system).as_ref().and_then(value::number) {
                    Some(base) => float(number.to_f64().ln() / base.to_f64().ln()),
                    None => Ok(Vec::new()),
                }
            }
            F::Power => {
                let exponent = self.arg(0)?;
                let Some(exponent) = single(&exponent)?.and_then(Item::to_system) else {
                    return Ok(Vec::new());
                };
                if let (Item::Integer(base), Item::Integer(power)) = (&item, &exponent)
                    && let Some(result) = u32::try_from(*power).ok().and_then(|p| base.checked_pow(p))
                {
                    return Ok(vec![Item::Integer(result)]);
                }
                match value::number(&exponent) {
                    Some(power) => float(number.to_f64().powf(power.to_f64())),
                    None => Err(EvalError::new("power() needs a number")),
                }
            }
            _ => Err(EvalError::new(format!("{function:?} is not a math function"))),
        }
    }

    fn boundary(&mut self, input: &[Item<'a>], high: bool) -> Result<Items<'a>, EvalError> {
        let Some(item) = single(input)?.and_then(Item::to_system) else {
            return Ok(Vec::new());
        };
        let digits = if self.args.is_empty() { None } else { self.integer_arg(0)? };
        let result = match item {
            Item::Integer(value) => decimal_boundary(Decimal::from_i64(value), digits, high).map(Item::Decimal),
            Item::Decimal(value) => decimal_boundary(value, digits, high).map(Item::Decimal),
            Item::Quantity(quantity) => decimal_boundary(*quantity.value(), digits, high)
                .map(|value| Item::Quantity(quantity.with_value(value))),
            Item::Date(value) => value.boundary(digits.or(Some(8)), high).map(|value| Item::Date(value.date_part())),
            Item::DateTime(value) => value.boundary(digits, high).map(Item::DateTime),
            Item::Time(value) => value.boundary(digits, high).map(Item::Time),
            _ => None,
        };
        Ok(result.into_iter().collect())
    }
}

/// The least (or greatest) value a decimal written with its precision may stand for, at
/// `digits` digits after the point (8 by default).
fn decimal_boundary(value: Decimal, digits: Option<i64>, high: bool) -> Option<Decimal> {
    let digits = u32::try_from(digits.unwrap_or(8)).ok().filter(|digits| *digits <= 28)?;
    let half_unit = Decimal::parse(&format!("0.{}5", "0".repeat(value.scale() as usize)))?;
    let bound = if high { value.add(&half_unit)? } else { value.sub(&half_unit)? };
    if digits >= bound.scale() {
        return bound.round(digits);
    }
    // Cut towards the boundary's side: down for the low one, up for the high one.
    let factor = Decimal::parse(&format!("1{}", "0".repeat(digits as usize)))?;
    let scaled = bound.mul(&factor)?;
    // Below the requested precision altogether, the boundary is zero.
    if scaled.abs().compare(&Decimal::from_i64(1)) == Ordering::Less {
        return Decimal::from_i64(0).round(digits);
    }
    let cut = if high { scaled.ceiling()? } else { scaled.floor()? };
    cut.div(&factor)?.round(digits)
}

/// `repeat()` keeps a node once even when reached twice; computed values once per value.
fn already_seen(seen: &[Item<'_>], item: &Item<'_>) -> bool {
    match item {
        Item::Node(node) => seen.iter().any(|other| match other {
            Item::Node(other) => std::ptr::eq(other.value, node.value) && !node.value.is_null(),
            _ => false,
        }),
        other => contains_item(seen, other),
    }
}

fn descendants<'a>(input: &[Item<'a>]) -> Result<Items<'a>, EvalError> {
    let mut out = Vec::new();
    let mut pending: Items<'a> = input.to_vec();
    while let Some(item) = pending.pop() {
        if let Item::Node(node) = item {
            let start = out.len();
            navigation::all_children(&node, &mut out);
            pending.extend(out[start..].iter().rev().cloned());
            if out.len() > MAX_REPEAT_ITEMS {
                return Err(EvalError::too_many_items(MAX_REPEAT_ITEMS));
            }
        }
    }
    Ok(out)
}

/// `resolve()` for one reference: a contained resource for `#id`, otherwise a stand-in
/// typed by the reference's resource type (`Patient/1`, `http://…/Patient/1/_history/2`).
fn resolve<'a>(evaluator: &Evaluator<'_, 'a>, item: &Item<'a>) -> Option<Item<'a>> {
    let (reference, json) = match item {
        Item::Node(node) => match node.value {
            Value::Object(object) => (object.get("reference")?.as_str()?, node.value),
            Value::String(text) => (text.as_str(), node.value),
            _ => return None,
        },
        _ => return None,
    };
    if let Some(id) = reference.strip_prefix('#') {
        let contained = evaluator.context.resource?.get("contained")?.as_array()?;
        let found = contained.iter().find(|resource| resource.get("id").and_then(Value::as_str) == Some(id))?;
        return Some(Item::Node(navigation::root(found)));
    }
    let definitions = Definitions::get();
    let segments: Vec<&str> = reference.split(['/', '?']).collect();
    let type_name = segments
        .windows(2)
        .rev()
        .find(|pair| definitions.is_resource_type(pair[0]) && !pair[1].is_empty())
        .map(|pair| pair[0])?;
    let def = definitions.type_def(type_name)?;
    Some(Item::Node(Node {
        value: json,
        extension: None,
        type_name: &def.name,
        site: None,
        unresolved_reference: true,
    }))
}

/// `text` with every match of `regex` replaced by `substitution` (`$1`, `${name}` expanded),
/// as `Regex::replace_all` does, but refusing to build more than [`MAX_STRING_LENGTH`] bytes.
fn replace_matches(regex: &regex::Regex, text: &str, substitution: &str) -> Result<String, EvalError> {
    let mut out = String::new();
    let mut copied = 0;
    for captures in regex.captures_iter(text) {
        let Some(found) = captures.get(0) else {
            continue;
        };
        out.push_str(&text[copied..found.start()]);
        captures.expand(substitution, &mut out);
        copied = found.end();
        if out.len() > MAX_STRING_LENGTH {
            return Err(EvalError::new("string too long"));
        }
    }
    out.push_str(&text[copied..]);
    if out.len() > MAX_STRING_LENGTH {
        return Err(EvalError::new("string too long"));
    }
    Ok(out)
}

/// Runs a conversion on the single input item: `toX` returns the converted value (empty when
/// it does not convert), `convertsToX` whether it converts.
fn convert<'a>(
    function: Function,
    input: &[Item<'a>],
    conversion: fn(&Item<'a>) -> Option<Item<'a>>,
) -> Result<Items<'a>, EvalError> {
    let Some(item) = single(input)?.and_then(Item::to_system) else {
        return Ok(Vec::new());
    };
    let converted = conversion(&item);
    let name = format!("{function:?}");
    if name.starts_with("ConvertsTo") {
        Ok(vec![Item::Boolean(converted.is_some())])
    } else {
        Ok(converted.into_iter().collect())
    }
}

fn to_boolean<'a>(item: &Item<'a>) -> Option<Item<'a>> {
    match item {
        Item::Boolean(value) => Some(Item::Boolean(*value)),
        Item::Integer(1) => Some(Item::Boolean(true)),
        Item::Integer(0) => Some(Item::Boolean(false)),
        Item::Decimal(value) if value.compare(&Decimal::from_i64(1)) == Ordering::Equal => Some(Item::Boolean(true)),
        Item::Decimal(value) if value.is_zero() => Some(Item::Boolean(false)),
        Item::String(text) => match text.to_lowercase().as_str() {
            "true" | "t" | "yes" | "y" | "1" | "1.0" => Some(Item::Boolean(true)),
            "false" | "f" | "no" | "n" | "0" | "0.0" => Some(Item::Boolean(false)),
            _ => None,
        },
        _ => None,
    }
}

fn to_integer<'a>(item: &Item<'a>) -> Option<Item<'a>> {
    match item {
        Item::Integer(value) => Some(Item::Integer(*value)),
        Item::Boolean(value) => Some(Item::Integer(i64::from(*value))),
        Item::String(text) => {
            let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            text.parse::<i64>().ok().map(Item::Integer)
        }
        _ => None,
    }
}

fn to_decimal<'a>(item: &Item<'a>) -> Option<Item<'a>> {
    match item {
        Item::Integer(value) => Some(Item::Decimal(Decimal::from_i64(*value))),
        Item::Decimal(value) => Some(Item::Decimal(*value)),
        Item::Boolean(value) => Decimal::parse(if *value { "1.0" } else { "0.0" }).map(Item::Decimal),
        Item::String(text) if !text.contains(['e', 'E']) => Decimal::parse(text).map(Item::Decimal),
        _ => None,
    }
}

fn to_text<'a>(item: &Item<'a>) -> Option<Item<'a>> {
    match item {
        Item::String(text) => Some(Item::String(text.clone())),
        Item::Node(_) | Item::Type { .. } => None,
        other => Some(Item::String(Cow::Owned(other.to_string()))),
    }
}

fn to_date<'a>(item: &Item<'a>) -> Option<Item<'a>> {
    match item {
        Item::Date(value) => Some(Item::Date(*value)),
        Item::DateTime(value) => Some(Item::Date(value.date_part())),
        Item::String(text) => DateTime::parse(text).map(|value| Item::Date(value.date_part())),
        _ => None,
    }
}

fn to_date_time<'a>(item: &Item<'a>) -> Option<Item<'a>> {
    match item {
        Item::Date(value) | Item::DateTime(value) => Some(Item::DateTime(*value)),
        Item::String(text) => DateTime::parse(text).map(Item::DateTime),
        _ => None,
    }
}

fn to_time<'a>(item: &Item<'a>) -> Option<Item<'a>> {
    match item {
        Item::Time(value) => Some(Item::Time(*value)),
        Item::String(text) => Time::parse(text).map(Item::Time),
        _ => None,
    }
}

fn to_quantity<'a>(item: &Item<'a>) -> Option<Item<'a>> {
    let one = |value: Decimal| Some(Item::Quantity(Quantity::new(value, "1")));
    match item {
        Item::Quantity(quantity) => Some(Item::Quantity(quantity.clone())),
        Item::Integer(value) => one(Decimal::from_i64(*value)),
        Item::Decimal(value) => one(*value),
        Item::Boolean(value) => one(Decimal::from_i64(i64::from(*value))),
        Item::String(text) => {
            let text = text.trim();
            let (number, unit) = match text.split_once(' ') {
                Some((number, unit)) => (number, unit.trim()),
                None => (text, ""),
            };
            let value = Decimal::parse(number)?;
            if unit.is_empty() {
                return one(value);
            }
            if let Some(quoted) = unit.strip_prefix('\'').and_then(|u| u.strip_suffix('\'')) {
                return Some(Item::Quantity(Quantity::new(value, quoted)));
            }
            Quantity::is_calendar_keyword(unit).then(|| Item::Quantity(Quantity::new(value, unit)))
        }
        _ => None,
    }
}
