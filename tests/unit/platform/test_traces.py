"""The local trace receiver reads what Triton sends (OTLP/JSON, hex ids) and what Magpie's
processes send (OTLP/protobuf), and prints one trace as a tree."""

from __future__ import annotations

import json

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from magpie.platform.traces import (
    ReceivedSpan,
    format_tree,
    parse_export,
    received_spans,
    trace_of,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def _triton_json() -> bytes:
    """The shape of Triton 2.51's OpenTelemetry export (ids in hex, as OTLP/JSON says)."""
    return json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {
                        "attributes": [{"key": "service.name", "value": {"stringValue": "triton"}}]
                    },
                    "scopeSpans": [
                        {
                            "spans": [
                                {
                                    "traceId": TRACE,
                                    "spanId": "00f067aa0ba902b7",
                                    "parentSpanId": "a3ce929d0e0e4736",
                                    "name": "InferRequest",
                                    "kind": 2,
                                    "startTimeUnixNano": "1000000",
                                    "endTimeUnixNano": "3500000",
                                    "attributes": [
                                        {"key": "triton.model_name", "value": {"stringValue": "r"}}
                                    ],
                                }
                            ]
                        }
                    ],
                }
            ]
        }
    ).encode()


def test_otlp_json_with_hex_ids_is_read_like_protobuf() -> None:
    from_json = parse_export(_triton_json(), "application/json")
    from_protobuf = parse_export(from_json.SerializeToString(), "application/x-protobuf")

    (span,) = list(received_spans(from_json))
    assert list(received_spans(from_protobuf)) == [span]
    assert (span.trace_id, span.span_id, span.parent_span_id) == (
        TRACE,
        "00f067aa0ba902b7",
        "a3ce929d0e0e4736",
    )
    assert (span.service, span.kind, span.duration_ms) == ("triton", "server", 2.5)
    assert span.attributes == {"triton.model_name": "r"}
    assert isinstance(from_json, trace_service_pb2.ExportTraceServiceRequest)


def _span(span_id: str, parent: str, name: str, service: str, **attributes: object) -> ReceivedSpan:
    return ReceivedSpan(TRACE, span_id, parent, name, service, "server", 0, 2_000_000, attributes)


def test_a_trace_is_found_by_its_recommendation_id_and_printed_as_a_tree() -> None:
    spans = [
        _span("a", "", "Recommend", "ranking", **{"magpie.recommendation.id": "r1"}),
        _span("b", "a", "GetProfile", "profiles", **{"db.system": "x", "ignored": 1}),
        _span("c", "b", "SELECT", "profiles"),
        ReceivedSpan("other", "d", "", "Recommend", "ranking", "server", 0, 1),
    ]

    found = trace_of(spans, "r1")
    tree = format_tree(found).splitlines()

    assert [s.span_id for s in found] == ["a", "b", "c"]
    assert tree[0].startswith("ranking") and "magpie.recommendation.id=r1" in tree[0]
    assert tree[1].startswith("  profiles") and "db.system=x" in tree[1]
    assert "ignored" not in tree[1]
    assert tree[2].startswith("    profiles")
    assert trace_of(spans, TRACE) == found


def test_spans_round_trip_through_their_json_lines() -> None:
    span = _span("a", "", "Recommend", "ranking", k=5)

    assert ReceivedSpan.from_json(span.to_json()) == span
