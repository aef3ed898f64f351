//! Evaluates an [`Expr`] tree over a collection of [`Item`]s: path steps, literals,
//! variables, indexers, type operators and the arithmetic, comparison, collection and boolean
//! operators with their empty-propagation and three-valued rules. Function calls are in
//! [`crate::fhirpath::functions`].
//!
//! Every scope has an *input* collection (the resource at the top, the current item inside
//! `where`, `select`, …) and a [`Frame`] holding `$this`, `$index` and `$total`. Recursion is
//! bounded by [`MAX_EVAL_DEPTH`] on top of the parser's bound on tree depth, because functions
//! such as `repeat` re-enter the evaluator.
//!
//! Work is bounded by a budget of steps ([`DEFAULT_WORK_BUDGET`] unless the [`Context`] sets
//! another), charged in [`Evaluator::eval`] for every node evaluated and every item it
//! produces, and by the functions for work that is not one item each: pairwise comparisons
//! (`distinct`, `|`, `repeat`), bytes of text scanned or built, regular expressions compiled.
//! Charging is a subtraction and a comparison; it never allocates.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::Value;

use crate::fhirpath::ast::{BinaryOperator, Expr, Literal, SystemType, TypeOperation, TypeSpec};
use crate::fhirpath::datetime::CalendarUnit;
use crate::fhirpath::navigation;
use crate::fhirpath::patterns::{Found, Patterns, RegexCache};
use crate::fhirpath::value::{self, Item};
use crate::fhirpath::{Context, EvalError, functions};

/// Deepest nesting of evaluator calls accepted.
const MAX_EVAL_DEPTH: usize = 256;
/// Stack left below which a nested evaluation continues on a fresh segment.
const STACK_RED_ZONE: usize = 64 * 1024;
/// The size of each such segment.
const STACK_GROWTH: usize = 1024 * 1024;
/// Longest string `+`, `&`, `replace`, `replaceMatches` and `join` may build (bounds
/// `aggregate($total & $total)` doubling).
pub(crate) const MAX_STRING_LENGTH: usize = 1 << 20;

/// The steps one evaluation may take unless its [`Context`] says otherwise: one per node
/// evaluated and per item produced, one per [`COMPARISONS_PER_STEP`] pairwise comparisons, one
/// per [`BYTES_PER_STEP`] bytes of text scanned or built, [`REGEX_COMPILE_STEPS`] per regular
/// expression compiled. The official search parameters take fewer than a thousand steps on
/// nearly every example resource of the specification, and fewer than ten thousand on all of
/// them (the largest are Bundles of hundreds of entries).
pub const DEFAULT_WORK_BUDGET: usize = 1_000_000;
/// Most items one collection may hold.
pub const MAX_COLLECTION_ITEMS: usize = 100_000;
/// Pairwise item comparisons that cost one step.
const COMPARISONS_PER_STEP: usize = 8;
/// Bytes of text scanned or built that cost one step.
const BYTES_PER_STEP: usize = 64;
/// The steps compiling one regular expression costs.
const REGEX_COMPILE_STEPS: usize = 10_000;

/// `$this`, `$index` and `$total` of the current scope.
#[derive(Clone, Copy, Default)]
pub(crate) struct Frame<'f, 'a> {
    pub(crate) this: Option<&'f Item<'a>>,
    pub(crate) index: Option<i64>,
    pub(crate) total: Option<&'f [Item<'a>]>,
}

/// The state of one evaluation.
pub(crate) struct Evaluator<'e, 'a> {
    pub(crate) context: &'e Context<'a>,
    /// `%context`: the evaluation's original input.
    focus: Option<&'e Item<'a>>,
    depth: usize,
    /// The literal regular expressions of the expression being evaluated.
    patterns: &'e Patterns,
    /// Regular expressions computed at run time, compiled in this evaluation.
    regex_cache: RegexCache,
    /// The budget, for messages.
    budget: usize,
    /// Steps left.
    remaining: usize,
}

impl<'e, 'a> Evaluator<'e, 'a> {
    pub(crate) fn new(context: &'e Context<'a>, focus: Option<&'e Item<'a>>, patterns: &'e Patterns) -> Self {
        let budget = context.work_budget.unwrap_or(DEFAULT_WORK_BUDGET);
        Evaluator { context, focus, depth: 0, patterns, regex_cache: RegexCache::default(), budget, remaining: budget }
    }

    /// Spends `steps` of the budget; an error once it is exhausted.
    #[inline]
    pub(crate) fn charge(&mut self, steps: usize) -> Result<(), EvalError> {
        match self.remaining.checked_sub(steps) {
            Some(remaining) => {
                self.remaining = remaining;
                Ok(())
            }
            None => {
                self.remaining = 0;
                Err(EvalError::over_budget(self.budget))
            }
        }
    }

    /// Spends the budget for `comparisons` pairwise item comparisons.
    #[inline]
    pub(crate) fn charge_comparisons(&mut self, comparisons: usize) -> Result<(), EvalError> {
        self.charge(comparisons / COMPARISONS_PER_STEP)
    }

    /// Spends the budget for scanning or building `bytes` bytes of text.
    #[inline]
    pub(crate) fn charge_bytes(&mut self, bytes: usize) -> Result<(), EvalError> {
        self.charge(bytes / BYTES_PER_STEP)
    }

    /// The compiled form of the regular expression `pattern` (anchored at both ends when
    /// `whole`): compiled once per expression when it is written as a literal, once per
    /// evaluation otherwise, and charged for when compiled.
    pub(crate) fn regex(&mut self, pattern: &str, whole: bool) -> Result<&regex::Regex, EvalError> {
        let patterns = self.patterns;
        if let Some(found) = patterns.find(pattern, whole) {
            let Found { regex, compiled_now } = found?;
            if compiled_now {
                self.charge(REGEX_COMPILE_STEPS)?;
            }
            return Ok(regex);
        }
        let Found { regex, compiled_now } = self.regex_cache.get(pattern, whole)?;
        if compiled_now {
            // Charged after the fact, but each compilation is bounded in size and the next
            // one cannot start once the budget is spent.
            match self.remaining.checked_sub(REGEX_COMPILE_STEPS) {
                Some(remaining) => self.remaining = remaining,
                None => {
                    self.remaining = 0;
                    return Err(EvalError::over_budget(self.budget));
                }
            }
        }
        Ok(regex)
    }

    /// `left | right` without duplicates, charging for the comparisons.
    pub(crate) fn union(&mut self, left: &[Item<'a>], right: &[Item<'a>]) -> Result<Vec<Item<'a>>, EvalError> {
        let mut out: Vec<Item<'a>> = Vec::with_capacity(left.len() + right.len());
        for item in left.iter().chain(right) {
            self.charge_comparisons(out.len())?;
            if !contains_item(&out, item) {
                out.push(item.clone());
            }
        }
        Ok(out)
    }

    /// Evaluates `expr` in a scope whose input is `input`.
    pub(crate) fn eval(
        &mut self,
        expr: &'a Expr,
        input: &[Item<'a>],
        frame: Frame<'_, 'a>,
    ) -> Result<Vec<Item<'a>>, EvalError> {
        self.charge(1)?;
        self.depth += 1;
        if self.depth > MAX_EVAL_DEPTH {
            self.depth -= 1;
            return Err(EvalError::new("evaluation nested too deeply"));
        }
        // Nested evaluation recurses; a thread's stack (2 MiB for tokio's threads, less in
        // a debug build's frames) must not decide whether a deep expression works or aborts
        // the process, so the stack grows on the heap when little is left.
        let result = stacker::maybe_grow(STACK_RED_ZONE, STACK_GROWTH, || self.eval_inner(expr, input, frame));
        self.depth -= 1;
        let result = result?;
        if result.len() > MAX_COLLECTION_ITEMS {
            return Err(EvalError::too_many_items(MAX_COLLECTION_ITEMS));
        }
        self.charge(result.len())?;
        Ok(result)
    }

    fn eval_inner(
        &mut self,
        expr: &'a Expr,
        input: &[Item<'a>],
        frame: Frame<'_, 'a>,
    ) -> Result<Vec<Item<'a>>, EvalError> {
        match expr {
            Expr::Literal(literal) => Ok(vec![literal_item(literal)]),
            Expr::Empty => Ok(Vec::new()),
            Expr::Identifier(name) => Ok(member(input, name)),
            Expr::TypeFilter(name) => Ok(input.iter().filter(|item| is_of_named_type(item, name)).cloned().collect()),
            Expr::Member(target, name) => {
                let targets = self.eval(target, input, frame)?;
                Ok(member(&targets, name))
            }
            Expr::Call { target, function, args } => match target {
                Some(target) => {
                    let targets = self.eval(target, input, frame)?;
                    functions::call(self, *function, &targets, args, input, frame)
                }
                None => functions::call(self, *function, input, args, input, frame),
            },
            Expr::Type { target, operation, type_spec } => {
                let owned;
                let targets = match target {
                    Some(target) => {
                        owned = self.eval(target, input, frame)?;
                        &owned[..]
                    }
                    None => input,
                };
                let operation = match operation {
                    TypeOperation::AsFunction if self.context.r4_invariants => TypeOperation::OfType,
                    operation => *operation,
                };
                type_operation(targets, operation, type_spec, self.context.r4_invariants)
            }
            Expr::Index(target, index) => {
                let targets = self.eval(target, input, frame)?;
                let index = self.eval(index, input, frame)?;
                let position = match single(&index)?.and_then(|item| item.to_system()) {
                    None => return Ok(Vec::new()),
                    Some(Item::Integer(position)) => position,
                    Some(_) => return Err(EvalError::new("an index must be an integer")),
                };
                Ok(usize::try_from(position).ok().and_then(|p| targets.get(p)).cloned().into_iter().collect())
            }
            Expr::Negate(operand) => {
                let operand = self.eval(operand, input, frame)?;
                let Some(item) = single(&operand)?.and_then(Item::to_system) else {
                    return Ok(Vec::new());
                };
                Ok(vec![match item {
                    Item::Integer(value) => Item::Integer(value.checked_neg().ok_or_else(overflow)?),
                    Item::Decimal(value) => Item::Decimal(value.negate()),
                    Item::Quantity(quantity) => Item::Quantity(quantity.with_value(quantity.value().negate())),
                    other => return Err(EvalError::new(format!("cannot negate a {}", other.type_name()))),
                }])
            }
            Expr::Binary(operator, left, right) => self.binary(*operator, left, right, input, frame),
            // Copies of computed text cost its bytes: `aggregate($total, …)` may copy a long
            // string once per item.
            Expr::This => {
                let this = frame.this.map(std::slice::from_ref).unwrap_or_default();
                self.charge_bytes(owned_text_bytes(this))?;
                Ok(this.to_vec())
            }
            Expr::IndexVariable => Ok(frame.index.map(Item::Integer).into_iter().collect()),
            Expr::Total => {
                let total = frame.total.unwrap_or_default();
                self.charge_bytes(owned_text_bytes(total))?;
                Ok(total.to_vec())
            }
            Expr::Variable(name) => {
                let items = self.variable(name)?;
                self.charge_bytes(owned_text_bytes(&items))?;
                Ok(items)
            }
        }
    }

    fn variable(&self, name: &'a str) -> Result<Vec<Item<'a>>, EvalError> {
        let node = |value: Option<&'a Value>| value.map(|v| Item::Node(navigation::root(v))).into_iter().collect();
        let text = |value: Cow<'a, str>| Ok(vec![Item::String(value)]);
        match name {
            "resource" => Ok(node(self.context.resource)),
            "rootResource" => Ok(node(self.context.root_resource.or(self.context.resource))),
            "context" => Ok(self.focus.cloned().into_iter().collect()),
            "ucum" => text(Cow::Borrowed("http://unitsofmeasure.org")),
            "sct" => text(Cow::Borrowed("http://snomed.info/sct")),
            "loinc" => text(Cow::Borrowed("http://loinc.org")),
            _ => {
                if let Some((_, items)) = self.context.variables.iter().find(|(variable, _)| variable == name) {
                    return Ok(items.clone());
                }
                if let Some(value_set) = name.strip_prefix("vs-") {
                    return text(Cow::Owned(format!("http://hl7.org/fhir/ValueSet/{value_set}")));
                }
                if let Some(extension) = name.strip_prefix("ext-") {
                    return text(Cow::Owned(format!("http://hl7.org/fhir/StructureDefinition/{extension}")));
                }
                Err(EvalError::new(format!("unknown variable %{name}")))
            }
        }
    }

    fn binary(
        &mut self,
        operator: BinaryOperator,
        left: &'a Expr,
        right: &'a Expr,
        input: &[Item<'a>],
        frame: Frame<'_, 'a>,
    ) -> Result<Vec<Item<'a>>, EvalError> {
        use BinaryOperator as B;
        let left_items = self.eval(left, input, frame)?;
        // `and`, `or` and `implies` decide some cases from the left side alone.
        match operator {
            B::And if boolean(&left_items)? == Some(false) => return Ok(vec![Item::Boolean(false)]),
            B::Or if boolean(&left_items)? == Some(true) => return Ok(vec![Item::Boolean(true)]),
            B::Implies if boolean(&left_items)? == Some(false) => return Ok(vec![Item::Boolean(true)]),
            _ => {}
        }
        let right_items = self.eval(right, input, frame)?;
        let (l, r) = (&left_items[..], &right_items[..]);
        match operator {
            B::Union => return self.union(l, r),
            B::Equivalent | B::NotEquivalent => self.charge_comparisons(l.len().saturating_mul(r.len()))?,
            B::Equal
            | B::NotEqual
            | B::Less
            | B::Greater
            | B::LessOrEqual
            | B::GreaterOrEqual
            | B::In
            | B::Contains => self.charge_bytes(text_bytes(l).saturating_add(text_bytes(r)))?,
            _ => {}
        }
        let answer = |value: Option<bool>| Ok(value.map(Item::Boolean).into_iter().collect());
        match operator {
            B::And => answer(match (boolean(l)?, boolean(r)?) {
                (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            }),
            B::Or => answer(match (boolean(l)?, boolean(r)?) {
                (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            }),
            B::Xor => answer(match (boolean(l)?, boolean(r)?) {
                (Some(a), Some(b)) => Some(a != b),
                _ => None,
            }),
            B::Implies => answer(match (boolean(l)?, boolean(r)?) {
                (_, Some(true)) => Some(true),
                (Some(true), Some(false)) => Some(false),
                _ => None,
            }),
            B::Union => self.union(l, r),
            B::Equal => answer(collection_equal(l, r)),
            B::NotEqual => answer(collection_equal(l, r).map(|equal| !equal)),
            B::Equivalent => answer(Some(collection_equivalent(l, r))),
            B::NotEquivalent => answer(Some(!collection_equivalent(l, r))),
            B::Less | B::Greater | B::LessOrEqual | B::GreaterOrEqual => {
                let (Some(a), Some(b)) = (single(l)?, single(r)?) else {
                    return Ok(Vec::new());
                };
                let order = value::compare(a, b).map_err(EvalError::new)?;
                answer(order.map(|order| match operator {
                    B::Less => order == Ordering::Less,
                    B::Greater => order == Ordering::Greater,
                    B::LessOrEqual => order != Ordering::Greater,
                    _ => order != Ordering::Less,
                }))
            }
            B::In => membership(l, r),
            B::Contains => membership(r, l),
            B::Concatenate => {
                let text = |items: &[Item<'a>]| -> Result<String, EvalError> {
                    match single(items)?.and_then(Item::to_system) {
                        None => Ok(String::new()),
                        Some(item) => Ok(item.to_string()),
                    }
                };
                let joined = text(l)? + &text(r)?;
                if joined.len() > MAX_STRING_LENGTH {
                    return Err(EvalError::new("string too long"));
                }
                self.charge_bytes(joined.len())?;
                Ok(vec![Item::String(Cow::Owned(joined))])
            }
            B::Add | B::Subtract | B::Multiply | B::Divide | B::Div | B::Mod => {
                let (Some(a), Some(b)) = (single(l)?, single(r)?) else {
                    return Ok(Vec::new());
                };
                let (Some(a), Some(b)) = (a.to_system(), b.to_system()) else {
                    return Ok(Vec::new());
                };
                if let (Item::String(a), Item::String(b)) = (&a, &b) {
                    self.charge_bytes(a.len().saturating_add(b.len()))?;
                }
                arithmetic(operator, a, b)
            }
        }
    }
}

/// The item a literal stands for.
pub(crate) fn literal_item(literal: &Literal) -> Item<'_> {
    match literal {
        Literal::Boolean(value) => Item::Boolean(*value),
        Literal::Integer(value) => Item::Integer(*value),
        Literal::Decimal(value) => Item::Decimal(*value),
        Literal::String(value) => Item::String(Cow::Borrowed(value)),
        Literal::Date(value) => Item::Date(*value),
        Literal::DateTime(value) => Item::DateTime(*value),
        Literal::Time(value) => Item::Time(*value),
        Literal::Quantity(value) => Item::Quantity(value.clone()),
    }
}

/// The path step `name` over every item: a type name keeps the nodes of that type
/// (`Patient.name` on a Patient), any other name finds children.
pub(crate) fn member<'a>(items: &[Item<'a>], name: &str) -> Vec<Item<'a>> {
    let mut out = Vec::new();
    let is_type_name = name.starts_with(|c: char| c.is_ascii_uppercase());
    for item in items {
        match item {
            Item::Node(node) => {
                if is_type_name && navigation::is_fhir_type(node.type_name, name) {
                    out.push(item.clone());
                } else {
                    navigation::children_named(node, name, &mut out);
                }
            }
            Item::Type { namespace, name: type_name } => match name {
                "namespace" => out.push(Item::String(Cow::Borrowed(namespace))),
                "name" => out.push(Item::String(type_name.clone())),
                _ => {}
            },
            _ => {}
        }
    }
    out
}

/// True when `item` is a node of the FHIR type `name` or of a type that specializes it.
fn is_of_named_type(item: &Item<'_>, name: &str) -> bool {
    let Item::Node(node) = item else {
        return false;
    };
    if node.type_name == name {
        return true;
    }
    // Concrete resource types specialize only the abstract Resource and DomainResource, so
    // the common `Patient.x | Observation.y | …` unions skip the definitions lookup.
    let concrete_resource = node.site.is_some_and(|site| {
        site.element == 0 && site.owner.kind == crate::definitions::TypeKind::Resource && !site.owner.is_abstract
    });
    if concrete_resource && name != "Resource" && name != "DomainResource" {
        return false;
    }
    navigation::is_fhir_type(node.type_name, name)
}

/// The only item of a collection, `None` when empty, an error when there are several.
pub(crate) fn single<'i, 'a>(items: &'i [Item<'a>]) -> Result<Option<&'i Item<'a>>, EvalError> {
    match items {
        [] => Ok(None),
        [item] => Ok(Some(item)),
        _ => Err(EvalError::new("expected at most one item, found a collection")),
    }
}

/// A collection as a boolean (singleton evaluation): empty is unknown, a Boolean is itself,
/// any other single item is `true`, several items are an error.
pub(crate) fn boolean(items: &[Item<'_>]) -> Result<Option<bool>, EvalError> {
    match single(items)? {
        None => Ok(None),
        Some(item) => match item.to_system() {
            Some(Item::Boolean(value)) => Ok(Some(value)),
            Some(_) => Ok(Some(true)),
            None => Ok(None),
        },
    }
}

/// True when `items` holds an item equal to `item`.
pub(crate) fn contains_item(items: &[Item<'_>], item: &Item<'_>) -> bool {
    items.iter().any(|candidate| value::equals(candidate, item) == Some(true))
}

/// The bytes of text in `items` (strings and string-valued nodes): what comparing them scans.
pub(crate) fn text_bytes(items: &[Item<'_>]) -> usize {
    items.iter().map(|item| item.as_str().map_or(0, str::len)).fold(0, usize::saturating_add)
}

/// The bytes of computed text in `items`: what copying them copies (nodes and literals are
/// borrowed).
fn owned_text_bytes(items: &[Item<'_>]) -> usize {
    items
        .iter()
        .map(|item| match item {
            Item::String(Cow::Owned(text)) => text.len(),
            _ => 0,
        })
        .fold(0, usize::saturating_add)
}

fn collection_equal(left: &[Item<'_>], right: &[Item<'_>]) -> Option<bool> {
    if left.is_empty() || right.is_empty() {
        return None;
    }
    if left.len() != right.len() {
        return Some(false);
    }
    let mut all_equal = true;
    for (a, b) in left.iter().zip(right) {
        match value::equals(a, b) {
            Some(true) => {}
            Some(false) => return Some(false),
            None => all_equal = false,
        }
    }
    all_equal.then_some(true)
}

fn collection_equivalent(left: &[Item<'_>], right: &[Item<'_>]) -> bool {
    if left.len() != right.len() {
        return false;
    }
    let mut used = vec![false; right.len()];
    left.iter().all(|a| {
        let found = right.iter().enumerate().find(|(index, b)| !used[*index] && value::equivalent(a, b));
        match found {
            Some((index, _)) => {
                used[index] = true;
                true
            }
            None => false,
        }
    })
}

/// `element in collection`.
fn membership<'a>(element: &[Item<'a>], collection: &[Item<'a>]) -> Result<Vec<Item<'a>>, EvalError> {
    match single(element)? {
        None => Ok(Vec::new()),
        Some(item) => Ok(vec![Item::Boolean(contains_item(collection, item))]),
    }
}

fn overflow() -> EvalError {
    EvalError::new("arithmetic overflow")
}

/// `+ - * / div mod` on two system values.
fn arithmetic<'a>(operator: BinaryOperator, left: Item<'a>, right: Item<'a>) -> Result<Vec<Item<'a>>, EvalError> {
    use BinaryOperator as B;
    let done = |item: Item<'a>| Ok(vec![item]);
    let unsupported = |left: &Item<'_>, right: &Item<'_>| {
        EvalError::new(format!("cannot apply {operator:?} to {} and {}", left.type_name(), right.type_name()))
    };
    match (&left, &right) {
        (Item::Integer(a), Item::Integer(b)) => match operator {
            B::Add => done(Item::Integer(a.checked_add(*b).ok_or_else(overflow)?)),
            B::Subtract => done(Item::Integer(a.checked_sub(*b).ok_or_else(overflow)?)),
            B::Multiply => done(Item::Integer(a.checked_mul(*b).ok_or_else(overflow)?)),
            B::Div => Ok(a.checked_div(*b).map(Item::Integer).into_iter().collect()),
            B::Mod => Ok(a.checked_rem(*b).map(Item::Integer).into_iter().collect()),
            _ => decimal_arithmetic(operator, &left, &right),
        },
        (Item::Integer(_) | Item::Decimal(_), Item::Integer(_) | Item::Decimal(_)) => {
            decimal_arithmetic(operator, &left, &right)
        }
        (Item::String(a), Item::String(b)) if operator == B::Add => {
            if a.len() + b.len() > MAX_STRING_LENGTH {
                return Err(EvalError::new("string too long"));
            }
            done(Item::String(Cow::Owned(format!("{a}{b}"))))
        }
        (Item::Date(date), Item::Quantity(quantity)) | (Item::DateTime(date), Item::Quantity(quantity))
            if matches!(operator, B::Add | B::Subtract) =>
        {
            let unit = CalendarUnit::from_unit(quantity.unit())
                .ok_or_else(|| EvalError::new(format!("'{}' is not a calendar duration", quantity.unit())))?;
            let amount = quantity.value().truncate().and_then(|value| value.to_i64()).ok_or_else(overflow)?;
            let amount = if operator == B::Subtract { -amount } else { amount };
            let moved = date.add(amount, unit).ok_or_else(overflow)?;
            done(if matches!(left, Item::Date(_)) { Item::Date(moved.date_part()) } else { Item::DateTime(moved) })
        }
        (Item::Quantity(a), Item::Quantity(b)) => {
            let result = match operator {
                B::Multiply => a.mul(b),
                B::Divide => a.div(b),
                B::Add => a.add(b),
                B::Subtract => a.add(&b.with_value(b.value().negate())),
                _ => return Err(unsupported(&left, &right)),
            };
            Ok(result.map(Item::Quantity).into_iter().collect())
        }
        (Item::Quantity(quantity), number @ (Item::Integer(_) | Item::Decimal(_)))
            if matches!(operator, B::Multiply | B::Divide) =>
        {
            let Some(number) = value::number(number) else {
                return Err(unsupported(&left, &right));
            };
            let result =
                if operator == B::Multiply { quantity.value().mul(&number) } else { quantity.value().div(&number) };
            Ok(result.map(|value| Item::Quantity(quantity.with_value(value))).into_iter().collect())
        }
        (number @ (Item::Integer(_) | Item::Decimal(_)), Item::Quantity(quantity)) if operator == B::Multiply => {
            let Some(number) = value::number(number) else {
                return Err(unsupported(&left, &right));
            };
            Ok(quantity
                .value()
                .mul(&number)
                .map(|value| Item::Quantity(quantity.with_value(value)))
                .into_iter()
                .collect())
        }
        _ => Err(unsupported(&left, &right)),
    }
}

fn decimal_arithmetic<'a>(
    operator: BinaryOperator,
    left: &Item<'a>,
    right: &Item<'a>,
) -> Result<Vec<Item<'a>>, EvalError> {
    use BinaryOperator as B;
    let (Some(a), Some(b)) = (value::number(left), value::number(right)) else {
        return Err(EvalError::new("arithmetic needs numbers"));
    };
    let result = match operator {
        B::Add => Some(a.add(&b).ok_or_else(overflow)?),
        B::Subtract => Some(a.sub(&b).ok_or_else(overflow)?),
        B::Multiply => Some(a.mul(&b).ok_or_else(overflow)?),
        // Division by zero is empty, not an error.
        B::Divide => a.div(&b),
        B::Div => {
            return Ok(a.div_truncated(&b).and_then(|d| d.to_i64()).map(Item::Integer).into_iter().collect());
        }
        B::Mod => a.rem(&b),
        _ => return Err(EvalError::new("not an arithmetic operator")),
    };
    Ok(result.map(Item::Decimal).into_iter().collect())
}

/// `is`, `as` and `ofType` over `items`; `primitives_as_system` lets `is` take a FHIR
/// primitive for its System type (see [`crate::fhirpath::Context::with_r4_invariants`]).
fn type_operation<'a>(
    items: &[Item<'a>],
    operation: TypeOperation,
    type_spec: &TypeSpec,
    primitives_as_system: bool,
) -> Result<Vec<Item<'a>>, EvalError> {
    match operation {
        TypeOperation::Is => match single(items)? {
            None => Ok(Vec::new()),
            Some(item) => {
                let system = || {
                    let names_system = matches!(type_spec, TypeSpec::Either(..) | TypeSpec::System(_));
                    names_system
                        && item.as_node().is_some()
                        && item.to_system().is_some_and(|value| is_type(&value, type_spec, true))
                };
                Ok(vec![Item::Boolean(is_type(item, type_spec, true) || (primitives_as_system && system()))])
            }
        },
        TypeOperation::AsFunction => {
            single(items)?;
            Ok(items.iter().filter(|item| is_type(item, type_spec, false)).cloned().collect())
        }
        TypeOperation::As | TypeOperation::OfType => {
            Ok(items.iter().filter(|item| is_type(item, type_spec, false)).cloned().collect())
        }
    }
}

/// True when `item` is of the type `type_spec` names. With `specializations`, a node also
/// matches the types its type specializes (`code` is a `string`); without, primitives must
/// match exactly (as `as` and `ofType` want), while complex types and resources still match
/// their base types (`Age` as `Quantity`).
pub(crate) fn is_type(item: &Item<'_>, type_spec: &TypeSpec, specializations: bool) -> bool {
    let system_matches = |system: &SystemType| {
        matches!(
            (item, system),
            (Item::Boolean(_), SystemType::Boolean)
                | (Item::String(_), SystemType::String)
                | (Item::Integer(_), SystemType::Integer)
                | (Item::Decimal(_), SystemType::Decimal)
                | (Item::Date(_), SystemType::Date)
                | (Item::DateTime(_), SystemType::DateTime)
                | (Item::Time(_), SystemType::Time)
                | (Item::Quantity(_), SystemType::Quantity)
        )
    };
    let fhir_matches = |name: &str| match item {
        Item::Node(node) => {
            if node.type_name == name {
                return true;
            }
            let primitive = node.type_name.starts_with(|c: char| c.is_ascii_lowercase());
            (specializations || !primitive) && navigation::is_fhir_type(node.type_name, name)
        }
        _ => false,
    };
    match type_spec {
        TypeSpec::Fhir(name) => fhir_matches(name),
        TypeSpec::System(system) => system_matches(system),
        TypeSpec::Either(name, system) => fhir_matches(name) || system_matches(system),
        TypeSpec::Nothing => false,
    }
}
