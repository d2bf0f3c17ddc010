//! Binary operators: arithmetic, comparison (with `bool`), `atan2`, and the set operators, with
//! vector matching (`on`/`ignoring`, `group_left`/`group_right`) as in Prometheus's `VectorBinop`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use promql_parser::parser::token::{
    TokenId, T_ADD, T_ATAN2, T_DIV, T_EQLC, T_GTE, T_GTR, T_LAND, T_LOR, T_LSS, T_LTE, T_LUNLESS,
    T_MOD, T_MUL, T_NEQ, T_POW, T_SUB,
};
use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};
use strata_store::{Label, Labels, METRIC_NAME};

use crate::error::{QueryError, Result};
use crate::evaluator::{Evaluator, Grid};
use crate::value::{AddressHasher, ByIdentity, Evaluated, IdentityMap, Series, StepSample};

fn is_comparison(op: TokenId) -> bool {
    matches!(op, T_EQLC | T_NEQ | T_GTR | T_LSS | T_GTE | T_LTE)
}

/// Arithmetic (and `atan2`) change what the metric means, so the result loses its name.
fn changes_metric_schema(op: TokenId) -> bool {
    matches!(op, T_ADD | T_SUB | T_MUL | T_DIV | T_POW | T_MOD | T_ATAN2)
}

/// One element operation: the value and whether a comparison keeps the element. Comparisons yield
/// the left value.
pub(crate) fn apply(op: TokenId, l: f64, r: f64) -> Result<(f64, bool)> {
    Ok(match op {
        T_ADD => (l + r, true),
        T_SUB => (l - r, true),
        T_MUL => (l * r, true),
        T_DIV => (l / r, true),
        T_POW => (l.powf(r), true),
        T_MOD => (l % r, true),
        T_ATAN2 => (l.atan2(r), true),
        T_EQLC => (l, l == r),
        T_NEQ => (l, l != r),
        T_GTR => (l, l > r),
        T_LSS => (l, l < r),
        T_GTE => (l, l >= r),
        T_LTE => (l, l <= r),
        _ => return Err(QueryError::exec("unsupported binary operator")),
    })
}

pub(crate) fn eval(ev: &mut Evaluator<'_>, bin: &BinaryExpr, grid: Grid) -> Result<Evaluated> {
    let op = bin.op.id();
    let return_bool = bin.return_bool();
    let lhs = ev.eval(&bin.lhs, grid)?;
    let rhs = ev.eval(&bin.rhs, grid)?;
    match (lhs, rhs) {
        (Evaluated::Scalar(a), Evaluated::Scalar(b)) => {
            let mut out = Vec::with_capacity(a.len());
            for (l, r) in a.into_iter().zip(b) {
                let (v, keep) = apply(op, l, r)?;
                out.push(if is_comparison(op) {
                    f64::from(u8::from(keep))
                } else {
                    v
                });
            }
            Ok(Evaluated::Scalar(out))
        }
        (Evaluated::Vector(v), Evaluated::Scalar(s)) => {
            vector_scalar(op, v, &s, false, return_bool, grid)
        }
        (Evaluated::Scalar(s), Evaluated::Vector(v)) => {
            vector_scalar(op, v, &s, true, return_bool, grid)
        }
        (l @ Evaluated::Vector(_), r @ Evaluated::Vector(_)) => {
            let matching = Matching::from_expr(bin);
            let inputs = [l, r];
            let mut sigs = SignatureCache::default();
            let series = ev.step_eval(grid, &inputs, |_, _, mut args| {
                let rv = args.pop().unwrap_or_default();
                let lv = args.pop().unwrap_or_default();
                match op {
                    T_LAND | T_LOR | T_LUNLESS => {
                        Ok(set_operation(op, lv, rv, &matching, &mut sigs))
                    }
                    _ => vector_vector(op, lv, rv, &matching, return_bool, &mut sigs),
                }
            })?;
            Ok(Evaluated::Vector(series))
        }
        _ => Err(QueryError::exec(
            "binary expression must contain only scalar and instant vector types",
        )),
    }
}

fn vector_scalar(
    op: TokenId,
    series: Vec<Series>,
    scalars: &[f64],
    scalar_on_left: bool,
    return_bool: bool,
    grid: Grid,
) -> Result<Evaluated> {
    let mut out = Vec::with_capacity(series.len());
    for mut s in series {
        let mut err = None;
        s.points.retain_mut(|p| {
            let x = scalars[((p.t - grid.start) / grid.interval) as usize];
            let (l, r) = if scalar_on_left { (x, p.v) } else { (p.v, x) };
            match apply(op, l, r) {
                Ok((mut v, keep)) => {
                    // A comparison always yields the vector's value, whichever side it is on.
                    if is_comparison(op) {
                        v = p.v;
                    }
                    if return_bool {
                        p.v = f64::from(u8::from(keep));
                        true
                    } else {
                        p.v = v;
                        keep
                    }
                }
                Err(e) => {
                    err = Some(e);
                    false
                }
            }
        });
        if let Some(e) = err {
            return Err(e);
        }
        if s.points.is_empty() {
            continue;
        }
        if changes_metric_schema(op) || return_bool {
            s.drop_name = true;
        }
        out.push(s);
    }
    Ok(Evaluated::Vector(out))
}

/// The vector-matching part of a binary expression.
pub(crate) struct Matching {
    card: VectorMatchCardinality,
    /// `Some(true)` for `on`, `Some(false)` for `ignoring`.
    on: bool,
    labels: Vec<String>,
    include: Vec<String>,
    fill_lhs: Option<f64>,
    fill_rhs: Option<f64>,
}

impl Matching {
    fn from_expr(bin: &BinaryExpr) -> Self {
        let Some(m) = &bin.modifier else {
            return Matching {
                card: VectorMatchCardinality::OneToOne,
                on: false,
                labels: Vec::new(),
                include: Vec::new(),
                fill_lhs: None,
                fill_rhs: None,
            };
        };
        let (on, labels) = match &m.matching {
            Some(LabelModifier::Include(l)) => (true, l.labels.clone()),
            Some(LabelModifier::Exclude(l)) => (false, l.labels.clone()),
            None => (false, Vec::new()),
        };
        let include = m
            .card
            .labels()
            .map(|l| l.labels.clone())
            .unwrap_or_default();
        Matching {
            card: m.card.clone(),
            on,
            labels,
            include,
            fill_lhs: m.fill_values.lhs,
            fill_rhs: m.fill_values.rhs,
        }
    }

    /// The labels two elements must share to match: the `on` labels, or every label except the
    /// `ignoring` ones and the metric name.
    fn signature(&self, labels: &Labels) -> Labels {
        let kept: Vec<Label> = labels
            .iter()
            .filter(|l| {
                if self.on {
                    self.labels.contains(&l.name)
                } else {
                    l.name != METRIC_NAME && !self.labels.contains(&l.name)
                }
            })
            .cloned()
            .collect();
        Labels::from_sorted(kept)
    }
}

/// Per-node caches: matching signatures of input label sets, and result label sets of matched
/// pairs, so steps after the first allocate nothing.
#[derive(Default)]
struct SignatureCache {
    map: IdentityMap<Arc<Labels>>,
    /// Label sets by content, so equal signatures and results share one `Arc` and comparing
    /// identities is comparing contents.
    interned: HashMap<Arc<Labels>, Arc<Labels>>,
    results: HashMap<
        (ByIdentity, ByIdentity),
        Arc<Labels>,
        std::hash::BuildHasherDefault<AddressHasher>,
    >,
}

impl SignatureCache {
    fn get(&mut self, m: &Matching, labels: &Arc<Labels>) -> Arc<Labels> {
        let key = ByIdentity(labels.clone());
        if let Some(s) = self.map.get(&key) {
            return s.clone();
        }
        let sig = Arc::new(m.signature(labels));
        let sig = self.interned.entry(sig.clone()).or_insert(sig).clone();
        self.map.insert(key, sig.clone());
        sig
    }

    fn result(
        &mut self,
        op: TokenId,
        many: &Arc<Labels>,
        one: &Arc<Labels>,
        m: &Matching,
    ) -> Arc<Labels> {
        let key = (ByIdentity(many.clone()), ByIdentity(one.clone()));
        if let Some(r) = self.results.get(&key) {
            return r.clone();
        }
        let r = Arc::new(result_labels(op, many, one, m));
        let r = self.interned.entry(r.clone()).or_insert(r).clone();
        self.results.insert(key, r.clone());
        r
    }
}

fn set_operation(
    op: TokenId,
    lhs: Vec<StepSample>,
    rhs: Vec<StepSample>,
    m: &Matching,
    sigs: &mut SignatureCache,
) -> Vec<StepSample> {
    match op {
        T_LAND => {
            if lhs.is_empty() || rhs.is_empty() {
                return Vec::new();
            }
            let right: HashSet<Arc<Labels>> = rhs.iter().map(|s| sigs.get(m, &s.labels)).collect();
            lhs.into_iter()
                .filter(|s| right.contains(&sigs.get(m, &s.labels)))
                .collect()
        }
        T_LOR => {
            if lhs.is_empty() || rhs.is_empty() {
                let mut out = lhs;
                out.extend(rhs);
                return out;
            }
            let left: HashSet<Arc<Labels>> = lhs.iter().map(|s| sigs.get(m, &s.labels)).collect();
            let mut out = lhs;
            out.extend(
                rhs.into_iter()
                    .filter(|s| !left.contains(&sigs.get(m, &s.labels))),
            );
            out
        }
        _ => {
            if lhs.is_empty() || rhs.is_empty() {
                return lhs;
            }
            let right: HashSet<Arc<Labels>> = rhs.iter().map(|s| sigs.get(m, &s.labels)).collect();
            lhs.into_iter()
                .filter(|s| !right.contains(&sigs.get(m, &s.labels)))
                .collect()
        }
    }
}

/// Labels of a matched result (Prometheus `resultMetric`).
fn result_labels(op: TokenId, many: &Labels, one: &Labels, m: &Matching) -> Labels {
    let one_to_one = matches!(m.card, VectorMatchCardinality::OneToOne);
    let mut kept: Vec<Label> = many
        .iter()
        .filter(|l| {
            if changes_metric_schema(op) && l.name == METRIC_NAME {
                return false;
            }
            if one_to_one {
                if m.on {
                    return m.labels.contains(&l.name);
                }
                return !m.labels.contains(&l.name);
            }
            true
        })
        .cloned()
        .collect();
    for name in &m.include {
        kept.retain(|l| &l.name != name);
        if let Some(v) = one.get(name) {
            kept.push(Label::new(name.clone(), v));
        }
    }
    kept.sort_by(|a, b| a.name.cmp(&b.name));
    Labels::from_sorted(kept)
}

fn matched_labels_text(labels: &Labels, m: &Matching) -> String {
    m.signature(labels).to_string()
}

fn vector_vector(
    op: TokenId,
    lhs: Vec<StepSample>,
    rhs: Vec<StepSample>,
    m: &Matching,
    return_bool: bool,
    sigs: &mut SignatureCache,
) -> Result<Vec<StepSample>> {
    if (lhs.is_empty() && rhs.is_empty())
        || ((lhs.is_empty() || rhs.is_empty()) && m.fill_lhs.is_none() && m.fill_rhs.is_none())
    {
        return Ok(Vec::new());
    }
    // Group_right is evaluated as group_left with the sides swapped.
    let swapped = matches!(m.card, VectorMatchCardinality::OneToMany(_));
    let (many, one) = if swapped { (rhs, lhs) } else { (lhs, rhs) };
    let (fill_one, fill_many) = if swapped {
        (m.fill_lhs, m.fill_rhs)
    } else {
        (m.fill_rhs, m.fill_lhs)
    };

    let mut one_by_sig: IdentityMap<StepSample> = IdentityMap::default();
    for s in one {
        let sig = ByIdentity(sigs.get(m, &s.labels));
        if let Some(dup) = one_by_sig.get(&sig) {
            let side = if swapped { "left" } else { "right" };
            return Err(QueryError::exec(format!(
                "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                matched_labels_text(&s.labels, m),
                s.labels,
                dup.labels
            )));
        }
        one_by_sig.insert(sig, s);
    }

    let one_to_one = matches!(m.card, VectorMatchCardinality::OneToOne);
    // Results per matched signature: one-to-one allows one, many-to-one needs distinct results.
    let mut matched: IdentityMap<
        HashSet<ByIdentity, std::hash::BuildHasherDefault<AddressHasher>>,
    > = IdentityMap::default();
    let mut out = Vec::new();
    let combine = |sigs: &mut SignatureCache,
                   matched: &mut IdentityMap<
        HashSet<ByIdentity, std::hash::BuildHasherDefault<AddressHasher>>,
    >,
                   ms: &StepSample,
                   os: &StepSample,
                   sig: &ByIdentity,
                   out: &mut Vec<StepSample>|
     -> Result<()> {
        let (l, r) = if swapped { (os.f, ms.f) } else { (ms.f, os.f) };
        let (mut v, keep) = apply(op, l, r)?;
        if return_bool {
            v = f64::from(u8::from(keep));
        } else if is_comparison(op) && swapped {
            // The result carries the left operand's value, which is on the "one" side here.
            v = l;
        }
        let labels = sigs.result(op, &ms.labels, &os.labels, m);
        let seen = matched.entry(sig.clone()).or_default();
        let result = ByIdentity(labels.clone());
        if one_to_one {
            if !seen.is_empty() {
                return Err(QueryError::exec(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
                ));
            }
            seen.insert(result);
        } else if !seen.insert(result) {
            return Err(QueryError::exec(
                "multiple matches for labels: grouping labels must ensure unique matches",
            ));
        }
        if keep || return_bool {
            out.push(StepSample {
                labels,
                f: v,
                drop_name: return_bool || (ms.drop_name && !changes_metric_schema(op)),
            });
        }
        Ok(())
    };
    for ms in &many {
        let sig = ByIdentity(sigs.get(m, &ms.labels));
        match one_by_sig.get(&sig) {
            Some(os) => combine(sigs, &mut matched, ms, os, &sig, &mut out)?,
            None => {
                if let Some(fill) = fill_one {
                    let os = StepSample {
                        labels: sig.0.clone(),
                        f: fill,
                        drop_name: false,
                    };
                    combine(sigs, &mut matched, ms, &os, &sig, &mut out)?;
                }
            }
        }
    }
    if let Some(fill) = fill_many {
        let mut unmatched: Vec<(&ByIdentity, &StepSample)> = one_by_sig
            .iter()
            .filter(|(sig, _)| !matched.contains_key(*sig))
            .collect();
        unmatched.sort_by(|a, b| a.0 .0.cmp(&b.0 .0));
        for (sig, os) in unmatched {
            let ms = StepSample {
                labels: sig.0.clone(),
                f: fill,
                drop_name: false,
            };
            combine(sigs, &mut matched, &ms, os, sig, &mut out)?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(pairs: &[(&str, &str)], f: f64) -> StepSample {
        StepSample {
            labels: Arc::new(Labels::from_pairs(pairs.iter().copied())),
            f,
            drop_name: false,
        }
    }

    fn default_matching() -> Matching {
        Matching {
            card: VectorMatchCardinality::OneToOne,
            on: false,
            labels: Vec::new(),
            include: Vec::new(),
            fill_lhs: None,
            fill_rhs: None,
        }
    }

    #[test]
    fn set_operators_match_on_labels_without_the_name() {
        let lhs = vec![
            sample(&[("__name__", "a"), ("x", "1")], 1.0),
            sample(&[("__name__", "a"), ("x", "2")], 2.0),
        ];
        let rhs = vec![
            sample(&[("__name__", "b"), ("x", "2")], 20.0),
            sample(&[("__name__", "b"), ("x", "3")], 30.0),
        ];
        let m = default_matching();
        let mut sigs = SignatureCache::default();
        let and = set_operation(T_LAND, lhs.clone(), rhs.clone(), &m, &mut sigs);
        assert_eq!(and.iter().map(|s| s.f).collect::<Vec<_>>(), [2.0]);
        let or = set_operation(T_LOR, lhs.clone(), rhs.clone(), &m, &mut sigs);
        assert_eq!(or.iter().map(|s| s.f).collect::<Vec<_>>(), [1.0, 2.0, 30.0]);
        let unless = set_operation(T_LUNLESS, lhs, rhs, &m, &mut sigs);
        assert_eq!(unless.iter().map(|s| s.f).collect::<Vec<_>>(), [1.0]);
    }

    #[test]
    fn group_right_keeps_the_right_side_labels_and_left_value_for_comparisons() {
        let one = vec![sample(&[("__name__", "limit"), ("job", "j")], 5.0)];
        let many = vec![
            sample(&[("__name__", "usage"), ("job", "j"), ("pod", "p1")], 3.0),
            sample(&[("__name__", "usage"), ("job", "j"), ("pod", "p2")], 7.0),
        ];
        let m = Matching {
            card: VectorMatchCardinality::OneToMany(promql_parser::label::Labels::new(vec![])),
            on: true,
            labels: vec!["job".into()],
            ..default_matching()
        };
        let mut sigs = SignatureCache::default();
        // limit > on(job) group_right usage: keeps elements where 5 > usage, with the left value.
        let out = vector_vector(T_GTR, one, many, &m, false, &mut sigs).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].f, 5.0);
        assert_eq!(out[0].labels.get("pod"), Some("p1"));
    }

    #[test]
    fn duplicate_series_on_the_one_side_is_an_error() {
        let lhs = vec![sample(&[("x", "1"), ("y", "a")], 1.0)];
        let rhs = vec![
            sample(&[("x", "1"), ("y", "b")], 1.0),
            sample(&[("x", "1"), ("y", "c")], 2.0),
        ];
        let m = Matching {
            on: true,
            labels: vec!["x".into()],
            ..default_matching()
        };
        let err =
            vector_vector(T_ADD, lhs, rhs, &m, false, &mut SignatureCache::default()).unwrap_err();
        assert!(
            err.to_string()
                .contains("many-to-many matching not allowed"),
            "{err}"
        );
    }
}
