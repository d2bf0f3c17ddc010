//! The warnings and infos a query produces, worded as Prometheus words them (`util/annotations`), so
//! clients that match on the text (Grafana, promtool, the conformance scripts) see the same thing.

/// Collected annotations, each message once, in the order first produced.
#[derive(Debug, Default)]
pub(crate) struct Annotations {
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
}

impl Annotations {
    pub fn warn(&mut self, msg: String) {
        if !self.warnings.contains(&msg) {
            self.warnings.push(msg);
        }
    }

    pub fn info(&mut self, msg: String) {
        if !self.infos.contains(&msg) {
            self.infos.push(msg);
        }
    }
}

/// Go's `%g` for the values these messages print (integers without a fraction, `NaN`, `+Inf`).
fn format_g(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

fn with_metric_name(msg: String, metric_name: &str) -> String {
    if metric_name.is_empty() {
        msg
    } else {
        format!("{msg} for metric name {metric_name:?}")
    }
}

pub(crate) fn invalid_quantile(q: f64) -> String {
    format!(
        "PromQL warning: quantile value should be between 0 and 1, got {}",
        format_g(q)
    )
}

pub(crate) fn invalid_ratio(r: f64, capped: f64) -> String {
    format!(
        "PromQL warning: ratio value should be between -1 and 1, got {}, capping to {}",
        format_g(r),
        format_g(capped)
    )
}

pub(crate) fn bad_bucket_label(metric_name: &str, le: &str) -> String {
    with_metric_name(
        format!(
            "PromQL warning: bucket label \"le\" is missing or has a malformed value of {le:?}"
        ),
        metric_name,
    )
}

pub(crate) fn possible_non_counter(metric_name: &str) -> String {
    format!(
        "PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {metric_name:?}"
    )
}

pub(crate) fn forced_monotonicity(metric_name: &str) -> String {
    with_metric_name(
        "PromQL info: input to histogram_quantile needed to be fixed for monotonicity (see \
         https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile)"
            .into(),
        metric_name,
    )
}
