//! The Grafana dashboards and provisioning files of `dashboards/`: well formed by the rules Grafana
//! holds them to, naming only provisioned data sources and defined variables, and every query and
//! link they carry accepted by a real `strata` server — PromQL by the Prometheus API, flow search
//! links by the flow API (finding the flows of the pair they name), trace links by the Tempo API.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use prost::Message;
use serde_json::Value;
use strata_api::flows::otlp::export_request;
use strata_dashboards::{
    all_panels, dashboards, panel_queries, substitute, variable_queries, DASHBOARDS,
    DASHBOARD_PROVIDER_YAML, DATASOURCES_YAML, PROMETHEUS_UID, TEMPO_UID,
};
use strata_store::flows::record::Endpoint;
use strata_store::flows::{now_ns, FlowRecord};
use strata_tests::{http, wait_for, Strata};

const BIN: &str = env!("CARGO_BIN_EXE_strata-e2e");

/// The pair every query and link is filled in with; the flows ingested below are about it.
const VARS: &[(&str, &str)] = &[
    ("namespace", "prod"),
    ("workload", "core-api"),
    ("src_namespace", "tenant-jobs"),
    ("src_workload", "report-builder"),
    ("side", "server"),
];

/// Series labels and table cells that data links read (`${__field.labels.…}`, `${__data.fields.…}`):
/// the series of the pair above, a refused connection, a 503, an NXDOMAIN, an external name.
const SERIES: &[(&str, &str)] = &[
    ("src_namespace", "tenant-jobs"),
    ("src_workload", "report-builder"),
    ("src_process", ""),
    ("src_name", ""),
    ("dst_namespace", "prod"),
    ("dst_workload", "core-api"),
    ("dst_process", ""),
    ("dst_name", "api.example.com"),
    ("http_response_status_code", "503"),
    ("outcome", "refused"),
    ("dns_response_code", "NXDOMAIN"),
    ("client", "report-builder"),
    ("server", "core-api"),
];

/// Built-in variables a dashboard may name besides its own.
const BUILTIN_PREFIXES: &[&str] = &[
    "__rate_interval",
    "__interval",
    "__range",
    "__from",
    "__to",
    "__org",
    "__field.",
    "__data.",
    "__value.",
];

fn provisioned_uids() -> HashSet<String> {
    let doc: serde_yaml::Value = serde_yaml::from_str(DATASOURCES_YAML).expect("datasources YAML");
    doc["datasources"]
        .as_sequence()
        .expect("datasources list")
        .iter()
        .map(|ds| {
            ds["uid"]
                .as_str()
                .expect("every data source has a uid")
                .to_owned()
        })
        .collect()
}

/// Every link of a panel: panel links, data links of the defaults and of overrides.
fn links_of(panel: &Value) -> Vec<&Value> {
    let mut out: Vec<&Value> = panel["links"].as_array().into_iter().flatten().collect();
    out.extend(
        panel["fieldConfig"]["defaults"]["links"]
            .as_array()
            .into_iter()
            .flatten(),
    );
    for o in panel["fieldConfig"]["overrides"]
        .as_array()
        .into_iter()
        .flatten()
    {
        for property in o["properties"].as_array().into_iter().flatten() {
            if property["id"] == "links" {
                out.extend(property["value"].as_array().into_iter().flatten());
            }
        }
    }
    out
}

/// Names of the variables `text` refers to (`$name`, `${name}`, `${name:format}`); `$1`-style
/// regex group references are not variables.
fn referenced_variables(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        let after = &rest[at + 1..];
        let name = if let Some(braced) = after.strip_prefix('{') {
            let inner = &braced[..braced.find('}').unwrap_or(braced.len())];
            inner.split(':').next().unwrap_or_default()
        } else {
            let len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            &after[..len]
        };
        if name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            out.push(name.to_owned());
        }
        rest = after;
    }
    out
}

/// True when a variable is left in `text` after substitution.
fn unresolved(text: &str) -> bool {
    !referenced_variables(text).is_empty()
}

#[test]
fn every_dashboard_file_is_embedded() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards/grafana");
    let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
        .expect("dashboards/grafana")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let embedded: BTreeSet<String> = DASHBOARDS.iter().map(|d| d.file.to_owned()).collect();
    assert_eq!(
        on_disk, embedded,
        "dashboards/grafana and strata_dashboards::DASHBOARDS differ"
    );
}

#[test]
fn dashboards_are_well_formed() {
    let uids = provisioned_uids();
    let mut dashboard_uids = HashSet::new();
    for (file, dashboard) in dashboards() {
        let name = file.file;
        let schema = dashboard["schemaVersion"].as_u64().unwrap_or(0);
        assert!(schema >= 39, "{name}: schemaVersion {schema} < 39");
        let uid = dashboard["uid"].as_str().unwrap_or_default();
        assert!(
            !uid.is_empty() && uid.len() <= 40,
            "{name}: uid {uid:?} (1-40 characters)"
        );
        assert!(
            dashboard_uids.insert(uid.to_owned()),
            "{name}: uid {uid} repeated"
        );
        assert!(
            dashboard["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{name}: no title"
        );
        assert!(
            dashboard["tags"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t == "strata")),
            "{name}: the dashboards link to each other by the tag `strata`"
        );

        let variables: Vec<&Value> = dashboard["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
            .collect();
        let defined: HashSet<&str> = variables
            .iter()
            .map(|v| v["name"].as_str().expect("variable name"))
            .collect();
        assert_eq!(
            defined.len(),
            variables.len(),
            "{name}: variable names repeat"
        );
        let check_references = |text: &str, what: &str| {
            for var in referenced_variables(text) {
                assert!(
                    defined.contains(var.as_str())
                        || BUILTIN_PREFIXES.iter().any(|p| var.starts_with(p)),
                    "{name}: {what} names ${var}, which the dashboard does not define: {text}"
                );
            }
        };
        for variable in &variables {
            let vname = variable["name"].as_str().unwrap_or_default();
            if variable["type"] == "query" {
                let ds = variable["datasource"]["uid"].as_str().unwrap_or_default();
                assert!(
                    uids.contains(ds),
                    "{name}: variable {vname}: data source {ds:?} is not provisioned"
                );
                let query = variable["definition"].as_str().unwrap_or_default();
                assert!(
                    strata_dashboards::parse_label_values(query).is_some(),
                    "{name}: variable {vname}: {query:?} is not label_values(selector, label)"
                );
                check_references(query, &format!("variable {vname}"));
            }
        }

        let panels = all_panels(&dashboard);
        assert!(!panels.is_empty(), "{name}: no panels");
        let mut ids = HashSet::new();
        let mut cells: HashMap<(u64, u64), &str> = HashMap::new();
        for panel in &panels {
            let title = panel["title"].as_str().unwrap_or_default();
            let id = panel["id"]
                .as_u64()
                .unwrap_or_else(|| panic!("{name}: panel {title:?} has no integer id"));
            assert!(ids.insert(id), "{name}: panel id {id} repeated ({title})");
            assert!(!title.is_empty(), "{name}: panel {id} has no title");
            check_references(title, &format!("the title of panel {id}"));

            let grid = &panel["gridPos"];
            let [h, w, x, y] = ["h", "w", "x", "y"].map(|k| {
                grid[k]
                    .as_u64()
                    .unwrap_or_else(|| panic!("{name}: panel {title:?}: gridPos.{k} missing"))
            });
            assert!(
                h >= 1 && w >= 1 && x + w <= 24,
                "{name}: panel {title:?}: gridPos {grid} outside the 24 columns"
            );
            for cx in x..x + w {
                for cy in y..y + h {
                    if let Some(other) = cells.insert((cx, cy), title) {
                        panic!("{name}: panels {other:?} and {title:?} overlap at ({cx}, {cy})");
                    }
                }
            }

            if panel["type"] == "row" {
                continue;
            }
            let panel_ds = panel["datasource"]["uid"].as_str();
            assert!(
                panel_ds.is_some_and(|uid| uids.contains(uid)),
                "{name}: panel {title:?}: data source {panel_ds:?} is not provisioned"
            );
            let targets = panel["targets"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            assert!(
                !targets.is_empty(),
                "{name}: panel {title:?} has no targets"
            );
            let mut ref_ids = HashSet::new();
            for target in targets {
                let ref_id = target["refId"].as_str().unwrap_or_default();
                assert!(
                    !ref_id.is_empty() && ref_ids.insert(ref_id),
                    "{name}: panel {title:?}: refId {ref_id:?} empty or repeated"
                );
                let ds = target["datasource"]["uid"].as_str().or(panel_ds);
                assert!(
                    ds.is_some_and(|uid| uids.contains(uid)),
                    "{name}: panel {title:?} {ref_id}: data source {ds:?} is not provisioned"
                );
                if ds == Some(PROMETHEUS_UID) {
                    let expr = target["expr"].as_str().unwrap_or_default();
                    assert!(
                        !expr.trim().is_empty(),
                        "{name}: panel {title:?} {ref_id}: no expr"
                    );
                    check_references(expr, &format!("panel {title:?} {ref_id}"));
                } else if ds == Some(TEMPO_UID) {
                    assert!(
                        target["queryType"].as_str().is_some_and(|q| !q.is_empty()),
                        "{name}: panel {title:?} {ref_id}: a Tempo target needs a queryType"
                    );
                }
            }
            for link in links_of(panel) {
                let internal = link["internal"]["datasourceUid"].as_str();
                let url = link["url"].as_str().unwrap_or_default();
                assert!(
                    internal.is_some_and(|uid| uids.contains(uid))
                        || (internal.is_none() && !url.is_empty()),
                    "{name}: panel {title:?}: link {link} goes nowhere provisioned"
                );
                check_references(url, &format!("a link of panel {title:?}"));
                check_references(
                    link["internal"]["query"]["query"]
                        .as_str()
                        .unwrap_or_default(),
                    &format!("a trace link of panel {title:?}"),
                );
            }
        }
    }
}

#[test]
fn latency_panels_show_exemplars() {
    for (file, dashboard) in dashboards() {
        for panel in all_panels(&dashboard) {
            let targets = panel["targets"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let http_latency = targets.iter().any(|t| {
                t["expr"].as_str().is_some_and(|e| {
                    e.contains("histogram_quantile") && e.contains("request_duration")
                })
            });
            if panel["type"] == "timeseries" && http_latency {
                assert!(
                    targets.iter().any(|t| t["exemplar"] == true),
                    "{}: panel {:?} draws HTTP latency without exemplars",
                    file.file,
                    panel["title"]
                );
            }
        }
    }
}

#[test]
fn provisioning_points_grafana_at_one_strata() {
    let doc: serde_yaml::Value = serde_yaml::from_str(DATASOURCES_YAML).unwrap();
    assert_eq!(doc["apiVersion"].as_u64(), Some(1));
    let by_uid = |uid: &str| {
        doc["datasources"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|ds| ds["uid"].as_str() == Some(uid))
            .unwrap_or_else(|| panic!("no data source {uid}"))
            .clone()
    };
    let prometheus = by_uid(PROMETHEUS_UID);
    let tempo = by_uid(TEMPO_UID);
    assert_eq!(prometheus["type"].as_str(), Some("prometheus"));
    assert_eq!(tempo["type"].as_str(), Some("tempo"));
    let prom_url = prometheus["url"].as_str().unwrap();
    let tempo_url = tempo["url"].as_str().unwrap();
    let store = prom_url
        .strip_suffix("/prometheus")
        .expect("the Prometheus API is under /prometheus");
    assert_eq!(
        tempo_url.strip_suffix("/tempo"),
        Some(store),
        "both data sources name the same store"
    );
    assert_eq!(store, "http://strata:9080");

    let destinations = prometheus["jsonData"]["exemplarTraceIdDestinations"]
        .as_sequence()
        .expect("exemplarTraceIdDestinations");
    let names: BTreeSet<&str> = destinations
        .iter()
        .map(|d| {
            assert_eq!(d["datasourceUid"].as_str(), Some(TEMPO_UID), "{d:?}");
            d["name"].as_str().unwrap()
        })
        .collect();
    // The agent's exemplars carry `trace_id`; the store's span metrics `traceID`.
    assert!(
        names.contains("trace_id") && names.contains("traceID"),
        "{names:?}"
    );
    assert_eq!(
        tempo["jsonData"]["serviceMap"]["datasourceUid"].as_str(),
        Some(PROMETHEUS_UID)
    );
    assert_eq!(
        tempo["jsonData"]["tracesToMetrics"]["datasourceUid"].as_str(),
        Some(PROMETHEUS_UID)
    );

    // Grafana expands `$NAME` in provisioning values from its environment; `$$` is a literal `$`.
    fn check_dollars(v: &serde_yaml::Value, at: &str) {
        match v {
            serde_yaml::Value::String(s) => {
                assert!(
                    !s.replace("$$", "").contains('$'),
                    "{at}: {s:?} holds a `$` Grafana would expand from its environment"
                );
            }
            serde_yaml::Value::Sequence(items) => {
                for (i, item) in items.iter().enumerate() {
                    check_dollars(item, &format!("{at}[{i}]"));
                }
            }
            serde_yaml::Value::Mapping(m) => {
                for (k, item) in m {
                    check_dollars(item, &format!("{at}.{}", k.as_str().unwrap_or("?")));
                }
            }
            _ => {}
        }
    }
    check_dollars(&doc, "datasources");

    let provider: serde_yaml::Value = serde_yaml::from_str(DASHBOARD_PROVIDER_YAML).unwrap();
    assert_eq!(provider["apiVersion"].as_u64(), Some(1));
    let p = &provider["providers"][0];
    assert_eq!(p["type"].as_str(), Some("file"));
    assert!(p["options"]["path"]
        .as_str()
        .is_some_and(|path| path.starts_with('/')));
}

fn endpoint(namespace: &str, workload: &str, ip: &str, port: u64) -> Endpoint {
    Endpoint {
        ip: Some(ip.parse::<IpAddr>().unwrap()),
        port,
        namespace: namespace.into(),
        workload: workload.into(),
        ..Default::default()
    }
}

/// Flows that every flow search link, filled in with [`VARS`] and [`SERIES`], finds at least one
/// of; and one from another workload of the same namespace that a link naming the pair must not
/// find.
fn scenario_flows() -> Vec<FlowRecord> {
    let now = now_ns();
    let base = |src, dst| FlowRecord {
        src,
        dst,
        protocol: "tcp".into(),
        ip_family: "ipv4".into(),
        observer_node: "node-a".into(),
        interval_start: now - 10_000_000_000,
        interval_end: now,
        ..Default::default()
    };
    let client = || endpoint("tenant-jobs", "report-builder", "10.0.1.7", 40512);
    let core_api = || endpoint("prod", "core-api", "10.0.4.2", 8080);

    let mut http_503 = base(client(), core_api());
    http_503.bytes_tx = 1834;
    http_503.bytes_rx = 52011;
    http_503.tcp.retransmits = 3;
    http_503.tcp.connect = "ok".into();
    http_503.http.requests = 3;
    http_503.http.responses_2xx = 2;
    http_503.http.responses_5xx = 1;
    http_503.http.status = vec![(200, 2), (503, 1)];
    http_503.http.methods = vec!["GET".into()];

    let mut refused = base(client(), core_api());
    refused.src.port = 40513;
    refused.tcp.connect = "refused".into();

    let mut external = base(client(), endpoint("", "", "93.184.216.34", 443));
    external.dst.name = "api.example.com".into();
    external.tcp.connect = "refused".into();

    let mut nxdomain = base(
        client(),
        endpoint("kube-system", "coredns", "10.96.0.10", 53),
    );
    nxdomain.protocol = "udp".into();
    nxdomain.dns.query = "nope.example.com".into();
    nxdomain.dns.qtype = "A".into();
    nxdomain.dns.rcode = "NXDOMAIN".into();
    nxdomain.dns.latency_us = 800;

    let mut other = base(
        endpoint("tenant-jobs", "other-job", "10.0.1.9", 40600),
        core_api(),
    );
    other.tcp.retransmits = 2;
    other.tcp.connect = "refused".into();
    other.http.requests = 1;
    other.http.responses_5xx = 1;
    other.http.status = vec![(503, 1)];

    vec![http_503, refused, external, nxdomain, other]
}

fn get_json(url: &str, query: &[(&str, &str)]) -> (u16, Value) {
    let response = http().get(url).query(query).send().expect("request");
    let status = response.status().as_u16();
    let body = response.text().unwrap_or_default();
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

/// Runs a flow search link and checks what it finds.
fn check_flow_link(template: &str, url: &str, at: &str) {
    let (status, body) = get_json(url, &[]);
    assert_eq!(status, 200, "{at}: {url} answered {status}: {body}");
    let flows = body["flows"]
        .as_array()
        .unwrap_or_else(|| panic!("{at}: {url}: no flows in {body}"));
    assert!(
        !flows.is_empty(),
        "{at}: {url} finds none of the scenario's flows"
    );
    if template.contains("__field.labels.src_workload") {
        for flow in flows {
            assert_eq!(
                flow["src.workload"], "report-builder",
                "{at}: a link naming the series' source found another source's flow: {flow}"
            );
        }
    }
    if template.contains("${workload") {
        for flow in flows {
            assert_eq!(
                flow["dst.workload"], "core-api",
                "{at}: a link naming the destination found another destination's flow: {flow}"
            );
        }
    }
}

/// Runs a TraceQL query through the Tempo API's search.
fn check_traceql(s: &Strata, traceql: &str, at: &str) {
    let now_s = (now_ns() / 1_000_000_000).to_string();
    let start = (now_ns() / 1_000_000_000 - 3600).to_string();
    let (status, body) = get_json(
        &s.url("/tempo/api/search"),
        &[
            ("q", traceql),
            ("start", &start),
            ("end", &now_s),
            ("limit", "20"),
        ],
    );
    assert_eq!(
        status, 200,
        "{at}: TraceQL {traceql:?} answered {status}: {body}"
    );
}

#[test]
fn queries_and_links_run_on_a_strata_server() {
    let dir = tempfile::tempdir().unwrap();
    let s = Strata::start(BIN, dir.path(), &[]);
    let client = http();

    let flows = scenario_flows();
    let response = client
        .post(s.otlp_url("/v1/logs"))
        .header("Content-Type", "application/x-protobuf")
        .body(export_request(&flows).encode_to_vec())
        .send()
        .unwrap();
    assert_eq!(response.status(), 200, "{:?}", response.text());

    let end = now_ns() / 1_000_000_000;
    let (start_s, end_s) = ((end - 3600).to_string(), (end + 60).to_string());

    // Every panel query, as Grafana runs it, with the HTTP dashboard's measurements of either side.
    let mut queries = panel_queries(VARS);
    assert!(queries.len() > 40, "only {} panel queries", queries.len());
    let client_side: Vec<(&str, &str)> = VARS
        .iter()
        .map(|&(k, v)| if k == "side" { (k, "client") } else { (k, v) })
        .collect();
    queries.extend(
        panel_queries(&client_side)
            .into_iter()
            .filter(|q| q.expr.contains("http_client_request_duration")),
    );
    for q in &queries {
        let at = format!("{} / {} / {}", q.dashboard, q.panel, q.ref_id);
        assert!(!unresolved(&q.expr), "{at}: variables left in {}", q.expr);
        let (path, params) = if q.instant {
            (
                "/prometheus/api/v1/query",
                vec![("query", q.expr.as_str()), ("time", end_s.as_str())],
            )
        } else {
            (
                "/prometheus/api/v1/query_range",
                vec![
                    ("query", q.expr.as_str()),
                    ("start", start_s.as_str()),
                    ("end", end_s.as_str()),
                    ("step", "15"),
                ],
            )
        };
        let v: Value = client
            .post(s.url(path))
            .form(&params)
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(v["status"], "success", "{at}: {}\n{v}", q.expr);
        if q.exemplar {
            let (status, v) = get_json(
                &s.url("/prometheus/api/v1/query_exemplars"),
                &[("query", &q.expr), ("start", &start_s), ("end", &end_s)],
            );
            assert!(
                status == 200 && v["status"] == "success",
                "{at}: exemplars: {v}"
            );
        }
    }
    // Every template variable's values, as Grafana asks for them.
    for v in variable_queries(VARS) {
        let at = format!("{} / ${}", v.dashboard, v.variable);
        assert!(
            !unresolved(&v.selector),
            "{at}: variables left in {}",
            v.selector
        );
        let (status, body) = get_json(
            &s.url(&format!("/prometheus/api/v1/label/{}/values", v.label)),
            &[
                ("match[]", &v.selector),
                ("start", &start_s),
                ("end", &end_s),
            ],
        );
        assert!(status == 200 && body["status"] == "success", "{at}: {body}");
        let r: Value = client
            .post(s.url("/prometheus/api/v1/query"))
            .form(&[("query", v.expr.as_str())])
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(r["status"], "success", "{at}: {}\n{r}", v.expr);
    }

    // Flows become searchable once committed (`flows.commit_interval`).
    wait_for(Duration::from_secs(60), || {
        let (_, body) = get_json(&s.url("/api/v1/flows"), &[("query", "")]);
        (body["flows"].as_array().map_or(0, Vec::len) >= flows.len()).then_some(())
    })
    .expect("the scenario's flows never became searchable");

    let server_url = s.url("");
    let from_ms = ((end - 3600) * 1000).to_string();
    let to_ms = ((end + 60) * 1000).to_string();
    let mut vars: Vec<(String, String)> = VARS
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    vars.push(("strata_url".into(), server_url.clone()));
    vars.push(("__from".into(), from_ms));
    vars.push(("__to".into(), to_ms));
    for (label, value) in SERIES {
        vars.push((format!("__field.labels.{label}"), (*value).to_owned()));
        vars.push((format!("__data.fields.{label}"), (*value).to_owned()));
    }
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();

    let (mut flow_links, mut trace_links) = (0, 0);
    for (file, dashboard) in dashboards() {
        for panel in all_panels(&dashboard) {
            for link in links_of(panel) {
                let at = format!(
                    "{}: panel {:?}: link {:?}",
                    file.file, panel["title"], link["title"]
                );
                if let Some(traceql) = link["internal"]["query"]["query"].as_str() {
                    let traceql = substitute(traceql, &vars);
                    assert!(!unresolved(&traceql), "{at}: variables left in {traceql}");
                    check_traceql(&s, &traceql, &at);
                    trace_links += 1;
                    continue;
                }
                let template = link["url"].as_str().unwrap();
                let url = substitute(template, &vars);
                assert!(!unresolved(&url), "{at}: variables left in {url}");
                if let Some(query) = url.strip_prefix("/explore?") {
                    let panes = form_urlencoded::parse(query.as_bytes())
                        .find(|(k, _)| k == "panes")
                        .map(|(_, v)| v.into_owned())
                        .unwrap_or_else(|| panic!("{at}: no panes in {url}"));
                    let panes: Value = serde_json::from_str(&panes)
                        .unwrap_or_else(|e| panic!("{at}: panes are not JSON ({e}): {panes}"));
                    for pane in panes.as_object().unwrap().values() {
                        assert_eq!(pane["datasource"], TEMPO_UID, "{at}");
                        for q in pane["queries"].as_array().unwrap() {
                            assert_eq!(q["datasource"]["uid"], TEMPO_UID, "{at}");
                            check_traceql(&s, q["query"].as_str().unwrap(), &at);
                        }
                    }
                    trace_links += 1;
                } else if url.starts_with(&format!("{server_url}/api/v1/flows?")) {
                    check_flow_link(template, &url, &at);
                    flow_links += 1;
                } else {
                    panic!("{at}: a link to neither the flow search nor Explore: {url}");
                }
            }
        }
    }
    assert!(
        flow_links >= 10 && trace_links >= 5,
        "{flow_links} flow links, {trace_links} trace links"
    );
}
