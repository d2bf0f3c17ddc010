"""Sends metrics with the OpenTelemetry Python SDK's OTLP exporters, as an instrumented service would.

Usage: send_metrics.py grpc|http ENDPOINT SERVICE

Records a monotonic counter, an up-down counter, a histogram with explicit buckets and an observable
gauge under resource `service.name=SERVICE`, exports once with cumulative temporality, and exits non-zero
if the export fails.
"""

import sys

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.metrics import Observation


def main() -> int:
    transport, endpoint, service = sys.argv[1], sys.argv[2], sys.argv[3]
    if transport == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        exporter = OTLPMetricExporter(endpoint=endpoint, insecure=True)
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        exporter = OTLPMetricExporter(endpoint=endpoint + "/v1/metrics")
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(
        resource=Resource.create({"service.name": service, "service.instance.id": "i-1"}),
        metric_readers=[reader],
        views=[
            View(
                instrument_name="rpc.duration",
                aggregation=ExplicitBucketHistogramAggregation([0.1, 0.5, 1.0]),
            )
        ],
    )
    meter = provider.get_meter("strata-interop")
    requests = meter.create_counter("app.requests", unit="{request}", description="Requests served.")
    requests.add(5, {"http.route": "/cart"})
    requests.add(2, {"http.route": "/pay"})
    inflight = meter.create_up_down_counter("app.inflight")
    inflight.add(3)
    inflight.add(-1)
    duration = meter.create_histogram("rpc.duration", unit="s")
    for v in (0.05, 0.3, 0.3, 0.7, 2.0):
        duration.record(v)
    meter.create_observable_gauge(
        "app.temperature", callbacks=[lambda _options: [Observation(21.5, {"room": "lab"})]], unit="Cel"
    )
    ok = provider.force_flush(timeout_millis=20_000)
    provider.shutdown()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
