//! The flow filter language's syntax: comparisons of a field with a literal, joined by `and`, `or` and
//! `not`, with parentheses. `and` binds tighter than `or`; `not` tighter than both.
//!
//! ```text
//! expr       := or
//! or         := and ("or" and)*
//! and        := unary ("and" unary)*
//! unary      := "not" unary | "(" expr ")" | comparison
//! comparison := field op value
//! field      := [A-Za-z_][A-Za-z0-9_.]*
//! op         := "=" | "!=" | "=~" | "!~" | ">" | ">=" | "<" | "<="
//! value      := "double-quoted string" | unsigned integer | bare word [A-Za-z0-9_.:/-]+
//! ```
//!
//! Keywords are case-insensitive. Errors carry the character offset where parsing stopped and what
//! would have been accepted there.

use std::fmt;

/// A syntax or meaning error, with the character offset (from 0) in the filter where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    pub position: usize,
    pub expected: String,
    pub found: String,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "at position {}: expected {}, found {}",
            self.position, self.expected, self.found
        )
    }
}

impl std::error::Error for FilterError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Match,
    NotMatch,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Match => "=~",
            Op::NotMatch => "!~",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Literal {
    /// A double-quoted string, unescaped.
    Str(String),
    /// An unsigned integer.
    Int(u64),
    /// A bare word (e.g. `tcp`, `10.0.0.0/8`).
    Word(String),
}

impl Literal {
    /// The literal as text, whatever its form.
    pub fn text(&self) -> String {
        match self {
            Literal::Str(s) | Literal::Word(s) => s.clone(),
            Literal::Int(n) => n.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    pub field: String,
    pub field_pos: usize,
    pub op: Op,
    pub op_pos: usize,
    pub value: Literal,
    pub value_pos: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// The empty filter: every record.
    All,
    Cmp(Comparison),
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Int(u64),
    Word(String),
    Op(Op),
    LParen,
    RParen,
    End,
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("`{s}`"),
        Tok::Str(s) => format!("string {s:?}"),
        Tok::Int(n) => format!("number {n}"),
        Tok::Word(s) => format!("`{s}`"),
        Tok::Op(o) => format!("`{}`", o.as_str()),
        Tok::LParen => "`(`".into(),
        Tok::RParen => "`)`".into(),
        Tok::End => "end of filter".into(),
    }
}

/// Tokens with their character offsets.
fn lex(src: &str) -> Result<Vec<(Tok, usize)>, FilterError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |pos: usize, expected: &str, found: String| FilterError {
        position: pos,
        expected: expected.into(),
        found,
    };
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let tok = match c {
            '(' => {
                i += 1;
                Tok::LParen
            }
            ')' => {
                i += 1;
                Tok::RParen
            }
            '=' | '!' | '<' | '>' => {
                let next = chars.get(i + 1).copied();
                let (op, len) = match (c, next) {
                    ('=', Some('~')) => (Op::Match, 2),
                    ('=', _) => (Op::Eq, 1),
                    ('!', Some('=')) => (Op::Ne, 2),
                    ('!', Some('~')) => (Op::NotMatch, 2),
                    ('!', _) => {
                        return Err(err(
                            start,
                            "`!=` or `!~`",
                            next.map_or("end of filter".into(), |n| format!("`!{n}`")),
                        ))
                    }
                    ('>', Some('=')) => (Op::Ge, 2),
                    ('>', _) => (Op::Gt, 1),
                    ('<', Some('=')) => (Op::Le, 2),
                    _ => (Op::Lt, 1),
                };
                i += len;
                Tok::Op(op)
            }
            '"' => {
                i += 1;
                let mut s = String::new();
                loop {
                    match chars.get(i) {
                        None => {
                            return Err(err(chars.len(), "a closing `\"`", "end of filter".into()))
                        }
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some('\\') => {
                            let e = chars.get(i + 1).copied();
                            s.push(match e {
                                Some('"') => '"',
                                Some('\\') => '\\',
                                Some('n') => '\n',
                                Some('t') => '\t',
                                other => {
                                    return Err(err(
                                        i,
                                        "an escape: \\\" \\\\ \\n or \\t",
                                        other
                                            .map_or("end of filter".into(), |o| format!("`\\{o}`")),
                                    ))
                                }
                            });
                            i += 2;
                        }
                        Some(&ch) => {
                            s.push(ch);
                            i += 1;
                        }
                    }
                }
                Tok::Str(s)
            }
            c if c.is_ascii_alphanumeric() || c == '_' => {
                let word_char = |ch: char| {
                    ch.is_ascii_alphanumeric() || matches!(ch, '_' | '.' | ':' | '/' | '-')
                };
                while i < chars.len() && word_char(chars[i]) {
                    i += 1;
                }
                let w: String = chars[start..i].iter().collect();
                let ident = w
                    .chars()
                    .next()
                    .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
                    && w.chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '.');
                if w.bytes().all(|b| b.is_ascii_digit()) {
                    match w.parse() {
                        Ok(n) => Tok::Int(n),
                        Err(_) => return Err(err(start, "a number below 2^64", format!("`{w}`"))),
                    }
                } else if ident {
                    Tok::Ident(w)
                } else {
                    Tok::Word(w)
                }
            }
            other => {
                return Err(err(
                    start,
                    "a field name, `(`, `not`, an operator or a value",
                    format!("`{other}`"),
                ))
            }
        };
        out.push((tok, start));
    }
    out.push((Tok::End, chars.len()));
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    at: usize,
}

fn is_keyword(t: &Tok, kw: &str) -> bool {
    matches!(t, Tok::Ident(s) if s.eq_ignore_ascii_case(kw))
}

impl Parser {
    fn peek(&self) -> &(Tok, usize) {
        &self.toks[self.at]
    }

    fn error(&self, expected: &str) -> FilterError {
        let (t, pos) = self.peek();
        FilterError {
            position: *pos,
            expected: expected.into(),
            found: describe(t),
        }
    }

    fn or(&mut self) -> Result<Expr, FilterError> {
        let mut terms = vec![self.and()?];
        while is_keyword(&self.peek().0, "or") {
            self.at += 1;
            terms.push(self.and()?);
        }
        Ok(if terms.len() == 1 {
            terms.pop().expect("one term")
        } else {
            Expr::Or(terms)
        })
    }

    fn and(&mut self) -> Result<Expr, FilterError> {
        let mut terms = vec![self.unary()?];
        while is_keyword(&self.peek().0, "and") {
            self.at += 1;
            terms.push(self.unary()?);
        }
        Ok(if terms.len() == 1 {
            terms.pop().expect("one term")
        } else {
            Expr::And(terms)
        })
    }

    fn unary(&mut self) -> Result<Expr, FilterError> {
        let (tok, pos) = self.peek().clone();
        if is_keyword(&tok, "not") {
            self.at += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        match tok {
            Tok::LParen => {
                self.at += 1;
                let e = self.or()?;
                if self.peek().0 != Tok::RParen {
                    return Err(self.error("`)`, `and` or `or`"));
                }
                self.at += 1;
                Ok(e)
            }
            Tok::Ident(field) if !is_keyword(&tok, "and") && !is_keyword(&tok, "or") => {
                self.at += 1;
                let (op, op_pos) = match self.peek() {
                    (Tok::Op(op), p) => (*op, *p),
                    _ => return Err(self.error("an operator: = != =~ !~ > >= < <=")),
                };
                self.at += 1;
                let (value, value_pos) = match self.peek().clone() {
                    (Tok::Str(s), p) => (Literal::Str(s), p),
                    (Tok::Int(n), p) => (Literal::Int(n), p),
                    (Tok::Word(w) | Tok::Ident(w), p) => (Literal::Word(w), p),
                    _ => return Err(self.error("a value: a \"string\", a number or a word")),
                };
                self.at += 1;
                Ok(Expr::Cmp(Comparison {
                    field,
                    field_pos: pos,
                    op,
                    op_pos,
                    value,
                    value_pos,
                }))
            }
            _ => Err(self.error("a field name, `(` or `not`")),
        }
    }
}

/// Parses a filter. The empty (or all-blank) filter is [`Expr::All`].
pub fn parse(src: &str) -> Result<Expr, FilterError> {
    let toks = lex(src)?;
    if toks.len() == 1 {
        return Ok(Expr::All);
    }
    let mut p = Parser { toks, at: 0 };
    let e = p.or()?;
    if p.peek().0 != Tok::End {
        return Err(p.error("`and`, `or` or end of filter"));
    }
    Ok(e)
}
