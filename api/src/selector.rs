//! Series selectors given as `match[]` parameters (`up{job="a"}`, `{__name__=~"node_.*"}`), parsed with
//! the PromQL parser and turned into store matchers.

use promql_parser::label::MatchOp as PromOp;
use promql_parser::parser::{self, Expr};
use strata_store::{MatchOp, Matcher, METRIC_NAME};

/// Parses one selector. Like Prometheus, at least one matcher must reject the empty string, so a
/// selector cannot silently match every series.
pub fn parse_selector(s: &str) -> Result<Vec<Matcher>, String> {
    let expr = parser::parse(s).map_err(|e| format!("invalid parameter \"match[]\": {e}"))?;
    let Expr::VectorSelector(vs) = expr else {
        return Err(format!(
            "invalid parameter \"match[]\": {s:?} is not a series selector"
        ));
    };
    let mut out = Vec::new();
    if let Some(name) = &vs.name {
        out.push(Matcher::equal(METRIC_NAME, name.clone()));
    }
    for m in vs.matchers.matchers.iter() {
        if vs.name.is_some()
            && m.name == METRIC_NAME
            && matches!(m.op, PromOp::Equal)
            && Some(&m.value) == vs.name.as_ref()
        {
            continue;
        }
        let op = match &m.op {
            PromOp::Equal => MatchOp::Equal,
            PromOp::NotEqual => MatchOp::NotEqual,
            PromOp::Re(_) => MatchOp::Regex,
            PromOp::NotRe(_) => MatchOp::NotRegex,
        };
        out.push(Matcher::new(op, m.name.clone(), m.value.clone()).map_err(|e| e.to_string())?);
    }
    if !vs.matchers.or_matchers.is_empty() {
        return Err(
            "invalid parameter \"match[]\": `or` inside a selector is not supported here".into(),
        );
    }
    if out.iter().all(|m| m.matches_empty()) {
        return Err("match[] must contain at least one non-empty matcher".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors() {
        let m = parse_selector("up{job=\"a\",instance!~\"x.*\"}").unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[0], Matcher::equal("__name__", "up"));
        assert!(parse_selector("{__name__!=\"\"}").is_ok());
        assert!(parse_selector("{job=~\".*\"}").is_err());
        assert!(parse_selector("sum(up)").is_err());
        assert!(parse_selector("up{").is_err());
    }
}
