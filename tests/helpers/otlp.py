"""A real OTLP trace receiver for tests: the collector's TraceService over gRPC, and OTLP/HTTP.

Built from the generated services the opentelemetry-proto package ships, so the exporter
under test talks to the same protocol a collector speaks. Received spans are kept in order,
with their resource attributes; `wait_for(n)` blocks on a condition until n have arrived.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span


def plain(value: AnyValue) -> Any:
    """An OTLP AnyValue as the Python value it carries."""
    kind = value.WhichOneof("value")
    return None if kind is None else getattr(value, kind)


def attributes(pairs: Any) -> dict[str, Any]:
    return {kv.key: plain(kv.value) for kv in pairs if isinstance(kv, KeyValue)}


@dataclass
class Received:
    span: Span
    resource: dict[str, Any]

    @property
    def attributes(self) -> dict[str, Any]:
        return attributes(self.span.attributes)


class Spans:
    """What a receiver has been sent, shared by its threads."""

    def __init__(self) -> None:
        self.endpoint = ""  # where an exporter should send, set by the receiver that owns this
        self.items: list[Received] = []
        self.requests = 0
        self.changed = threading.Condition()

    def take(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        with self.changed:
            self.requests += 1
            for resource_spans in request.resource_spans:
                resource = attributes(resource_spans.resource.attributes)
                for scope in resource_spans.scope_spans:
                    self.items.extend(Received(span, resource) for span in scope.spans)
            self.changed.notify_all()

    def wait_for(self, n: int, timeout: float = 20.0) -> list[Received]:
        with self.changed:
            if not self.changed.wait_for(lambda: len(self.items) >= n, timeout):
                raise TimeoutError(f"{len(self.items)} spans arrived, expected {n}")
            return list(self.items)


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, spans: Spans) -> None:
        self.spans = spans

    def Export(self, request: trace_service_pb2.ExportTraceServiceRequest,  # noqa: N802 (the proto's name)
               context: grpc.ServicerContext) -> trace_service_pb2.ExportTraceServiceResponse:
        self.spans.take(request)
        return trace_service_pb2.ExportTraceServiceResponse()


@contextmanager
def grpc_receiver(address: str) -> Iterator[Spans]:
    """An OTLP/gRPC receiver on `address` ("unix:///path" or "127.0.0.1:0"); `.endpoint` is where to send."""
    spans = Spans()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(spans), server)
    port = server.add_insecure_port(address)
    spans.endpoint = address if address.startswith("unix:") else f"http://127.0.0.1:{port}"
    server.start()
    try:
        yield spans
    finally:
        server.stop(grace=None)


class _HttpHandler(BaseHTTPRequestHandler):
    spans: Spans

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path != "/v1/traces":
            self.send_error(404)
            return
        self.spans.take(trace_service_pb2.ExportTraceServiceRequest.FromString(body))
        reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # quiet: pytest shows the test's own output


@contextmanager
def http_receiver() -> Iterator[Spans]:
    """An OTLP/HTTP receiver on 127.0.0.1 (any free port); `.endpoint` is its /v1/traces URL."""
    spans = Spans()
    handler = type("Handler", (_HttpHandler,), {"spans": spans})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    spans.endpoint = f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield spans
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
