//! Proptest strategies for the chunk codecs: series shaped like real scrapes (jittered 15 s intervals,
//! counters with resets, constants, two-decimal gauges) mixed with arbitrary floats, the staleness
//! marker, ±Inf, huge gaps and negative timestamps.

use crate::model::STALE_NAN_BITS;
use proptest::prelude::*;

/// Any float, with the special ones over-represented.
pub(crate) fn any_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<u64>().prop_map(f64::from_bits),
        (-1_000_000i64..1_000_000).prop_map(|m| m as f64 / 100.0),
        Just(f64::NAN),
        Just(f64::from_bits(STALE_NAN_BITS)),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(-0.0),
        Just(0.0),
        Just(f64::MAX),
        Just(f64::MIN_POSITIVE),
    ]
}

/// Strictly increasing timestamps: regular 15 s scrapes with jitter, irregular steps, huge gaps,
/// starting anywhere including far negative.
pub(crate) fn timestamps(max_len: usize) -> impl Strategy<Value = Vec<i64>> {
    let step = prop_oneof![
        8 => 14_990i64..15_010,
        2 => Just(15_000i64),
        2 => 1i64..100_000,
        1 => 1i64..=i64::MAX / 4,
    ];
    let start = prop_oneof![any::<i64>(), -1_000_000i64..1_000_000, Just(i64::MIN)];
    (start, proptest::collection::vec(step, 0..max_len)).prop_map(|(t0, steps)| {
        let mut t = t0;
        let mut out = vec![t0];
        for s in steps {
            match t.checked_add(s) {
                Some(next) => {
                    t = next;
                    out.push(t);
                }
                None => break,
            }
        }
        out
    })
}

/// Series shapes the head sees: counters with resets, constants, gauges, arbitrary floats.
pub(crate) fn series(max_len: usize) -> impl Strategy<Value = Vec<(i64, f64)>> {
    (
        timestamps(max_len),
        any::<u8>(),
        proptest::collection::vec(any_value(), max_len + 1),
    )
        .prop_map(|(ts, shape, noise)| {
            let mut counter = 0.0;
            ts.iter()
                .zip(&noise)
                .enumerate()
                .map(|(i, (&t, &n))| {
                    let v = match shape % 4 {
                        0 => n,
                        1 => 42.0,
                        2 => {
                            // Counter with an occasional reset.
                            counter = if i % 37 == 36 {
                                0.0
                            } else {
                                counter + (i % 5) as f64 * 0.25
                            };
                            counter
                        }
                        _ => (i as f64 * 0.1).sin().mul_add(100.0, 0.0).round() / 100.0,
                    };
                    (t, v)
                })
                .collect()
        })
}
