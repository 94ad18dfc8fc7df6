"""Hypothesis strategies for every Magpie RPC, built from the protobuf descriptors.

A request is drawn field by field from its message descriptor, so a field added to a
proto is fuzzed with no new code: scalars from hostile pools (type limits, NaN and
infinities, empty, long and control-character strings, SQL-looking text, invalid UTF-8
in ``bytes``), enums including undefined numbers, nested messages, repeated fields and
maps (empty, a few entries, or one more than the documented limit), oneofs (one member
or none) and the well-known types Timestamp, Duration and FieldMask. The documented
limits are the services' ``config.MAX_*`` constants (``LIMITS``). Each call draws how
hostile it is (``_HOSTILITY``: none, a tenth, three tenths or all of its values), so that
single bad values also reach the code behind validation, and its deadline: mostly a
generous one, sometimes zero or a few microseconds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal, TypeVar

from google.protobuf import message_factory
from google.protobuf.descriptor import (
    Descriptor,
    FieldDescriptor,
    MethodDescriptor,
    ServiceDescriptor,
)
from google.protobuf.message import Message
from hypothesis import strategies as st

from magpie.runtime.filters import MAX_FILTER_VALUES
from magpie.runtime.products import MAX_CATEGORY_LEVEL_LENGTH
from magpie.runtime.validation import MAX_ID_LENGTH
from magpie.v1 import (
    catalog_pb2,
    feedback_pb2,
    models_pb2,
    profiles_pb2,
    ranking_pb2,
    retrieval_pb2,
)
from services.catalog import config as catalog_config
from services.feedback import config as feedback_config
from services.profiles import config as profiles_config
from services.ranking import config as ranking_config
from services.retrieval import config as retrieval_config

__all__ = [
    "KNOWN_PRODUCTS",
    "KNOWN_USERS",
    "LIMITS",
    "RPCS",
    "TINY_TIMEOUTS",
    "Call",
    "Rpc",
    "calls",
    "messages",
]

_T = TypeVar("_T")

_API: tuple[ModuleType, ...] = (
    profiles_pb2,
    catalog_pb2,
    feedback_pb2,
    models_pb2,
    retrieval_pb2,
    ranking_pb2,
)
"""Each service's generated module; the proto file's name is the service's process name
unless _SERVED_BY names another."""
_SERVED_BY: Mapping[str, str] = {"models": "feedback"}
"""Protos whose services run in another service's process."""

LIMITS: Mapping[str, int] = {
    "magpie.v1.UpsertProfilesRequest.profiles": profiles_config.MAX_BATCH,
    "magpie.v1.BatchGetProfilesRequest.user_ids": profiles_config.MAX_BATCH_GET,
    "magpie.v1.GetProfileRequest.history_limit": profiles_config.MAX_HISTORY,
    "magpie.v1.BatchGetProfilesRequest.history_limit": profiles_config.MAX_HISTORY,
    "magpie.v1.UpsertProductsRequest.products": catalog_config.MAX_UPSERT_BATCH,
    "magpie.v1.GetProductsRequest.product_ids": catalog_config.MAX_GET_BATCH,
    "magpie.v1.SetProductStatusRequest.product_ids": catalog_config.MAX_STATUS_BATCH,
    "magpie.v1.ListProductsRequest.page_size": catalog_config.MAX_PAGE_SIZE,
    "magpie.v1.Product.category_path": catalog_config.MAX_CATEGORY_LEVELS,
    "magpie.v1.Product.tags": catalog_config.MAX_TAGS,
    "magpie.v1.Product.attributes": catalog_config.MAX_ATTRIBUTES,
    "magpie.v1.RecordEventsRequest.events": feedback_config.MAX_BATCH,
    "magpie.v1.StreamEventsRequest.events": feedback_config.MAX_BATCH,
    "magpie.v1.ListModelVersionsRequest.limit": feedback_config.MAX_MODEL_LISTING,
    "magpie.v1.GetOnlineMetricsRequest.model_versions": feedback_config.MAX_METRIC_VERSIONS,
    "magpie.v1.RetrieveRequest.limit": retrieval_config.MAX_LIMIT,
    "magpie.v1.SourceQuota.max_candidates": retrieval_config.MAX_LIMIT,
    "magpie.v1.RetrieveRequest.recent_product_ids": retrieval_config.MAX_RECENT,
    "magpie.v1.SimilarProductsRequest.limit": retrieval_config.MAX_SIMILAR,
    "magpie.v1.RecommendRequest.k": ranking_config.MAX_K,
    "magpie.v1.RankRequest.product_ids": ranking_config.MAX_RANK_IDS,
    "magpie.v1.ProductFilter.category_prefixes": MAX_FILTER_VALUES,
    "magpie.v1.ProductFilter.exclude_product_ids": MAX_FILTER_VALUES,
    "magpie.v1.ProductFilter.brands": MAX_FILTER_VALUES,
}
"""Documented limits by field: most entries of a repeated field or map, largest value of a
number. The strategies try the limit and one beyond it."""

_TEXT_LIMITS = (
    MAX_ID_LENGTH,
    MAX_CATEGORY_LEVEL_LENGTH,
    catalog_config.MAX_TITLE_LENGTH,
    catalog_config.MAX_TEXT_LENGTH,
    catalog_config.MAX_ATTRIBUTE_VALUE_LENGTH,
    catalog_config.MAX_DESCRIPTION_LENGTH,
)
"""Documented string lengths; every string field may get one character more than each."""

KNOWN_PRODUCTS = tuple(f"fz-p{i}" for i in range(4))
"""Products the fuzzing platform creates first, so that fuzzed ids often hit real rows."""
KNOWN_USERS = tuple(f"fz-u{i}" for i in range(3))
"""Users the fuzzing platform creates first (with events)."""

TINY_TIMEOUTS = (0.0, 1e-6, 1e-4, 1e-3, 1e-2)
"""Deadlines (seconds) too short for any call: DEADLINE_EXCEEDED is then a fine answer."""

_MAX_DEPTH = 4
"""Nested messages below this depth are left unset (no Magpie message is recursive, but a
future one must not make the strategy infinite)."""

_HOSTILE_TEXT = (
    "",
    " ",
    "\x00",
    "fz-p0\x00",
    "a\x00b",
    "\t\n\r",
    "\x1b[31m",
    "\x7f",
    "\u0085",
    "\u2028",
    "\u202e",
    "\ufeff",
    "\uffff",
    "\U0001f600",
    "\U0010ffff",
    "'; DROP TABLE profiles; --",
    "' OR '1'='1",
    "%s %d %(x)s {0} {}",
    "\\",
    "\\N",
    "\\.",
    "NULL",
    "NaN",
    "-0",
    " > ",
    "Home >  > Kitchen",
    "Home > ",
    "../../etc/passwd",
    "<script>alert(1)</script>",
    '{"a": 1}',
)
_PLAUSIBLE_TEXT = (
    "EUR",
    "USD",
    "eur",
    "Home",
    "Home > Kitchen",
    "Sports",
    "acme",
    "de-DE",
    "home",
    "u-new",
    "p-new",
    "title",
    "stats",
    "price.units",
)
_HOSTILE_BYTES = (
    b"",
    b"\x00",
    b"\xff",
    b"\xc3\x28",
    b"\xed\xa0\x80",  # an encoded lone surrogate
    b"\xf4\x90\x80\x80",  # beyond U+10FFFF
    b"\xff" * 100_000,
)
_LONG_TEXT_LENGTHS = (*(n + 1 for n in _TEXT_LIMITS), 100_000)

_INT_RANGES: Mapping[int, tuple[int, int]] = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
_HOSTILE_FLOATS = (
    math.nan,
    math.inf,
    -math.inf,
    -0.0,
    0.0,
    1.0,
    -1.0,
    5.0,
    5.000001,
    0.5,
    3.4028234663852886e38,  # largest float32
    1e39,  # beyond float32: stored as inf
    1e-45,
    5e-324,
    1.7976931348623157e308,
)
_TIMESTAMP_SECONDS = (
    0,
    -1,
    1_700_000_000,
    4_102_444_800,  # 2100
    -62_135_596_800,  # year 1
    -62_135_596_801,
    253_402_300_799,  # year 9999
    253_402_300_800,
    2**63 - 1,
    -(2**63),
)
_NANOS = (0, 1, 999_999_999, 1_000_000_000, -1, 2**31 - 1, -(2**31))
_DURATION_SECONDS = (0, 1, -1, 315_576_000_000, 315_576_000_001, 2**63 - 1, -(2**63))


def _weighted(*options: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of several strategies, each chosen with the given weight (shrinks to the first)."""
    branches = [s for weight, s in options for _ in range(weight)]
    return st.sampled_from(branches).flatmap(lambda s: s)


_HOSTILITY = st.shared(st.sampled_from((0, 1, 3, 10)), key="magpie-fuzz-hostility")
"""Tenths of the values of one call drawn from the hostile pools, the rest tame: a call
with one bad field among good ones reaches code that an all-hostile call never passes
validation to. Shared: drawn once per example."""


def _tame_or_hostile(
    tame: st.SearchStrategy[_T], hostile: st.SearchStrategy[_T]
) -> st.SearchStrategy[_T]:
    """A value from ``hostile`` as often as the call's hostility says, else from ``tame``."""

    @st.composite
    def pick(draw: st.DrawFn) -> _T:
        tenths = draw(_HOSTILITY)
        if tenths >= 10 or (tenths > 0 and draw(st.integers(0, 9)) < tenths):
            return draw(hostile)
        return draw(tame)

    return pick()


_FEW = 4
"""Most entries of a repeated field or map below its limit."""
_NOW = int(time.time())
_TAME: Mapping[str, st.SearchStrategy[Any]] = {
    "magpie.v1.Money.currency_code": st.sampled_from(("EUR", "USD")),
    "magpie.v1.Money.units": st.integers(0, 1000),
    "magpie.v1.Money.nanos": st.sampled_from((0, 500_000_000)),
}
"""Tame values of fields whose valid values no generic pool holds."""


_SET = _tame_or_hostile(st.sampled_from((True, True, True, False)), st.booleans())
"""Whether a field is set: mostly in a tame call (some fields are required), half the time
in a hostile one."""


def _around(limit: int) -> list[int]:
    return [limit - 1, limit, limit + 1]


def _integers(field: FieldDescriptor) -> st.SearchStrategy[int]:
    low, high = _INT_RANGES[field.type]
    edges = [low, high, -1, 0, 1, 2, 7, 2**15, 2**15 - 1, 2**31, -(2**31) - 1, 2**32]
    edges += _around(LIMITS.get(field.full_name, 2**63))
    edges += [high // 2 + 1, 10**9, -(10**9)]
    return _tame_or_hostile(
        _TAME.get(field.full_name, st.integers(0, 10)),
        _weighted(
            (2, st.sampled_from(sorted({e for e in edges if low <= e <= high}))),
            (2, st.integers(-3, 12).filter(lambda n: low <= n <= high)),
            (1, st.integers(low, high)),
        ),
    )


def _floats(field: FieldDescriptor) -> st.SearchStrategy[float]:
    width: Literal[32, 64] = 32 if field.type == FieldDescriptor.TYPE_FLOAT else 64
    return _tame_or_hostile(
        st.sampled_from((0.0, 1.0, 0.5)) | st.floats(0.0, 1.0, width=width),
        _weighted((2, st.sampled_from(_HOSTILE_FLOATS)), (1, st.floats(width=width))),
    )


def _long_text() -> st.SearchStrategy[str]:
    """One character repeated past a documented length (drawn cheaply: no per-character
    choices, which would exhaust Hypothesis's buffer)."""
    return st.builds(
        lambda char, n: char * n,
        st.sampled_from(("x", "\x00", "é", "\U0001f600")),
        st.sampled_from(_LONG_TEXT_LENGTHS),
    )


def _ids() -> st.SearchStrategy[str]:
    """Valid ids: known rows, or new ones that later calls may meet again."""
    fresh = st.integers(0, 30).map(lambda n: f"fz-x{n}")
    return _weighted((2, st.sampled_from(KNOWN_PRODUCTS + KNOWN_USERS)), (1, fresh))


def _texts(field: FieldDescriptor | None, compact: bool) -> st.SearchStrategy[str]:
    """Strings of a field; no long ones when ``compact``."""
    tame = _weighted((3, _ids()), (1, st.sampled_from(_PLAUSIBLE_TEXT)))
    hostile = _weighted(
        (3, st.sampled_from(_HOSTILE_TEXT)),
        (0 if compact else 1, _long_text()),
        (2, st.text(max_size=16)),
        (1, _ids()),
    )
    return _tame_or_hostile(_TAME.get(field.full_name, tame) if field else tame, hostile)


def _bytes(compact: bool) -> st.SearchStrategy[bytes]:
    hostile = [b for b in _HOSTILE_BYTES if not compact or len(b) < 64]
    return _tame_or_hostile(st.binary(max_size=32), st.sampled_from(hostile))


def _enums(field: FieldDescriptor) -> st.SearchStrategy[int]:
    assert field.enum_type is not None
    defined = sorted(v.number for v in field.enum_type.values)
    undefined = [-1, max(defined) + 1, 2**15, 2**16 + 1, 2**31 - 1, -(2**31)]
    return _tame_or_hostile(st.sampled_from(defined), st.sampled_from(undefined))


def _seconds_and_nanos(
    cls: type[Message], tame_seconds: st.SearchStrategy[int], hostile_seconds: Sequence[int]
) -> st.SearchStrategy[Message]:
    """Timestamps or Durations: valid ones, or seconds and nanos at and past their range."""
    tame = st.builds(cls, seconds=tame_seconds, nanos=st.integers(0, 999_999_999))
    hostile = st.builds(
        cls, seconds=st.sampled_from(hostile_seconds), nanos=st.sampled_from(_NANOS)
    )
    return _tame_or_hostile(tame, hostile)


def _timestamps(cls: type[Message]) -> st.SearchStrategy[Message]:
    return _seconds_and_nanos(cls, st.integers(_NOW - 30 * 86_400, _NOW), _TIMESTAMP_SECONDS)


def _durations(cls: type[Message]) -> st.SearchStrategy[Message]:
    return _seconds_and_nanos(cls, st.integers(0, 100), _DURATION_SECONDS)


def _field_names(descriptor: Descriptor) -> list[str]:
    """Every field name of the messages in the descriptor's file, and their dotted pairs."""
    names: set[str] = set()
    for message in descriptor.file.message_types_by_name.values():
        for field in message.fields:
            names.add(field.name)
            if field.message_type is not None:
                names.update(f"{field.name}.{sub.name}" for sub in field.message_type.fields)
    return sorted(names)


def _field_masks(cls: type[Message], owner: Descriptor) -> st.SearchStrategy[Message]:
    paths = st.sampled_from(_field_names(owner))
    return st.lists(paths | _texts(None, compact=True), max_size=5).map(lambda p: cls(paths=p))


def message_class(descriptor: Descriptor) -> type[Message]:
    return message_factory.GetMessageClass(descriptor)


_WELL_KNOWN: Mapping[str, Callable[[type[Message], Descriptor], st.SearchStrategy[Message]]] = {
    "google.protobuf.Timestamp": lambda cls, _owner: _timestamps(cls),
    "google.protobuf.Duration": lambda cls, _owner: _durations(cls),
    "google.protobuf.FieldMask": _field_masks,
}


def _single(field: FieldDescriptor, depth: int, compact: bool) -> st.SearchStrategy[Any]:
    """Values of one element of the field (a scalar or a message)."""
    kind = field.type
    if field.message_type is not None:
        special = _WELL_KNOWN.get(field.message_type.full_name)
        if special is not None and field.containing_type is not None:
            return special(message_class(field.message_type), field.containing_type)
        return messages(field.message_type, depth + 1, compact)
    if kind in _INT_RANGES:
        return _integers(field)
    if kind in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return _floats(field)
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_STRING:
        return _texts(field, compact)
    if kind == FieldDescriptor.TYPE_BYTES:
        return _bytes(compact)
    if kind == FieldDescriptor.TYPE_ENUM:
        return _enums(field)
    raise NotImplementedError(f"{field.full_name}: field type {kind}")


def _sizes(field: FieldDescriptor, compact: bool) -> st.SearchStrategy[int]:
    """How many entries a repeated field or map gets: none, a few, or just past its limit
    (never when ``compact``)."""
    limit = LIMITS.get(field.full_name)
    few = _tame_or_hostile(st.integers(1, _FEW), st.integers(0, _FEW))
    if limit is None or compact:
        return few
    return _tame_or_hostile(few, _weighted((3, few), (1, st.just(limit + 1))))


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


@st.composite
def _repeated(draw: st.DrawFn, field: FieldDescriptor, depth: int, compact: bool) -> list[Any]:
    """A list of values; one past the limit repeats one compact value (drawing thousands
    would not fit Hypothesis's buffer, and the batch's size is what is being tested)."""
    size = draw(_sizes(field, compact))
    if size > _FEW:
        return [draw(_single(field, depth, compact=True))] * size
    return [draw(_single(field, depth, compact)) for _ in range(size)]


@st.composite
def _map(draw: st.DrawFn, field: FieldDescriptor, depth: int, compact: bool) -> dict[Any, Any]:
    assert field.message_type is not None
    key, value = (field.message_type.fields_by_name[n] for n in ("key", "value"))
    size = draw(_sizes(field, compact))
    if size > _FEW:
        same = draw(_single(value, depth, compact=True))
        text = key.type == FieldDescriptor.TYPE_STRING
        return {f"k{i}" if text else i: same for i in range(size)}
    return {
        draw(_single(key, depth, compact)): draw(_single(value, depth, compact))
        for _ in range(size)
    }


def _assign(message: Message, field: FieldDescriptor, value: Any) -> None:
    target = getattr(message, field.name)
    if _is_map(field):
        for key, item in value.items():
            if isinstance(item, Message):
                target[key].CopyFrom(item)
            else:
                target[key] = item
    elif field.is_repeated:
        if field.message_type is not None:
            for item in value:
                target.add().CopyFrom(item)
        else:
            target.extend(value)
    elif field.message_type is not None:
        target.CopyFrom(value)
    else:
        setattr(message, field.name, value)


@st.composite
def _drawn_message(draw: st.DrawFn, descriptor: Descriptor, depth: int, compact: bool) -> Message:
    message = message_class(descriptor)()
    chosen = {
        oneof.name: draw(st.sampled_from([None, *oneof.fields]))
        for oneof in descriptor.oneofs
        if len(oneof.fields) > 1 or not oneof.name.startswith("_")  # not proto3 `optional`
    }
    for field in descriptor.fields:
        oneof = field.containing_oneof
        if oneof is not None and oneof.name in chosen and chosen[oneof.name] is not field:
            continue
        if field.message_type is not None and depth >= _MAX_DEPTH:
            continue
        if not draw(_SET):  # unset: the default, which must be fine too
            continue
        value: Any
        if _is_map(field):
            value = draw(_map(field, depth, compact))
        elif field.is_repeated:
            value = draw(_repeated(field, depth, compact))
        else:
            value = draw(_single(field, depth, compact))
        _assign(message, field, value)
    return message


def messages(
    descriptor: Descriptor, depth: int = 0, compact: bool = False
) -> st.SearchStrategy[Message]:
    """Instances of the message ``descriptor`` describes, any field possibly hostile;
    ``compact`` ones have no long strings and no oversized lists (they are repeated
    thousands of times in an oversized batch)."""
    return _drawn_message(descriptor, depth, compact)


@dataclass(frozen=True)
class Rpc:
    """One method of one Magpie service."""

    service: str
    """The service's process name (``python -m services.<service>``)."""
    method: MethodDescriptor

    @property
    def path(self) -> str:
        """The gRPC method path, ``/magpie.v1.Service/Method``."""
        return f"/{self.method.containing_service.full_name}/{self.method.name}"

    @property
    def request_class(self) -> type[Message]:
        return message_class(self.method.input_type)

    @property
    def response_class(self) -> type[Message]:
        return message_class(self.method.output_type)

    @property
    def streams_requests(self) -> bool:
        return bool(self.method.client_streaming)

    @property
    def streams_responses(self) -> bool:
        return bool(self.method.server_streaming)

    def __str__(self) -> str:
        return f"{self.method.containing_service.name}.{self.method.name}"


def _rpcs() -> list[Rpc]:
    found = []
    for module in _API:
        proto = module.DESCRIPTOR.name.rsplit("/", 1)[-1].removesuffix(".proto")
        service_name = _SERVED_BY.get(proto, proto)
        services: Sequence[ServiceDescriptor] = list(module.DESCRIPTOR.services_by_name.values())
        for service in services:
            found += [Rpc(service_name, method) for method in service.methods]
    return found


RPCS = _rpcs()
"""Every RPC of every Magpie service, found in the descriptors."""


@dataclass(frozen=True)
class Call:
    """One fuzzed call: its requests (one, or a stream's) and its deadline."""

    rpc: Rpc
    requests: tuple[Message, ...]
    timeout: float | None
    """Seconds; None for the harness's generous default, else one of TINY_TIMEOUTS."""

    @property
    def tiny_deadline(self) -> bool:
        return self.timeout is not None

    def __repr__(self) -> str:
        shown = [_short(r) for r in self.requests]
        return f"Call({self.rpc}, timeout={self.timeout}, requests={shown})"


def _short(message: Message, most: int = 2000) -> str:
    """The message as text, shortened: a fuzzed request may hold megabytes."""
    text = repr(message)
    return text if len(text) <= most else f"{text[:most]}... ({len(text)} characters)"


def calls(rpc: Rpc) -> st.SearchStrategy[Call]:
    """Fuzzed calls of ``rpc``: a request (a short stream of them for a streaming RPC)."""
    request = messages(rpc.method.input_type)
    requests = (
        st.lists(request, max_size=4).map(tuple)
        if rpc.streams_requests
        else request.map(lambda r: (r,))
    )
    timeouts = _tame_or_hostile(
        st.none(), _weighted((4, st.none()), (1, st.sampled_from(TINY_TIMEOUTS)))
    )
    return st.builds(Call, st.just(rpc), requests, timeouts)
