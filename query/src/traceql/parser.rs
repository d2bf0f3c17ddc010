//! TraceQL lexer and parser for the subset Grafana's Tempo data source uses (see `mod.rs`). Errors carry
//! the byte offset and the 1-based column where parsing stopped.

use std::fmt;

use strata_store::traces::{SpanKind, StatusCode};

#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    /// Byte offset into the query.
    pub pos: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "parse error at line 1, col {}: {}",
            self.pos + 1,
            self.message
        )
    }
}

impl std::error::Error for ParseError {}

/// Where an attribute is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrSel {
    Resource,
    Span,
    /// Unscoped `.x`: the span's attribute, else the resource's.
    Any,
    Event,
    Link,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intrinsic {
    Name,
    Status,
    StatusMessage,
    Kind,
    Duration,
    RootName,
    RootServiceName,
    TraceDuration,
    SpanId,
    ParentId,
    TraceId,
    EventName,
    InstrumentationName,
    InstrumentationVersion,
}

impl Intrinsic {
    /// TraceQL spellings, unscoped and scoped.
    pub fn parse(s: &str) -> Option<Intrinsic> {
        Some(match s {
            "name" | "span:name" => Intrinsic::Name,
            "status" | "span:status" => Intrinsic::Status,
            "statusMessage" | "span:statusMessage" => Intrinsic::StatusMessage,
            "kind" | "span:kind" => Intrinsic::Kind,
            "duration" | "span:duration" => Intrinsic::Duration,
            "rootName" | "trace:rootName" => Intrinsic::RootName,
            "rootServiceName" | "rootService" | "trace:rootService" => Intrinsic::RootServiceName,
            "traceDuration" | "trace:duration" => Intrinsic::TraceDuration,
            "span:id" => Intrinsic::SpanId,
            "span:parentID" => Intrinsic::ParentId,
            "trace:id" => Intrinsic::TraceId,
            "event:name" => Intrinsic::EventName,
            "instrumentation:name" => Intrinsic::InstrumentationName,
            "instrumentation:version" => Intrinsic::InstrumentationVersion,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Intrinsic(Intrinsic),
    Attr { scope: AttrSel, name: String },
}

impl Field {
    /// The TraceQL spelling, as search results key selected attributes.
    pub fn traceql_name(&self) -> String {
        match self {
            Field::Intrinsic(i) => format!("{i:?}").to_lowercase(),
            Field::Attr { scope, name } => match scope {
                AttrSel::Resource => format!("resource.{name}"),
                AttrSel::Span => format!("span.{name}"),
                AttrSel::Any => format!(".{name}"),
                AttrSel::Event => format!("event.{name}"),
                AttrSel::Link => format!("link.{name}"),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Str(String),
    Int(i64),
    Float(f64),
    /// Nanoseconds.
    Duration(i64),
    Bool(bool),
    Status(StatusCode),
    Kind(SpanKind),
    Nil,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Re,
    NotRe,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Const(bool),
    /// `regex` is the compiled, fully anchored pattern for `=~`/`!~`.
    Cmp {
        field: Field,
        op: CmpOp,
        value: Literal,
        regex: Option<regex::Regex>,
    },
}

#[derive(Debug, Clone)]
pub enum SpansetExpr {
    /// `{ }` matches every span; `{ expr }` the spans for which it holds.
    Filter(Option<Expr>),
    And(Box<SpansetExpr>, Box<SpansetExpr>),
    Or(Box<SpansetExpr>, Box<SpansetExpr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    Count,
    Avg,
    Min,
    Max,
    Sum,
}

#[derive(Debug, Clone)]
pub enum Stage {
    /// `count() > 2`, `avg(duration) > 1s`.
    Aggregate {
        agg: Aggregate,
        field: Option<Field>,
        op: CmpOp,
        value: Literal,
    },
    Select(Vec<Field>),
    /// `spanset` filter after a pipe: `| { ... }`.
    Filter(SpansetExpr),
}

#[derive(Debug, Clone)]
pub struct Query {
    pub spansets: SpansetExpr,
    pub pipeline: Vec<Stage>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LBrace,
    RBrace,
    LParen,
    RParen,
    And,
    Or,
    Not,
    Pipe,
    Comma,
    Op(CmpOp),
    Ident(String),
    Str(String),
    Num(String),
    Eof,
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | ':' | '-' | '/' | '@' | '#' | '$')
}

impl<'a> Lexer<'a> {
    fn err<T>(&self, pos: usize, msg: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError {
            pos,
            message: msg.into(),
        })
    }

    fn peek_char(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn next(&mut self) -> Result<(usize, Tok), ParseError> {
        while let Some(c) = self.peek_char() {
            if c.is_whitespace() {
                self.pos += c.len_utf8();
            } else {
                break;
            }
        }
        let start = self.pos;
        let rest = &self.src[self.pos..];
        let Some(c) = rest.chars().next() else {
            return Ok((start, Tok::Eof));
        };
        let two = rest.get(..2).unwrap_or("");
        let (tok, len) = match two {
            "&&" => (Tok::And, 2),
            "||" => (Tok::Or, 2),
            "!=" => (Tok::Op(CmpOp::Ne), 2),
            "=~" => (Tok::Op(CmpOp::Re), 2),
            "!~" => (Tok::Op(CmpOp::NotRe), 2),
            ">=" => (Tok::Op(CmpOp::Ge), 2),
            "<=" => (Tok::Op(CmpOp::Le), 2),
            _ => match c {
                '{' => (Tok::LBrace, 1),
                '}' => (Tok::RBrace, 1),
                '(' => (Tok::LParen, 1),
                ')' => (Tok::RParen, 1),
                '!' => (Tok::Not, 1),
                '|' => (Tok::Pipe, 1),
                ',' => (Tok::Comma, 1),
                '=' => (Tok::Op(CmpOp::Eq), 1),
                '>' => (Tok::Op(CmpOp::Gt), 1),
                '<' => (Tok::Op(CmpOp::Lt), 1),
                '"' | '`' => {
                    let s = self.string(c)?;
                    return Ok((start, Tok::Str(s)));
                }
                c if c.is_ascii_digit()
                    || (c == '-' && rest[1..].starts_with(|d: char| d.is_ascii_digit())) =>
                {
                    let mut end = 1;
                    for ch in rest[1..].chars() {
                        if ch.is_ascii_alphanumeric() || ch == '.' || ch == 'µ' {
                            end += ch.len_utf8();
                        } else {
                            break;
                        }
                    }
                    self.pos += end;
                    return Ok((start, Tok::Num(rest[..end].to_owned())));
                }
                c if is_ident_char(c) => {
                    let mut end = 0;
                    for (i, ch) in rest.char_indices() {
                        if is_ident_char(ch) {
                            end = i + ch.len_utf8();
                            // `span."quoted name"`: a quoted attribute name after a scope dot.
                            if ch == '.' && rest[end..].starts_with('"') {
                                self.pos += end;
                                let q = self.string('"')?;
                                let name = format!("{}{}", &rest[..end], q);
                                return Ok((start, Tok::Ident(name)));
                            }
                        } else {
                            break;
                        }
                    }
                    (Tok::Ident(rest[..end].to_owned()), end)
                }
                _ => return self.err(start, format!("unexpected character {c:?}")),
            },
        };
        self.pos += len;
        Ok((start, tok))
    }

    /// A quoted string at `self.pos`; `"` strings know `\"`, `\\`, `\n`, `\t`; backquoted are raw.
    fn string(&mut self, quote: char) -> Result<String, ParseError> {
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.peek_char() else {
                return self.err(start, "unterminated string");
            };
            self.pos += c.len_utf8();
            if c == quote {
                return Ok(out);
            }
            if c == '\\' && quote == '"' {
                let Some(e) = self.peek_char() else {
                    return self.err(start, "unterminated string");
                };
                self.pos += e.len_utf8();
                out.push(match e {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    other => other,
                });
            } else {
                out.push(c);
            }
        }
    }
}

struct Parser<'a> {
    lex: Lexer<'a>,
    tok: Tok,
    tok_pos: usize,
}

pub fn parse(src: &str) -> Result<Query, ParseError> {
    let mut p = Parser {
        lex: Lexer { src, pos: 0 },
        tok: Tok::Eof,
        tok_pos: 0,
    };
    p.advance()?;
    let spansets = p.spanset_or()?;
    let mut pipeline = Vec::new();
    while p.tok == Tok::Pipe {
        p.advance()?;
        pipeline.push(p.stage()?);
    }
    if p.tok != Tok::Eof {
        return p.unexpected("end of query");
    }
    Ok(Query { spansets, pipeline })
}

/// Parses a filter alone (`{ ... }` or its inside), as the tag-values `q` parameter carries.
pub fn parse_filter(src: &str) -> Result<SpansetExpr, ParseError> {
    Ok(parse(src)?.spansets)
}

/// A Go duration (`100ms`, `1.5s`, `1h30m`, optionally signed) in nanoseconds, as TraceQL duration
/// literals and Tempo's `minDuration`/`maxDuration` are written.
pub fn parse_duration(s: &str) -> Option<i64> {
    let s = s.trim();
    let (sign, mut rest) = match s.strip_prefix('-') {
        Some(r) => (-1.0, r),
        None => (1.0, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let v: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        total += v * match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[u..];
    }
    Some((sign * total).round() as i64)
}

impl Parser<'_> {
    fn advance(&mut self) -> Result<(), ParseError> {
        let (pos, tok) = self.lex.next()?;
        self.tok = tok;
        self.tok_pos = pos;
        Ok(())
    }

    fn unexpected<T>(&self, wanted: &str) -> Result<T, ParseError> {
        let found = match &self.tok {
            Tok::Eof => "end of query".to_owned(),
            Tok::Ident(s) | Tok::Num(s) => format!("{s:?}"),
            Tok::Str(s) => format!("string {s:?}"),
            t => format!("{t:?}"),
        };
        Err(ParseError {
            pos: self.tok_pos,
            message: format!("expected {wanted}, found {found}"),
        })
    }

    fn expect(&mut self, t: Tok, wanted: &str) -> Result<(), ParseError> {
        if self.tok == t {
            self.advance()
        } else {
            self.unexpected(wanted)
        }
    }

    fn spanset_or(&mut self) -> Result<SpansetExpr, ParseError> {
        let mut left = self.spanset_and()?;
        while self.tok == Tok::Or {
            self.advance()?;
            let right = self.spanset_and()?;
            left = SpansetExpr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn spanset_and(&mut self) -> Result<SpansetExpr, ParseError> {
        let mut left = self.spanset_primary()?;
        while self.tok == Tok::And {
            self.advance()?;
            let right = self.spanset_primary()?;
            left = SpansetExpr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn spanset_primary(&mut self) -> Result<SpansetExpr, ParseError> {
        match self.tok {
            Tok::LBrace => {
                self.advance()?;
                if self.tok == Tok::RBrace {
                    self.advance()?;
                    return Ok(SpansetExpr::Filter(None));
                }
                let e = self.expr_or()?;
                self.expect(Tok::RBrace, "\"}\" or an operator")?;
                Ok(SpansetExpr::Filter(Some(e)))
            }
            Tok::LParen => {
                self.advance()?;
                let e = self.spanset_or()?;
                self.expect(Tok::RParen, "\")\"")?;
                Ok(e)
            }
            _ => self.unexpected("\"{\""),
        }
    }

    fn expr_or(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.expr_and()?;
        while self.tok == Tok::Or {
            self.advance()?;
            let right = self.expr_and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn expr_and(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.expr_unary()?;
        while self.tok == Tok::And {
            self.advance()?;
            let right = self.expr_unary()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn expr_unary(&mut self) -> Result<Expr, ParseError> {
        match &self.tok {
            Tok::Not => {
                self.advance()?;
                Ok(Expr::Not(Box::new(self.expr_unary()?)))
            }
            Tok::LParen => {
                self.advance()?;
                let e = self.expr_or()?;
                self.expect(Tok::RParen, "\")\"")?;
                Ok(e)
            }
            Tok::Ident(s) if s == "true" || s == "false" => {
                let v = s == "true";
                self.advance()?;
                Ok(Expr::Const(v))
            }
            _ => self.comparison(),
        }
    }

    fn field(&mut self) -> Result<Field, ParseError> {
        let Tok::Ident(name) = self.tok.clone() else {
            return self.unexpected("an attribute or intrinsic");
        };
        let pos = self.tok_pos;
        let attr = |scope, rest: &str| -> Result<Field, ParseError> {
            if rest.is_empty() {
                return Err(ParseError {
                    pos,
                    message: format!("attribute name missing after {name:?}"),
                });
            }
            Ok(Field::Attr {
                scope,
                name: rest.to_owned(),
            })
        };
        let f = if let Some(i) = Intrinsic::parse(&name) {
            Field::Intrinsic(i)
        } else if let Some(r) = name.strip_prefix("resource.") {
            attr(AttrSel::Resource, r)?
        } else if let Some(r) = name.strip_prefix("span.") {
            attr(AttrSel::Span, r)?
        } else if let Some(r) = name.strip_prefix("event.") {
            attr(AttrSel::Event, r)?
        } else if let Some(r) = name.strip_prefix("link.") {
            attr(AttrSel::Link, r)?
        } else if let Some(r) = name.strip_prefix('.') {
            attr(AttrSel::Any, r)?
        } else {
            return Err(ParseError {
                pos,
                message: format!(
                    "unknown identifier {name:?}: use an intrinsic or a scoped attribute (span., resource., .)"
                ),
            });
        };
        self.advance()?;
        Ok(f)
    }

    fn comparison(&mut self) -> Result<Expr, ParseError> {
        let field = self.field()?;
        let Tok::Op(op) = self.tok else {
            // A bare field: it exists.
            return Ok(Expr::Cmp {
                field,
                op: CmpOp::Ne,
                value: Literal::Nil,
                regex: None,
            });
        };
        self.advance()?;
        let vpos = self.tok_pos;
        let value = self.literal()?;
        let regex = match op {
            CmpOp::Re | CmpOp::NotRe => {
                let Literal::Str(s) = &value else {
                    return Err(ParseError {
                        pos: vpos,
                        message: "a regular expression must be a string".into(),
                    });
                };
                Some(
                    regex::Regex::new(&format!("^(?:{s})$")).map_err(|e| ParseError {
                        pos: vpos,
                        message: format!("invalid regular expression: {e}"),
                    })?,
                )
            }
            _ => None,
        };
        Ok(Expr::Cmp {
            field,
            op,
            value,
            regex,
        })
    }

    fn literal(&mut self) -> Result<Literal, ParseError> {
        let pos = self.tok_pos;
        let lit = match &self.tok {
            Tok::Str(s) => Literal::Str(s.clone()),
            Tok::Num(n) => {
                if let Ok(i) = n.parse::<i64>() {
                    Literal::Int(i)
                } else if let Ok(f) = n.parse::<f64>() {
                    Literal::Float(f)
                } else if let Some(d) = parse_duration(n) {
                    Literal::Duration(d)
                } else {
                    return Err(ParseError {
                        pos,
                        message: format!("invalid number or duration {n:?}"),
                    });
                }
            }
            Tok::Ident(s) => match s.as_str() {
                "true" => Literal::Bool(true),
                "false" => Literal::Bool(false),
                "nil" => Literal::Nil,
                "ok" => Literal::Status(StatusCode::Ok),
                "error" => Literal::Status(StatusCode::Error),
                "unset" => Literal::Status(StatusCode::Unset),
                "server" => Literal::Kind(SpanKind::Server),
                "client" => Literal::Kind(SpanKind::Client),
                "producer" => Literal::Kind(SpanKind::Producer),
                "consumer" => Literal::Kind(SpanKind::Consumer),
                "internal" => Literal::Kind(SpanKind::Internal),
                "unspecified" => Literal::Kind(SpanKind::Unspecified),
                "minInt" => Literal::Int(i64::MIN),
                "maxInt" => Literal::Int(i64::MAX),
                _ => return self.unexpected("a value"),
            },
            _ => return self.unexpected("a value"),
        };
        self.advance()?;
        Ok(lit)
    }

    fn stage(&mut self) -> Result<Stage, ParseError> {
        if matches!(self.tok, Tok::LBrace | Tok::LParen) {
            return Ok(Stage::Filter(self.spanset_or()?));
        }
        let Tok::Ident(name) = self.tok.clone() else {
            return self.unexpected("a pipeline stage");
        };
        let agg = match name.as_str() {
            "select" => {
                self.advance()?;
                self.expect(Tok::LParen, "\"(\"")?;
                let mut fields = vec![self.field()?];
                while self.tok == Tok::Comma {
                    self.advance()?;
                    fields.push(self.field()?);
                }
                self.expect(Tok::RParen, "\")\"")?;
                return Ok(Stage::Select(fields));
            }
            "count" => Aggregate::Count,
            "avg" => Aggregate::Avg,
            "min" => Aggregate::Min,
            "max" => Aggregate::Max,
            "sum" => Aggregate::Sum,
            _ => {
                return Err(ParseError {
                    pos: self.tok_pos,
                    message: format!("unsupported pipeline stage {name:?}"),
                })
            }
        };
        self.advance()?;
        self.expect(Tok::LParen, "\"(\"")?;
        let field = if agg == Aggregate::Count {
            None
        } else {
            Some(self.field()?)
        };
        self.expect(Tok::RParen, "\")\"")?;
        let Tok::Op(op) = self.tok else {
            return self.unexpected("a comparison");
        };
        self.advance()?;
        let value = self.literal()?;
        Ok(Stage::Aggregate {
            agg,
            field,
            op,
            value,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grafana_search_editor_query_parses() {
        let q =
            parse(r#"{resource.service.name="x" && name="y" && status=error && duration>100ms}"#)
                .unwrap();
        let SpansetExpr::Filter(Some(Expr::And(_, last))) = &q.spansets else {
            panic!("{q:?}");
        };
        let Expr::Cmp {
            field, op, value, ..
        } = last.as_ref()
        else {
            panic!()
        };
        assert_eq!(field, &Field::Intrinsic(Intrinsic::Duration));
        assert_eq!(*op, CmpOp::Gt);
        assert_eq!(value, &Literal::Duration(100_000_000));
    }

    #[test]
    fn spanset_operators_pipeline_and_quoted_names() {
        let q = parse(
            r#"({ span."a b" = "c" } && { .x =~ "fo.*" }) || {kind=server} | count() > 2 | select(span.http.url, resource.host)"#,
        )
        .unwrap();
        assert!(matches!(q.spansets, SpansetExpr::Or(..)));
        assert_eq!(q.pipeline.len(), 2);
        assert!(parse("{}").is_ok());
        assert!(parse("{ true }").is_ok());
        assert!(parse("{ span:duration >= 1.5s && trace:rootService != nil }").is_ok());
        assert!(parse("{ .n = -3 || .f < 2.5 }").is_ok());
        assert_eq!(parse_duration("1h30m"), Some(5_400_000_000_000));
        assert_eq!(parse_duration("-1.5s"), Some(-1_500_000_000));
        assert_eq!(parse_duration("250us"), Some(250_000));
        assert_eq!(parse_duration("5"), None);
    }

    #[test]
    fn errors_carry_the_position() {
        let e = parse(r#"{ resource.service.name = }"#).unwrap_err();
        assert_eq!(e.pos, 26);
        assert!(e.to_string().contains("col 27"), "{e}");
        let e = parse(r#"{ .a = "x" "#).unwrap_err();
        assert_eq!(e.pos, 11);
        assert!(parse(r#"{ .a =~ "(" }"#).is_err());
        assert!(parse(r#"{ foo = 1 }"#)
            .unwrap_err()
            .message
            .contains("unknown identifier"));
        assert!(parse(r#"{ .a = "x }"#)
            .unwrap_err()
            .message
            .contains("unterminated"));
        assert!(parse("{ duration > 5parsecs }").is_err());
    }
}
