//! A Kubernetes API server fixture: Pods and Nodes as real-shaped JSON on 127.0.0.1, for the agent's
//! identity tests where no real API server can run. It serves what a client's list-then-watch asks:
//!
//! - `GET /api/v1/pods`, `/api/v1/namespaces/{ns}/pods`, `/api/v1/nodes`: a `PodList`/`NodeList` with
//!   `metadata.resourceVersion`, honouring `fieldSelector` (`metadata.name`, `metadata.namespace`,
//!   `spec.nodeName`, `status.phase`; `=`, `==`, `!=`), equality and existence `labelSelector`s,
//!   and `limit`/`continue` paging. Items carry no `kind`/`apiVersion`, as the real server's don't.
//! - the same paths with `watch=true&resourceVersion=N`: newline-delimited `ADDED`/`MODIFIED`/
//!   `DELETED` events after N, `BOOKMARK`s when `allowWatchBookmarks=true`, closed after
//!   `timeoutSeconds`; a version older than the last [`KubeApi::compact`] answers one `ERROR`
//!   event with a 410 `Status`, as after etcd compaction.
//!
//! Paging is over the current objects, not a snapshot, and a watch with a field selector does not
//! turn an object leaving the selection into a `DELETED`; tests here change objects between
//! lists, not during them.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;

/// How often an idle watch that asked for bookmarks gets one.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(1);
/// The real server picks a random timeout between 30 and 60 minutes when none is asked for.
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Pod,
    Node,
}

impl Kind {
    fn list_kind(self) -> &'static str {
        match self {
            Kind::Pod => "PodList",
            Kind::Node => "NodeList",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Pod => "Pod",
            Kind::Node => "Node",
        }
    }
}

/// A running fixture. Dropping it stops the server.
pub struct KubeApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

struct Shared {
    state: Mutex<Store>,
    signals: broadcast::Sender<Signal>,
    /// While true, new watches hold their answer back.
    paused: watch::Sender<bool>,
}

#[derive(Clone)]
enum Signal {
    Change(Arc<Change>),
    CloseWatches,
}

#[derive(Debug)]
struct Change {
    resource_version: u64,
    kind: Kind,
    event: &'static str,
    object: Value,
}

#[derive(Default)]
struct Store {
    resource_version: u64,
    /// Watches from before this version are answered 410 Gone.
    compacted: u64,
    pods: BTreeMap<String, Value>,
    nodes: BTreeMap<String, Value>,
    history: Vec<Arc<Change>>,
    requests: Vec<String>,
    next_uid: u64,
}

impl Store {
    fn objects(&self, kind: Kind) -> &BTreeMap<String, Value> {
        match kind {
            Kind::Pod => &self.pods,
            Kind::Node => &self.nodes,
        }
    }

    fn objects_mut(&mut self, kind: Kind) -> &mut BTreeMap<String, Value> {
        match kind {
            Kind::Pod => &mut self.pods,
            Kind::Node => &mut self.nodes,
        }
    }
}

impl KubeApi {
    pub async fn start() -> std::io::Result<KubeApi> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(Store {
                resource_version: 1000,
                ..Store::default()
            }),
            signals: broadcast::channel(4096).0,
            paused: watch::channel(false).0,
        });
        let app = Router::new()
            .route("/api/v1/pods", get(all_pods))
            .route("/api/v1/namespaces/{namespace}/pods", get(namespaced_pods))
            .route("/api/v1/nodes", get(nodes))
            .fallback(not_found)
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(KubeApi {
            addr,
            shared,
            server,
        })
    }

    /// `http://127.0.0.1:PORT`, for a client's cluster URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Creates or replaces a pod (keyed by namespace and name); watchers see ADDED or MODIFIED.
    pub fn apply_pod(&self, pod: &PodSpec) {
        self.apply(Kind::Pod, pod.to_json());
    }

    /// Creates or replaces a node (keyed by name).
    pub fn apply_node(&self, node: Value) {
        self.apply(Kind::Node, node);
    }

    /// Creates or replaces any object of `kind` given as JSON; a missing `metadata.uid` is filled.
    pub fn apply(&self, kind: Kind, mut object: Value) {
        let mut store = self.lock();
        let key = object_key(&object);
        store.resource_version += 1;
        let resource_version = store.resource_version;
        if object.pointer("/metadata/uid").is_none() {
            store.next_uid += 1;
            object["metadata"]["uid"] = json!(uuid_like(store.next_uid));
        }
        object["metadata"]["resourceVersion"] = json!(resource_version.to_string());
        object["metadata"]
            .as_object_mut()
            .expect("metadata is an object")
            .entry("creationTimestamp")
            .or_insert_with(|| json!("2024-05-01T10:00:00Z"));
        let event = match store.objects_mut(kind).insert(key, object.clone()) {
            Some(_) => "MODIFIED",
            None => "ADDED",
        };
        self.publish(&mut store, kind, event, object);
    }

    /// Deletes a pod; false when there was none.
    pub fn delete_pod(&self, namespace: &str, name: &str) -> bool {
        self.delete(Kind::Pod, &format!("{namespace}/{name}"))
    }

    pub fn delete_node(&self, name: &str) -> bool {
        self.delete(Kind::Node, name)
    }

    fn delete(&self, kind: Kind, key: &str) -> bool {
        let mut store = self.lock();
        let Some(mut object) = store.objects_mut(kind).remove(key) else {
            return false;
        };
        store.resource_version += 1;
        object["metadata"]["resourceVersion"] = json!(store.resource_version.to_string());
        self.publish(&mut store, kind, "DELETED", object);
        true
    }

    fn publish(&self, store: &mut Store, kind: Kind, event: &'static str, object: Value) {
        let change = Arc::new(Change {
            resource_version: store.resource_version,
            kind,
            event,
            object,
        });
        store.history.push(change.clone());
        // Sent under the lock, so a watch that subscribes under it misses nothing.
        let _ = self.shared.signals.send(Signal::Change(change));
    }

    /// Forgets the event history, as etcd compaction does: a watch resuming from an older version
    /// gets 410 Gone and must list again.
    pub fn compact(&self) {
        let mut store = self.lock();
        store.compacted = store.resource_version + 1;
        store.history.clear();
    }

    /// Ends every open watch and holds new ones back until [`KubeApi::resume_watches`], so that
    /// changes made in between reach clients only through what they ask next.
    pub fn pause_watches(&self) {
        self.shared.paused.send_replace(true);
        let _ = self.shared.signals.send(Signal::CloseWatches);
    }

    pub fn resume_watches(&self) {
        self.shared.paused.send_replace(false);
    }

    pub fn resource_version(&self) -> u64 {
        self.lock().resource_version
    }

    /// Every request so far, as path and query.
    pub fn requests(&self) -> Vec<String> {
        self.lock().requests.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        lock(&self.shared)
    }
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, Store> {
    shared
        .state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn object_key(object: &Value) -> String {
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .expect("object has metadata.name");
    match object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
    {
        Some(namespace) => format!("{namespace}/{name}"),
        None => name.to_owned(),
    }
}

/// A UUID-shaped UID from a number.
fn uuid_like(n: u64) -> String {
    let hex = format!(
        "{:032x}",
        0x5eed_0000_0000_4000_8000_0000_0000_0000u128 + u128::from(n)
    );
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

type Params = Query<HashMap<String, String>>;

async fn all_pods(State(shared): State<Arc<Shared>>, uri: Uri, Query(params): Params) -> Response {
    serve(shared, Kind::Pod, None, &uri, params).await
}

async fn namespaced_pods(
    State(shared): State<Arc<Shared>>,
    Path(namespace): Path<String>,
    uri: Uri,
    Query(params): Params,
) -> Response {
    serve(shared, Kind::Pod, Some(namespace), &uri, params).await
}

async fn nodes(State(shared): State<Arc<Shared>>, uri: Uri, Query(params): Params) -> Response {
    serve(shared, Kind::Node, None, &uri, params).await
}

async fn not_found(uri: Uri) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("the server could not find the requested resource ({uri})"),
    )
}

async fn serve(
    shared: Arc<Shared>,
    kind: Kind,
    namespace: Option<String>,
    uri: &Uri,
    params: HashMap<String, String>,
) -> Response {
    lock(&shared).requests.push(uri.to_string());
    let mut selector = match Selector::parse(&params) {
        Ok(selector) => selector,
        Err(message) => return status(StatusCode::BAD_REQUEST, "BadRequest", &message),
    };
    if let Some(namespace) = namespace {
        selector
            .fields
            .push(("metadata.namespace".into(), true, namespace));
    }
    if params.get("watch").is_some_and(|w| w == "true" || w == "1") {
        watch_response(shared, kind, selector, &params)
    } else {
        list_response(&shared, kind, &selector, &params)
    }
}

fn list_response(
    shared: &Shared,
    kind: Kind,
    selector: &Selector,
    params: &HashMap<String, String>,
) -> Response {
    let store = lock(shared);
    let matching: Vec<&Value> = store
        .objects(kind)
        .values()
        .filter(|object| selector.matches(object))
        .collect();
    let offset = match params.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => match token.parse::<usize>() {
            Ok(offset) => offset,
            Err(_) => {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "invalid continue token",
                )
            }
        },
        None => 0,
    };
    let limit = params
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|&l| l > 0)
        .unwrap_or(usize::MAX);
    let page: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(limit)
        .map(|object| list_item(object))
        .collect();
    let mut metadata = json!({ "resourceVersion": store.resource_version.to_string() });
    let next = offset.saturating_add(page.len());
    if next < matching.len() {
        metadata["continue"] = json!(next.to_string());
        metadata["remainingItemCount"] = json!(matching.len() - next);
    }
    axum::Json(json!({
        "kind": kind.list_kind(),
        "apiVersion": "v1",
        "metadata": metadata,
        "items": page,
    }))
    .into_response()
}

/// List items lack `kind` and `apiVersion`; the list names them once.
fn list_item(object: &Value) -> Value {
    let mut item = object.clone();
    if let Some(fields) = item.as_object_mut() {
        fields.remove("kind");
        fields.remove("apiVersion");
    }
    item
}

fn watch_response(
    shared: Arc<Shared>,
    kind: Kind,
    selector: Selector,
    params: &HashMap<String, String>,
) -> Response {
    let since = params.get("resourceVersion").cloned().unwrap_or_default();
    let since = match since.as_str() {
        "" | "0" => None,
        text => match text.parse::<u64>() {
            Ok(version) => Some(version),
            Err(_) => {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    &format!("invalid resourceVersion {text:?}"),
                )
            }
        },
    };
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map_or(DEFAULT_WATCH_TIMEOUT, Duration::from_secs);
    let bookmarks = params
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true");
    let (lines, body) = mpsc::channel::<Bytes>(256);
    tokio::spawn(stream_events(
        shared, kind, selector, since, timeout, bookmarks, lines,
    ));
    let body = futures::stream::unfold(body, |mut body| async move {
        body.recv()
            .await
            .map(|line| (Ok::<_, Infallible>(line), body))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(body))
        .expect("a valid response")
}

fn event_line(event: &str, object: &Value) -> Bytes {
    let mut line =
        serde_json::to_vec(&json!({ "type": event, "object": object })).expect("JSON serialises");
    line.push(b'\n');
    Bytes::from(line)
}

async fn stream_events(
    shared: Arc<Shared>,
    kind: Kind,
    selector: Selector,
    since: Option<u64>,
    timeout: Duration,
    bookmarks: bool,
    lines: mpsc::Sender<Bytes>,
) {
    let mut paused = shared.paused.subscribe();
    if paused.wait_for(|paused| !paused).await.is_err() {
        return;
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let (start, mut signals, mut seen) = {
        let store = lock(&shared);
        let start = match since {
            Some(version) if version < store.compacted => Start::Gone(event_line(
                "ERROR",
                &json!({
                    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": format!("too old resource version: {version} ({})", store.compacted),
                    "reason": "Expired", "code": 410
                }),
            )),
            Some(version) => Start::Backlog(
                store
                    .history
                    .iter()
                    .filter(|c| c.kind == kind && c.resource_version > version)
                    .filter(|c| selector.matches(&c.object))
                    .map(|c| event_line(c.event, &c.object))
                    .collect(),
            ),
            // From "any" version: the current objects as ADDED, then changes.
            None => Start::Backlog(
                store
                    .objects(kind)
                    .values()
                    .filter(|object| selector.matches(object))
                    .map(|object| event_line("ADDED", object))
                    .collect(),
            ),
        };
        (start, shared.signals.subscribe(), store.resource_version)
    };
    let backlog = match start {
        Start::Gone(line) => {
            let _ = lines.send(line).await;
            return;
        }
        Start::Backlog(backlog) => backlog,
    };
    for line in backlog {
        if lines.send(line).await.is_err() {
            return;
        }
    }
    let mut bookmark_tick = tokio::time::interval(BOOKMARK_INTERVAL);
    bookmark_tick.tick().await;
    loop {
        let line = tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return,
            _ = lines.closed() => return,
            _ = bookmark_tick.tick(), if bookmarks => {
                let object = json!({
                    "kind": kind.name(), "apiVersion": "v1",
                    "metadata": { "resourceVersion": seen.to_string() }
                });
                event_line("BOOKMARK", &object)
            }
            signal = signals.recv() => match signal {
                Ok(Signal::Change(change)) => {
                    seen = seen.max(change.resource_version);
                    if change.kind != kind || !selector.matches(&change.object) {
                        continue;
                    }
                    event_line(change.event, &change.object)
                }
                // Closed by the test, or too slow a reader: the client resumes from what it saw.
                Ok(Signal::CloseWatches) | Err(_) => return,
            },
        };
        if lines.send(line).await.is_err() {
            return;
        }
    }
}

/// How a watch begins: 410 Gone, or the events after the version asked for.
enum Start {
    Gone(Bytes),
    Backlog(Vec<Bytes>),
}

/// A Kubernetes `Status` answer.
fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16()
    });
    (code, axum::Json(body)).into_response()
}

/// Field and label selectors: (key, equal?, value) terms, all of which must hold. A label term
/// with an empty value and `equal` tests existence, without `equal` absence.
#[derive(Debug, Default)]
struct Selector {
    fields: Vec<(String, bool, String)>,
    labels: Vec<(String, bool, Option<String>)>,
}

/// The fields the real server lets pods and nodes be selected by (a subset).
const SELECTABLE_FIELDS: [&str; 4] = [
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "status.phase",
];

impl Selector {
    fn parse(params: &HashMap<String, String>) -> Result<Selector, String> {
        let mut selector = Selector::default();
        for term in terms(params.get("fieldSelector")) {
            let (key, equal, value) =
                split_term(term).ok_or_else(|| format!("invalid field selector term {term:?}"))?;
            if !SELECTABLE_FIELDS.contains(&key) {
                return Err(format!("field label not supported: {key}"));
            }
            selector.fields.push((key.into(), equal, value.into()));
        }
        for term in terms(params.get("labelSelector")) {
            let label = match split_term(term) {
                Some((key, equal, value)) => (key.to_owned(), equal, Some(value.to_owned())),
                None if term.starts_with('!') => (term[1..].to_owned(), false, None),
                None if !term.contains([' ', '(', ')']) => (term.to_owned(), true, None),
                None => return Err(format!("unsupported label selector term {term:?}")),
            };
            selector.labels.push(label);
        }
        Ok(selector)
    }

    fn matches(&self, object: &Value) -> bool {
        let fields = self.fields.iter().all(|(key, equal, value)| {
            let pointer = format!("/{}", key.replace('.', "/"));
            let actual = object
                .pointer(&pointer)
                .and_then(Value::as_str)
                .unwrap_or("");
            (actual == value) == *equal
        });
        let labels = object.pointer("/metadata/labels");
        fields
            && self.labels.iter().all(|(key, equal, value)| {
                let actual = labels.and_then(|l| l.get(key)).and_then(Value::as_str);
                match value {
                    Some(value) => (actual == Some(value.as_str())) == *equal,
                    None => actual.is_some() == *equal,
                }
            })
    }
}

fn terms(text: Option<&String>) -> impl Iterator<Item = &str> {
    text.into_iter()
        .flat_map(|t| t.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

fn split_term(term: &str) -> Option<(&str, bool, &str)> {
    if let Some((key, value)) = term.split_once("!=") {
        return Some((key.trim(), false, value.trim()));
    }
    let (key, value) = term.split_once("==").or_else(|| term.split_once('='))?;
    Some((key.trim(), true, value.trim()))
}

/// A pod as the kubelet reports it once running. Built up with the methods, then applied with
/// [`KubeApi::apply_pod`].
#[derive(Clone, Debug)]
pub struct PodSpec {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub node: String,
    /// `status.podIPs`, the first also `status.podIP`.
    pub ips: Vec<String>,
    pub host_ip: String,
    /// (kind, name, apiVersion) of the controller owner.
    pub owner: Option<(String, String, String)>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// With the runtime scheme: `containerd://<64 hex>`.
    pub container_ids: Vec<String>,
    pub phase: String,
    pub host_network: bool,
}

impl PodSpec {
    /// A running pod without owner; its UID is derived from namespace and name.
    pub fn new(namespace: &str, name: &str) -> PodSpec {
        let seed = format!("{namespace}/{name}")
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
                (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
            });
        PodSpec {
            namespace: namespace.into(),
            name: name.into(),
            uid: uuid_like(seed),
            node: String::new(),
            ips: Vec::new(),
            host_ip: String::new(),
            owner: None,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            container_ids: Vec::new(),
            phase: "Running".into(),
            host_network: false,
        }
    }

    /// A pod of a Deployment: owned by its ReplicaSet `<deployment>-<hash>`, labelled with the hash.
    pub fn of_deployment(namespace: &str, deployment: &str, hash: &str, suffix: &str) -> PodSpec {
        PodSpec::new(namespace, &format!("{deployment}-{hash}-{suffix}"))
            .owned_by("ReplicaSet", &format!("{deployment}-{hash}"))
            .label("pod-template-hash", hash)
            .label("app", deployment)
    }

    /// Owned by a controller; the API group follows from the kind.
    pub fn owned_by(mut self, kind: &str, name: &str) -> PodSpec {
        let api_version = match kind {
            "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Deployment" => "apps/v1",
            "Job" | "CronJob" => "batch/v1",
            _ => "v1",
        };
        self.owner = Some((kind.into(), name.into(), api_version.into()));
        self
    }

    pub fn uid(mut self, uid: &str) -> PodSpec {
        self.uid = uid.into();
        self
    }

    pub fn node(mut self, node: &str, host_ip: &str) -> PodSpec {
        self.node = node.into();
        self.host_ip = host_ip.into();
        self
    }

    pub fn ip(mut self, ip: &str) -> PodSpec {
        self.ips.push(ip.into());
        self
    }

    /// A container, id with its runtime scheme (`containerd://…`, `cri-o://…`).
    pub fn container(mut self, id: &str) -> PodSpec {
        self.container_ids.push(id.into());
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> PodSpec {
        self.labels.insert(key.into(), value.into());
        self
    }

    pub fn annotation(mut self, key: &str, value: &str) -> PodSpec {
        self.annotations.insert(key.into(), value.into());
        self
    }

    pub fn phase(mut self, phase: &str) -> PodSpec {
        self.phase = phase.into();
        self
    }

    pub fn host_network(mut self) -> PodSpec {
        self.host_network = true;
        self
    }

    pub fn to_json(&self) -> Value {
        let mut metadata = json!({
            "name": self.name,
            "namespace": self.namespace,
            "uid": self.uid,
            "labels": self.labels,
        });
        if !self.annotations.is_empty() {
            metadata["annotations"] = json!(self.annotations);
        }
        if let Some((kind, name, api_version)) = &self.owner {
            metadata["ownerReferences"] = json!([{
                "apiVersion": api_version, "kind": kind, "name": name,
                "uid": uuid_like(name.len() as u64), "controller": true, "blockOwnerDeletion": true
            }]);
        }
        let containers: Vec<Value> = (0..self.container_ids.len().max(1))
            .map(|i| json!({ "name": format!("c{i}"), "image": "registry.example/app:1" }))
            .collect();
        let statuses: Vec<Value> = self
            .container_ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                json!({
                    "name": format!("c{i}"), "image": "registry.example/app:1",
                    "imageID": "registry.example/app@sha256:0f0e", "containerID": id,
                    "ready": true, "started": true, "restartCount": 0,
                    "state": { "running": { "startedAt": "2024-05-01T10:00:05Z" } }
                })
            })
            .collect();
        let mut spec = json!({ "containers": containers, "restartPolicy": "Always" });
        if !self.node.is_empty() {
            spec["nodeName"] = json!(self.node);
        }
        if self.host_network {
            spec["hostNetwork"] = json!(true);
        }
        let mut status = json!({ "phase": self.phase, "containerStatuses": statuses });
        if let Some(first) = self.ips.first() {
            status["podIP"] = json!(first);
            status["podIPs"] = json!(self
                .ips
                .iter()
                .map(|ip| json!({ "ip": ip }))
                .collect::<Vec<_>>());
        }
        if !self.host_ip.is_empty() {
            status["hostIP"] = json!(self.host_ip);
            status["hostIPs"] = json!([{ "ip": self.host_ip }]);
        }
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": metadata,
            "spec": spec,
            "status": status,
        })
    }
}

/// A ready node with one internal address.
pub fn node(name: &str, internal_ip: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": { "kubernetes.io/hostname": name, "kubernetes.io/os": "linux" }
        },
        "spec": {},
        "status": {
            "addresses": [
                { "type": "InternalIP", "address": internal_ip },
                { "type": "Hostname", "address": name }
            ],
            "conditions": [{ "type": "Ready", "status": "True" }]
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(api: &KubeApi, path: &str) -> (StatusCode, Value) {
        let response = reqwest::get(format!("{}{path}", api.url())).await.unwrap();
        let code = StatusCode::from_u16(response.status().as_u16()).unwrap();
        (code, response.json().await.unwrap())
    }

    fn names(list: &Value) -> Vec<&str> {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["metadata"]["name"].as_str().unwrap())
            .collect()
    }

    /// Reads watch events until `count` have arrived.
    async fn events(response: &mut reqwest::Response, count: usize) -> Vec<Value> {
        let mut buffer = Vec::new();
        let mut events = Vec::new();
        while events.len() < count {
            let chunk = tokio::time::timeout(Duration::from_secs(5), response.chunk())
                .await
                .expect("an event in time")
                .unwrap()
                .expect("the stream is open");
            buffer.extend_from_slice(&chunk);
            while let Some(end) = buffer.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                events.push(serde_json::from_slice(&line).unwrap());
            }
        }
        events
    }

    #[tokio::test]
    async fn lists_select_and_page() {
        let api = KubeApi::start().await.unwrap();
        for (name, node_name) in [("a", "n1"), ("b", "n2"), ("c", "n1"), ("d", "n1")] {
            api.apply_pod(
                &PodSpec::new("ns", name)
                    .node(node_name, "10.0.0.1")
                    .label("app", name),
            );
        }
        let (code, list) = get(&api, "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1").await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(list["kind"], "PodList");
        assert_eq!(names(&list), ["a", "c", "d"]);
        assert!(list["items"][0].get("kind").is_none(), "items lack kind");
        assert_eq!(
            list["metadata"]["resourceVersion"],
            api.resource_version().to_string()
        );

        let (_, page) = get(&api, "/api/v1/pods?limit=2").await;
        assert_eq!(names(&page), ["a", "b"]);
        assert_eq!(page["metadata"]["remainingItemCount"], 2);
        let token = page["metadata"]["continue"].as_str().unwrap();
        let (_, rest) = get(&api, &format!("/api/v1/pods?limit=2&continue={token}")).await;
        assert_eq!(names(&rest), ["c", "d"]);
        assert!(rest["metadata"].get("continue").is_none());

        let (_, labelled) = get(&api, "/api/v1/pods?labelSelector=app%21%3Db,app").await;
        assert_eq!(names(&labelled), ["a", "c", "d"]);
        let (_, scoped) = get(&api, "/api/v1/namespaces/other/pods").await;
        assert!(names(&scoped).is_empty());
        let (code, refused) = get(&api, "/api/v1/pods?fieldSelector=spec.schedulerName%3Dx").await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        assert_eq!(refused["kind"], "Status");
        let (code, _) = get(&api, "/api/v1/services").await;
        assert_eq!(code, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn watches_stream_changes_after_a_version_and_410_after_compaction() {
        let api = KubeApi::start().await.unwrap();
        api.apply_node(node("n1", "10.0.0.1"));
        let listed = api.resource_version();
        api.apply_node(node("n2", "10.0.0.2"));
        let mut watch = reqwest::get(format!(
            "{}/api/v1/nodes?watch=true&resourceVersion={listed}&allowWatchBookmarks=true",
            api.url()
        ))
        .await
        .unwrap();
        api.apply_node(node("n1", "10.0.0.9"));
        assert!(api.delete_node("n2"));
        let seen = events(&mut watch, 3).await;
        let kinds: Vec<&str> = seen.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["ADDED", "MODIFIED", "DELETED"]);
        assert_eq!(seen[1]["object"]["kind"], "Node");
        assert_eq!(
            seen[2]["object"]["metadata"]["resourceVersion"],
            api.resource_version().to_string()
        );
        let bookmark = events(&mut watch, 1).await;
        assert_eq!(bookmark[0]["type"], "BOOKMARK");

        api.compact();
        let mut stale = reqwest::get(format!(
            "{}/api/v1/nodes?watch=true&resourceVersion={listed}",
            api.url()
        ))
        .await
        .unwrap();
        let gone = events(&mut stale, 1).await;
        assert_eq!(gone[0]["type"], "ERROR");
        assert_eq!(gone[0]["object"]["code"], 410);
    }
}
