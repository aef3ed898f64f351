//! Splits FHIRPath text into tokens: identifiers (plain and `` `delimited` ``), string, number
//! and date/time literals, `$`/`%` variables, punctuation and operators. Comments (`//` and
//! `/* */`) and whitespace are skipped.
//!
//! Keywords (`and`, `is`, `div`, `true`, …) come out as identifiers; the parser decides from
//! position whether `contains` is an operator or a function name.

use crate::fhirpath::ParseError;

/// One token and the byte offset it starts at.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub(crate) kind: TokenKind,
    pub(crate) offset: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TokenKind {
    Identifier(String),
    /// A `` `backtick` `` identifier: never a keyword.
    DelimitedIdentifier(String),
    String(String),
    /// Number text as written (`12`, `1.50`).
    Number(String),
    /// The text after `@` of a date or date-time literal.
    DateTime(String),
    /// The text after `@T` of a time literal.
    Time(String),
    /// `$this`, `$index`, `$total` (without the `$`).
    Dollar(String),
    /// `%name`, `` %`name` `` or `%'name'` (without the `%` and quotes).
    External(String),
    Dot,
    Comma,
    OpenParen,
    CloseParen,
    OpenBracket,
    CloseBracket,
    OpenBrace,
    CloseBrace,
    Plus,
    Minus,
    Star,
    Slash,
    Ampersand,
    Pipe,
    Equal,
    Tilde,
    NotEqual,
    NotTilde,
    Less,
    Greater,
    LessOrEqual,
    GreaterOrEqual,
    End,
}

/// Tokenizes `text`, ending with [`TokenKind::End`].
pub(crate) fn tokenize(text: &str) -> Result<Vec<Token>, ParseError> {
    let mut lexer = Lexer { text, bytes: text.as_bytes(), at: 0 };
    let mut tokens = Vec::new();
    loop {
        lexer.skip_trivia()?;
        let offset = lexer.at;
        let Some(byte) = lexer.peek() else {
            tokens.push(Token { kind: TokenKind::End, offset });
            return Ok(tokens);
        };
        let kind = match byte {
            b'\'' => TokenKind::String(lexer.quoted(b'\'')?),
            b'`' => TokenKind::DelimitedIdentifier(lexer.quoted(b'`')?),
            b'"' => TokenKind::String(lexer.quoted(b'"')?),
            b'0'..=b'9' => TokenKind::Number(lexer.number()),
            b'@' => lexer.date_time()?,
            b'$' => {
                lexer.at += 1;
                let name = lexer.identifier();
                if name.is_empty() {
                    return Err(ParseError::new(offset, "expected a name after '$'"));
                }
                TokenKind::Dollar(name)
            }
            b'%' => {
                lexer.at += 1;
                let name = match lexer.peek() {
                    Some(quote @ (b'`' | b'\'' | b'"')) => lexer.quoted(quote)?,
                    _ => lexer.identifier(),
                };
                if name.is_empty() {
                    return Err(ParseError::new(offset, "expected a name after '%'"));
                }
                TokenKind::External(name)
            }
            b if b.is_ascii_alphabetic() || b == b'_' => TokenKind::Identifier(lexer.identifier()),
            _ => lexer.punctuation()?,
        };
        tokens.push(Token { kind, offset });
    }
}

struct Lexer<'t> {
    text: &'t str,
    bytes: &'t [u8],
    at: usize,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<u8> {
        self.bytes.get(self.at + ahead).copied()
    }

    fn skip_trivia(&mut self) -> Result<(), ParseError> {
        loop {
            match (self.peek(), self.peek_at(1)) {
                (Some(b' ' | b'\t' | b'\r' | b'\n'), _) => self.at += 1,
                (Some(b'/'), Some(b'/')) => {
                    while self.peek().is_some_and(|b| b != b'\n') {
                        self.at += 1;
                    }
                }
                (Some(b'/'), Some(b'*')) => {
                    let start = self.at;
                    match self.text[self.at + 2..].find("*/") {
                        Some(end) => self.at += end + 4,
                        None => return Err(ParseError::new(start, "unterminated comment")),
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn identifier(&mut self) -> String {
        let start = self.at;
        while self.peek().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_') {
            self.at += 1;
        }
        self.text[start..self.at].to_owned()
    }

    fn number(&mut self) -> String {
        let start = self.at;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
        // A fraction needs a digit after the point: `1.convertsToInteger()` is a call.
        if self.peek() == Some(b'.') && self.peek_at(1).is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
            while self.peek().is_some_and(|b| b.is_ascii_digit()) {
                self.at += 1;
            }
        }
        self.text[start..self.at].to_owned()
    }

    /// A quoted string or identifier with FHIRPath escapes; the cursor is on the quote.
    fn quoted(&mut self, quote: u8) -> Result<String, ParseError> {
        let start = self.at;
        self.at += 1;
        let mut value = String::new();
        loop {
            let Some(character) = self.text[self.at..].chars().next() else {
                return Err(ParseError::new(start, "unterminated string"));
            };
            self.at += character.len_utf8();
            match character {
                c if c == char::from(quote) => return Ok(value),
                '\\' => {
                    let Some(escaped) = self.text[self.at..].chars().next() else {
                        return Err(ParseError::new(start, "unterminated string"));
                    };
                    self.at += escaped.len_utf8();
                    match escaped {
                        'n' => value.push('\n'),
                        'r' => value.push('\r'),
                        't' => value.push('\t'),
                        'f' => value.push('\u{c}'),
                        'u' => {
                            let hex = self
                                .text
                                .get(self.at..self.at + 4)
                                .ok_or_else(|| ParseError::new(self.at, "expected four hex digits after \\u"))?;
                            let code = u32::from_str_radix(hex, 16)
                                .ok()
                                .and_then(char::from_u32)
                                .ok_or_else(|| ParseError::new(self.at, "invalid \\u escape"))?;
                            value.push(code);
                            self.at += 4;
                        }
                        other => value.push(other),
                    }
                }
                other => value.push(other),
            }
        }
    }

    /// `@` date, date-time or `@T` time; the cursor is on the `@`.
    fn date_time(&mut self) -> Result<TokenKind, ParseError> {
        let start = self.at;
        self.at += 1;
        let is_time = self.peek() == Some(b'T');
        if is_time {
            self.at += 1;
        }
        let body_start = self.at;
        while let Some(byte) = self.peek() {
            let accept = match byte {
                b'0'..=b'9' | b':' | b'T' | b'Z' => true,
                b'-' | b'+' => self.peek_at(1).is_some_and(|b| b.is_ascii_digit()),
                b'.' => self.peek_at(1).is_some_and(|b| b.is_ascii_digit()),
                _ => false,
            };
            if !accept {
                break;
            }
            self.at += 1;
        }
        let body = self.text[body_start..self.at].to_owned();
        if body.is_empty() {
            return Err(ParseError::new(start, "expected a date or time after '@'"));
        }
        Ok(if is_time { TokenKind::Time(body) } else { TokenKind::DateTime(body) })
    }

    fn punctuation(&mut self) -> Result<TokenKind, ParseError> {
        let start = self.at;
        let two = (self.peek(), self.peek_at(1));
        let (kind, width) = match two {
            (Some(b'!'), Some(b'=')) => (TokenKind::NotEqual, 2),
            (Some(b'!'), Some(b'~')) => (TokenKind::NotTilde, 2),
            (Some(b'<'), Some(b'=')) => (TokenKind::LessOrEqual, 2),
            (Some(b'>'), Some(b'=')) => (TokenKind::GreaterOrEqual, 2),
            (Some(b'.'), _) => (TokenKind::Dot, 1),
            (Some(b','), _) => (TokenKind::Comma, 1),
            (Some(b'('), _) => (TokenKind::OpenParen, 1),
            (Some(b')'), _) => (TokenKind::CloseParen, 1),
            (Some(b'['), _) => (TokenKind::OpenBracket, 1),
            (Some(b']'), _) => (TokenKind::CloseBracket, 1),
            (Some(b'{'), _) => (TokenKind::OpenBrace, 1),
            (Some(b'}'), _) => (TokenKind::CloseBrace, 1),
            (Some(b'+'), _) => (TokenKind::Plus, 1),
            (Some(b'-'), _) => (TokenKind::Minus, 1),
            (Some(b'*'), _) => (TokenKind::Star, 1),
            (Some(b'/'), _) => (TokenKind::Slash, 1),
            (Some(b'&'), _) => (TokenKind::Ampersand, 1),
            (Some(b'|'), _) => (TokenKind::Pipe, 1),
            (Some(b'='), _) => (TokenKind::Equal, 1),
            (Some(b'~'), _) => (TokenKind::Tilde, 1),
            (Some(b'<'), _) => (TokenKind::Less, 1),
            (Some(b'>'), _) => (TokenKind::Greater, 1),
            _ => {
                let character = self.text[start..].chars().next().unwrap_or('?');
                return Err(ParseError::new(start, format!("unexpected character '{character}'")));
            }
        };
        self.at += width;
        Ok(kind)
    }
}
