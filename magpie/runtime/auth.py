"""Who may call what: bearer tokens per caller, a role per method.

Each caller (a storefront, the ranking service, an operator) holds its own
random token. A service accepts the callers listed in its tokens file (a
mounted Secret, ``Settings.auth_tokens_file``), JSON of the form::

    {"storefront": {"role": "reader", "token_sha256": "<hex digest of the token>"},
     "ops":        {"role": "admin",  "token_sha256": "..."}}

Only digests are stored, so the file does not hold a usable credential; a
presented token is hashed and compared with every digest in constant time.
``magpie token NAME ROLE`` makes a token and its entry. The file is re-read when
it changes, so a caller is added or revoked without a restart.

Roles are ordered: ``reader`` (Recommend, Rank, Retrieve and every read) <
``writer`` (also feedback, catalog and profile writes) < ``admin`` (also
DeleteProfile). Health checks are open to anyone (kubelet probes carry no
token); reflection, when enabled, needs any valid token; a method not in the
table needs ``admin``. Failures are UNAUTHENTICATED (no or unknown token) or
PERMISSION_DENIED (role too weak), with no detail that would help a guesser.

With no tokens file the service runs open (a loopback development platform)
and says so at start. The caller's name is the scope of its event ids
(`current_caller`).
"""

from __future__ import annotations

import contextvars
import enum
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from magpie.runtime.deadline import CallDetailsInterceptor
from magpie.runtime.errors import PermissionDenied, Unauthenticated
from magpie.runtime.files import WatchedFile

__all__ = [
    "ANONYMOUS",
    "HEALTH_METHODS",
    "Authenticator",
    "Caller",
    "PresentToken",
    "Role",
    "current_caller",
    "new_token",
    "set_caller",
]

logger = logging.getLogger(__name__)

_HEADER = "authorization"
_SCHEME = "bearer "


class Role(enum.IntEnum):
    READER = 1
    WRITER = 2
    ADMIN = 3


@dataclass(frozen=True, slots=True)
class Caller:
    name: str
    role: Role


ANONYMOUS = Caller("", Role.ADMIN)
"""The caller of a service that runs without authentication."""

_METHOD_ROLES: Mapping[str, Role] = {
    **{
        f"/magpie.v1.{service}/{method}": Role.READER
        for service, methods in {
            "RankingService": ("Recommend", "Rank"),
            "RetrievalService": ("Retrieve", "SimilarProducts"),
            "ProfileService": ("GetProfile", "BatchGetProfiles", "ListProfiles"),
            "CatalogService": ("GetProducts", "ListProducts", "GetProductActivity"),
            "ModelService": ("ListModelVersions", "GetOnlineMetrics"),
        }.items()
        for method in methods
    },
    **{
        f"/magpie.v1.{service}/{method}": Role.WRITER
        for service, methods in {
            "FeedbackService": ("RecordEvents", "StreamEvents"),
            "ProfileService": ("UpsertProfiles",),
            "CatalogService": ("UpsertProducts", "SetProductStatus"),
        }.items()
        for method in methods
    },
    "/magpie.v1.ProfileService/DeleteProfile": Role.ADMIN,
}
HEALTH_METHODS = "/grpc.health.v1.Health/"
"""Prefix of the health checking methods: open to any caller (probes carry no token)."""
_REFLECTION_PREFIX = "/grpc.reflection."

_caller: contextvars.ContextVar[Caller] = contextvars.ContextVar("magpie_caller", default=ANONYMOUS)


def current_caller() -> Caller:
    """The authenticated caller of the call being served."""
    return _caller.get()


def set_caller(caller: Caller) -> None:
    _caller.set(caller)


def required_role(method: str) -> Role | None:
    """The weakest role allowed to call `method`; None: anyone, with or without a token."""
    if method.startswith(HEALTH_METHODS):
        return None
    if method.startswith(_REFLECTION_PREFIX):
        return Role.READER
    return _METHOD_ROLES.get(method, Role.ADMIN)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _parse_callers(text: str) -> Sequence[tuple[bytes, Caller]]:
    entries: dict[str, Any] = json.loads(text)
    callers = []
    for name, entry in entries.items():
        role = Role[str(entry["role"]).upper()]
        digest = bytes.fromhex(entry["token_sha256"])
        if len(digest) != hashlib.sha256().digest_size:
            raise ValueError(f"caller {name!r}: token_sha256 is not a SHA-256 hex digest")
        callers.append((digest, Caller(name, role)))
    return callers


class Authenticator:
    """Checks the token of each call against the callers file (re-read when it changes)."""

    def __init__(self, tokens_file: str) -> None:
        self._callers = WatchedFile(tokens_file, _parse_callers)
        self._callers.current()  # a broken file fails the start, not the first call

    def authorize(self, method: str, metadata: Sequence[tuple[str, Any]] | None) -> Caller:
        """The caller allowed to call `method`; raises Unauthenticated or PermissionDenied."""
        role = required_role(method)
        caller = self._identify(metadata)
        if role is None:
            return caller or ANONYMOUS
        if caller is None:
            raise Unauthenticated("authentication required")
        if caller.role < role:
            raise PermissionDenied("permission denied")
        return caller

    def identify_token(self, token: str) -> Caller | None:
        """The caller holding `token`, or None for an unknown one (a sign-in page checks a
        token this way before it keeps it)."""
        presented = _digest(token.strip())
        found = None
        for digest, caller in self._callers.current():
            if hmac.compare_digest(digest, presented):  # every entry compared: constant time
                found = caller
        return found

    def _identify(self, metadata: Sequence[tuple[str, Any]] | None) -> Caller | None:
        header = next((v for k, v in metadata or () if k == _HEADER), None)
        if not isinstance(header, str) or not header.lower().startswith(_SCHEME):
            return None
        return self.identify_token(header[len(_SCHEME) :])


class PresentToken(CallDetailsInterceptor):
    """Client interceptor: every call carries this process's token (re-read when its file
    changes, so a rotated Secret takes effect without a restart)."""

    def __init__(self, token_file: str) -> None:
        self._token = WatchedFile(token_file, str.strip)
        self._token.current()

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        metadata.add(_HEADER, _SCHEME + self._token.current())
        return details._replace(metadata=metadata)


class PresentTokenBlocking(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """`PresentToken` for a blocking channel (the command-line tools), on every kind of call."""

    def __init__(self, token_file: str) -> None:
        self._token = WatchedFile(token_file, str.strip)
        self._token.current()

    def _call(self, continuation: Any, details: Any, request: Any) -> Any:
        metadata = [*(details.metadata or ()), (_HEADER, _SCHEME + self._token.current())]
        return continuation(details._replace(metadata=metadata), request)

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return self._call(continuation, details, request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return self._call(continuation, details, request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return self._call(continuation, details, requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return self._call(continuation, details, requests)


def new_token(name: str, role: str) -> tuple[str, dict[str, dict[str, str]]]:
    """A fresh token for caller `name` and its entry for the tokens file."""
    Role[role.upper()]  # raises KeyError for an unknown role
    token = secrets.token_urlsafe(32)
    return token, {name: {"role": role.lower(), "token_sha256": _digest(token).hex()}}
