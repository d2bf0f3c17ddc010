//! One span per observed HTTP/1.x exchange that carried a W3C `traceparent` saying its trace is
//! sampled, in the trace the header names (an unsampled trace is one the application decided not to
//! record: a span in it would stand alone, so the agent follows the decision as a parent-based
//! sampler does). The server end's span is a child of the header's parent id, with an id of its
//! own; the client end's span takes the header's parent id as its id, because a client sends
//! its own span's id in `traceparent` (W3C Trace Context §3.2.2.4) — so when both ends are
//! observed the server span hangs under the client span, as an instrumented pair would.

use std::collections::HashMap;
use std::sync::Arc;

use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};

use crate::clock::Clock;
use crate::events::{HttpExchange, Role};
use crate::hash::FastMap;
use crate::http::TraceParent;
use crate::identity::Identity;
use crate::otlp;

/// The id of the span the agent makes for the server end of an exchange. Derived from the
/// exchange, so the metrics' exemplars name the same span without sharing state.
pub fn server_span_id(exchange: &HttpExchange) -> [u8; 8] {
    let mut x = exchange.sock_cookie
        ^ exchange.request_ns.rotate_left(29)
        ^ exchange.cgroup_id.rotate_left(47);
    // splitmix64 finaliser: spreads every input bit over the id.
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    // An all-zero span id is invalid.
    x.max(1).to_be_bytes()
}

/// The span id the agent reports for `exchange`'s end, with the trace it belongs to; `None` without
/// a sampled trace.
pub fn span_ids(exchange: &HttpExchange) -> Option<([u8; 16], [u8; 8])> {
    let traceparent = exchange.request.as_ref()?.traceparent.as_ref()?;
    if !traceparent.sampled() {
        return None;
    }
    let span_id = match exchange.role {
        Role::Client => traceparent.parent_id,
        Role::Server | Role::Unknown => server_span_id(exchange),
    };
    Some((traceparent.trace_id, span_id))
}

/// The span for one end of an exchange; `None` without a sampled `traceparent`.
pub fn span_of(exchange: &HttpExchange, clock: &dyn Clock, peer: &Identity) -> Option<Span> {
    let request = exchange.request.as_ref()?;
    let traceparent: &TraceParent = request.traceparent.as_ref()?;
    let (trace_id, span_id) = span_ids(exchange)?;
    let server = exchange.role != Role::Client;
    let mut attributes = vec![
        otlp::string("http.request.method", request.method.as_str()),
        otlp::string("url.path", request.path()),
        otlp::string(
            "network.protocol.version",
            format!("1.{}", request.version.minor),
        ),
        otlp::string(
            "network.peer.address",
            exchange.endpoints.remote.ip().to_string(),
        ),
        otlp::int(
            "network.peer.port",
            u64::from(exchange.endpoints.remote.port()),
        ),
    ];
    let host = request
        .host
        .as_deref()
        .map(|host| host.rsplit_once(':').map_or(host, |(name, _)| name));
    let server_port = if server {
        exchange.endpoints.local.port()
    } else {
        exchange.endpoints.remote.port()
    };
    if let Some(host) = host.filter(|host| !host.is_empty()) {
        attributes.push(otlp::string("server.address", host));
    }
    attributes.push(otlp::int("server.port", u64::from(server_port)));
    if server {
        attributes.push(otlp::string(
            "client.address",
            exchange.endpoints.remote.ip().to_string(),
        ));
    } else {
        let name = otlp::service_name(peer);
        if name != "unknown" {
            attributes.push(otlp::string("peer.service", name));
        }
    }
    let mut span_status = Status::default();
    if let Some(status) = &exchange.status {
        attributes.push(otlp::int(
            "http.response.status_code",
            u64::from(status.code),
        ));
        // Semantic conventions: a server span fails on 5xx, a client span on 4xx and 5xx.
        let failed = if server {
            status.code >= 500
        } else {
            status.code >= 400
        };
        if failed {
            span_status.code = status::StatusCode::Error as i32;
            attributes.push(otlp::string("error.type", status.code.to_string()));
        }
    }
    Some(Span {
        trace_id: trace_id.to_vec(),
        span_id: span_id.to_vec(),
        parent_span_id: if server {
            traceparent.parent_id.to_vec()
        } else {
            Vec::new()
        },
        flags: u32::from(traceparent.flags),
        name: request.method.as_str().to_owned(),
        kind: if server {
            span::SpanKind::Server
        } else {
            span::SpanKind::Client
        } as i32,
        start_time_unix_nano: clock.unix_ns(exchange.request_ns),
        end_time_unix_nano: clock.unix_ns(exchange.response_ns.max(exchange.request_ns)),
        attributes,
        status: Some(span_status),
        ..Span::default()
    })
}

/// Spans waiting for export, grouped by the service they belong to.
#[derive(Debug)]
pub struct SpanBatch {
    /// Spans by the `Arc` their service came in, found by its address so that a push compares
    /// no strings (the pipeline lends one `Arc` per identity for a second at a time); the entry
    /// holds the `Arc`, which keeps the address from being reused while the key exists. Spans of
    /// equal services that came in different `Arc`s are merged at the drain.
    by_service: FastMap<usize, (Arc<Identity>, Vec<Span>)>,
    len: usize,
    /// Spans a batch holds before it is full and must be drained (handed to the exporter, whose
    /// bounded queue counts what it cannot keep).
    max_spans: usize,
}

impl SpanBatch {
    pub fn new(max_spans: usize) -> SpanBatch {
        SpanBatch {
            by_service: FastMap::default(),
            len: 0,
            max_spans: max_spans.max(1),
        }
    }

    /// Adds a span; true when the batch is now full.
    pub fn push(&mut self, service: &Arc<Identity>, span: Span) -> bool {
        self.len += 1;
        self.by_service
            .entry(Arc::as_ptr(service).addr())
            .or_insert_with(|| (Arc::clone(service), Vec::new()))
            .1
            .push(span);
        self.len >= self.max_spans
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Everything pushed since the last drain, one resource per service.
    pub fn drain(&mut self) -> Vec<ResourceSpans> {
        self.len = 0;
        let mut merged: HashMap<Arc<Identity>, Vec<Span>> = HashMap::new();
        for (_, (service, spans)) in self.by_service.drain() {
            merged.entry(service).or_default().extend(spans);
        }
        merged
            .into_iter()
            .map(|(service, spans)| ResourceSpans {
                resource: Some(otlp::service_resource(&service)),
                scope_spans: vec![ScopeSpans {
                    scope: Some(otlp::scope()),
                    spans,
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(workload: &str) -> Arc<Identity> {
        Arc::new(Identity {
            namespace: "shop".into(),
            workload: workload.into(),
            workload_kind: "Deployment".into(),
            ..Identity::default()
        })
    }

    fn span(name: &str) -> Span {
        Span {
            name: name.into(),
            ..Span::default()
        }
    }

    /// Resource (by its `service.name`) → span names, sorted.
    fn by_resource(resources: Vec<ResourceSpans>) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = resources
            .into_iter()
            .map(|resource| {
                let attributes = resource.resource.expect("resource").attributes;
                let name = attributes
                    .iter()
                    .find(|kv| kv.key == "service.name")
                    .and_then(|kv| kv.value.as_ref())
                    .map(|value| format!("{:?}", value.value))
                    .expect("service.name");
                let mut spans: Vec<String> = resource
                    .scope_spans
                    .into_iter()
                    .flat_map(|scope| scope.spans)
                    .map(|span| span.name)
                    .collect();
                spans.sort();
                (name, spans)
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn only_a_sampled_trace_gets_spans() {
        use crate::clock::ManualClock;
        use crate::http::parse_request_head;
        let exchange = |flags: &str, role: Role| HttpExchange {
            role,
            request: parse_request_head(
                format!(
                    "GET / HTTP/1.1\r\ntraceparent: \
                     00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-{flags}\r\n\r\n"
                )
                .as_bytes(),
            ),
            ..HttpExchange::served(200, 1_000)
        };
        let clock = ManualClock::default();
        let peer = Identity::default();
        for role in [Role::Server, Role::Client] {
            for flags in ["01", "03"] {
                let span = span_of(&exchange(flags, role), &clock, &peer).expect("a span");
                assert_eq!(span.trace_id[0], 0x0a);
                assert_eq!(span.flags & 1, 1);
            }
            for flags in ["00", "02"] {
                assert!(span_of(&exchange(flags, role), &clock, &peer).is_none());
                assert!(span_ids(&exchange(flags, role)).is_none());
            }
        }
    }

    #[test]
    fn spans_group_by_service_whichever_arc_named_it() {
        let mut batch = SpanBatch::new(10);
        let cart = service("cart");
        let cart_again = service("cart"); // resolved again: another Arc, the same service
        let checkout = service("checkout");
        batch.push(&cart, span("a"));
        batch.push(&checkout, span("b"));
        batch.push(&cart_again, span("c"));
        batch.push(&cart, span("d"));
        assert_eq!(batch.len(), 4);
        let resources = batch.drain();
        assert_eq!(resources.len(), 2, "one resource per service");
        let grouped = by_resource(resources);
        assert_eq!(grouped[0].1, ["a", "c", "d"], "{grouped:?}");
        assert_eq!(grouped[1].1, ["b"], "{grouped:?}");
        assert!(batch.is_empty());
        assert!(batch.drain().is_empty());
    }

    #[test]
    fn a_batch_says_when_it_is_full_until_the_drain() {
        let mut batch = SpanBatch::new(2);
        let cart = service("cart");
        assert!(!batch.push(&cart, span("a")));
        assert!(batch.push(&cart, span("b")), "full at its bound");
        assert_eq!(by_resource(batch.drain())[0].1, ["a", "b"]);
        assert!(!batch.push(&cart, span("c")), "empty again after the drain");
        assert_eq!(batch.len(), 1);
    }
}
