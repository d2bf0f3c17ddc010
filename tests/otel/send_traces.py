"""Sends one trace to Strata with the OpenTelemetry Python SDK and prints, as JSON, what was sent.

Usage: send_traces.py grpc|http ENDPOINT SERVICE TENANT

The trace: a server root span with attributes of every type, a client child with an event and a link,
and an internal grandchild with error status, across two resources (the second through its own
tracer provider). Exported with a SimpleSpanProcessor, so every span is acknowledged when export()
returns; the script fails if any export does not succeed.
"""

import json
import sys

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.trace import Link, SpanKind, Status, StatusCode, set_span_in_context

protocol, endpoint, service, tenant = sys.argv[1:5]
headers = {"x-scope-orgid": tenant}

if protocol == "grpc":
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    def exporter():
        return OTLPSpanExporter(endpoint=endpoint, insecure=True, headers=headers)
else:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    def exporter():
        return OTLPSpanExporter(endpoint=endpoint + "/v1/traces", headers=headers)


class Checked:
    """Wraps an exporter and fails loudly when an export is not acknowledged."""

    def __init__(self, inner):
        self.inner = inner

    def export(self, spans):
        result = self.inner.export(spans)
        if result != SpanExportResult.SUCCESS:
            sys.exit(f"export of {len(spans)} spans failed: {result}")
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis=30000):
        return True


def provider(name):
    p = TracerProvider(resource=Resource.create({"service.name": name, "deployment.environment": "ci"}))
    p.add_span_processor(SimpleSpanProcessor(Checked(exporter())))
    return p


front = provider(service)
back = provider(service + "-db")
tracer = front.get_tracer("strata.tests", "1.0.0")
db_tracer = back.get_tracer("strata.tests.db", "2.0.0")

sent = []


def record(span, service_name, scope):
    ctx = span.get_span_context()
    s = span  # a ReadableSpan once ended
    sent.append({
        "service": service_name,
        "scope": scope,
        "trace_id": format(ctx.trace_id, "032x"),
        "span_id": format(ctx.span_id, "016x"),
        "parent_span_id": format(s.parent.span_id, "016x") if s.parent else "",
        "name": s.name,
        "kind": s.kind.value,
        "start": s.start_time,
        "end": s.end_time,
        "status_code": s.status.status_code.value,
        "status_message": s.status.description or "",
        "attributes": {k: v if not isinstance(v, tuple) else list(v) for k, v in s.attributes.items()},
        "events": [
            {"name": e.name, "time": e.timestamp, "attributes": dict(e.attributes)} for e in s.events
        ],
        "links": [
            {
                "trace_id": format(l.context.trace_id, "032x"),
                "span_id": format(l.context.span_id, "016x"),
                "attributes": dict(l.attributes),
            }
            for l in s.links
        ],
    })


with tracer.start_as_current_span("warmup") as other:
    pass
linked = other.get_span_context()

root = tracer.start_span(
    "GET /checkout",
    kind=SpanKind.SERVER,
    attributes={
        "http.method": "GET",
        "http.status_code": 200,
        "ratio": 0.5,
        "cached": False,
        "tags": ["a", "b"],
        "ports": [80, 443],
    },
)
ctx = set_span_in_context(root)
client = tracer.start_span(
    "SELECT orders",
    context=ctx,
    kind=SpanKind.CLIENT,
    attributes={"db.system": "postgresql", "peer.service": service + "-db"},
    links=[Link(linked, {"link.reason": "retry"})],
)
client.add_event("query sent", {"db.statement": "SELECT * FROM orders", "rows": 3})
client_ctx = set_span_in_context(client)
inner = db_tracer.start_span("scan orders", context=client_ctx, kind=SpanKind.SERVER)
inner.set_status(Status(StatusCode.ERROR, "disk full"))
inner.record_exception(ValueError("disk full"))
inner.end()
client.end()
root.end()

record(other, service, ["strata.tests", "1.0.0"])
record(root, service, ["strata.tests", "1.0.0"])
record(client, service, ["strata.tests", "1.0.0"])
record(inner, service + "-db", ["strata.tests.db", "2.0.0"])
front.shutdown()
back.shutdown()
print(json.dumps(sent))
