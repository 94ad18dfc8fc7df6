"""TLS and mutual TLS between Magpie processes, with certificates renewed in place.

Certificates come from files (``Settings.tls_*``; in Kubernetes a cert-manager
Secret) and are re-read when they change, with no failed call:

- a server hands gRPC a certificate fetcher that core asks on every new
  handshake; connections already open keep their session;
- a client channel is rebuilt when its files change: new calls go to the new
  channel while calls on the old one finish (it is closed a grace period later).

PostgreSQL and Redis take TLS through their URLs (``sslmode=verify-full`` and
``sslrootcert=`` in ``database_url``, ``rediss://`` with ``ssl_ca_certs=`` in
``redis_url``), see docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar, cast

import grpc

from magpie.runtime.files import WatchedFiles
from magpie.runtime.settings import Settings

__all__ = ["ReloadingChannel", "Renewed", "server_credentials", "tls_enabled"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

_OLD_CHANNEL_GRACE_SECONDS = 30.0
"""How long a replaced client channel lives on for the calls it carries."""

_Pem = tuple[bytes, bytes, bytes | None]
"""Key, certificate chain, CA bundle (None: none configured)."""


def tls_enabled(settings: Settings) -> bool:
    return bool(settings.tls_cert_file and settings.tls_key_file)


def _files(settings: Settings) -> WatchedFiles[_Pem]:
    paths = [settings.tls_key_file, settings.tls_cert_file]
    if settings.tls_ca_file:
        paths.append(settings.tls_ca_file)

    def parse(contents: Sequence[bytes]) -> _Pem:
        if not all(b"-----BEGIN" in c for c in contents):
            raise ValueError("not PEM")
        # The key must match the certificate, or every handshake would fail (ssl.SSLError,
        # an OSError, keeps the certificates in use).
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(
            settings.tls_cert_file, settings.tls_key_file
        )
        return contents[0], contents[1], contents[2] if len(contents) > 2 else None

    return WatchedFiles(paths, parse)


def server_credentials(settings: Settings) -> grpc.ServerCredentials:
    """Credentials of a TLS server that picks up renewed certificates at the next handshake."""
    files = _files(settings)
    require_client_cert = settings.tls_client_auth and bool(settings.tls_ca_file)

    def configuration(pem: _Pem) -> Any:
        key, chain, ca = pem
        return grpc.ssl_server_certificate_configuration([(key, chain)], root_certificates=ca)

    served = files.generation

    def fetch() -> Any:
        nonlocal served
        pem = files.current()
        if files.generation == served:
            return None  # unchanged
        served = files.generation
        logger.info("serving a renewed TLS certificate")
        return configuration(pem)

    return grpc.dynamic_ssl_server_credentials(
        configuration(files.current()),
        fetch,
        require_client_authentication=require_client_cert,
    )


class Renewed(Generic[T]):
    """What `make` builds from this process's client credentials (a channel, a Triton
    client), built again when the certificate files change; the one replaced is closed
    a grace period later, so calls it carries finish."""

    def __init__(
        self,
        settings: Settings,
        make: Callable[[grpc.ChannelCredentials], T],
        close: Callable[[T], Awaitable[None]],
    ) -> None:
        self._files = _files(settings)
        self._make = make
        self._close = close
        self._generation = self._files.generation
        self._value = make(self._credentials())

    def _credentials(self) -> grpc.ChannelCredentials:
        key, chain, ca = self._files.current()
        return grpc.ssl_channel_credentials(
            root_certificates=ca, private_key=key, certificate_chain=chain
        )

    def current(self) -> T:
        self._files.current()  # a stat at most once a second; credentials only on a change
        if self._files.generation != self._generation:
            old, self._generation = self._value, self._files.generation
            self._value = self._make(self._credentials())
            logger.info("client TLS certificate renewed; new calls use a new connection")
            asyncio.get_running_loop().call_later(
                _OLD_CHANNEL_GRACE_SECONDS, lambda: asyncio.ensure_future(self._close(old))
            )
        return self._value


class ReloadingChannel:
    """A grpc.aio channel (to stubs) whose TLS credentials follow their files: when they
    change, the next call opens a new channel with the new credentials."""

    def __init__(
        self, settings: Settings, connect: Callable[[grpc.ChannelCredentials], grpc.aio.Channel]
    ) -> None:
        self._channels = Renewed(settings, connect, lambda channel: channel.close(grace=None))
        self._current = self._channels.current

    def _multicallable(self, kind: str, args: Any, kwargs: Any) -> Any:
        def call(*call_args: Any, **call_kwargs: Any) -> Any:
            made = getattr(self._current(), kind)(*args, **kwargs)
            return made(*call_args, **call_kwargs)

        return call

    def unary_unary(self, *args: Any, **kwargs: Any) -> Any:
        return self._multicallable("unary_unary", args, kwargs)

    def unary_stream(self, *args: Any, **kwargs: Any) -> Any:
        return self._multicallable("unary_stream", args, kwargs)

    def stream_unary(self, *args: Any, **kwargs: Any) -> Any:
        return self._multicallable("stream_unary", args, kwargs)

    def stream_stream(self, *args: Any, **kwargs: Any) -> Any:
        return self._multicallable("stream_stream", args, kwargs)

    async def channel_ready(self) -> None:
        await self._current().channel_ready()

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        return self._current().get_state(try_to_connect)

    async def close(self, grace: float | None = None) -> None:
        await self._current().close(grace)

    async def __aenter__(self) -> grpc.aio.Channel:
        return cast(grpc.aio.Channel, self)

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
