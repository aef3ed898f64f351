//! Turns tokens into an [`Expr`] tree by precedence climbing over the FHIRPath N1 operator
//! table (from tightest: `.` and `[]`, unary `+ -`, `* / div mod`, `+ - &`, `is as`, `|`,
//! `< > <= >=`, `= ~ != !~`, `in contains`, `and`, `or xor`, `implies`).
//!
//! The tree's depth is bounded ([`MAX_DEPTH`]), both nesting (parentheses, arguments) and
//! long left-leaning chains (`a.b.c…`, `1+1+1…`), so neither parsing nor evaluating a hostile
//! expression can exhaust the stack.

use crate::fhirpath::ParseError;
use crate::fhirpath::ast::{BinaryOperator, Expr, Function, Literal, SystemType, TypeOperation, TypeSpec};
use crate::fhirpath::datetime::{DateTime, Time};
use crate::fhirpath::decimal::Decimal;
use crate::fhirpath::lexer::{Token, TokenKind, tokenize};
use crate::fhirpath::navigation::is_known_fhir_type;
use crate::fhirpath::quantity::Quantity;

/// Deepest expression tree accepted.
pub(crate) const MAX_DEPTH: usize = 128;

/// Parses a whole expression.
pub(crate) fn parse(text: &str) -> Result<Expr, ParseError> {
    let tokens = tokenize(text)?;
    let mut parser = Parser { tokens, at: 0 };
    let (expr, _) = parser.expression(0, 0)?;
    match parser.peek() {
        TokenKind::End => Ok(expr),
        other => Err(ParseError::new(parser.offset(), format!("unexpected {}", describe(other)))),
    }
}

/// An expression and the depth of its tree.
type Parsed = (Expr, usize);

enum Operator {
    Binary(BinaryOperator),
    Type(TypeOperation),
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> &TokenKind {
        self.peek_at(0)
    }

    fn peek_at(&self, ahead: usize) -> &TokenKind {
        self.tokens.get(self.at + ahead).map_or(&TokenKind::End, |token| &token.kind)
    }

    fn offset(&self) -> usize {
        self.tokens.get(self.at).map_or(0, |token| token.offset)
    }

    fn advance(&mut self) -> TokenKind {
        let kind = self.peek().clone();
        if self.at < self.tokens.len() {
            self.at += 1;
        }
        kind
    }

    fn expect(&mut self, wanted: TokenKind) -> Result<(), ParseError> {
        if *self.peek() == wanted {
            self.advance();
            Ok(())
        } else {
            Err(ParseError::new(
                self.offset(),
                format!("expected {}, found {}", describe(&wanted), describe(self.peek())),
            ))
        }
    }

    fn check_depth(&self, depth: usize) -> Result<(), ParseError> {
        if depth > MAX_DEPTH { Err(ParseError::new(self.offset(), "expression is nested too deeply")) } else { Ok(()) }
    }

    /// An expression whose operators all bind at least as tightly as `min_precedence`;
    /// `nesting` is the depth of the enclosing tree.
    fn expression(&mut self, min_precedence: u8, nesting: usize) -> Result<Parsed, ParseError> {
        self.check_depth(nesting)?;
        let (mut left, mut depth) = self.unary(nesting)?;
        while let Some((operator, precedence)) = self.operator() {
            if precedence < min_precedence {
                break;
            }
            self.advance();
            match operator {
                Operator::Type(operation) => {
                    let type_spec = self.type_specifier()?;
                    left = Expr::Type { target: Some(Box::new(left)), operation, type_spec };
                    depth += 1;
                }
                Operator::Binary(binary) => {
                    let (right, right_depth) = self.expression(precedence + 1, nesting + 1)?;
                    left = Expr::Binary(binary, Box::new(left), Box::new(right));
                    depth = depth.max(right_depth) + 1;
                }
            }
            self.check_depth(nesting + depth)?;
        }
        Ok((left, depth))
    }

    /// The binary or type operator at the cursor and its precedence (higher binds tighter).
    fn operator(&self) -> Option<(Operator, u8)> {
        use BinaryOperator as B;
        let binary = |operator, precedence| Some((Operator::Binary(operator), precedence));
        match self.peek() {
            TokenKind::Star => binary(B::Multiply, 10),
            TokenKind::Slash => binary(B::Divide, 10),
            TokenKind::Plus => binary(B::Add, 9),
            TokenKind::Minus => binary(B::Subtract, 9),
            TokenKind::Ampersand => binary(B::Concatenate, 9),
            TokenKind::Pipe => binary(B::Union, 7),
            TokenKind::Less => binary(B::Less, 6),
            TokenKind::Greater => binary(B::Greater, 6),
            TokenKind::LessOrEqual => binary(B::LessOrEqual, 6),
            TokenKind::GreaterOrEqual => binary(B::GreaterOrEqual, 6),
            TokenKind::Equal => binary(B::Equal, 5),
            TokenKind::Tilde => binary(B::Equivalent, 5),
            TokenKind::NotEqual => binary(B::NotEqual, 5),
            TokenKind::NotTilde => binary(B::NotEquivalent, 5),
            TokenKind::Identifier(word) => match word.as_str() {
                "div" => binary(B::Div, 10),
                "mod" => binary(B::Mod, 10),
                "is" => Some((Operator::Type(TypeOperation::Is), 8)),
                "as" => Some((Operator::Type(TypeOperation::As), 8)),
                "in" => binary(B::In, 4),
                "contains" => binary(B::Contains, 4),
                "and" => binary(B::And, 3),
                "or" => binary(B::Or, 2),
                "xor" => binary(B::Xor, 2),
                "implies" => binary(B::Implies, 1),
                _ => None,
            },
            _ => None,
        }
    }

    fn unary(&mut self, nesting: usize) -> Result<Parsed, ParseError> {
        self.check_depth(nesting)?;
        match self.peek() {
            TokenKind::Minus => {
                self.advance();
                let (operand, depth) = self.unary(nesting + 1)?;
                Ok((Expr::Negate(Box::new(operand)), depth + 1))
            }
            TokenKind::Plus => {
                self.advance();
                self.unary(nesting + 1)
            }
            _ => self.postfix(nesting),
        }
    }

    /// A term followed by `.member`, `.function(…)` and `[index]` steps.
    fn postfix(&mut self, nesting: usize) -> Result<Parsed, ParseError> {
        let (mut expr, mut depth) = self.term(nesting)?;
        loop {
            match self.peek() {
                TokenKind::Dot => {
                    self.advance();
                    let name = self.name()?;
                    if *self.peek() == TokenKind::OpenParen {
                        let (call, call_depth) = self.call(Some(expr), depth, &name, nesting)?;
                        expr = call;
                        depth = call_depth;
                    } else {
                        expr = Expr::Member(Box::new(expr), name);
                        depth += 1;
                    }
                }
                TokenKind::OpenBracket => {
                    self.advance();
                    let (index, index_depth) = self.expression(0, nesting + 1)?;
                    self.expect(TokenKind::CloseBracket)?;
                    expr = Expr::Index(Box::new(expr), Box::new(index));
                    depth = depth.max(index_depth) + 1;
                }
                _ => return Ok((expr, depth)),
            }
            self.check_depth(nesting + depth)?;
        }
    }

    fn name(&mut self) -> Result<String, ParseError> {
        match self.advance() {
            TokenKind::Identifier(name) | TokenKind::DelimitedIdentifier(name) => Ok(name),
            other => Err(ParseError::new(self.offset(), format!("expected a name, found {}", describe(&other)))),
        }
    }

    fn term(&mut self, nesting: usize) -> Result<Parsed, ParseError> {
        let offset = self.offset();
        let expr = match self.advance() {
            TokenKind::Number(text) => self.number(&text, offset)?,
            TokenKind::String(text) => Expr::Literal(Literal::String(text)),
            TokenKind::DateTime(text) => date_time_literal(&text, offset)?,
            TokenKind::Time(text) => {
                let time =
                    Time::parse(&text).ok_or_else(|| ParseError::new(offset, format!("invalid time @T{text}")))?;
                Expr::Literal(Literal::Time(time))
            }
            TokenKind::Identifier(name) if name == "true" || name == "false" => {
                Expr::Literal(Literal::Boolean(name == "true"))
            }
            TokenKind::Identifier(name) | TokenKind::DelimitedIdentifier(name) => {
                if *self.peek() == TokenKind::OpenParen {
                    return self.call(None, 0, &name, nesting);
                }
                if name.starts_with(|c: char| c.is_ascii_uppercase()) && is_known_fhir_type(&name) {
                    Expr::TypeFilter(name)
                } else {
                    Expr::Identifier(name)
                }
            }
            TokenKind::Dollar(name) => match name.as_str() {
                "this" => Expr::This,
                "index" => Expr::IndexVariable,
                "total" => Expr::Total,
                _ => return Err(ParseError::new(offset, format!("unknown variable ${name}"))),
            },
            TokenKind::External(name) => Expr::Variable(name),
            TokenKind::OpenParen => {
                let (inner, depth) = self.expression(0, nesting + 1)?;
                self.expect(TokenKind::CloseParen)?;
                return Ok((inner, depth));
            }
            TokenKind::OpenBrace => {
                self.expect(TokenKind::CloseBrace)?;
                Expr::Empty
            }
            other => return Err(ParseError::new(offset, format!("unexpected {}", describe(&other)))),
        };
        Ok((expr, 1))
    }

    /// A number literal, or a quantity when a unit follows.
    fn number(&mut self, text: &str, offset: usize) -> Result<Expr, ParseError> {
        let unit = match self.peek() {
            TokenKind::String(unit) => Some(unit.clone()),
            TokenKind::Identifier(word) if Quantity::is_calendar_keyword(word) => Some(word.clone()),
            _ => None,
        };
        if let Some(unit) = unit {
            self.advance();
            let value = Decimal::parse(text).ok_or_else(|| ParseError::new(offset, "number out of range"))?;
            return Ok(Expr::Literal(Literal::Quantity(Quantity::new(value, unit))));
        }
        if !text.contains('.')
            && let Ok(value) = text.parse::<i64>()
        {
            return Ok(Expr::Literal(Literal::Integer(value)));
        }
        let value = Decimal::parse(text).ok_or_else(|| ParseError::new(offset, "number out of range"))?;
        Ok(Expr::Literal(Literal::Decimal(value)))
    }

    /// A function call; the cursor is on `(`.
    fn call(
        &mut self,
        target: Option<Expr>,
        target_depth: usize,
        name: &str,
        nesting: usize,
    ) -> Result<Parsed, ParseError> {
        let offset = self.offset();
        self.expect(TokenKind::OpenParen)?;
        let target = target.map(Box::new);
        let type_operation = match name {
            "is" => Some(TypeOperation::Is),
            "as" => Some(TypeOperation::AsFunction),
            "ofType" => Some(TypeOperation::OfType),
            _ => None,
        };
        if let Some(operation) = type_operation {
            let type_spec = self.type_specifier()?;
            self.expect(TokenKind::CloseParen)?;
            return Ok((Expr::Type { target, operation, type_spec }, target_depth + 1));
        }
        let (function, min_args, max_args) =
            Function::lookup(name).ok_or_else(|| ParseError::new(offset, format!("unknown function '{name}'")))?;
        let mut args = Vec::new();
        let mut depth = target_depth;
        if *self.peek() != TokenKind::CloseParen {
            loop {
                let (arg, arg_depth) = self.expression(0, nesting + 1)?;
                args.push(arg);
                depth = depth.max(arg_depth);
                if *self.peek() == TokenKind::Comma {
                    self.advance();
                } else {
                    break;
                }
            }
        }
        self.expect(TokenKind::CloseParen)?;
        if args.len() < min_args || args.len() > max_args {
            return Err(ParseError::new(offset, format!("wrong number of arguments for {name}()")));
        }
        Ok((Expr::Call { target, function, args }, depth + 1))
    }

    /// A type name, optionally qualified with `FHIR.` or `System.`.
    fn type_specifier(&mut self) -> Result<TypeSpec, ParseError> {
        let offset = self.offset();
        let first = self.name()?;
        let qualified = (first == "FHIR" || first == "System")
            && *self.peek() == TokenKind::Dot
            && matches!(self.peek_at(1), TokenKind::Identifier(_) | TokenKind::DelimitedIdentifier(_));
        if !qualified {
            return resolve_type(None, &first)
                .ok_or_else(|| ParseError::new(offset, format!("unknown type '{first}'")));
        }
        self.advance();
        let name = self.name()?;
        resolve_type(Some(&first), &name)
            .ok_or_else(|| ParseError::new(offset, format!("unknown type '{first}.{name}'")))
    }
}

/// Resolves a type name in `namespace` (`FHIR`, `System` or none).
fn resolve_type(namespace: Option<&str>, name: &str) -> Option<TypeSpec> {
    match namespace {
        Some("System") => Some(SystemType::from_name(name).map_or(TypeSpec::Nothing, TypeSpec::System)),
        Some(_) => is_known_fhir_type(name).then(|| TypeSpec::Fhir(name.to_owned())),
        None => match (is_known_fhir_type(name), SystemType::from_name(name)) {
            (true, Some(system)) => Some(TypeSpec::Either(name.to_owned(), system)),
            (true, None) => Some(TypeSpec::Fhir(name.to_owned())),
            (false, Some(system)) => Some(TypeSpec::System(system)),
            (false, None) => None,
        },
    }
}

fn date_time_literal(text: &str, offset: usize) -> Result<Expr, ParseError> {
    let invalid = || ParseError::new(offset, format!("invalid date or date-time @{text}"));
    if text.contains('T') {
        Ok(Expr::Literal(Literal::DateTime(DateTime::parse(text).ok_or_else(invalid)?)))
    } else {
        Ok(Expr::Literal(Literal::Date(DateTime::parse_date(text).ok_or_else(invalid)?)))
    }
}

fn describe(kind: &TokenKind) -> String {
    match kind {
        TokenKind::Identifier(name) | TokenKind::DelimitedIdentifier(name) => format!("'{name}'"),
        TokenKind::String(_) => "a string".to_owned(),
        TokenKind::Number(text) => format!("number {text}"),
        TokenKind::DateTime(_) | TokenKind::Time(_) => "a date/time literal".to_owned(),
        TokenKind::Dollar(name) => format!("${name}"),
        TokenKind::External(name) => format!("%{name}"),
        TokenKind::End => "end of expression".to_owned(),
        other => format!("{other:?}"),
    }
}
