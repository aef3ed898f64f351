//! The items a FHIRPath collection holds: either a [`Node`] that borrows a part of the
//! resource JSON (with the FHIR type it has there), or a value computed by the expression
//! (`Boolean`, `Integer`, `Decimal`, `String`, `Date`, `DateTime`, `Time`, `Quantity`).
//!
//! Nodes are three words and a flag and are copied, never the JSON below them. A node of a
//! primitive FHIR type turns into its system value only when an operator or function needs it
//! ([`Item::to_system`]), so path navigation allocates nothing but the result vectors. The
//! equality, equivalence and ordering rules of the specification live here too.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;

use serde_json::Value;

use crate::definitions::TypeDef;
use crate::fhirpath::datetime::{DateTime, Time};
use crate::fhirpath::decimal::Decimal;
use crate::fhirpath::quantity::Quantity;

/// One item of a FHIRPath collection.
#[derive(Debug, Clone)]
pub enum Item<'a> {
    /// A node of the input JSON.
    Node(Node<'a>),
    /// A computed `System.Boolean`.
    Boolean(bool),
    /// A computed `System.Integer`.
    Integer(i64),
    /// A computed `System.Decimal`.
    Decimal(Decimal),
    /// A computed `System.String` (borrowed from the expression or the input when possible).
    String(Cow<'a, str>),
    /// A computed `System.Date` (precision at most day).
    Date(DateTime),
    /// A computed `System.DateTime`.
    DateTime(DateTime),
    /// A computed `System.Time`.
    Time(Time),
    /// A computed `System.Quantity`.
    Quantity(Quantity),
    /// The result of `type()`: a namespace (`System` or `FHIR`) and a type name.
    Type { namespace: &'static str, name: Cow<'a, str> },
}

/// A JSON node of the input with its FHIR type, when known.
#[derive(Debug, Clone, Copy)]
pub struct Node<'a> {
    /// The node's JSON; `null` for a primitive that has only extensions (`_given` entries).
    pub(crate) value: &'a Value,
    /// For primitives: the object of the `_name` companion key (id and extensions).
    pub(crate) extension: Option<&'a Value>,
    /// FHIR type name (`HumanName`, `code`, `Patient`, `Age`), empty when unknown.
    pub(crate) type_name: &'a str,
    /// Where the node's child elements are defined, when known.
    pub(crate) site: Option<Site>,
    /// True for what `resolve()` returns for a reference it cannot follow: the node is the
    /// Reference, the type is the referenced resource type, and it has no children.
    pub(crate) unresolved_reference: bool,
}

/// An element of a type's element tree: its child elements are those of the node.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Site {
    pub(crate) owner: &'static TypeDef,
    pub(crate) element: u32,
}

/// `null`, for primitives that only carry extensions.
pub(crate) static NULL: Value = Value::Null;

impl<'a> Node<'a> {
    /// The JSON this node stands for (`null` for a primitive with only extensions).
    pub fn json(&self) -> &'a Value {
        self.value
    }

    /// The `_name` companion object of a primitive (its id and extensions), if any.
    pub fn primitive_extension(&self) -> Option<&'a Value> {
        self.extension
    }

    /// The FHIR type name of the node, when known (`HumanName`, `code`, `Observation`).
    pub fn type_name(&self) -> Option<&'a str> {
        (!self.type_name.is_empty()).then_some(self.type_name)
    }

    /// The object holding the node's children: the value itself, or for primitives the
    /// `_name` companion object.
    pub(crate) fn object(&self) -> Option<&'a serde_json::Map<String, Value>> {
        match self.value {
            Value::Object(object) => Some(object),
            _ => self.extension.and_then(Value::as_object),
        }
    }
}

impl<'a> Item<'a> {
    /// The JSON node this item borrows, for items that come from the input.
    pub fn as_node(&self) -> Option<&Node<'a>> {
        match self {
            Item::Node(node) => Some(node),
            _ => None,
        }
    }

    /// The type name: the FHIR type of a node (empty when unknown), the System type of a
    /// computed value (`Boolean`, `Integer`, `Decimal`, `String`, `Date`, `DateTime`, `Time`,
    /// `Quantity`).
    pub fn type_name(&self) -> &str {
        match self {
            Item::Node(node) => node.type_name,
            Item::Boolean(_) => "Boolean",
            Item::Integer(_) => "Integer",
            Item::Decimal(_) => "Decimal",
            Item::String(_) => "String",
            Item::Date(_) => "Date",
            Item::DateTime(_) => "DateTime",
            Item::Time(_) => "Time",
            Item::Quantity(_) => "Quantity",
            Item::Type { .. } => "TypeInfo",
        }
    }

    /// The system value of a primitive node or a FHIR Quantity node; computed values and
    /// other nodes as they are. `None` for a primitive node without a value.
    pub fn to_system(&self) -> Option<Item<'a>> {
        let Item::Node(node) = self else {
            return Some(self.clone());
        };
        match node.value {
            Value::Null => None,
            Value::Bool(value) => Some(Item::Boolean(*value)),
            Value::Number(number) => {
                let text = number.as_str();
                let integral_type = matches!(node.type_name, "integer" | "positiveInt" | "unsignedInt" | "integer64");
                let untyped_integer = node.type_name.is_empty() && !text.contains(['.', 'e', 'E']);
                if (integral_type || untyped_integer)
                    && let Ok(value) = text.parse::<i64>()
                {
                    return Some(Item::Integer(value));
                }
                Decimal::parse(text).map(Item::Decimal)
            }
            Value::String(text) => Some(match node.type_name {
                "date" => DateTime::parse_date(text).map_or(Item::String(Cow::Borrowed(text)), Item::Date),
                "dateTime" | "instant" => {
                    DateTime::parse(text).map_or(Item::String(Cow::Borrowed(text)), Item::DateTime)
                }
                "time" => Time::parse(text).map_or(Item::String(Cow::Borrowed(text)), Item::Time),
                _ => Item::String(Cow::Borrowed(text)),
            }),
            Value::Object(object) if is_quantity_type(node.type_name) => {
                let value = object.get("value").and_then(|value| match value {
                    Value::Number(number) => Decimal::parse(number.as_str()),
                    _ => None,
                })?;
                let unit = object
                    .get("code")
                    .filter(|_| object.get("system").and_then(Value::as_str) == Some("http://unitsofmeasure.org"))
                    .or_else(|| object.get("unit"))
                    .or_else(|| object.get("code"))
                    .and_then(Value::as_str)
                    .unwrap_or("1");
                Some(Item::Quantity(Quantity::new(value, unit)))
            }
            _ => Some(self.clone()),
        }
    }

    /// The text of a string-like item (a system String or a string-valued node).
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Item::String(text) => Some(text),
            Item::Node(node) => node.value.as_str(),
            _ => None,
        }
    }
}

impl fmt::Display for Item<'_> {
    /// The `toString()` form of a system value; nodes print their JSON.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Item::Node(node) => match node.value {
                Value::String(text) => formatter.write_str(text),
                other => write!(formatter, "{other}"),
            },
            Item::Boolean(value) => write!(formatter, "{value}"),
            Item::Integer(value) => write!(formatter, "{value}"),
            Item::Decimal(value) => write!(formatter, "{value}"),
            Item::String(value) => formatter.write_str(value),
            Item::Date(value) | Item::DateTime(value) => write!(formatter, "{value}"),
            Item::Time(value) => write!(formatter, "{value}"),
            Item::Quantity(value) => write!(formatter, "{value}"),
            Item::Type { namespace, name } => write!(formatter, "{namespace}.{name}"),
        }
    }
}

/// The FHIR Quantity type and its R4 profiles (which the definitions do not list as types).
pub(crate) fn is_quantity_type(name: &str) -> bool {
    matches!(name, "Quantity" | "Age" | "Count" | "Distance" | "Duration" | "SimpleQuantity" | "MoneyQuantity")
}

/// `=`: `Some(true/false)`, or `None` when the answer is unknown (date-times of different
/// precision, quantities with units that do not convert).
pub(crate) fn equals(left: &Item<'_>, right: &Item<'_>) -> Option<bool> {
    let (Some(left), Some(right)) = (left.to_system(), right.to_system()) else {
        return None;
    };
    match (&left, &right) {
        (Item::Boolean(a), Item::Boolean(b)) => Some(a == b),
        (Item::String(a), Item::String(b)) => Some(a == b),
        (Item::Quantity(a), Item::Quantity(b)) => a.compare(b).map(|order| order == Ordering::Equal),
        (Item::Node(a), Item::Node(b)) => Some(a.value == b.value),
        (Item::Type { namespace: n1, name: a }, Item::Type { namespace: n2, name: b }) => Some(n1 == n2 && a == b),
        _ => {
            if let (Some(a), Some(b)) = (number(&left), number(&right)) {
                return Some(a.compare(&b) == Ordering::Equal);
            }
            match temporal_order(&left, &right) {
                Temporal::Ordered(order) => order.map(|order| order == Ordering::Equal),
                Temporal::Incomparable => Some(false),
            }
        }
    }
}

/// `~`: never unknown; strings ignore case and whitespace runs, decimals compare at the
/// precision of the less precise one, date-times of different precision are not equivalent.
pub(crate) fn equivalent(left: &Item<'_>, right: &Item<'_>) -> bool {
    let (left, right) = match (left.to_system(), right.to_system()) {
        (Some(left), Some(right)) => (left, right),
        (None, None) => return true,
        _ => return false,
    };
    match (&left, &right) {
        (Item::Boolean(a), Item::Boolean(b)) => a == b,
        (Item::String(a), Item::String(b)) => normalize_text(a) == normalize_text(b),
        (Item::Quantity(a), Item::Quantity(b)) => a.equivalent(b),
        (Item::Node(a), Item::Node(b)) => a.value == b.value,
        _ => {
            if let (Some(a), Some(b)) = (number(&left), number(&right)) {
                let digits = a.scale().min(b.scale());
                return match (a.round(digits), b.round(digits)) {
                    (Some(a), Some(b)) => a.compare(&b) == Ordering::Equal,
                    _ => false,
                };
            }
            matches!(temporal_order(&left, &right), Temporal::Ordered(Some(Ordering::Equal)))
        }
    }
}

/// `<`, `>`, …: `Ok(None)` when the order is unknown (different precision), an error when
/// the two items cannot be ordered at all.
pub(crate) fn compare(left: &Item<'_>, right: &Item<'_>) -> Result<Option<Ordering>, String> {
    let (Some(left), Some(right)) = (left.to_system(), right.to_system()) else {
        return Ok(None);
    };
    if let (Some(a), Some(b)) = (number(&left), number(&right)) {
        return Ok(Some(a.compare(&b)));
    }
    match (&left, &right) {
        (Item::String(a), Item::String(b)) => return Ok(Some(a.cmp(b))),
        (Item::Quantity(a), Item::Quantity(b)) => return Ok(a.compare(b)),
        _ => {}
    }
    match temporal_order(&left, &right) {
        Temporal::Ordered(order) => Ok(order),
        Temporal::Incomparable => Err(format!("cannot compare {} with {}", left.type_name(), right.type_name())),
    }
}

/// Integers and decimals as decimals.
pub(crate) fn number(item: &Item<'_>) -> Option<Decimal> {
    match item {
        Item::Integer(value) => Some(Decimal::from_i64(*value)),
        Item::Decimal(value) => Some(*value),
        _ => None,
    }
}

enum Temporal {
    Ordered(Option<Ordering>),
    Incomparable,
}

/// Orders dates, date-times and times; a string on one side is read as the other side's type
/// (untyped JSON holds dates as strings).
fn temporal_order(left: &Item<'_>, right: &Item<'_>) -> Temporal {
    let as_date_time = |item: &Item<'_>| match item {
        Item::Date(value) | Item::DateTime(value) => Some(*value),
        Item::String(text) => DateTime::parse(text),
        _ => None,
    };
    let as_time = |item: &Item<'_>| match item {
        Item::Time(value) => Some(*value),
        Item::String(text) => Time::parse(text),
        _ => None,
    };
    match (left, right) {
        (Item::Time(_), _) | (_, Item::Time(_)) => match (as_time(left), as_time(right)) {
            (Some(a), Some(b)) => Temporal::Ordered(a.compare(&b)),
            _ => Temporal::Incomparable,
        },
        (Item::Date(_) | Item::DateTime(_), _) | (_, Item::Date(_) | Item::DateTime(_)) => {
            match (as_date_time(left), as_date_time(right)) {
                (Some(a), Some(b)) => Temporal::Ordered(a.compare(&b)),
                _ => Temporal::Incomparable,
            }
        }
        _ => Temporal::Incomparable,
    }
}

/// Lower case with whitespace runs collapsed to one space and trimmed.
fn normalize_text(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}
