//! `histogram_quantile` and `histogram_fraction` over classic histograms: series with an `le` label,
//! grouped by their other labels (the metric name included, as in Prometheus 3).

use std::collections::HashMap;
use std::sync::Arc;

use promql_parser::parser::Expr;
use strata_store::{Label, Labels};

use crate::annotations;
use crate::error::Result;
use crate::evaluator::{Evaluator, Grid};
use crate::value::{ByIdentity, Evaluated, IdentityMap, StepSample};

/// One classic bucket: upper bound and cumulative count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Bucket {
    pub upper: f64,
    pub count: f64,
}

/// Buckets of one histogram at one step, keyed by the series labels without `le` (interned, so
/// identity is content).
struct Grouped {
    order: Vec<Arc<Labels>>,
    buckets: IdentityMap<Vec<Bucket>>,
}

/// Per-node cache: each input label set's histogram key and upper bound (None for a bad `le`),
/// with the keys interned by content.
#[derive(Default)]
struct BucketCache {
    by_series: IdentityMap<Option<(Arc<Labels>, f64)>>,
    interned: HashMap<Labels, Arc<Labels>>,
}

/// Parses `le` like Go's `strconv.ParseFloat` for the forms that occur (`+Inf`, `1e0`, `.2`).
fn parse_le(s: &str) -> Option<f64> {
    s.parse::<f64>().ok()
}

fn without_le(labels: &Labels) -> Labels {
    Labels::from_sorted(
        labels
            .iter()
            .filter(|l| l.name != "le")
            .cloned()
            .collect::<Vec<Label>>(),
    )
}

fn group_buckets(
    ev: &mut Evaluator<'_>,
    samples: Vec<StepSample>,
    cache: &mut BucketCache,
) -> Grouped {
    let mut grouped = Grouped {
        order: Vec::new(),
        buckets: IdentityMap::default(),
    };
    for s in samples {
        let interned = &mut cache.interned;
        let entry = cache
            .by_series
            .entry(ByIdentity(s.labels.clone()))
            .or_insert_with(|| {
                let le = s.labels.get("le").unwrap_or("");
                parse_le(le).map(|upper| {
                    let key = without_le(&s.labels);
                    let key = interned
                        .entry(key.clone())
                        .or_insert_with(|| Arc::new(key))
                        .clone();
                    (key, upper)
                })
            });
        let Some((key, upper)) = entry.clone() else {
            let le = s.labels.get("le").unwrap_or("").to_string();
            let name = s.labels.metric_name().unwrap_or("").to_string();
            ev.annotations
                .warn(annotations::bad_bucket_label(&name, &le));
            continue;
        };
        let list = grouped
            .buckets
            .entry(ByIdentity(key.clone()))
            .or_insert_with(|| {
                grouped.order.push(key.clone());
                Vec::new()
            });
        list.push(Bucket { upper, count: s.f });
    }
    grouped
}

/// Sorts by upper bound and merges buckets with equal bounds (`0.2` and `2e-1`).
fn sort_and_coalesce(buckets: &mut Vec<Bucket>) {
    buckets.sort_by(|a, b| {
        a.upper
            .partial_cmp(&b.upper)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let mut out: Vec<Bucket> = Vec::with_capacity(buckets.len());
    for b in buckets.drain(..) {
        match out.last_mut() {
            Some(last) if last.upper == b.upper => last.count += b.count,
            _ => out.push(b),
        }
    }
    *buckets = out;
}

/// Prometheus's `bucketQuantile`: returns the quantile and whether monotonicity had to be forced.
pub(crate) fn bucket_quantile(q: f64, buckets: &mut Vec<Bucket>) -> (f64, bool) {
    if q.is_nan() {
        return (f64::NAN, false);
    }
    if q < 0.0 {
        return (f64::NEG_INFINITY, false);
    }
    if q > 1.0 {
        return (f64::INFINITY, false);
    }
    sort_and_coalesce(buckets);
    if buckets.last().is_none_or(|b| b.upper != f64::INFINITY) {
        return (f64::NAN, false);
    }
    // Counts that differ by float noise are made equal silently; real decreases are flattened and
    // reported.
    let mut prev = buckets[0].count;
    for b in buckets.iter_mut().skip(1) {
        let delta = (b.count - prev).abs();
        if delta == 0.0 {
            continue;
        }
        if delta / b.count <= 1e-12 {
            b.count = prev;
        } else {
            prev = b.count;
        }
    }
    let mut forced = false;
    let mut max = buckets[0].count;
    for b in buckets.iter_mut().skip(1) {
        if b.count > max {
            max = b.count;
        } else if b.count < max {
            b.count = max;
            forced = true;
        }
    }
    if buckets.len() < 2 {
        return (f64::NAN, false);
    }
    let observations = buckets[buckets.len() - 1].count;
    if observations == 0.0 || observations.is_nan() {
        return (f64::NAN, false);
    }
    let mut rank = q * observations;
    let b = buckets[..buckets.len() - 1].partition_point(|b| b.count < rank);
    if b == buckets.len() - 1 {
        return (buckets[buckets.len() - 2].upper, forced);
    }
    if b == 0 && buckets[0].upper <= 0.0 {
        return (buckets[0].upper, forced);
    }
    let mut start = 0.0;
    let end = buckets[b].upper;
    let mut count = buckets[b].count;
    if b > 0 {
        start = buckets[b - 1].upper;
        count -= buckets[b - 1].count;
        rank -= buckets[b - 1].count;
    }
    (start + (end - start) * (rank / count), forced)
}

/// The fraction of observations in `[lower, upper]`, interpolating linearly inside buckets; the
/// lowest bucket starts at 0 when its upper bound is positive, as for `histogram_quantile`.
pub(crate) fn bucket_fraction(lower: f64, upper: f64, buckets: &mut Vec<Bucket>) -> f64 {
    if buckets.is_empty() {
        return f64::NAN;
    }
    sort_and_coalesce(buckets);
    if buckets.last().is_none_or(|b| b.upper != f64::INFINITY) {
        return f64::NAN;
    }
    let total = buckets[buckets.len() - 1].count;
    if total == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let (mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    for (i, b) in buckets.iter().enumerate() {
        let bucket_lower = if i == 0 {
            if b.upper > 0.0 {
                0.0
            } else {
                f64::NEG_INFINITY
            }
        } else {
            buckets[i - 1].upper
        };
        let bucket_count = b.count - rank;
        let interpolate =
            |v: f64| rank + bucket_count * (v - bucket_lower) / (b.upper - bucket_lower);
        if !lower_set && bucket_lower >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && bucket_lower >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        // Nothing is known about where observations sit inside a bucket of infinite width: a lower
        // bound inside the lowest such bucket excludes it, one inside the `+Inf` bucket keeps it,
        // and an upper bound inside either excludes it (as Prometheus does).
        let infinite = bucket_lower.is_infinite() || b.upper.is_infinite();
        if !lower_set && bucket_lower < lower && b.upper > lower {
            lower_rank = if bucket_lower.is_infinite() {
                b.count
            } else if b.upper.is_infinite() {
                rank
            } else {
                interpolate(lower)
            };
            lower_set = true;
        }
        if !upper_set && bucket_lower < upper && b.upper > upper {
            upper_rank = if infinite { rank } else { interpolate(upper) };
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        rank = b.count;
    }
    if !lower_set || lower_rank > total {
        lower_rank = total;
    }
    if !upper_set || upper_rank > total {
        upper_rank = total;
    }
    (upper_rank - lower_rank) / total
}

fn step_index(grid: Grid, ts: i64) -> usize {
    ((ts - grid.start) / grid.interval) as usize
}

pub(crate) fn eval_quantile(
    ev: &mut Evaluator<'_>,
    args: &[&Expr],
    grid: Grid,
) -> Result<Evaluated> {
    let qs = ev.eval_scalar(args[0], grid)?;
    let input = [ev.eval(args[1], grid)?];
    let mut cache = BucketCache::default();
    let series = ev.step_eval(grid, &input, |ev, ts, mut step_args| {
        let v = step_args.swap_remove(0);
        let q = qs[step_index(grid, ts)];
        if q.is_nan() || !(0.0..=1.0).contains(&q) {
            ev.annotations.warn(annotations::invalid_quantile(q));
        }
        let mut grouped = group_buckets(ev, v, &mut cache);
        let mut out = Vec::with_capacity(grouped.order.len());
        for key in grouped.order {
            let Some(buckets) = grouped.buckets.get_mut(&ByIdentity(key.clone())) else {
                continue;
            };
            let (value, forced) = bucket_quantile(q, buckets);
            if forced {
                ev.annotations.info(annotations::forced_monotonicity(
                    key.metric_name().unwrap_or(""),
                ));
            }
            out.push(StepSample {
                labels: key,
                f: value,
                drop_name: true,
            });
        }
        Ok(out)
    })?;
    Ok(Evaluated::Vector(series))
}

pub(crate) fn eval_fraction(
    ev: &mut Evaluator<'_>,
    args: &[&Expr],
    grid: Grid,
) -> Result<Evaluated> {
    let lowers = ev.eval_scalar(args[0], grid)?;
    let uppers = ev.eval_scalar(args[1], grid)?;
    let input = [ev.eval(args[2], grid)?];
    let mut cache = BucketCache::default();
    let series = ev.step_eval(grid, &input, |ev, ts, mut step_args| {
        let v = step_args.swap_remove(0);
        let i = step_index(grid, ts);
        let mut grouped = group_buckets(ev, v, &mut cache);
        let mut out = Vec::with_capacity(grouped.order.len());
        for key in grouped.order {
            let Some(buckets) = grouped.buckets.get_mut(&ByIdentity(key.clone())) else {
                continue;
            };
            let value = bucket_fraction(lowers[i], uppers[i], buckets);
            out.push(StepSample {
                labels: key,
                f: value,
                drop_name: true,
            });
        }
        Ok(out)
    })?;
    Ok(Evaluated::Vector(series))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buckets(pairs: &[(f64, f64)]) -> Vec<Bucket> {
        pairs
            .iter()
            .map(|&(upper, count)| Bucket { upper, count })
            .collect()
    }

    #[test]
    fn quantile_interpolates_inside_bucket() {
        // 3 observations: one in each of (0,2], (2,4], (4,6]; the median is the middle of (2,4].
        let mut b = buckets(&[(2.0, 1.0), (4.0, 2.0), (6.0, 3.0), (f64::INFINITY, 3.0)]);
        assert_eq!(bucket_quantile(0.5, &mut b), (3.0, false));
    }

    #[test]
    fn quantile_forces_monotonicity_and_reports_it() {
        let mut b = buckets(&[(1.0, 5.0), (2.0, 4.0), (f64::INFINITY, 10.0)]);
        let (_, forced) = bucket_quantile(0.5, &mut b);
        assert!(forced);
    }

    #[test]
    fn quantile_needs_an_inf_bucket() {
        let mut b = buckets(&[(1.0, 5.0), (2.0, 6.0)]);
        assert!(bucket_quantile(0.5, &mut b).0.is_nan());
    }

    #[test]
    fn fraction_matches_prometheus_example() {
        let mut b = buckets(&[
            (0.0, 0.0),
            (2.0, 1.0),
            (4.0, 2.0),
            (6.0, 3.0),
            (f64::INFINITY, 3.0),
        ]);
        assert!((bucket_fraction(0.0, 4.0, &mut b) - 2.0 / 3.0).abs() < 1e-12);
    }
}
