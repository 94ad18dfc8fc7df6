"""Log configuration, called once by a process's entry point.

JSON lines on stdout carry the active trace and span ids so a log line can be
found from its trace and the other way round, and the fields bound with
:func:`log_context` (a retraining run's ``run_id``) on every line logged inside it.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

from opentelemetry import trace

__all__ = ["JsonFormatter", "configure_logging", "log_context"]

_fields: contextvars.ContextVar[tuple[tuple[str, str], ...]] = contextvars.ContextVar(
    "log_fields", default=()
)


@contextlib.contextmanager
def log_context(**fields: str) -> Iterator[None]:
    """Adds ``fields`` to every log line written inside the block (this task or thread)."""
    token = _fields.set(tuple({**dict(_fields.get()), **fields}.items()))
    try:
        yield
    finally:
        _fields.reset(token)


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self._service,
            "logger": record.name,
            "msg": record.getMessage(),
            **dict(_fields.get()),
        }
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            entry["trace_id"] = format(span_context.trace_id, "032x")
            entry["span_id"] = format(span_context.span_id, "016x")
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(service: str, level: str = "INFO", *, json_lines: bool = True) -> None:
    handler = logging.StreamHandler(sys.stdout)
    if json_lines:
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(_TextFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class _TextFormatter(logging.Formatter):
    """Plain lines for a terminal, with the :func:`log_context` fields in brackets."""

    def __init__(self, service: str) -> None:
        super().__init__(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = list(_fields.get())
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            fields.append(("trace_id", format(span_context.trace_id, "032x")))
        if not fields:
            return line
        return line + " [" + " ".join(f"{k}={v}" for k, v in fields) + "]"
