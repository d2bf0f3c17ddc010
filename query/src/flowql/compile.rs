//! From a parsed filter to the flow store's [`Filter`]. The meaning checks live here: a field must
//! exist and be searchable, an operator must suit the field's kind, a value must parse as that kind.
//! Each error points at the offending part of the filter. How a filter runs over a partition (on its
//! key table or its columns) is the store's business.

use std::net::{IpAddr, Ipv6Addr};

use strata_store::flows::filter::{Cmp, Filter, Test};
use strata_store::flows::index::to_ipv6;
use strata_store::flows::record::{field_index, FieldKind, FIELDS};

use super::parser::{Comparison, Expr, FilterError, Literal, Op};

fn error(position: usize, expected: impl Into<String>, found: impl Into<String>) -> FilterError {
    FilterError {
        position,
        expected: expected.into(),
        found: found.into(),
    }
}

/// Checks a parsed filter against the flow schema.
pub fn compile(expr: &Expr) -> Result<Filter, FilterError> {
    Ok(match expr {
        Expr::All => Filter::All,
        Expr::Cmp(c) => comparison(c)?,
        Expr::Not(e) => Filter::Not(Box::new(compile(e)?)),
        Expr::And(es) => Filter::And(es.iter().map(compile).collect::<Result<_, _>>()?),
        Expr::Or(es) => Filter::Or(es.iter().map(compile).collect::<Result<_, _>>()?),
    })
}

fn comparison(c: &Comparison) -> Result<Filter, FilterError> {
    let i = field_index(&c.field).ok_or_else(|| {
        error(
            c.field_pos,
            "a flow field (see /api/v1/flows/fields)",
            format!("`{}`", c.field),
        )
    })?;
    let def = &FIELDS[i];
    if def.kind == FieldKind::StoredList {
        return Err(error(
            c.field_pos,
            "a searchable field",
            format!("`{}`, which is stored only", c.field),
        ));
    }
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
    let cmp = match c.op {
        Op::Eq | Op::Ne | Op::Match | Op::NotMatch => Cmp::Eq,
        Op::Gt => Cmp::Gt,
        Op::Ge => Cmp::Ge,
        Op::Lt => Cmp::Lt,
        Op::Le => Cmp::Le,
    };
    let test = match def.kind {
        FieldKind::Str | FieldKind::StrList => {
            let value = c.value.text();
            match c.op {
                Op::Match | Op::NotMatch => {
                    // Matched against the whole value.
                    let re = regex::Regex::new(&format!("^(?:{value})$")).map_err(|e| {
                        error(
                            c.value_pos,
                            "a valid regular expression (matched against the whole value)",
                            format!("{value:?}: {e}"),
                        )
                    })?;
                    Test::Regex(re)
                }
                _ => Test::Text(value),
            }
        }
        FieldKind::U64 | FieldKind::Counts => match &c.value {
            Literal::Int(n) => Test::Uint(cmp, *n),
            other => {
                return Err(error(
                    c.value_pos,
                    format!("an unsigned integer for {}", c.field),
                    format!("`{}`", other.text()),
                ))
            }
        },
        FieldKind::Time => Test::Time(
            cmp,
            time_value(&c.value).ok_or_else(|| {
                error(
                    c.value_pos,
                    format!("Unix nanoseconds or a quoted RFC 3339 time for {}", c.field),
                    format!("`{}`", c.value.text()),
                )
            })?,
        ),
        FieldKind::Ip => {
            let (lo, hi) = ip_range(&c.value.text()).ok_or_else(|| {
                error(
                    c.value_pos,
                    format!("an IP address or CIDR prefix for {}", c.field),
                    format!("`{}`", c.value.text()),
                )
            })?;
            Test::Ip(lo, hi)
        }
        FieldKind::StoredList => unreachable!("refused above"),
    };
    let cond = Filter::Cond { field: i, test };
    Ok(match c.op {
        Op::Ne | Op::NotMatch => Filter::Not(Box::new(cond)),
        _ => cond,
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
