"""A local trace receiver, so that a developer needs no tracing backend to see a trace.

:class:`TraceReceiver` listens for OTLP on two ports: gRPC (``TraceService/Export``, what
Magpie's processes send) and HTTP (``POST /v1/traces`` in protobuf or JSON, what Triton's
OpenTelemetry mode sends). Every span received is appended as one JSON line to a file
(``magpie up --trace`` keeps it in the state directory) and kept in memory. ``magpie
trace ID`` prints the span tree of one trace from that file; ID is a trace id or a
``recommendation_id`` (found through the root span's ``magpie.recommendation.id``).

The tests use the same receiver: it is a real OTLP endpoint built from
``opentelemetry-proto``.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

__all__ = [
    "GRPC_PORT",
    "HTTP_PORT",
    "ReceivedSpan",
    "TraceReceiver",
    "TraceTargets",
    "format_tree",
    "parse_export",
    "read_spans",
    "received_spans",
    "trace_of",
]

logger = logging.getLogger(__name__)

GRPC_PORT = 4317
HTTP_PORT = 4318
"""The standard OTLP ports, on loopback."""
_KINDS = {1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


@dataclass(frozen=True)
class TraceTargets:
    """Where a platform's processes send spans: OTLP/gRPC for Magpie's, OTLP/HTTP for
    Triton's."""

    grpc_endpoint: str
    http_endpoint: str
    sampler: str = "parentbased_always_on"
    """Locally every request is traced; production samples (the chart's ratio)."""
    sampler_arg: str | None = None
    """``OTEL_TRACES_SAMPLER_ARG`` (a ratio sampler's ratio)."""
    schedule_delay_ms: int | None = 200
    """How often the batch span processor exports: locally soon, so that ``magpie trace``
    finds a request at once; None keeps the SDK's default (5 s), as in production."""

    @classmethod
    def local(cls) -> TraceTargets:
        return cls(f"http://127.0.0.1:{GRPC_PORT}", f"http://127.0.0.1:{HTTP_PORT}/v1/traces")

    def environment(self) -> dict[str, str]:
        """The OTEL_* variables of a process tracing here."""
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.grpc_endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_TRACES_SAMPLER": self.sampler,
        }
        if self.sampler_arg is not None:
            env["OTEL_TRACES_SAMPLER_ARG"] = self.sampler_arg
        if self.schedule_delay_ms is not None:
            env["OTEL_BSP_SCHEDULE_DELAY"] = str(self.schedule_delay_ms)
        return env


@dataclass(frozen=True)
class ReceivedSpan:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    service: str
    kind: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any] = field(default_factory=dict)
    links: tuple[str, ...] = ()
    """Trace ids of the spans this one links to."""
    status: str = ""

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6

    def to_json(self) -> str:
        return json.dumps(self.__dict__ | {"links": list(self.links)})

    @classmethod
    def from_json(cls, line: str) -> ReceivedSpan:
        values = json.loads(line)
        values["links"] = tuple(values["links"])
        return cls(**values)


def _value(value: common_pb2.AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind) if kind else None


def received_spans(
    request: trace_service_pb2.ExportTraceServiceRequest,
) -> Iterator[ReceivedSpan]:
    """The spans of one OTLP export, flattened."""
    for resource_spans in request.resource_spans:
        resource = {kv.key: _value(kv.value) for kv in resource_spans.resource.attributes}
        service = str(resource.get("service.name", "?"))
        for scope in resource_spans.scope_spans:
            for span in scope.spans:
                yield ReceivedSpan(
                    trace_id=span.trace_id.hex(),
                    span_id=span.span_id.hex(),
                    parent_span_id=span.parent_span_id.hex(),
                    name=span.name,
                    service=service,
                    kind=_KINDS.get(span.kind, "unspecified"),
                    start_ns=span.start_time_unix_nano,
                    end_ns=span.end_time_unix_nano,
                    attributes={kv.key: _value(kv.value) for kv in span.attributes},
                    links=tuple(link.trace_id.hex() for link in span.links),
                    status=trace_pb2.Status.StatusCode.Name(span.status.code),
                )


_HEX_FIELDS = {"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"}


def _hex_ids_to_base64(node: Any) -> Any:
    """OTLP/JSON writes ids as hex, protobuf's JSON mapping expects base64 for bytes."""
    if isinstance(node, dict):
        return {
            key: base64.b64encode(bytes.fromhex(value)).decode()
            if key in _HEX_FIELDS and isinstance(value, str)
            else _hex_ids_to_base64(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_hex_ids_to_base64(item) for item in node]
    return node


def parse_export(body: bytes, content_type: str) -> trace_service_pb2.ExportTraceServiceRequest:
    request = trace_service_pb2.ExportTraceServiceRequest()
    if "json" in content_type:
        json_format.ParseDict(
            _hex_ids_to_base64(json.loads(body)), request, ignore_unknown_fields=True
        )
    else:
        request.ParseFromString(body)
    return request


class TraceReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    """OTLP over gRPC and HTTP on loopback; spans to ``path`` (JSON lines) and memory."""

    def __init__(self, path: Path | None = None) -> None:
        self._path = path
        self._lock = threading.Lock()
        self.spans: list[ReceivedSpan] = []
        self._grpc: grpc.Server | None = None
        self._http: ThreadingHTTPServer | None = None
        self.grpc_port = 0
        self.http_port = 0

    def add(self, spans: Iterable[ReceivedSpan]) -> None:
        batch = list(spans)
        with self._lock:
            self.spans.extend(batch)
            if self._path is not None:
                with self._path.open("a") as out:
                    out.writelines(span.to_json() + "\n" for span in batch)

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self.add(received_spans(request))
        return trace_service_pb2.ExportTraceServiceResponse()

    def start(self, grpc_port: int = 0, http_port: int = 0) -> TraceReceiver:
        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self._grpc)  # type: ignore[no-untyped-call]
        self.grpc_port = self._grpc.add_insecure_port(f"127.0.0.1:{grpc_port}")
        self._grpc.start()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    request = parse_export(body, self.headers.get("Content-Type", ""))
                except (ValueError, json_format.ParseError) as error:
                    self.send_error(400, str(error))
                    return
                receiver.add(received_spans(request))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                logger.debug(format, *args)

        self._http = ThreadingHTTPServer(("127.0.0.1", http_port), Handler)
        self.http_port = int(self._http.server_address[1])
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        return self

    @property
    def grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        """Where OTLP/HTTP senders post (Triton: ``opentelemetry,url=...``)."""
        return f"http://127.0.0.1:{self.http_port}/v1/traces"

    @property
    def targets(self) -> TraceTargets:
        return TraceTargets(self.grpc_endpoint, self.http_endpoint)

    def stop(self) -> None:
        if self._grpc is not None:
            self._grpc.stop(0)
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()

    def __enter__(self) -> TraceReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def read_spans(path: Path) -> list[ReceivedSpan]:
    if not path.exists():
        return []
    return [ReceivedSpan.from_json(line) for line in path.read_text().splitlines() if line]


def trace_of(spans: Sequence[ReceivedSpan], wanted: str) -> list[ReceivedSpan]:
    """The spans of one trace: ``wanted`` is a trace id or a recommendation id."""
    trace_ids = {wanted} | {
        span.trace_id for span in spans if span.attributes.get("magpie.recommendation.id") == wanted
    }
    return sorted((s for s in spans if s.trace_id in trace_ids), key=lambda s: s.start_ns)


_SHOWN = ("magpie.", "db.statement", "db.system", "rpc.grpc.status_code")


def format_tree(spans: Sequence[ReceivedSpan]) -> str:
    """An indented tree: service, operation, duration, the attributes worth reading."""
    children: dict[str, list[ReceivedSpan]] = {}
    ids = {span.span_id for span in spans}
    roots = []
    for span in spans:
        if span.parent_span_id and span.parent_span_id in ids:
            children.setdefault(span.parent_span_id, []).append(span)
        else:
            roots.append(span)
    lines: list[str] = []

    def show(span: ReceivedSpan, depth: int) -> None:
        shown = {k: v for k, v in span.attributes.items() if k.startswith(_SHOWN)}
        details = " ".join(f"{k}={v}" for k, v in sorted(shown.items()))
        lines.append(
            f"{'  ' * depth}{span.service:<10} {span.name:<48} {span.duration_ms:8.2f} ms"
            + (f"  {details}" if details else "")
        )
        for child in children.get(span.span_id, []):
            show(child, depth + 1)

    for root in roots:
        show(root, 0)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m magpie.platform.traces --out FILE``: the receiver until SIGTERM."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(prog="python -m magpie.platform.traces")
    parser.add_argument("--out", type=Path, required=True, help="JSON lines, appended")
    parser.add_argument("--grpc-port", type=int, default=GRPC_PORT)
    parser.add_argument("--http-port", type=int, default=HTTP_PORT)
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with TraceReceiver(args.out).start(args.grpc_port, args.http_port) as receiver:
        print(f"OTLP on grpc {receiver.grpc_endpoint}, http {receiver.http_endpoint}", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
