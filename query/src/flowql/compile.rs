//! From a parsed filter to a tantivy query over the flow schema. The meaning checks live here: a field
//! must exist and be searchable, an operator must suit the field's kind, a value must parse as that
//! kind. Each error points at the offending part of the filter.

use std::net::{IpAddr, Ipv6Addr};
use std::ops::Bound;

use strata_store::flows::index::{to_ipv6, FlowSchema};
use strata_store::flows::record::{field_index, FieldKind, FIELDS};
use tantivy::query::{
    AllQuery, BooleanQuery, ExistsQuery, Occur, Query, RangeQuery, RegexQuery, TermQuery,
};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::Term;

use super::parser::{Comparison, Expr, FilterError, Literal, Op};

fn error(position: usize, expected: impl Into<String>, found: impl Into<String>) -> FilterError {
    FilterError {
        position,
        expected: expected.into(),
        found: found.into(),
    }
}

fn not(q: Box<dyn Query>) -> Box<dyn Query> {
    Box::new(BooleanQuery::new(vec![
        (Occur::Must, Box::new(AllQuery)),
        (Occur::MustNot, q),
    ]))
}

/// Compiles a filter against the flow schema.
pub fn compile(expr: &Expr, schema: &FlowSchema) -> Result<Box<dyn Query>, FilterError> {
    Ok(match expr {
        Expr::All => Box::new(AllQuery),
        Expr::Cmp(c) => comparison(c, schema)?,
        Expr::Not(e) => not(compile(e, schema)?),
        Expr::And(es) => Box::new(BooleanQuery::new(
            es.iter()
                .map(|e| Ok((Occur::Must, compile(e, schema)?)))
                .collect::<Result<_, FilterError>>()?,
        )),
        Expr::Or(es) => Box::new(BooleanQuery::new(
            es.iter()
                .map(|e| Ok((Occur::Should, compile(e, schema)?)))
                .collect::<Result<_, FilterError>>()?,
        )),
    })
}

fn range(lower: Bound<Term>, upper: Bound<Term>) -> Box<dyn Query> {
    Box::new(RangeQuery::new(lower, upper))
}

/// `field op value` on an ordered column, given a function that makes the value's term.
fn ordered(op: Op, term: impl Fn() -> Term) -> Box<dyn Query> {
    use Bound::{Excluded, Included, Unbounded};
    match op {
        Op::Eq => range(Included(term()), Included(term())),
        Op::Ne => not(range(Included(term()), Included(term()))),
        Op::Gt => range(Excluded(term()), Unbounded),
        Op::Ge => range(Included(term()), Unbounded),
        Op::Lt => range(Unbounded, Excluded(term())),
        Op::Le => range(Unbounded, Included(term())),
        Op::Match | Op::NotMatch => unreachable!("regex operators are refused before"),
    }
}

fn comparison(c: &Comparison, schema: &FlowSchema) -> Result<Box<dyn Query>, FilterError> {
    let i = field_index(&c.field).ok_or_else(|| {
        error(
            c.field_pos,
            "a flow field (see /api/v1/flows/fields)",
            format!("`{}`", c.field),
        )
    })?;
    let def = &FIELDS[i];
    let Some(field) = schema.field(i) else {
        return Err(error(
            c.field_pos,
            "a searchable field",
            format!("`{}`, which is stored only", c.field),
        ));
    };
    let kind_ops: &[Op] = match def.kind {
        FieldKind::Str | FieldKind::StrList => &[Op::Eq, Op::Ne, Op::Match, Op::NotMatch],
        FieldKind::Ip => &[Op::Eq, Op::Ne],
        _ => &[Op::Eq, Op::Ne, Op::Gt, Op::Ge, Op::Lt, Op::Le],
    };
    if !kind_ops.contains(&c.op) {
        let names: Vec<_> = kind_ops.iter().map(|o| o.as_str()).collect();
        return Err(error(
            c.op_pos,
            format!("an operator for {} ({})", c.field, names.join(" ")),
            format!("`{}`", c.op.as_str()),
        ));
    }
    match def.kind {
        FieldKind::Str | FieldKind::StrList => text(c, field),
        FieldKind::U64 | FieldKind::Counts => {
            let v = match &c.value {
                Literal::Int(n) => *n,
                other => {
                    return Err(error(
                        c.value_pos,
                        format!("an unsigned integer for {}", c.field),
                        format!("`{}`", other.text()),
                    ))
                }
            };
            let absent_is_zero = def.kind == FieldKind::U64;
            let op = match c.op {
                // Absent is 0, so `!= 0` is "present".
                Op::Ne if v == 0 && absent_is_zero => Op::Gt,
                op => op,
            };
            let q = ordered(op, || Term::from_field_u64(field, v));
            // The store leaves zeros out of the columns: where 0 satisfies the comparison, records
            // without the value match too (`!=` is a negation, so it includes them already). For
            // per-code counts, absent means no code at all.
            let zero_matches = match op {
                Op::Eq => v == 0,
                Op::Ne | Op::Gt => false,
                Op::Ge => v == 0,
                Op::Lt => v > 0,
                Op::Le => true,
                Op::Match | Op::NotMatch => false,
            };
            Ok(if absent_is_zero && zero_matches {
                Box::new(BooleanQuery::new(vec![
                    (Occur::Should, q),
                    (
                        Occur::Should,
                        not(Box::new(ExistsQuery::new(def.name.to_owned(), false))),
                    ),
                ]))
            } else {
                q
            })
        }
        FieldKind::Time => {
            let v = time_value(&c.value).ok_or_else(|| {
                error(
                    c.value_pos,
                    format!("Unix nanoseconds or a quoted RFC 3339 time for {}", c.field),
                    format!("`{}`", c.value.text()),
                )
            })?;
            Ok(ordered(c.op, || Term::from_field_i64(field, v)))
        }
        FieldKind::Ip => {
            let (lo, hi) = ip_range(&c.value.text()).ok_or_else(|| {
                error(
                    c.value_pos,
                    format!("an IP address or CIDR prefix for {}", c.field),
                    format!("`{}`", c.value.text()),
                )
            })?;
            let q = range(
                Bound::Included(Term::from_field_ip_addr(field, lo)),
                Bound::Included(Term::from_field_ip_addr(field, hi)),
            );
            Ok(if c.op == Op::Ne { not(q) } else { q })
        }
        FieldKind::StoredList => unreachable!("stored-only fields have no index field"),
    }
}

fn text(c: &Comparison, field: Field) -> Result<Box<dyn Query>, FilterError> {
    let value = c.value.text();
    let q: Box<dyn Query> = match c.op {
        Op::Eq | Op::Ne => Box::new(TermQuery::new(
            Term::from_field_text(field, &value),
            IndexRecordOption::Basic,
        )),
        _ => Box::new(RegexQuery::from_pattern(&value, field).map_err(|e| {
            error(
                c.value_pos,
                "a valid regular expression (matched against the whole value)",
                format!("{value:?}: {e}"),
            )
        })?),
    };
    Ok(match c.op {
        Op::Ne | Op::NotMatch => not(q),
        _ => q,
    })
}

fn time_value(v: &Literal) -> Option<i64> {
    match v {
        Literal::Int(n) => i64::try_from(*n).ok(),
        Literal::Str(s) | Literal::Word(s) => chrono::DateTime::parse_from_rfc3339(s)
            .ok()?
            .timestamp_nanos_opt(),
    }
}

/// The first and last address of an address (a /32 or /128) or a CIDR prefix, in tantivy's IPv6 space
/// (IPv4 as mapped addresses).
fn ip_range(s: &str) -> Option<(Ipv6Addr, Ipv6Addr)> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a.parse::<IpAddr>().ok()?, Some(l.parse::<u32>().ok()?)),
        None => (s.parse::<IpAddr>().ok()?, None),
    };
    let (bits, offset) = match addr {
        IpAddr::V4(_) => (32, 96),
        IpAddr::V6(_) => (128, 0),
    };
    let len = len.unwrap_or(bits);
    if len > bits {
        return None;
    }
    let prefix = len + offset;
    let base = u128::from(to_ipv6(addr));
    let host_mask = if prefix == 0 {
        u128::MAX
    } else {
        (1u128 << (128 - prefix)).wrapping_sub(1)
    };
    let lo = base & !host_mask;
    Some((Ipv6Addr::from(lo), Ipv6Addr::from(lo | host_mask)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_ranges() {
        let (lo, hi) = ip_range("10.1.2.3/8").unwrap();
        assert_eq!(lo, to_ipv6("10.0.0.0".parse().unwrap()));
        assert_eq!(hi, to_ipv6("10.255.255.255".parse().unwrap()));
        let (lo, hi) = ip_range("10.1.2.3").unwrap();
        assert_eq!((lo, hi), (lo, lo));
        let (lo, hi) = ip_range("fd00::/16").unwrap();
        assert_eq!(lo, "fd00::".parse::<Ipv6Addr>().unwrap());
        assert_eq!(
            hi,
            "fd00:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
                .parse::<Ipv6Addr>()
                .unwrap()
        );
        assert!(ip_range("10.0.0.0/33").is_none());
        assert!(ip_range("nope").is_none());
    }
}
