//! Postings: sorted lists of series ids per label pair, and the one algorithm that turns a conjunction of
//! matchers into a postings list. The head and blocks both answer through [`PostingsIndex`].

use crate::model::Matcher;

/// What an index must offer for matcher evaluation. Ids are sorted ascending in every list.
pub trait PostingsIndex {
    /// Every series id.
    fn all_postings(&self) -> Vec<u32>;
    /// Calls `f` with each value of label `name` and that value's postings.
    fn for_each_value(&self, name: &str, f: &mut dyn FnMut(&str, &[u32]));
    /// Postings of one exact label pair (empty when absent).
    fn postings(&self, name: &str, value: &str) -> Vec<u32>;
}

/// Series ids matching every matcher, sorted. Like Prometheus's `PostingsForMatchers`: matchers that
/// reject the empty string select positively; matchers that accept it remove the series whose value of
/// that label fails, so a series without the label passes them.
pub fn select(index: &dyn PostingsIndex, matchers: &[Matcher]) -> Vec<u32> {
    let mut result: Option<Vec<u32>> = None;
    let mut removals: Vec<Vec<u32>> = Vec::new();
    // Positive matchers first, cheapest (exact equality) first.
    let mut ordered: Vec<&Matcher> = matchers.iter().collect();
    ordered.sort_by_key(|m| {
        (
            m.matches_empty(),
            !matches!(m.op, crate::model::MatchOp::Equal),
        )
    });
    for m in ordered {
        if !m.matches_empty() {
            let list = if m.op == crate::model::MatchOp::Equal {
                index.postings(&m.name, &m.value)
            } else {
                let mut lists: Vec<Vec<u32>> = Vec::new();
                index.for_each_value(&m.name, &mut |v, p| {
                    if m.matches(v) {
                        lists.push(p.to_vec());
                    }
                });
                union_all(lists)
            };
            result = Some(match result {
                None => list,
                Some(r) => intersect(&r, &list),
            });
            if result.as_ref().is_some_and(|r| r.is_empty()) {
                return Vec::new();
            }
        } else {
            let mut lists: Vec<Vec<u32>> = Vec::new();
            index.for_each_value(&m.name, &mut |v, p| {
                if !m.matches(v) {
                    lists.push(p.to_vec());
                }
            });
            removals.push(union_all(lists));
        }
    }
    let mut result = result.unwrap_or_else(|| index.all_postings());
    for r in removals {
        result = subtract(&result, &r);
    }
    result
}

pub fn intersect(a: &[u32], b: &[u32]) -> Vec<u32> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(a.len().min(b.len()));
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

pub fn subtract(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut j = 0;
    let mut out = Vec::with_capacity(a.len());
    for &x in a {
        while j < b.len() && b[j] < x {
            j += 1;
        }
        if j >= b.len() || b[j] != x {
            out.push(x);
        }
    }
    out
}

pub fn union_all(mut lists: Vec<Vec<u32>>) -> Vec<u32> {
    match lists.len() {
        0 => Vec::new(),
        1 => lists.pop().unwrap_or_default(),
        _ => {
            let mut all: Vec<u32> = lists.into_iter().flatten().collect();
            all.sort_unstable();
            all.dedup();
            all
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MatchOp, Matcher};
    use std::collections::BTreeMap;

    struct Fixture(BTreeMap<(String, String), Vec<u32>>, u32);

    impl PostingsIndex for Fixture {
        fn all_postings(&self) -> Vec<u32> {
            (0..self.1).collect()
        }
        fn for_each_value(&self, name: &str, f: &mut dyn FnMut(&str, &[u32])) {
            for ((n, v), p) in &self.0 {
                if n == name {
                    f(v, p);
                }
            }
        }
        fn postings(&self, name: &str, value: &str) -> Vec<u32> {
            self.0
                .get(&(name.to_owned(), value.to_owned()))
                .cloned()
                .unwrap_or_default()
        }
    }

    fn fixture() -> Fixture {
        // 0: job=a env=prod; 1: job=b env=dev; 2: job=a (no env); 3: job=c env=prod
        let mut m = BTreeMap::new();
        m.insert(("job".into(), "a".into()), vec![0, 2]);
        m.insert(("job".into(), "b".into()), vec![1]);
        m.insert(("job".into(), "c".into()), vec![3]);
        m.insert(("env".into(), "prod".into()), vec![0, 3]);
        m.insert(("env".into(), "dev".into()), vec![1]);
        Fixture(m, 4)
    }

    fn sel(ms: &[(MatchOp, &str, &str)]) -> Vec<u32> {
        let ms: Vec<Matcher> = ms
            .iter()
            .map(|(o, n, v)| Matcher::new(*o, *n, *v).unwrap())
            .collect();
        select(&fixture(), &ms)
    }

    #[test]
    fn matcher_semantics() {
        use MatchOp::*;
        assert_eq!(sel(&[(Equal, "job", "a")]), vec![0, 2]);
        assert_eq!(sel(&[(Equal, "job", "a"), (Equal, "env", "prod")]), vec![0]);
        assert_eq!(sel(&[(NotEqual, "env", "prod")]), vec![1, 2]);
        assert_eq!(sel(&[(Equal, "env", "")]), vec![2]);
        assert_eq!(sel(&[(Regex, "job", "a|c")]), vec![0, 2, 3]);
        assert_eq!(sel(&[(NotRegex, "job", "a|c")]), vec![1]);
        assert_eq!(sel(&[(Regex, "env", ".*")]), vec![0, 1, 2, 3]);
        assert_eq!(sel(&[(Regex, "env", ".+")]), vec![0, 1, 3]);
        assert_eq!(sel(&[(Equal, "job", "zzz")]), Vec::<u32>::new());
    }
}
