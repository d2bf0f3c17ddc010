//! Aggregation operators (`sum`, `avg`, `topk`, `count_values`, `limit_ratio`, …) with `by` and
//! `without`, evaluated per step as in Prometheus's `rangeEvalAgg`.

use std::collections::HashMap;
use std::sync::Arc;

use promql_parser::parser::token::{
    TokenId, T_AVG, T_BOTTOMK, T_COUNT, T_COUNT_VALUES, T_GROUP, T_LIMITK, T_LIMIT_RATIO, T_MAX,
    T_MIN, T_QUANTILE, T_STDDEV, T_STDVAR, T_SUM, T_TOPK,
};
use promql_parser::parser::{AggregateExpr, LabelModifier};
use strata_store::{Label, Labels, Sample, METRIC_NAME};

use crate::annotations;
use crate::error::{QueryError, Result};
use crate::evaluator::{Evaluator, Grid};
use crate::functions::{kahan_sum_inc, quantile, unwrap_parens};
use crate::value::{ByIdentity, Evaluated, IdentityMap, Series, StepSample};

/// How an aggregation groups its input.
struct Grouping {
    without: bool,
    labels: Vec<String>,
}

impl Grouping {
    fn from_modifier(m: &Option<LabelModifier>) -> Self {
        match m {
            Some(LabelModifier::Exclude(l)) => Grouping {
                without: true,
                labels: l.labels.clone(),
            },
            Some(LabelModifier::Include(l)) => Grouping {
                without: false,
                labels: l.labels.clone(),
            },
            None => Grouping {
                without: false,
                labels: Vec::new(),
            },
        }
    }

    /// The output labels of the group a series belongs to (Prometheus `generateGroupingLabels`):
    /// `without` also removes the metric name; `by` keeps only the listed labels.
    fn group_labels(&self, labels: &Labels) -> Labels {
        let kept: Vec<Label> = if self.without {
            labels
                .iter()
                .filter(|l| l.name != METRIC_NAME && !self.labels.contains(&l.name))
                .cloned()
                .collect()
        } else {
            labels
                .iter()
                .filter(|l| self.labels.contains(&l.name))
                .cloned()
                .collect()
        };
        Labels::from_sorted(kept)
    }
}

/// Per-step grouping with a cache from input label sets to group label sets; group label sets are
/// interned, so one group is one `Arc` and per-step lookups compare identities.
struct Grouper {
    grouping: Grouping,
    cache: IdentityMap<Arc<Labels>>,
    interned: HashMap<Labels, Arc<Labels>>,
}

impl Grouper {
    fn new(grouping: Grouping) -> Self {
        Grouper {
            grouping,
            cache: IdentityMap::default(),
            interned: HashMap::new(),
        }
    }

    fn group_of(&mut self, labels: &Arc<Labels>) -> Arc<Labels> {
        let key = ByIdentity(labels.clone());
        if let Some(g) = self.cache.get(&key) {
            return g.clone();
        }
        let g = self.grouping.group_labels(labels);
        let g = self
            .interned
            .entry(g.clone())
            .or_insert_with(|| Arc::new(g))
            .clone();
        self.cache.insert(key, g.clone());
        g
    }

    /// Splits a step's samples into groups, keeping first-seen group order.
    fn split(&mut self, samples: Vec<StepSample>) -> Vec<(Arc<Labels>, Vec<StepSample>)> {
        let mut index: IdentityMap<usize> = IdentityMap::default();
        let mut groups: Vec<(Arc<Labels>, Vec<StepSample>)> = Vec::new();
        for s in samples {
            let g = self.group_of(&s.labels);
            match index.get(&ByIdentity(g.clone())) {
                Some(&i) => groups[i].1.push(s),
                None => {
                    index.insert(ByIdentity(g.clone()), groups.len());
                    groups.push((g, vec![s]));
                }
            }
        }
        groups
    }
}

/// The running state of one group at one step.
#[derive(Debug, Default)]
struct Accumulator {
    count: f64,
    value: f64,
    kahan_c: f64,
    mean: f64,
    incremental_mean: bool,
    drop_name: bool,
    values: Vec<f64>,
}

impl Accumulator {
    fn add(&mut self, op: TokenId, f: f64, drop_name: bool) {
        self.drop_name |= drop_name;
        if self.count == 0.0 {
            self.count = 1.0;
            self.value = f;
            self.mean = f;
            self.kahan_c = 0.0;
            self.incremental_mean = false;
            match op {
                // A NaN or infinite first value poisons the variance, as in Prometheus.
                T_STDDEV | T_STDVAR => {
                    self.value = if f.is_nan() || f.is_infinite() {
                        f64::NAN
                    } else {
                        0.0
                    }
                }
                T_QUANTILE => self.values.push(f),
                T_GROUP => self.value = 1.0,
                _ => {}
            }
            return;
        }
        self.count += 1.0;
        match op {
            T_SUM => (self.value, self.kahan_c) = kahan_sum_inc(f, self.value, self.kahan_c),
            T_AVG => {
                // Kahan-summed direct mean while the sum stays finite, then an incremental mean.
                if !self.incremental_mean {
                    let (sum, c) = kahan_sum_inc(f, self.value, self.kahan_c);
                    if !sum.is_infinite() {
                        (self.value, self.kahan_c) = (sum, c);
                        return;
                    }
                    self.incremental_mean = true;
                    self.mean = self.value / (self.count - 1.0);
                    self.kahan_c /= self.count - 1.0;
                }
                let q = (self.count - 1.0) / self.count;
                (self.mean, self.kahan_c) =
                    kahan_sum_inc(f / self.count, q * self.mean, q * self.kahan_c);
            }
            T_MAX if self.value < f || self.value.is_nan() => self.value = f,
            T_MIN if self.value > f || self.value.is_nan() => self.value = f,
            T_STDDEV | T_STDVAR => {
                let delta = f - self.mean;
                self.mean += delta / self.count;
                self.value += delta * (f - self.mean);
            }
            T_QUANTILE => self.values.push(f),
            _ => {}
        }
    }

    /// The group's value; resets the accumulator for the next step.
    fn finish(&mut self, op: TokenId, q: f64) -> f64 {
        let v = match op {
            T_SUM => self.value + self.kahan_c,
            T_AVG if self.incremental_mean => self.mean + self.kahan_c,
            T_AVG => self.value / self.count + self.kahan_c / self.count,
            T_COUNT => self.count,
            T_STDVAR => self.value / self.count,
            T_STDDEV => (self.value / self.count).sqrt(),
            T_QUANTILE => quantile(q, &mut self.values),
            _ => self.value,
        };
        self.count = 0.0;
        self.drop_name = false;
        self.values.clear();
        v
    }
}

/// `sum`, `avg`, `count`, … : every input series is mapped to its group once, then each step folds
/// the series' values into per-group accumulators (Prometheus's `rangeEvalAgg`).
fn aggregate_by_group(
    ev: &mut Evaluator<'_>,
    op: TokenId,
    grouping: &Grouping,
    input: Vec<Series>,
    params: Option<&[f64]>,
    grid: Grid,
) -> Result<Vec<Series>> {
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut out: Vec<Series> = Vec::new();
    let mut series_group = Vec::with_capacity(input.len());
    for s in &input {
        let g = grouping.group_labels(&s.labels);
        let i = *index.entry(g).or_insert_with_key(|g| {
            out.push(Series {
                labels: Arc::new(g.clone()),
                points: Vec::new(),
                drop_name: false,
            });
            out.len() - 1
        });
        series_group.push(i);
    }
    let steps = grid.steps();
    if op != T_QUANTILE && out.len().saturating_mul(steps) <= SERIES_MAJOR_CELLS {
        return aggregate_series_major(ev, op, input, &series_group, out, grid);
    }
    let mut accumulators: Vec<Accumulator> =
        (0..out.len()).map(|_| Accumulator::default()).collect();
    let mut cursors = vec![0usize; input.len()];
    let mut produced = 0;
    for step in 0..grid.steps() {
        ev.check_interrupt()?;
        let ts = grid.ts(step);
        for (i, s) in input.iter().enumerate() {
            let c = &mut cursors[i];
            if let Some(p) = s.points.get(*c) {
                if p.t == ts {
                    accumulators[series_group[i]].add(op, p.v, s.drop_name);
                    *c += 1;
                }
            }
        }
        let q = params.map_or(f64::NAN, |p| p[step]);
        for (g, acc) in accumulators.iter_mut().enumerate() {
            if acc.count > 0.0 {
                out[g].drop_name |= acc.drop_name;
                let v = acc.finish(op, q);
                out[g].points.push(Sample::new(ts, v));
                produced += 1;
            }
        }
        ev.hold(produced)?;
        ev.release(produced);
    }
    out.retain(|s| !s.points.is_empty());
    Ok(out)
}

/// Groups × steps up to which [`aggregate_series_major`] keeps one accumulator per cell.
const SERIES_MAJOR_CELLS: usize = 1 << 18;

/// The same fold as the step-major loop, walking each series' points in order into an accumulator per
/// (group, step). Every cell still receives its values in input-series order, so results are identical
/// (Kahan and incremental-mean state included), but memory is read sequentially instead of touching
/// every series at every step.
fn aggregate_series_major(
    ev: &mut Evaluator<'_>,
    op: TokenId,
    input: Vec<Series>,
    series_group: &[usize],
    mut out: Vec<Series>,
    grid: Grid,
) -> Result<Vec<Series>> {
    let steps = grid.steps();
    let mut cells: Vec<Accumulator> = (0..out.len() * steps)
        .map(|_| Accumulator::default())
        .collect();
    for (i, s) in input.iter().enumerate() {
        ev.check_interrupt()?;
        let row = series_group[i] * steps;
        for p in &s.points {
            let step = ((p.t - grid.start) / grid.interval.max(1)) as usize;
            if let Some(acc) = cells.get_mut(row + step) {
                acc.add(op, p.v, s.drop_name);
            }
        }
    }
    drop(input);
    let mut produced = 0;
    for (g, series) in out.iter_mut().enumerate() {
        for (step, acc) in cells[g * steps..(g + 1) * steps].iter_mut().enumerate() {
            ev.check_interrupt()?;
            if acc.count > 0.0 {
                series.drop_name |= acc.drop_name;
                let v = acc.finish(op, f64::NAN);
                series.points.push(Sample::new(grid.ts(step), v));
                produced += 1;
            }
        }
    }
    ev.hold(produced)?;
    ev.release(produced);
    out.retain(|s| !s.points.is_empty());
    Ok(out)
}

pub(crate) fn eval(ev: &mut Evaluator<'_>, agg: &AggregateExpr, grid: Grid) -> Result<Evaluated> {
    let op = agg.op.id();
    let mut grouper = Grouper::new(Grouping::from_modifier(&agg.modifier));
    let expr = unwrap_parens(&agg.expr);

    if op == T_COUNT_VALUES {
        let Some(param) = agg.param.as_deref() else {
            return Err(QueryError::exec("count_values needs a label name"));
        };
        let promql_parser::parser::Expr::StringLiteral(label) = unwrap_parens(param) else {
            return Err(QueryError::exec("count_values needs a string label name"));
        };
        let label = label.val.clone();
        if !ev.is_valid_label_name(&label) {
            return Err(QueryError::exec(format!(
                "invalid label name {}",
                ev.go_quoted(&label)
            )));
        }
        if !grouper.grouping.without {
            grouper.grouping.labels.push(label.clone());
        }
        let input = [ev.eval(expr, grid)?];
        let series = ev.step_eval(grid, &input, |_, _, mut args| {
            let v = args.swap_remove(0);
            let mut counts: Vec<(Arc<Labels>, f64)> = Vec::new();
            let mut index: HashMap<Arc<Labels>, usize> = HashMap::new();
            for s in v {
                // The value label makes a new label set per sample, so group by content here;
                // interning keeps one `Arc` per group across steps.
                let with_value = set_label(&s.labels, &label, &format_value(s.f));
                let group = grouper.grouping.group_labels(&with_value);
                let g = grouper
                    .interned
                    .entry(group.clone())
                    .or_insert_with(|| Arc::new(group))
                    .clone();
                match index.get(&g) {
                    Some(&i) => counts[i].1 += 1.0,
                    None => {
                        index.insert(g.clone(), counts.len());
                        counts.push((g, 1.0));
                    }
                }
            }
            Ok(counts
                .into_iter()
                .map(|(labels, f)| StepSample {
                    labels,
                    f,
                    drop_name: false,
                })
                .collect())
        })?;
        return Ok(Evaluated::Vector(series));
    }

    let params = match agg.param.as_deref() {
        Some(p)
            if matches!(
                op,
                T_TOPK | T_BOTTOMK | T_LIMITK | T_LIMIT_RATIO | T_QUANTILE
            ) =>
        {
            Some(ev.eval_scalar(unwrap_parens(p), grid)?)
        }
        _ => None,
    };
    if let Some(ps) = &params {
        check_params(ev, op, ps)?;
    }
    let input = [ev.eval(expr, grid)?];
    if !matches!(op, T_TOPK | T_BOTTOMK | T_LIMITK | T_LIMIT_RATIO) {
        let [Evaluated::Vector(series)] = input else {
            return Err(QueryError::exec("expected instant vector"));
        };
        return Ok(Evaluated::Vector(aggregate_by_group(
            ev,
            op,
            &grouper.grouping,
            series,
            params.as_deref(),
            grid,
        )?));
    }
    let total_series = match &input[0] {
        Evaluated::Vector(s) => s.len(),
        _ => 0,
    };
    let series = ev.step_eval(grid, &input, |_, ts, mut args| {
        let v = args.swap_remove(0);
        let param = params
            .as_ref()
            .map(|p| p[((ts - grid.start) / grid.interval) as usize]);
        let groups = grouper.split(v);
        let mut out = Vec::with_capacity(groups.len());
        for (_, members) in groups {
            select_k(
                op,
                param.unwrap_or(f64::NAN),
                total_series,
                members,
                &mut out,
            );
        }
        Ok(out)
    })?;
    Ok(Evaluated::Vector(series))
}

/// Parameter checks Prometheus makes before evaluating (errors for NaN `k`, warnings for quantiles
/// and ratios out of range).
fn check_params(ev: &mut Evaluator<'_>, op: TokenId, ps: &[f64]) -> Result<()> {
    let max = ps.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let min = ps.iter().copied().fold(f64::INFINITY, f64::min);
    let any_nan = ps.iter().any(|p| p.is_nan());
    match op {
        T_TOPK | T_BOTTOMK | T_LIMITK => {
            if max < 1.0 && !any_nan {
                return Ok(());
            }
            if any_nan {
                return Err(QueryError::exec("Parameter value is NaN"));
            }
            if min <= i64::MIN as f64 {
                return Err(QueryError::exec(format!(
                    "Scalar value {min} underflows int64"
                )));
            }
            if max >= i64::MAX as f64 {
                return Err(QueryError::exec(format!(
                    "Scalar value {max} overflows int64"
                )));
            }
        }
        T_LIMIT_RATIO => {
            if max == 0.0 && min == 0.0 {
                return Ok(());
            }
            if any_nan {
                return Err(QueryError::exec("Ratio value is NaN"));
            }
            if max > 1.0 {
                ev.annotations.warn(annotations::invalid_ratio(max, 1.0));
            }
            if min < -1.0 {
                ev.annotations.warn(annotations::invalid_ratio(min, -1.0));
            }
        }
        T_QUANTILE => {
            if any_nan {
                ev.annotations.warn(annotations::invalid_quantile(f64::NAN));
            }
            if max > 1.0 {
                ev.annotations.warn(annotations::invalid_quantile(max));
            }
            if min < 0.0 {
                ev.annotations.warn(annotations::invalid_quantile(min));
            }
        }
        _ => {}
    }
    Ok(())
}

/// `topk`, `bottomk`, `limitk` and `limit_ratio`: pick members of a group, keeping their labels.
fn select_k(
    op: TokenId,
    param: f64,
    total_series: usize,
    mut members: Vec<StepSample>,
    out: &mut Vec<StepSample>,
) {
    match op {
        T_LIMIT_RATIO => {
            let r = param.clamp(-1.0, 1.0);
            if r == 0.0 || r.is_nan() {
                return;
            }
            out.extend(members.into_iter().filter(|m| ratio_selects(r, &m.labels)));
        }
        _ => {
            let k = (param as i64).min(total_series as i64);
            if k < 1 {
                return;
            }
            let k = k as usize;
            if op == T_LIMITK {
                members.truncate(k);
                out.extend(members);
                return;
            }
            // Order by value, then by input position so ties keep the earlier series (as the
            // heap in Prometheus does); select the k first in linear time, then sort only those.
            let desc = op == T_TOPK;
            let mut ranked: Vec<(usize, StepSample)> = members.into_iter().enumerate().collect();
            let order = |a: &(usize, StepSample), b: &(usize, StepSample)| {
                by_value(a.1.f, b.1.f, desc).then(a.0.cmp(&b.0))
            };
            if k < ranked.len() {
                ranked.select_nth_unstable_by(k - 1, order);
                ranked.truncate(k);
            }
            ranked.sort_by(order);
            out.extend(ranked.into_iter().map(|(_, s)| s));
        }
    }
}

/// Descending (or ascending) by value with NaN last, the order `topk`/`bottomk` present.
fn by_value(a: f64, b: f64, desc: bool) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ if desc => b.partial_cmp(&a).unwrap_or(Ordering::Equal),
        _ => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

/// Deterministic sampling for `limit_ratio`: a series is kept when its hash offset in [0, 1) falls
/// under `r` (or, for negative `r`, at or above `1 + r`), so `r` and `-(1 - r)` are complements.
/// The hash is Prometheus's `labels.Hash()`, so the same series are picked as in Prometheus.
fn ratio_selects(r: f64, labels: &Labels) -> bool {
    let offset = prometheus_labels_hash(labels) as f64 / u64::MAX as f64;
    if r >= 0.0 {
        offset < r
    } else {
        offset >= 1.0 + r
    }
}

/// Prometheus's `labels.Hash()`: XXH64 (seed 0) of every `name 0xff value 0xff`, in label order.
fn prometheus_labels_hash(labels: &Labels) -> u64 {
    let mut bytes = Vec::with_capacity(
        labels
            .iter()
            .map(|l| l.name.len() + l.value.len() + 2)
            .sum(),
    );
    for l in labels {
        bytes.extend_from_slice(l.name.as_bytes());
        bytes.push(0xff);
        bytes.extend_from_slice(l.value.as_bytes());
        bytes.push(0xff);
    }
    xxh64(&bytes)
}

/// XXH64 with seed 0 (the xxHash specification's 64-bit variant).
fn xxh64(data: &[u8]) -> u64 {
    const P1: u64 = 0x9E37_79B1_85EB_CA87;
    const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
    const P3: u64 = 0x1656_67B1_9E37_79F9;
    const P4: u64 = 0x85EB_CA77_C2B2_AE63;
    const P5: u64 = 0x27D4_EB2F_1656_67C5;
    let round = |acc: u64, input: u64| {
        acc.wrapping_add(input.wrapping_mul(P2))
            .rotate_left(31)
            .wrapping_mul(P1)
    };
    let merge = |acc: u64, v: u64| (acc ^ round(0, v)).wrapping_mul(P1).wrapping_add(P4);
    let read64 = |b: &[u8]| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
    let mut rest = data;
    let mut h = if data.len() >= 32 {
        let mut v = [P1.wrapping_add(P2), P2, 0, 0u64.wrapping_sub(P1)];
        while rest.len() >= 32 {
            for (i, acc) in v.iter_mut().enumerate() {
                *acc = round(*acc, read64(&rest[i * 8..]));
            }
            rest = &rest[32..];
        }
        let mut h = v[0]
            .rotate_left(1)
            .wrapping_add(v[1].rotate_left(7))
            .wrapping_add(v[2].rotate_left(12))
            .wrapping_add(v[3].rotate_left(18));
        for acc in v {
            h = merge(h, acc);
        }
        h
    } else {
        P5
    };
    h = h.wrapping_add(data.len() as u64);
    while rest.len() >= 8 {
        h ^= round(0, read64(rest));
        h = h.rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
        rest = &rest[8..];
    }
    if rest.len() >= 4 {
        let k = u64::from(u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]));
        h ^= k.wrapping_mul(P1);
        h = h.rotate_left(23).wrapping_mul(P2).wrapping_add(P3);
        rest = &rest[4..];
    }
    for &b in rest {
        h ^= u64::from(b).wrapping_mul(P5);
        h = h.rotate_left(11).wrapping_mul(P1);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(P2);
    h ^= h >> 29;
    h = h.wrapping_mul(P3);
    h ^= h >> 32;
    h
}

fn set_label(labels: &Labels, name: &str, value: &str) -> Labels {
    let mut v: Vec<Label> = labels.iter().filter(|l| l.name != name).cloned().collect();
    if !value.is_empty() {
        v.push(Label::new(name, value));
        v.sort_by(|a, b| a.name.cmp(&b.name));
    }
    Labels::from_sorted(v)
}

/// Go's `strconv.FormatFloat(f, 'f', -1, 64)`: shortest decimal, no exponent.
pub(crate) fn format_value(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{f}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xxh64_matches_reference_vectors() {
        assert_eq!(xxh64(b""), 0xEF46_DB37_51D8_E999);
        assert_eq!(xxh64(b"abc"), 0x44BC_2CF5_AD77_0999);
        // Lengths that exercise the 32-byte stripes and every tail size.
        assert_eq!(xxh64(&[b'a'; 100]), 0x3750_41E8_B1DE_CFB3);
        assert_eq!(xxh64(&[b'x'; 37]), 0x1E58_0C47_5BDC_5381);
    }

    fn step_sample(name: &str, f: f64) -> StepSample {
        StepSample {
            labels: Arc::new(Labels::from_pairs([("i", name)])),
            f,
            drop_name: false,
        }
    }

    #[test]
    fn topk_and_bottomk_order_values_with_nan_last_and_ties_by_input_order() {
        let members = || {
            vec![
                step_sample("a", 1.0),
                step_sample("b", f64::NAN),
                step_sample("c", 3.0),
                step_sample("d", 3.0),
                step_sample("e", 2.0),
            ]
        };
        let names = |v: &[StepSample]| {
            v.iter()
                .map(|s| s.labels.get("i").unwrap_or("").to_string())
                .collect::<Vec<_>>()
        };
        let mut out = Vec::new();
        select_k(T_TOPK, 2.0, 5, members(), &mut out);
        assert_eq!(names(&out), ["c", "d"]);
        out.clear();
        select_k(T_BOTTOMK, 5.0, 5, members(), &mut out);
        assert_eq!(names(&out), ["a", "e", "c", "d", "b"]);
        out.clear();
        select_k(T_LIMITK, 2.0, 5, members(), &mut out);
        assert_eq!(names(&out), ["a", "b"]);
    }

    #[test]
    fn ratio_and_its_complement_partition_series() {
        let all: Vec<Labels> = (0..50)
            .map(|i| Labels::from_pairs([("i", i.to_string())]))
            .collect();
        for r in [0.2, 0.5, 0.8] {
            let kept = all.iter().filter(|l| ratio_selects(r, l)).count();
            let complement = all.iter().filter(|l| ratio_selects(-(1.0 - r), l)).count();
            assert_eq!(kept + complement, all.len(), "r = {r}");
        }
    }
}
