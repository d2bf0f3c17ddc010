//! Evaluates a parsed TraceQL query on one trace: each `{ }` filter yields the set of spans for which
//! its condition holds; spanset `&&` needs both sides non-empty, `||` either; the pipeline narrows the
//! result (aggregates keep or drop the whole set, a filter stage intersects).

use std::cmp::Ordering;

use strata_store::traces::{
    hex, AttrScope, DictValue, Resource, Scope, Span, SpanCondition, SpanKind, StatusCode, Trace,
    TraceSummary, Value,
};

use super::parser::{
    Aggregate, AttrSel, CmpOp, Expr, Field, Intrinsic, Literal, Query, SpansetExpr, Stage,
};

/// One span of a trace with what it belongs to.
#[derive(Debug, Clone, Copy)]
pub struct SpanRef<'t> {
    pub resource: &'t Resource,
    pub scope: &'t Scope,
    pub span: &'t Span,
}

/// A typed value as TraceQL compares it.
#[derive(Debug, Clone, PartialEq)]
pub enum Typed<'a> {
    Str(&'a str),
    Owned(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// Nanoseconds.
    Duration(i64),
    Status(StatusCode),
    Kind(SpanKind),
}

impl Typed<'_> {
    fn as_str(&self) -> Option<&str> {
        match self {
            Typed::Str(s) => Some(s),
            Typed::Owned(s) => Some(s),
            _ => None,
        }
    }
    fn as_f64(&self) -> Option<f64> {
        match self {
            Typed::Int(i) => Some(*i as f64),
            Typed::Float(f) => Some(*f),
            Typed::Duration(d) => Some(*d as f64),
            _ => None,
        }
    }

    /// As an OTLP attribute value, for search results.
    pub fn to_value(&self) -> Value {
        match self {
            Typed::Str(s) => Value::Str((*s).to_owned()),
            Typed::Owned(s) => Value::Str(s.clone()),
            Typed::Int(i) => Value::Int(*i),
            Typed::Float(f) => Value::Double(*f),
            Typed::Bool(b) => Value::Bool(*b),
            Typed::Duration(d) => Value::Int(*d),
            Typed::Status(s) => Value::Str(s.keyword().to_owned()),
            Typed::Kind(k) => Value::Str(k.keyword().to_owned()),
        }
    }
}

fn push_value<'a>(v: &'a Value, out: &mut Vec<Typed<'a>>) {
    match v {
        Value::Str(s) => out.push(Typed::Str(s)),
        Value::Int(i) => out.push(Typed::Int(*i)),
        Value::Double(f) => out.push(Typed::Float(*f)),
        Value::Bool(b) => out.push(Typed::Bool(*b)),
        // An array attribute matches when any element does.
        Value::Array(a) => a.iter().for_each(|x| push_value(x, out)),
        Value::Empty | Value::Bytes(_) | Value::KvList(_) => {}
    }
}

fn attr<'a>(attrs: &'a [strata_store::traces::KeyValue], name: &str, out: &mut Vec<Typed<'a>>) {
    if let Some(kv) = attrs.iter().find(|kv| kv.key == name) {
        push_value(&kv.value, out);
    }
}

/// Every value `field` has on span `s` (several for arrays, events and links; none when absent).
pub fn values<'t>(field: &Field, s: &SpanRef<'t>, summary: &'t TraceSummary) -> Vec<Typed<'t>> {
    let mut out = Vec::new();
    let span = s.span;
    match field {
        Field::Intrinsic(i) => match i {
            Intrinsic::Name => out.push(Typed::Str(&span.name)),
            Intrinsic::Status => out.push(Typed::Status(span.status_code)),
            Intrinsic::StatusMessage => out.push(Typed::Str(&span.status_message)),
            Intrinsic::Kind => out.push(Typed::Kind(span.kind)),
            Intrinsic::Duration => out.push(Typed::Duration(span.duration_nanos() as i64)),
            Intrinsic::RootName => out.push(Typed::Str(&summary.root_span_name)),
            Intrinsic::RootServiceName => out.push(Typed::Str(&summary.root_service_name)),
            Intrinsic::TraceDuration => out.push(Typed::Duration(summary.duration_nanos() as i64)),
            Intrinsic::SpanId => out.push(Typed::Owned(hex(&span.span_id))),
            Intrinsic::ParentId => out.push(Typed::Owned(hex(&span.parent_span_id))),
            Intrinsic::TraceId => out.push(Typed::Owned(hex(&span.trace_id))),
            Intrinsic::EventName => out.extend(span.events.iter().map(|e| Typed::Str(&e.name))),
            Intrinsic::InstrumentationName => out.push(Typed::Str(&s.scope.name)),
            Intrinsic::InstrumentationVersion => out.push(Typed::Str(&s.scope.version)),
        },
        Field::Attr { scope, name } => match scope {
            AttrSel::Resource => attr(&s.resource.attributes, name, &mut out),
            AttrSel::Span => attr(&span.attributes, name, &mut out),
            AttrSel::Any => {
                attr(&span.attributes, name, &mut out);
                if out.is_empty() {
                    attr(&s.resource.attributes, name, &mut out);
                }
            }
            AttrSel::Event => span
                .events
                .iter()
                .for_each(|e| attr(&e.attributes, name, &mut out)),
            AttrSel::Link => span
                .links
                .iter()
                .for_each(|l| attr(&l.attributes, name, &mut out)),
        },
    }
    out
}

fn order(v: &Typed<'_>, lit: &Literal) -> Option<Ordering> {
    match (v, lit) {
        (_, Literal::Str(l)) => v.as_str().map(|s| s.cmp(l.as_str())),
        (Typed::Duration(d), Literal::Duration(l)) => Some(d.cmp(l)),
        (Typed::Int(i), Literal::Int(l)) => Some(i.cmp(l)),
        (Typed::Int(_) | Typed::Float(_), Literal::Int(_) | Literal::Float(_)) => {
            let l = match lit {
                Literal::Int(i) => *i as f64,
                Literal::Float(f) => *f,
                _ => return None,
            };
            v.as_f64()?.partial_cmp(&l)
        }
        (Typed::Bool(b), Literal::Bool(l)) => Some(b.cmp(l)),
        (Typed::Status(s), Literal::Status(l)) => Some(s.cmp(l)),
        (Typed::Kind(k), Literal::Kind(l)) => Some(k.cmp(l)),
        _ => None,
    }
}

fn compare(vals: &[Typed<'_>], op: CmpOp, lit: &Literal, regex: Option<&regex::Regex>) -> bool {
    if *lit == Literal::Nil {
        return match op {
            CmpOp::Eq => vals.is_empty(),
            CmpOp::Ne => !vals.is_empty(),
            _ => false,
        };
    }
    vals.iter().any(|v| match op {
        CmpOp::Re | CmpOp::NotRe => {
            let (Some(s), Some(re)) = (v.as_str(), regex) else {
                return false;
            };
            re.is_match(s) == (op == CmpOp::Re)
        }
        _ => match order(v, lit) {
            None => false,
            Some(o) => match op {
                CmpOp::Eq => o == Ordering::Equal,
                CmpOp::Ne => o != Ordering::Equal,
                CmpOp::Gt => o == Ordering::Greater,
                CmpOp::Ge => o != Ordering::Less,
                CmpOp::Lt => o == Ordering::Less,
                CmpOp::Le => o != Ordering::Greater,
                CmpOp::Re | CmpOp::NotRe => false,
            },
        },
    })
}

fn holds(e: &Expr, s: &SpanRef<'_>, summary: &TraceSummary) -> bool {
    match e {
        Expr::And(a, b) => holds(a, s, summary) && holds(b, s, summary),
        Expr::Or(a, b) => holds(a, s, summary) || holds(b, s, summary),
        Expr::Not(a) => !holds(a, s, summary),
        Expr::Const(b) => *b,
        Expr::Cmp {
            field,
            op,
            value,
            regex,
        } => compare(&values(field, s, summary), *op, value, regex.as_ref()),
    }
}

/// Span indices (into `spans`) selected by a spanset expression, restricted to `within`.
fn spanset(
    e: &SpansetExpr,
    spans: &[SpanRef<'_>],
    within: &[usize],
    summary: &TraceSummary,
) -> Vec<usize> {
    match e {
        SpansetExpr::Filter(None) => within.to_vec(),
        SpansetExpr::Filter(Some(x)) => within
            .iter()
            .copied()
            .filter(|&i| holds(x, &spans[i], summary))
            .collect(),
        SpansetExpr::And(a, b) => {
            let l = spanset(a, spans, within, summary);
            if l.is_empty() {
                return l;
            }
            let r = spanset(b, spans, within, summary);
            if r.is_empty() {
                return r;
            }
            union(l, r)
        }
        SpansetExpr::Or(a, b) => union(
            spanset(a, spans, within, summary),
            spanset(b, spans, within, summary),
        ),
    }
}

fn union(mut a: Vec<usize>, b: Vec<usize>) -> Vec<usize> {
    a.extend(b);
    a.sort_unstable();
    a.dedup();
    a
}

fn aggregate(
    agg: Aggregate,
    field: Option<&Field>,
    set: &[usize],
    spans: &[SpanRef<'_>],
    summary: &TraceSummary,
) -> Option<Typed<'static>> {
    if agg == Aggregate::Count {
        return Some(Typed::Int(set.len() as i64));
    }
    let field = field?;
    let mut is_duration = false;
    let nums: Vec<f64> = set
        .iter()
        .flat_map(|&i| values(field, &spans[i], summary))
        .filter_map(|v| {
            is_duration |= matches!(v, Typed::Duration(_));
            v.as_f64()
        })
        .collect();
    if nums.is_empty() {
        return None;
    }
    let r = match agg {
        Aggregate::Avg => nums.iter().sum::<f64>() / nums.len() as f64,
        Aggregate::Min => nums.iter().copied().fold(f64::INFINITY, f64::min),
        Aggregate::Max => nums.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        Aggregate::Sum => nums.iter().sum(),
        Aggregate::Count => unreachable!("handled above"),
    };
    Some(if is_duration {
        Typed::Duration(r as i64)
    } else {
        Typed::Float(r)
    })
}

/// The spans of `trace` the query returns, in trace order; empty when the trace does not match.
pub fn evaluate<'t>(q: &Query, trace: &'t Trace, summary: &'t TraceSummary) -> Vec<SpanRef<'t>> {
    let spans: Vec<SpanRef<'t>> = trace
        .spans()
        .map(|(resource, scope, span)| SpanRef {
            resource,
            scope,
            span,
        })
        .collect();
    let all: Vec<usize> = (0..spans.len()).collect();
    let mut set = spanset(&q.spansets, &spans, &all, summary);
    for stage in &q.pipeline {
        if set.is_empty() {
            break;
        }
        match stage {
            Stage::Select(_) => {}
            Stage::Filter(e) => set = spanset(e, &spans, &set, summary),
            Stage::Aggregate {
                agg,
                field,
                op,
                value,
            } => {
                let keep = aggregate(*agg, field.as_ref(), &set, &spans, summary)
                    .is_some_and(|v| compare(&[v], *op, value, None));
                if !keep {
                    set.clear();
                }
            }
        }
    }
    set.into_iter().map(|i| spans[i]).collect()
}

/// Fields a search result shows for each matched span: attributes the query tests, then `select`s.
pub fn shown_fields(q: &Query) -> Vec<Field> {
    fn from_expr(e: &Expr, out: &mut Vec<Field>) {
        match e {
            Expr::And(a, b) | Expr::Or(a, b) => {
                from_expr(a, out);
                from_expr(b, out);
            }
            Expr::Not(a) => from_expr(a, out),
            Expr::Const(_) => {}
            Expr::Cmp { field, .. } => {
                let shown = matches!(
                    field,
                    Field::Attr { .. }
                        | Field::Intrinsic(
                            Intrinsic::Status | Intrinsic::Kind | Intrinsic::StatusMessage
                        )
                );
                if shown && !out.contains(field) {
                    out.push(field.clone());
                }
            }
        }
    }
    fn from_spanset(e: &SpansetExpr, out: &mut Vec<Field>) {
        match e {
            SpansetExpr::Filter(Some(x)) => from_expr(x, out),
            SpansetExpr::Filter(None) => {}
            SpansetExpr::And(a, b) | SpansetExpr::Or(a, b) => {
                from_spanset(a, out);
                from_spanset(b, out);
            }
        }
    }
    let mut out = Vec::new();
    from_spanset(&q.spansets, &mut out);
    for s in &q.pipeline {
        match s {
            Stage::Select(fields) => {
                for f in fields {
                    if !out.contains(f) {
                        out.push(f.clone());
                    }
                }
            }
            Stage::Filter(e) => from_spanset(e, &mut out),
            Stage::Aggregate { .. } => {}
        }
    }
    out
}

/// The shortest a trace can last and still match: a span `duration > d` (or `>= d`) that every match
/// needs means the trace, which runs from its first span's start to its last span's end, lasts at
/// least `d`. The store checks that against the summary in its index, so traces too short for the
/// query are skipped without decoding a span; 0 when the query implies nothing.
pub fn implied_min_trace_duration(q: &Query) -> u64 {
    fn from_expr(e: &Expr) -> u64 {
        match e {
            Expr::And(a, b) => from_expr(a).max(from_expr(b)),
            Expr::Or(a, b) => from_expr(a).min(from_expr(b)),
            Expr::Cmp {
                field: Field::Intrinsic(Intrinsic::Duration),
                op: CmpOp::Gt | CmpOp::Ge,
                value: Literal::Duration(d),
                ..
            } => u64::try_from(*d).unwrap_or(0),
            _ => 0,
        }
    }
    fn from_spanset(e: &SpansetExpr) -> u64 {
        match e {
            SpansetExpr::Filter(Some(x)) => from_expr(x),
            SpansetExpr::Filter(None) => 0,
            SpansetExpr::And(a, b) => from_spanset(a).max(from_spanset(b)),
            SpansetExpr::Or(a, b) => from_spanset(a).min(from_spanset(b)),
        }
    }
    from_spanset(&q.spansets)
}

/// Attribute equalities every matching trace must contain (a conjunction of alternatives), so the
/// store can skip traces from its postings. Only what is certain is returned; the query is still
/// evaluated on every candidate.
/// Conditions that some one span of a matching trace meets together, per spanset filter every
/// match needs: the conjuncts of `{ a && b && … }` that blocks can check on their columns (name,
/// status, kind, duration, resource string attributes). Others are left out, which only lets more
/// traces through to [`evaluate`].
pub fn span_filters(q: &Query) -> Vec<Vec<SpanCondition>> {
    fn conjuncts(e: &Expr, out: &mut Vec<SpanCondition>) {
        match e {
            Expr::And(a, b) => {
                conjuncts(a, out);
                conjuncts(b, out);
            }
            Expr::Cmp {
                field, op, value, ..
            } => out.extend(condition(field, *op, value)),
            _ => {}
        }
    }
    fn condition(field: &Field, op: CmpOp, value: &Literal) -> Option<SpanCondition> {
        let equal = match op {
            CmpOp::Eq => Some(true),
            CmpOp::Ne => Some(false),
            _ => None,
        };
        Some(match (field, value) {
            (Field::Intrinsic(Intrinsic::Name), Literal::Str(name)) => SpanCondition::Name {
                equal: equal?,
                name: name.clone(),
            },
            (Field::Intrinsic(Intrinsic::Status), Literal::Status(code)) => SpanCondition::Status {
                equal: equal?,
                code: *code,
            },
            (Field::Intrinsic(Intrinsic::Kind), Literal::Kind(kind)) => SpanCondition::Kind {
                equal: equal?,
                kind: *kind,
            },
            (Field::Intrinsic(Intrinsic::Duration), Literal::Duration(d)) => {
                let d = u64::try_from(*d).ok()?;
                let (min, max) = match op {
                    CmpOp::Eq => (d, d),
                    CmpOp::Gt => (d.checked_add(1)?, i64::MAX as u64),
                    CmpOp::Ge => (d, i64::MAX as u64),
                    CmpOp::Lt => (0, d.checked_sub(1)?),
                    CmpOp::Le => (0, d),
                    _ => return None,
                };
                SpanCondition::Duration { min, max }
            }
            (
                Field::Attr {
                    scope: AttrSel::Resource,
                    name,
                },
                Literal::Str(v),
            ) if op == CmpOp::Eq => SpanCondition::Resource {
                key: name.clone(),
                value: v.clone(),
            },
            _ => return None,
        })
    }
    fn filters(e: &SpansetExpr, out: &mut Vec<Vec<SpanCondition>>) {
        match e {
            SpansetExpr::Filter(Some(expr)) => {
                let mut c = Vec::new();
                conjuncts(expr, &mut c);
                if !c.is_empty() {
                    out.push(c);
                }
            }
            SpansetExpr::And(a, b) => {
                filters(a, out);
                filters(b, out);
            }
            SpansetExpr::Filter(None) | SpansetExpr::Or(..) => {}
        }
    }
    let mut out = Vec::new();
    filters(&q.spansets, &mut out);
    out
}

pub fn required_terms(q: &Query) -> Vec<Vec<(AttrScope, String, DictValue)>> {
    fn alternatives(e: &Expr) -> Option<Vec<(AttrScope, String, DictValue)>> {
        match e {
            Expr::Or(a, b) => {
                let mut v = alternatives(a)?;
                v.extend(alternatives(b)?);
                Some(v)
            }
            Expr::Cmp {
                field: Field::Intrinsic(Intrinsic::Name),
                op: CmpOp::Eq,
                value: Literal::Str(s),
                ..
            } => Some(vec![(
                AttrScope::Intrinsic,
                "name".into(),
                DictValue::Str(s.clone()),
            )]),
            Expr::Cmp {
                field: Field::Intrinsic(Intrinsic::Status),
                op: CmpOp::Eq,
                value: Literal::Status(c),
                ..
            } => Some(vec![(
                AttrScope::Intrinsic,
                "status".into(),
                DictValue::Int(*c as i64),
            )]),
            Expr::Cmp {
                field: Field::Attr { scope, name },
                op: CmpOp::Eq,
                value,
                ..
            } => {
                let values = match value {
                    Literal::Str(s) => vec![DictValue::Str(s.clone())],
                    Literal::Bool(b) => vec![DictValue::Bool(*b)],
                    Literal::Int(i) => {
                        vec![DictValue::Int(*i), DictValue::Double((*i as f64).to_bits())]
                    }
                    _ => return None,
                };
                let scopes: &[AttrScope] = match scope {
                    AttrSel::Resource => &[AttrScope::Resource],
                    AttrSel::Span => &[AttrScope::Span],
                    AttrSel::Any => &[AttrScope::Span, AttrScope::Resource],
                    AttrSel::Event | AttrSel::Link => return None,
                };
                Some(
                    scopes
                        .iter()
                        .flat_map(|s| values.iter().map(move |v| (*s, name.clone(), v.clone())))
                        .collect(),
                )
            }
            _ => None,
        }
    }
    fn conjuncts(e: &Expr, out: &mut Vec<Vec<(AttrScope, String, DictValue)>>) {
        match e {
            Expr::And(a, b) => {
                conjuncts(a, out);
                conjuncts(b, out);
            }
            other => out.extend(alternatives(other)),
        }
    }
    fn from_spanset(e: &SpansetExpr, out: &mut Vec<Vec<(AttrScope, String, DictValue)>>) {
        match e {
            SpansetExpr::Filter(Some(x)) => conjuncts(x, out),
            SpansetExpr::Filter(None) | SpansetExpr::Or(..) => {}
            SpansetExpr::And(a, b) => {
                from_spanset(a, out);
                from_spanset(b, out);
            }
        }
    }
    let mut out = Vec::new();
    from_spanset(&q.spansets, &mut out);
    out
}
