//! The syntax tree a FHIRPath expression compiles to. Function names and type specifiers are
//! resolved while parsing, so evaluation never looks a name up in a table and an unknown
//! function or type is a parse error rather than a surprise on some later resource.

use crate::fhirpath::datetime::{DateTime, Time};
use crate::fhirpath::decimal::Decimal;
use crate::fhirpath::quantity::Quantity;

/// An expression node.
#[derive(Debug, Clone)]
pub(crate) enum Expr {
    Literal(Literal),
    /// `{}`.
    Empty,
    /// A leading name that finds children of the input.
    Identifier(String),
    /// A leading FHIR type name (`Patient` in `Patient.name`): keeps the input items of that
    /// type. Resolved while parsing, because FHIR element names never start upper-case.
    TypeFilter(String),
    /// `target.name`.
    Member(Box<Expr>, String),
    /// `function(args)` on `target`, or on the input when there is no target.
    Call {
        target: Option<Box<Expr>>,
        function: Function,
        args: Vec<Expr>,
    },
    /// `is`, `as` and `ofType`, in operator or function form.
    Type {
        target: Option<Box<Expr>>,
        operation: TypeOperation,
        type_spec: TypeSpec,
    },
    /// `target[index]`.
    Index(Box<Expr>, Box<Expr>),
    /// Unary minus (unary plus is dropped while parsing).
    Negate(Box<Expr>),
    Binary(BinaryOperator, Box<Expr>, Box<Expr>),
    /// `$this`.
    This,
    /// `$index`.
    IndexVariable,
    /// `$total`.
    Total,
    /// `%name`.
    Variable(String),
}

/// A literal value.
#[derive(Debug, Clone)]
pub(crate) enum Literal {
    Boolean(bool),
    Integer(i64),
    Decimal(Decimal),
    String(String),
    Date(DateTime),
    DateTime(DateTime),
    Time(Time),
    Quantity(Quantity),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinaryOperator {
    Multiply,
    Divide,
    Div,
    Mod,
    Add,
    Subtract,
    Concatenate,
    Union,
    Less,
    Greater,
    LessOrEqual,
    GreaterOrEqual,
    Equal,
    Equivalent,
    NotEqual,
    NotEquivalent,
    In,
    Contains,
    And,
    Or,
    Xor,
    Implies,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TypeOperation {
    Is,
    /// The `as` operator: keeps the items of the type (lenient on collections, as the R4
    /// search parameter expressions need: `(useContext.value as CodeableConcept)`).
    As,
    /// The `as()` function: like the operator, but an error on more than one item.
    AsFunction,
    OfType,
}

/// A resolved type specifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TypeSpec {
    /// A FHIR type (`HumanName`, `code`, `Patient`, `Age`).
    Fhir(String),
    /// A FHIRPath system type.
    System(SystemType),
    /// An unqualified name that is both (`Quantity`): either matches.
    Either(String, SystemType),
    /// A `System.` name that is no system type (`System.Patient`): matches nothing.
    Nothing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SystemType {
    Boolean,
    String,
    Integer,
    Decimal,
    Date,
    DateTime,
    Time,
    Quantity,
}

impl SystemType {
    pub(crate) fn from_name(name: &str) -> Option<SystemType> {
        Some(match name {
            "Boolean" => SystemType::Boolean,
            "String" => SystemType::String,
            "Integer" => SystemType::Integer,
            "Decimal" => SystemType::Decimal,
            "Date" => SystemType::Date,
            "DateTime" => SystemType::DateTime,
            "Time" => SystemType::Time,
            "Quantity" => SystemType::Quantity,
            _ => return None,
        })
    }
}

/// Every function the engine knows, resolved from its name while parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Function {
    Empty,
    Exists,
    All,
    AllTrue,
    AnyTrue,
    AllFalse,
    AnyFalse,
    SubsetOf,
    SupersetOf,
    Count,
    Distinct,
    IsDistinct,
    Where,
    Select,
    Repeat,
    Aggregate,
    First,
    Last,
    Tail,
    Skip,
    Take,
    Intersect,
    Exclude,
    Single,
    Union,
    Combine,
    Iif,
    ToBoolean,
    ConvertsToBoolean,
    ToInteger,
    ConvertsToInteger,
    ToDecimal,
    ConvertsToDecimal,
    ToString,
    ConvertsToString,
    ToDate,
    ConvertsToDate,
    ToDateTime,
    ConvertsToDateTime,
    ToTime,
    ConvertsToTime,
    ToQuantity,
    ConvertsToQuantity,
    IndexOf,
    Substring,
    StartsWith,
    EndsWith,
    ContainsText,
    Upper,
    Lower,
    Replace,
    Matches,
    MatchesFull,
    ReplaceMatches,
    Length,
    ToChars,
    Trim,
    Split,
    Join,
    Encode,
    Decode,
    Escape,
    Unescape,
    Abs,
    Ceiling,
    Floor,
    Truncate,
    Round,
    Exp,
    Ln,
    Log,
    Power,
    Sqrt,
    Not,
    Children,
    Descendants,
    Trace,
    Now,
    Today,
    TimeOfDay,
    HasValue,
    GetValue,
    Resolve,
    Extension,
    HasExtension,
    MemberOf,
    ConformsTo,
    Type,
    Sort,
    Precision,
    LowBoundary,
    HighBoundary,
    Comparable,
}

impl Function {
    /// The function named `name` and the number of arguments it accepts (inclusive range).
    pub(crate) fn lookup(name: &str) -> Option<(Function, usize, usize)> {
        use Function as F;
        Some(match name {
            "empty" => (F::Empty, 0, 0),
            "exists" => (F::Exists, 0, 1),
            "all" => (F::All, 1, 1),
            "allTrue" => (F::AllTrue, 0, 0),
            "anyTrue" => (F::AnyTrue, 0, 0),
            "allFalse" => (F::AllFalse, 0, 0),
            "anyFalse" => (F::AnyFalse, 0, 0),
            "subsetOf" => (F::SubsetOf, 1, 1),
            "supersetOf" => (F::SupersetOf, 1, 1),
            "count" => (F::Count, 0, 0),
            "distinct" => (F::Distinct, 0, 0),
            "isDistinct" => (F::IsDistinct, 0, 0),
            "where" => (F::Where, 1, 1),
            "select" => (F::Select, 1, 1),
            "repeat" => (F::Repeat, 1, 1),
            "aggregate" => (F::Aggregate, 1, 2),
            "first" => (F::First, 0, 0),
            "last" => (F::Last, 0, 0),
            "tail" => (F::Tail, 0, 0),
            "skip" => (F::Skip, 1, 1),
            "take" => (F::Take, 1, 1),
            "intersect" => (F::Intersect, 1, 1),
            "exclude" => (F::Exclude, 1, 1),
            "single" => (F::Single, 0, 0),
            "union" => (F::Union, 1, 1),
            "combine" => (F::Combine, 1, 1),
            "iif" => (F::Iif, 2, 3),
            "toBoolean" => (F::ToBoolean, 0, 0),
            "convertsToBoolean" => (F::ConvertsToBoolean, 0, 0),
            "toInteger" => (F::ToInteger, 0, 0),
            "convertsToInteger" => (F::ConvertsToInteger, 0, 0),
            "toDecimal" => (F::ToDecimal, 0, 0),
            "convertsToDecimal" => (F::ConvertsToDecimal, 0, 0),
            "toString" => (F::ToString, 0, 0),
            "convertsToString" => (F::ConvertsToString, 0, 0),
            "toDate" => (F::ToDate, 0, 0),
            "convertsToDate" => (F::ConvertsToDate, 0, 0),
            "toDateTime" => (F::ToDateTime, 0, 0),
            "convertsToDateTime" => (F::ConvertsToDateTime, 0, 0),
            "toTime" => (F::ToTime, 0, 0),
            "convertsToTime" => (F::ConvertsToTime, 0, 0),
            "toQuantity" => (F::ToQuantity, 0, 1),
            "convertsToQuantity" => (F::ConvertsToQuantity, 0, 1),
            "indexOf" => (F::IndexOf, 1, 1),
            "substring" => (F::Substring, 1, 2),
            "startsWith" => (F::StartsWith, 1, 1),
            "endsWith" => (F::EndsWith, 1, 1),
            "contains" => (F::ContainsText, 1, 1),
            "upper" => (F::Upper, 0, 0),
            "lower" => (F::Lower, 0, 0),
            "replace" => (F::Replace, 2, 2),
            "matches" => (F::Matches, 1, 1),
            "matchesFull" => (F::MatchesFull, 1, 1),
            "replaceMatches" => (F::ReplaceMatches, 2, 2),
            "length" => (F::Length, 0, 0),
            "toChars" => (F::ToChars, 0, 0),
            "trim" => (F::Trim, 0, 0),
            "split" => (F::Split, 1, 1),
            "join" => (F::Join, 0, 1),
            "encode" => (F::Encode, 1, 1),
            "decode" => (F::Decode, 1, 1),
            "escape" => (F::Escape, 1, 1),
            "unescape" => (F::Unescape, 1, 1),
            "abs" => (F::Abs, 0, 0),
            "ceiling" => (F::Ceiling, 0, 0),
            "floor" => (F::Floor, 0, 0),
            "truncate" => (F::Truncate, 0, 0),
            "round" => (F::Round, 0, 1),
            "exp" => (F::Exp, 0, 0),
            "ln" => (F::Ln, 0, 0),
            "log" => (F::Log, 1, 1),
            "power" => (F::Power, 1, 1),
            "sqrt" => (F::Sqrt, 0, 0),
            "not" => (F::Not, 0, 0),
            "children" => (F::Children, 0, 0),
            "descendants" => (F::Descendants, 0, 0),
            "trace" => (F::Trace, 1, 2),
            "now" => (F::Now, 0, 0),
            "today" => (F::Today, 0, 0),
            "timeOfDay" => (F::TimeOfDay, 0, 0),
            "hasValue" => (F::HasValue, 0, 0),
            "getValue" => (F::GetValue, 0, 0),
            "resolve" => (F::Resolve, 0, 0),
            "extension" => (F::Extension, 1, 1),
            "hasExtension" => (F::HasExtension, 1, 1),
            "memberOf" => (F::MemberOf, 1, 1),
            "conformsTo" => (F::ConformsTo, 1, 1),
            "type" => (F::Type, 0, 0),
            "sort" => (F::Sort, 0, usize::MAX),
            "precision" => (F::Precision, 0, 0),
            "lowBoundary" => (F::LowBoundary, 0, 1),
            "highBoundary" => (F::HighBoundary, 0, 1),
            "comparable" => (F::Comparable, 1, 1),
            _ => return None,
        })
    }
}
