"""A Magpie platform to fuzz, and the property every fuzzed call must keep.

`fuzz_platform` runs the five services as processes on free ports against a fresh
database, with no trained model (retrieval and ranking then serve popularity and mark
their answers degraded, which is fine: the property is about status codes), and seeds a
few products, users and events through the RPCs so that fuzzed ids meet real rows.
`Fuzzer.check` makes one fuzzed call (tests/fuzz_strategies.py) and says what is wrong
with its outcome, if anything:

- the code is OK or a documented one: INVALID_ARGUMENT, OUT_OF_RANGE, NOT_FOUND,
  FAILED_PRECONDITION, ALREADY_EXISTS, RESOURCE_EXHAUSTED (a request over the message
  size limit); DEADLINE_EXCEEDED only under one of the tiny deadlines. Never INTERNAL or
  UNKNOWN, and never UNAVAILABLE: PostgreSQL and Redis are up, and Recommend and Rank
  answer degraded rather than fail when a dependency does;
- the status reached the caller: it fits in the trailers a gRPC client accepts;
- an INVALID_ARGUMENT carries a google.rpc.BadRequest whose violations name fields of the
  request;
- no partial write: a write answered with an error leaves the rows of all the request's
  ids as they were (for a stream: those of the batches not acknowledged), and so does a
  write for each item it rejects (an ItemResult or ProfileResult not ok, an event
  REJECTED);
- every service's process is still running.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import psycopg2
import redis
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from psycopg2 import sql

from magpie.platform.local import free_port
from magpie.runtime import schema
from magpie.runtime.settings import SERVICE_PORTS, load_settings
from magpie.runtime.units import MAX_MESSAGE_BYTES
from magpie.v1 import (
    catalog_pb2,
    catalog_pb2_grpc,
    common_pb2,
    feedback_pb2,
    feedback_pb2_grpc,
    profiles_pb2,
    profiles_pb2_grpc,
)
from tests.fuzz_strategies import KNOWN_PRODUCTS, KNOWN_USERS, Call
from tests.support import (
    ADMIN_URL,
    TEST_REDIS_URL,
    ServiceProcess,
    field_violations,
    service_process,
)

__all__ = ["ALLOWED_CODES", "DEFAULT_TIMEOUT", "FuzzPlatform", "Fuzzer", "Outcome", "fuzz_platform"]

ALLOWED_CODES = frozenset(
    {
        grpc.StatusCode.OK,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)
"""Codes any fuzzed call may end with (DEADLINE_EXCEEDED too, under a tiny deadline)."""
DEFAULT_TIMEOUT = 30.0
"""Deadline of a call that did not draw a tiny one: long enough that hitting it is a hang."""
_SETTLE_SECONDS = 2.0
"""How long a write cut off by its deadline may go on committing before rows are compared."""
_FIELD_ROOT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CHANNEL_OPTIONS = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
_UNREADABLE = "received metadata size exceeds"
"""How a gRPC client reports (as RESOURCE_EXHAUSTED) trailers over its 16 KiB limit: the
server's status, whatever it was, never reached the caller."""


@dataclass(frozen=True)
class _Write:
    """Where the rows a write RPC may change live: the request's ids in these columns."""

    ids: Callable[[Any], list[str]]
    columns: tuple[tuple[str, str], ...]
    """(table, id column) pairs."""


_USERS = ("users", "user_id")
_PRODUCTS = ("products", "product_id")
_EVENTS = ("events", "event_id")
_EVENT_WRITE = _Write(lambda r: [e.event_id for e in r.events], (_EVENTS,))
_WRITES: Mapping[str, _Write] = {
    "magpie.v1.ProfileService.UpsertProfiles": _Write(
        lambda r: [p.user_id for p in r.profiles], (_USERS,)
    ),
    "magpie.v1.ProfileService.DeleteProfile": _Write(
        lambda r: [r.user_id], (_USERS, ("events", "user_id"))
    ),
    "magpie.v1.CatalogService.UpsertProducts": _Write(
        lambda r: [p.product_id for p in r.products], (_PRODUCTS,)
    ),
    "magpie.v1.CatalogService.SetProductStatus": _Write(
        lambda r: list(r.product_ids), (_PRODUCTS,)
    ),
    "magpie.v1.FeedbackService.RecordEvents": _EVENT_WRITE,
    "magpie.v1.FeedbackService.StreamEvents": _EVENT_WRITE,
}
"""Every RPC that writes (the others must write nothing; their rows are not checked)."""


@dataclass
class FuzzPlatform:
    database_url: str
    processes: dict[str, ServiceProcess]
    """By service name, each ``python -m services.<name>``."""

    def exited(self) -> list[str]:
        """The services whose process is gone, with their exit code and last log lines."""
        return [
            f"{name} exited with {p.process.returncode}: {p.output()[-2000:]}"
            for name, p in self.processes.items()
            if p.process.poll() is not None
        ]

    def not_serving(self) -> list[str]:
        """The services that do not answer a health check with SERVING."""
        bad = self.exited()
        for name, p in self.processes.items():
            with grpc.insecure_channel(p.address) as channel:
                try:
                    status = (
                        health_pb2_grpc.HealthStub(channel)
                        .Check(health_pb2.HealthCheckRequest(), timeout=5)
                        .status
                    )
                except grpc.RpcError as error:
                    bad.append(f"{name}: health check failed: {error.code().name}")
                    continue
            if status != health_pb2.HealthCheckResponse.SERVING:
                bad.append(f"{name}: {health_pb2.HealthCheckResponse.ServingStatus.Name(status)}")
        return bad


def _seed(platform: FuzzPlatform) -> None:
    """Products, users and their events, so that fuzzed ids often name real rows."""
    address = {name: p.address for name, p in platform.processes.items()}
    with grpc.insecure_channel(address["catalog"]) as channel:
        catalog_pb2_grpc.CatalogServiceStub(channel).UpsertProducts(
            catalog_pb2.UpsertProductsRequest(
                products=[
                    catalog_pb2.Product(
                        product_id=p,
                        title=f"Product {p}",
                        category_path=["Home", "Kitchen"] if i % 2 else ["Sports"],
                        brand="acme",
                        price=common_pb2.Money(currency_code="EUR", units=5 + i),
                        stock=10,
                    )
                    for i, p in enumerate(KNOWN_PRODUCTS)
                ]
            ),
            timeout=DEFAULT_TIMEOUT,
        )
    with grpc.insecure_channel(address["profiles"]) as channel:
        profiles_pb2_grpc.ProfileServiceStub(channel).UpsertProfiles(
            profiles_pb2.UpsertProfilesRequest(
                profiles=[profiles_pb2.ProfileUpsert(user_id=u) for u in KNOWN_USERS]
            ),
            timeout=DEFAULT_TIMEOUT,
        )
    kinds = (common_pb2.EVENT_TYPE_CLICK, common_pb2.EVENT_TYPE_PURCHASE)
    events = [
        feedback_pb2.Event(
            event_id=f"fz-seed-{u}-{p}", user_id=u, product_id=p, event_type=kinds[(i + j) % 2]
        )
        for i, u in enumerate(KNOWN_USERS)
        for j, p in enumerate(KNOWN_PRODUCTS)
    ]
    with grpc.insecure_channel(address["feedback"]) as channel:
        reply = feedback_pb2_grpc.FeedbackServiceStub(channel).RecordEvents(
            feedback_pb2.RecordEventsRequest(events=events), timeout=DEFAULT_TIMEOUT
        )
    assert reply.accepted == len(events), reply


@contextlib.contextmanager
def fuzz_platform(log_dir: Path, redis_url: str = TEST_REDIS_URL) -> Iterator[FuzzPlatform]:
    """The five services on free ports against a new database (dropped on exit) and a
    Redis database (emptied first), seeded; no model, no Triton."""
    redis.Redis.from_url(redis_url).flushdb()
    with (
        schema.throwaway_database(ADMIN_URL, "magpie_fuzz") as database_url,
        contextlib.ExitStack() as running,
    ):
        settings = load_settings(
            {
                "database_url": database_url,
                "redis_url": redis_url,
                "artifact_dir": str(log_dir / "artifacts"),
                "triton_addr": f"127.0.0.1:{free_port()}",  # nothing listens: no model anyway
                "retrain_event_threshold": 0,
                "db_pool_size": 2,  # one call at a time; the machine's PostgreSQL is shared
                "health_probe_seconds": 0.3,
                "grace_seconds": 1.0,
                "log_json": False,
            }
        )
        processes: dict[str, ServiceProcess] = {}
        for name in SERVICE_PORTS:  # dependencies first
            processes[name] = running.enter_context(service_process(name, settings, log_dir))
            settings = settings.model_copy(update={f"{name}_addr": processes[name].address})
        platform = FuzzPlatform(database_url, processes)
        _seed(platform)
        yield platform


@dataclass(frozen=True)
class Outcome:
    code: grpc.StatusCode
    problem: str | None
    """What breaks the property (see the module's docstring); None when nothing does."""


def _item_results(responses: Iterable[Message]) -> Iterator[tuple[str, bool]]:
    """(id, accepted) of each item a batch write answered for."""
    for response in responses:
        for r in getattr(getattr(response, "result", response), "results", ()):
            if isinstance(r, feedback_pb2.EventResult):
                yield r.event_id, r.outcome != feedback_pb2.EVENT_OUTCOME_REJECTED
            elif isinstance(r, profiles_pb2.ProfileResult):
                yield r.user_id, r.ok
            else:
                yield r.id, r.ok


def _bad_request_problem(error: grpc.RpcError, request_type: Any) -> str | None:
    try:
        fields = field_violations(error)
    except (AssertionError, KeyError, IndexError) as missing:
        return f"INVALID_ARGUMENT without a google.rpc.BadRequest ({missing!r})"
    known = request_type.DESCRIPTOR.fields_by_name
    unnamed = [f for f in fields if not (m := _FIELD_ROOT.match(f)) or m.group() not in known]
    if not fields or unnamed:
        return f"INVALID_ARGUMENT names no field of the request: {fields}"
    return None


class Fuzzer:
    """Makes fuzzed calls against a `FuzzPlatform` and checks each outcome."""

    def __init__(self, platform: FuzzPlatform) -> None:
        self._platform = platform
        self._channels = {
            name: grpc.insecure_channel(p.address, options=_CHANNEL_OPTIONS)
            for name, p in platform.processes.items()
        }
        self._db = psycopg2.connect(platform.database_url)
        self._db.autocommit = True

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._db.close()

    def __enter__(self) -> Fuzzer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _invoke(self, call: Call, answered: list[Message]) -> None:
        """Makes the call; its responses go to ``answered`` as they come."""
        rpc = call.rpc
        kind = ("stream" if rpc.streams_requests else "unary") + (
            "_stream" if rpc.streams_responses else "_unary"
        )
        method = getattr(self._channels[rpc.service], kind)(
            rpc.path,
            request_serializer=rpc.request_class.SerializeToString,
            response_deserializer=rpc.response_class.FromString,
        )
        request: Any = iter(call.requests) if rpc.streams_requests else call.requests[0]
        timeout = DEFAULT_TIMEOUT if call.timeout is None else call.timeout
        if rpc.streams_responses:
            for response in method(request, timeout=timeout):
                answered.append(response)
        else:
            answered.append(method(request, timeout=timeout))

    def check(self, call: Call) -> Outcome:
        """Makes the call and says what, if anything, is wrong with how it ended."""
        write = _WRITES.get(call.rpc.method.full_name)
        ids = self._ids(write, call.requests) if write else []
        before = self._rows(write, ids) if write else {}
        answered: list[Message] = []
        error: grpc.RpcError | None = None
        code = grpc.StatusCode.OK
        try:
            self._invoke(call, answered)
        except grpc.RpcError as raised:
            error, code = raised, raised.code()
        problems = self._platform.exited()
        if code is grpc.StatusCode.DEADLINE_EXCEEDED and call.tiny_deadline:
            if write:  # the caller cannot know whether it was written; let it finish
                self._settle(write, ids)
            return Outcome(code, "; ".join(problems) or None)
        details = (error.details() or "") if error is not None else ""
        if code not in ALLOWED_CODES:
            problems.append(f"answered {code.name}: {details}")
        elif _UNREADABLE in details:
            problems.append(f"an error status too large for a client to read: {details}")
        if code is grpc.StatusCode.INVALID_ARGUMENT and error is not None:
            problem = _bad_request_problem(error, call.rpc.request_class)
            if problem is not None:
                problems.append(problem)
        if write:
            kept = sorted(self._unwritten(write, call.requests, answered, error is not None))
            after = self._rows(write, kept)
            changed = [i for i in kept if after[i] != before.get(i)]
            if changed:
                problems.append(f"partial write: rows of {changed[:5]} changed")
        return Outcome(code, "; ".join(problems) or None)

    @staticmethod
    def _ids(write: _Write, requests: Sequence[Message]) -> list[str]:
        """The requests' ids that can name a row (PostgreSQL text holds no NUL)."""
        return sorted({i for r in requests for i in write.ids(r) if "\x00" not in i})

    def _unwritten(
        self, write: _Write, requests: Sequence[Message], answered: list[Message], failed: bool
    ) -> set[str]:
        """The ids whose rows must not have changed: those of requests the call failed on
        (a stream's batches after the last acknowledged one), and of rejected items."""
        outcomes = list(_item_results(answered))
        accepted = {i for i, ok in outcomes if ok}
        kept = {i for i, ok in outcomes if not ok} - accepted
        if failed:
            kept |= set(self._ids(write, requests[len(answered) :])) - accepted
        return {i for i in kept if "\x00" not in i}

    def _rows(self, write: _Write, ids: list[str]) -> dict[str, tuple[str, ...] | None]:
        """Each id's rows (as text) in the write's tables; None for an id without any."""
        found: dict[str, list[str]] = {}
        with self._db.cursor() as cur:
            for table, column in write.columns:
                cur.execute(
                    sql.SQL("SELECT {c}, t::text FROM {t} t WHERE {c} = ANY(%s)").format(
                        c=sql.Identifier(column), t=sql.Identifier(table)
                    ),
                    (ids,),
                )
                for key, row in cur.fetchall():
                    found.setdefault(key, []).append(f"{table}:{row}")
        return {i: tuple(sorted(found[i])) if i in found else None for i in ids}

    def _settle(self, write: _Write, ids: list[str]) -> None:
        """Waits until the ids' rows stop changing (a write whose caller gave up may still
        commit; a later call's comparison must not see it)."""
        give_up = time.monotonic() + _SETTLE_SECONDS
        last = self._rows(write, ids)
        while time.monotonic() < give_up:
            time.sleep(0.05)
            now = self._rows(write, ids)
            if now == last:
                return
            last = now
