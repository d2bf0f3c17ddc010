//! Owns Strata's Grafana artefacts: the dashboards in `grafana/` and the provisioning files in
//! `provisioning/` that point Grafana at a Strata store. They are embedded here, so tests and tools
//! read exactly the files that ship, and every panel query can be listed with its template variables
//! filled in ([`panel_queries`]) to be run against a store. Knows nothing of PromQL evaluation, HTTP
//! or storage.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// The Prometheus data source every metrics panel names (`provisioning/datasources/strata.yaml`).
pub const PROMETHEUS_UID: &str = "strata-prometheus";
/// The Tempo data source of trace links and of the service map.
pub const TEMPO_UID: &str = "strata-tempo";

/// Grafana data source provisioning: the Prometheus and Tempo APIs of one Strata store.
pub const DATASOURCES_YAML: &str = include_str!("../provisioning/datasources/strata.yaml");
/// Grafana dashboard provider: loads the files of [`DASHBOARDS`] from a folder.
pub const DASHBOARD_PROVIDER_YAML: &str = include_str!("../provisioning/dashboards/strata.yaml");

/// One dashboard file of `grafana/`, as shipped.
#[derive(Debug, Clone, Copy)]
pub struct DashboardFile {
    /// File name inside `grafana/`.
    pub file: &'static str,
    pub json: &'static str,
}

macro_rules! dashboard_file {
    ($file:literal) => {
        DashboardFile {
            file: $file,
            json: include_str!(concat!("../grafana/", $file)),
        }
    };
}

/// Every dashboard of `grafana/`.
pub const DASHBOARDS: &[DashboardFile] = &[
    dashboard_file!("strata-http.json"),
    dashboard_file!("strata-tcp.json"),
    dashboard_file!("strata-dns.json"),
    dashboard_file!("strata-service-map.json"),
];

/// Values of Grafana's built-in variables when a caller names none: a rate window of a few of the
/// data source's 10 s scrape intervals (`timeInterval`), Grafana's default 15 s step, the dashboards'
/// default one-hour range. `$__from` and `$__to` default to the last hour.
pub const BUILTIN_VARIABLES: &[(&str, &str)] = &[
    ("__rate_interval", "1m"),
    ("__interval", "15s"),
    ("__interval_ms", "15000"),
    ("__range", "1h"),
    ("__range_s", "3600"),
    ("__range_ms", "3600000"),
    ("__org", "1"),
];

/// One PromQL query of one panel, its variables substituted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PanelQuery {
    pub dashboard_uid: String,
    pub dashboard: String,
    /// The panel's title as written (variables not substituted).
    pub panel: String,
    pub ref_id: String,
    pub expr: String,
    /// Grafana runs it as an instant query (tables, node graphs), else as a range query.
    pub instant: bool,
    /// The panel asks for exemplars of this query.
    pub exemplar: bool,
}

/// The query behind one template variable: `label_values(selector, label)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariableQuery {
    pub dashboard_uid: String,
    pub dashboard: String,
    pub variable: String,
    /// The label whose values the variable offers.
    pub label: String,
    /// The series selector, its variables substituted.
    pub selector: String,
    /// A PromQL query with one series per value the variable offers: `group by (label) (selector)`.
    pub expr: String,
}

/// Every dashboard, parsed.
///
/// # Panics
/// When an embedded file is not JSON; the crate's tests keep that from shipping.
pub fn dashboards() -> Vec<(DashboardFile, Value)> {
    DASHBOARDS
        .iter()
        .map(|file| {
            let json = serde_json::from_str(file.json)
                .unwrap_or_else(|e| panic!("grafana/{} is not JSON: {e}", file.file));
            (*file, json)
        })
        .collect()
}

/// Every panel of a dashboard, those inside collapsed rows included, in file order.
pub fn all_panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        out.push(panel);
        out.extend(panel["panels"].as_array().into_iter().flatten());
    }
    out
}

/// Every Prometheus query of every panel, with variables substituted: first from `vars`
/// (`("namespace", "tenant-jobs")`, also built-ins like `("__range", "5m")`), then from
/// [`BUILTIN_VARIABLES`], then from the dashboard's own defaults (custom and text box variables,
/// and the "All" value of variables that start on All). A variable none of them names stays as
/// written, so the query fails to parse.
pub fn panel_queries(vars: &[(&str, &str)]) -> Vec<PanelQuery> {
    let mut out = Vec::new();
    for (_, dashboard) in dashboards() {
        let defaults = variable_defaults(&dashboard);
        let lookup = |name: &str| resolve(name, vars, &defaults);
        for panel in all_panels(&dashboard) {
            let panel_uid = panel["datasource"]["uid"].as_str();
            for target in panel["targets"].as_array().into_iter().flatten() {
                let uid = target["datasource"]["uid"].as_str().or(panel_uid);
                let (Some(PROMETHEUS_UID), Some(expr)) = (uid, target["expr"].as_str()) else {
                    continue;
                };
                out.push(PanelQuery {
                    dashboard_uid: text(&dashboard["uid"]),
                    dashboard: text(&dashboard["title"]),
                    panel: text(&panel["title"]),
                    ref_id: text(&target["refId"]),
                    expr: substitute_with(expr, &lookup),
                    instant: target["instant"].as_bool() == Some(true)
                        && target["range"].as_bool() != Some(true),
                    exemplar: target["exemplar"].as_bool() == Some(true),
                });
            }
        }
    }
    out
}

/// The `label_values(selector, label)` query of every query variable, substituted as in
/// [`panel_queries`].
pub fn variable_queries(vars: &[(&str, &str)]) -> Vec<VariableQuery> {
    let mut out = Vec::new();
    for (_, dashboard) in dashboards() {
        let defaults = variable_defaults(&dashboard);
        let lookup = |name: &str| resolve(name, vars, &defaults);
        for variable in dashboard["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if variable["type"] != "query" {
                continue;
            }
            let query = match &variable["query"] {
                Value::String(q) => q.as_str(),
                other => other["query"].as_str().unwrap_or_default(),
            };
            let Some((selector, label)) = parse_label_values(query) else {
                continue;
            };
            let selector = substitute_with(selector, &lookup);
            out.push(VariableQuery {
                dashboard_uid: text(&dashboard["uid"]),
                dashboard: text(&dashboard["title"]),
                variable: text(&variable["name"]),
                expr: format!("group by ({label}) ({selector})"),
                label: label.to_owned(),
                selector,
            });
        }
    }
    out
}

/// `label_values(selector, label)` → `(selector, label)`.
pub fn parse_label_values(query: &str) -> Option<(&str, &str)> {
    let args = query
        .trim()
        .strip_prefix("label_values(")?
        .strip_suffix(')')?;
    // A label name holds no comma; the selector may.
    let (selector, label) = args.rsplit_once(',')?;
    Some((selector.trim(), label.trim()))
}

/// Replaces Grafana variables in `text` (`$name`, `${name}`, `${name:format}`, dotted names like
/// `${__field.labels.src_workload}`) with values from `vars`, then [`BUILTIN_VARIABLES`]. Formats
/// applied: `percentencode`, `regex`, `date:seconds` (of `$__from`/`$__to`, which are
/// milliseconds); any other is taken raw. A variable not named stays as written.
pub fn substitute(text: &str, vars: &[(&str, &str)]) -> String {
    substitute_with(text, &|name| resolve(name, vars, &[]))
}

fn resolve(name: &str, vars: &[(&str, &str)], defaults: &[(String, String)]) -> Option<String> {
    if let Some((_, v)) = vars.iter().find(|(n, _)| *n == name) {
        return Some((*v).to_owned());
    }
    if let Some((_, v)) = BUILTIN_VARIABLES.iter().find(|(n, _)| *n == name) {
        return Some((*v).to_owned());
    }
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    match name {
        "__to" => return Some(now_ms.to_string()),
        "__from" => return Some(now_ms.saturating_sub(3_600_000).to_string()),
        _ => {}
    }
    defaults
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

/// What a variable holds when the dashboard opens, where the file decides it: the current value of
/// custom, text box and constant variables, and the `allValue` of a variable starting on All.
fn variable_defaults(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let name = text(&variable["name"]);
        let current = match &variable["current"]["value"] {
            Value::String(v) => Some(v.clone()),
            Value::Array(vs) => vs.first().and_then(Value::as_str).map(str::to_owned),
            _ => None,
        };
        let value = match (variable["type"].as_str(), current) {
            (_, Some(current)) if current == "$__all" => variable["allValue"]
                .as_str()
                .filter(|v| !v.is_empty())
                .map(str::to_owned),
            (Some("custom" | "textbox" | "constant" | "interval"), Some(current)) => Some(current),
            (Some("textbox" | "constant"), None) => variable["query"].as_str().map(str::to_owned),
            _ => None,
        };
        if let Some(value) = value {
            out.push((name, value));
        }
    }
    out
}

fn substitute_with(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(braced) = after.strip_prefix('{') {
            let Some(end) = braced.find('}') else {
                out.push_str(&rest[at..]);
                return out;
            };
            let inner = &braced[..end];
            let (name, format) = match inner.split_once(':') {
                Some((name, format)) => (name, Some(format)),
                None => (inner, None),
            };
            match lookup(name) {
                Some(value) => out.push_str(&apply_format(name, &value, format)),
                None => out.push_str(&rest[at..at + 2 + end + 1]),
            }
            rest = &braced[end + 1..];
        } else {
            let len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            let name = &after[..len];
            match lookup(name).filter(|_| !name.is_empty()) {
                Some(value) => out.push_str(&value),
                None => out.push_str(&rest[at..at + 1 + len]),
            }
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    out
}

fn apply_format(name: &str, value: &str, format: Option<&str>) -> String {
    match format {
        Some("percentencode") => percent_encode(value),
        Some("regex") => regex_escape(value),
        Some("date:seconds") if matches!(name, "__from" | "__to") => value
            .parse::<u64>()
            .map_or_else(|_| value.to_owned(), |ms| (ms / 1000).to_string()),
        _ => value.to_owned(),
    }
}

/// Grafana's `percentencode`: everything but RFC 3986 unreserved characters.
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn regex_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if "\\^$*+?.()|[]{}/".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutes_every_variable_form() {
        let vars = [("namespace", "tenant-jobs"), ("side", "server")];
        assert_eq!(
            substitute(
                r#"rate(http_${side}_x{ns="$namespace"}[$__rate_interval])"#,
                &vars
            ),
            r#"rate(http_server_x{ns="tenant-jobs"}[1m])"#
        );
        assert_eq!(
            substitute(
                "a=${namespace:percentencode}&b=${x y}",
                &[("namespace", "a b\"")]
            ),
            "a=a%20b%22&b=${x y}"
        );
        assert_eq!(
            substitute("${__from:date:seconds}", &[("__from", "1700000000123")]),
            "1700000000"
        );
    }

    #[test]
    fn leaves_regex_references_and_unknown_names_alone() {
        assert_eq!(
            substitute(
                r#"label_replace(x, "id", "$1", "server", "(.*)") $unknown $"#,
                &[]
            ),
            r#"label_replace(x, "id", "$1", "server", "(.*)") $unknown $"#
        );
    }

    #[test]
    fn dotted_names_and_formats() {
        let vars = [("__field.labels.src_workload", "report/builder")];
        assert_eq!(
            substitute("${__field.labels.src_workload:percentencode}", &vars),
            "report%2Fbuilder"
        );
        assert_eq!(
            substitute("${__field.labels.src_workload:regex}", &vars),
            "report\\/builder"
        );
    }

    #[test]
    fn label_values_splits_at_the_last_comma() {
        assert_eq!(
            parse_label_values(r#"label_values(m{a="x", b=~"y"}, dst_workload)"#),
            Some((r#"m{a="x", b=~"y"}"#, "dst_workload"))
        );
        assert_eq!(parse_label_values("query_result(up)"), None);
    }

    #[test]
    fn every_dashboard_parses_and_has_queries() {
        assert_eq!(dashboards().len(), DASHBOARDS.len());
        let queries = panel_queries(&[]);
        for file in DASHBOARDS {
            let (_, json) = dashboards()
                .into_iter()
                .find(|(f, _)| f.file == file.file)
                .expect("listed");
            let uid = json["uid"].as_str().expect("uid");
            assert!(
                queries.iter().any(|q| q.dashboard_uid == uid),
                "{} has no Prometheus query",
                file.file
            );
        }
    }
}
