//! Which members of its input an expression can read: what lets a caller skip an expression
//! when none of them is present (validation's invariants, most of which read elements a
//! resource rarely has).
//!
//! The analysis is conservative. An expression is opaque (`None`) when it reaches the input
//! other than through named members: `$this`, `%variables`, a type filter, or `children()`,
//! `descendants()`, `resolve()` on it. The criteria of `where`, `select`, `all`, `exists`,
//! `repeat`, `aggregate` and the projection of `trace` see the items of their target, not the input, so they are passed
//! over when the target is empty whenever its members are absent.

use std::collections::BTreeSet;

use super::ast::{Expr, Function, TypeOperation};

/// What an expression reads of its input.
struct Reads {
    /// Members of the input it names.
    members: BTreeSet<String>,
    /// It reaches the input some other way.
    opaque: bool,
    /// It is empty when every one of `members` is absent.
    empty_when_absent: bool,
}

impl Reads {
    fn nothing(empty: bool) -> Reads {
        Reads { members: BTreeSet::new(), opaque: false, empty_when_absent: empty }
    }

    fn opaque() -> Reads {
        Reads { members: BTreeSet::new(), opaque: true, empty_when_absent: false }
    }

    fn merge(mut self, other: Reads) -> Reads {
        self.members.extend(other.members);
        self.opaque |= other.opaque;
        self.empty_when_absent = false;
        self
    }
}

/// The members of the input `expression` can read, or `None` when it may read more.
pub(super) fn input_members(expression: &Expr) -> Option<BTreeSet<String>> {
    let reads = reads(expression);
    (!reads.opaque).then_some(reads.members)
}

fn reads(expression: &Expr) -> Reads {
    match expression {
        Expr::Literal(_) => Reads::nothing(false),
        Expr::Empty => Reads::nothing(true),
        Expr::Identifier(name) => {
            Reads { members: BTreeSet::from([name.clone()]), opaque: false, empty_when_absent: true }
        }
        Expr::Member(target, _) => reads(target),
        Expr::Negate(target) => reads(target),
        Expr::Index(target, index) => {
            let target = reads(target);
            let empty = target.empty_when_absent;
            Reads { empty_when_absent: empty, ..target.merge(reads(index)) }
        }
        Expr::Binary(_, left, right) => reads(left).merge(reads(right)),
        Expr::Type { target: Some(target), operation, .. } => {
            let target = reads(target);
            let keeps_empty = !matches!(operation, TypeOperation::Is);
            Reads { empty_when_absent: target.empty_when_absent && keeps_empty, ..target }
        }
        Expr::Call { target: Some(target), function, args } => call(reads(target), *function, args),
        // On the input itself: a function of the whole input, a type test of it, `$this`,
        // `%variables`.
        Expr::Call { target: None, function, args } if !reaches_items(*function) => {
            args.iter().fold(Reads::nothing(false), |all, arg| all.merge(reads(arg)))
        }
        Expr::Call { target: None, .. }
        | Expr::Type { target: None, .. }
        | Expr::TypeFilter(_)
        | Expr::This
        | Expr::IndexVariable
        | Expr::Total
        | Expr::Variable(_) => Reads::opaque(),
    }
}

/// `function(args)` on a target that reads `target`.
fn call(target: Reads, function: Function, args: &[Expr]) -> Reads {
    if matches!(function, Function::Children | Function::Descendants | Function::Resolve) {
        return Reads { opaque: true, ..target };
    }
    let empty = target.empty_when_absent && keeps_empty(function);
    let mut combined = if per_item(function) {
        // The criteria see the target's items; when the target is empty they never run.
        if target.empty_when_absent { target } else { Reads { opaque: true, ..target } }
    } else {
        // Other arguments are evaluated against the input, like the target.
        args.iter().fold(target, |all, arg| all.merge(reads(arg)))
    };
    combined.empty_when_absent = empty;
    combined
}

/// The functions whose arguments are evaluated on each item of their target.
fn per_item(function: Function) -> bool {
    matches!(
        function,
        Function::Where
            | Function::Select
            | Function::All
            | Function::Exists
            | Function::Repeat
            | Function::Aggregate
            | Function::Sort
            | Function::Trace
    )
}

/// The functions that leave an empty collection empty.
fn keeps_empty(function: Function) -> bool {
    matches!(
        function,
        Function::Where
            | Function::Select
            | Function::Repeat
            | Function::First
            | Function::Last
            | Function::Tail
            | Function::Skip
            | Function::Take
            | Function::Distinct
            | Function::Single
            | Function::Intersect
            | Function::Exclude
            | Function::Extension
            | Function::Trace
    )
}

/// The functions that, called on the input with no target, reach it other than by name.
fn reaches_items(function: Function) -> bool {
    !matches!(function, Function::Now | Function::Today | Function::TimeOfDay | Function::Iif)
}

#[cfg(test)]
mod tests {
    use crate::fhirpath::Expression;

    fn members(text: &str) -> Option<Vec<String>> {
        Expression::parse(text).expect("parses").input_members().map(|members| members.into_iter().collect())
    }

    #[test]
    fn names_read_through_members_and_criteria_on_their_items() {
        assert_eq!(
            members("dataAbsentReason.empty() or value.empty()"),
            Some(vec!["dataAbsentReason".into(), "value".into()])
        );
        assert_eq!(members("contained.contained.empty()"), Some(vec!["contained".into()]));
        // dom-3: %resource appears only in the criteria on the contained resources.
        let dom3 = "contained.where(((id.exists() and ('#'+id in (%resource.descendants().reference | %resource.descendants().as(canonical) | %resource.descendants().as(uri) | %resource.descendants().as(url)))) or descendants().where(reference = '#').exists() or descendants().where(as(canonical) = '#').exists() or descendants().where(as(canonical) = '#').exists()).not()).trace('unmatched', id).empty()";
        assert_eq!(members(dom3), Some(vec!["contained".into()]));
        assert_eq!(members("component.where(code = %resource.code).empty()"), Some(vec!["component".into()]));
    }

    #[test]
    fn what_reaches_the_input_otherwise_is_opaque() {
        assert_eq!(members("%resource.name.exists()"), None);
        assert_eq!(members("descendants().empty()"), None);
        assert_eq!(members("$this.name.exists()"), None);
        assert_eq!(members("Patient.name.exists()"), None);
        assert_eq!(members("exists().not() or name.exists()"), None);
        // The criteria of a target that is not empty when its members are: the input is read.
        assert_eq!(members("name.exists().where(%resource.id.exists())"), None);
    }
}
