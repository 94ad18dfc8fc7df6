"""Who may call what, over TLS: real services, real tokens files and certificates.

Each test starts a service with authentication (and TLS where it says so) and
calls it as different callers. Not covered here: cert-manager itself (the
renewal is the kubelet's atomic swap of a Secret's files, which tests.certs
reproduces) and TLS to PostgreSQL and Redis (libpq's and redis-py's, configured
through their URLs).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from pathlib import Path

import grpc
import pytest
from google.rpc import status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from magpie.datasets import synthetic
from magpie.datasets.loader import Addresses, Loader, LoadReport
from magpie.platform.local import free_port
from magpie.runtime.clients import open_channel
from magpie.runtime.server import RunningServer
from magpie.runtime.settings import Settings
from magpie.v1 import common_pb2, feedback_pb2_grpc, profiles_pb2_grpc
from magpie.v1 import feedback_pb2 as fb
from magpie.v1 import profiles_pb2 as pb
from services.catalog.server import build_spec as catalog_spec
from services.feedback.server import build_spec as feedback_spec
from services.profiles.server import build_spec as profiles_spec
from tests.certs import Leaf, TestCA
from tests.integration.feedback.conftest import PRODUCTS, add_products
from tests.integration.feedback.events import query
from tests.support import code_of, write_tokens

pytestmark = pytest.mark.integration

ROLES = {"shop": "reader", "ingest": "writer", "ops": "admin", "other-ingest": "writer"}
_RELOAD_SECONDS = 1.5
"""Longer than a watched file's check interval (magpie.runtime.files)."""


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    return tmp_path / "callers.json"


@pytest.fixture
def tokens(tokens_file: Path) -> dict[str, str]:
    return write_tokens(tokens_file, ROLES)


@pytest.fixture
def secured(settings: Settings, tokens_file: Path, tokens: dict[str, str]) -> Settings:
    return settings.model_copy(update={"auth_tokens_file": str(tokens_file)})


async def test_each_role_reaches_only_its_methods(
    secured: Settings, tokens: dict[str, str], serve
) -> None:  # type: ignore[no-untyped-def]
    running = await serve(profiles_spec(secured), secured)
    upsert = pb.UpsertProfilesRequest(profiles=[pb.ProfileUpsert(user_id="u1")])
    get = pb.GetProfileRequest(user_id="u1")
    delete = pb.DeleteProfileRequest(user_id="u1")

    async with grpc.aio.insecure_channel(running.address) as channel:
        stub = profiles_pb2_grpc.ProfileServiceStub(channel)
        as_ = {name: bearer(token) for name, token in tokens.items()}
        codes = {
            "no token": await code_of(stub.GetProfile(get)),
            "unknown token": await code_of(stub.GetProfile(get, metadata=bearer("guess"))),
            "not bearer": await code_of(
                stub.GetProfile(get, metadata=(("authorization", tokens["ops"]),))
            ),
            "reader writes": await code_of(stub.UpsertProfiles(upsert, metadata=as_["shop"])),
            "writer writes": await code_of(stub.UpsertProfiles(upsert, metadata=as_["ingest"])),
            "reader reads": await code_of(stub.GetProfile(get, metadata=as_["shop"])),
            "writer deletes": await code_of(stub.DeleteProfile(delete, metadata=as_["ingest"])),
            "admin deletes": await code_of(stub.DeleteProfile(delete, metadata=as_["ops"])),
        }

    assert codes == {
        "no token": grpc.StatusCode.UNAUTHENTICATED,
        "unknown token": grpc.StatusCode.UNAUTHENTICATED,
        "not bearer": grpc.StatusCode.UNAUTHENTICATED,
        "reader writes": grpc.StatusCode.PERMISSION_DENIED,
        "writer writes": grpc.StatusCode.OK,
        "reader reads": grpc.StatusCode.OK,
        "writer deletes": grpc.StatusCode.PERMISSION_DENIED,
        "admin deletes": grpc.StatusCode.OK,
    }


async def test_a_refusal_tells_nothing_and_is_checked_before_the_request(
    secured: Settings, serve
) -> None:  # type: ignore[no-untyped-def]
    running = await serve(profiles_spec(secured), secured)
    malformed = pb.UpsertProfilesRequest(profiles=[pb.ProfileUpsert(user_id="")])

    async with grpc.aio.insecure_channel(running.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await profiles_pb2_grpc.ProfileServiceStub(channel).UpsertProfiles(malformed)

    assert raised.value.code() is grpc.StatusCode.UNAUTHENTICATED  # not INVALID_ARGUMENT
    assert raised.value.details() == "authentication required"
    raw = dict(raised.value.trailing_metadata() or ()).get("grpc-status-details-bin", b"")
    assert not status_pb2.Status.FromString(raw).details


async def test_probes_need_no_token_and_reflection_needs_one_or_is_off(
    secured: Settings, tokens: dict[str, str], serve
) -> None:  # type: ignore[no-untyped-def]
    with_reflection = await serve(profiles_spec(secured), secured)
    closed = secured.model_copy(update={"reflection_enabled": False})
    without_reflection = await serve(profiles_spec(closed), closed)

    async def list_services(address: str, metadata: tuple[tuple[str, str], ...] = ()) -> object:
        async with grpc.aio.insecure_channel(address) as channel:
            call = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
                metadata=metadata
            )
            try:
                await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
                return (await call.read()).list_services_response.service[0].name
            except grpc.aio.AioRpcError as error:
                return error.code()

    async with grpc.aio.insecure_channel(with_reflection.address) as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())

    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert await list_services(with_reflection.address) is grpc.StatusCode.UNAUTHENTICATED
    assert await list_services(with_reflection.address, bearer(tokens["shop"])) != ""
    assert await list_services(without_reflection.address, bearer(tokens["ops"])) is (
        grpc.StatusCode.UNIMPLEMENTED
    )


async def test_callers_are_added_and_revoked_without_a_restart(
    secured: Settings, tokens_file: Path, tokens: dict[str, str], serve
) -> None:  # type: ignore[no-untyped-def]
    running = await serve(profiles_spec(secured), secured)
    get = pb.GetProfileRequest(user_id="u1")

    async with grpc.aio.insecure_channel(running.address) as channel:
        stub = profiles_pb2_grpc.ProfileServiceStub(channel)
        assert await code_of(stub.GetProfile(get, metadata=bearer(tokens["shop"]))) is (
            grpc.StatusCode.OK
        )
        rotated = write_tokens(tokens_file, {"shop": "reader"})  # a new token for shop
        await asyncio.sleep(_RELOAD_SECONDS)
        old = await code_of(stub.GetProfile(get, metadata=bearer(tokens["shop"])))
        new = await code_of(stub.GetProfile(get, metadata=bearer(rotated["shop"])))
        tokens_file.write_text("{not json")  # a broken update keeps the callers loaded
        await asyncio.sleep(_RELOAD_SECONDS)
        after_broken = await code_of(stub.GetProfile(get, metadata=bearer(rotated["shop"])))

    assert (old, new, after_broken) == (
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.OK,
        grpc.StatusCode.OK,
    )


async def test_a_service_presents_its_own_token_downstream(
    secured: Settings, tokens: dict[str, str], tmp_path: Path, serve
) -> None:  # type: ignore[no-untyped-def]
    running = await serve(profiles_spec(secured), secured)
    token_file = tmp_path / "token"
    token_file.write_text(tokens["shop"] + "\n")
    as_shop = secured.model_copy(update={"auth_token_file": str(token_file)})

    async with open_channel(running.address, as_shop) as channel:
        reply = await profiles_pb2_grpc.ProfileServiceStub(channel).BatchGetProfiles(
            pb.BatchGetProfilesRequest(user_ids=["u1"])
        )

    assert reply is not None


async def test_the_command_line_loader_presents_its_token_on_unary_and_streamed_calls(
    secured: Settings, tokens: dict[str, str], tmp_path: Path, serve
) -> None:  # type: ignore[no-untyped-def]
    catalog = await serve(catalog_spec(secured), secured)
    profiles = await serve(profiles_spec(secured), secured)
    feedback = await serve(feedback_spec(secured), secured)
    addresses = Addresses(catalog.address, profiles.address, feedback.address)
    token_file = tmp_path / "token"
    token_file.write_text(tokens["ingest"] + "\n")
    world = synthetic.preset("tiny")

    def load(token: str) -> LoadReport:
        with Loader(addresses, progress=False, token_file=token) as loader:
            loader.products(synthetic.iter_items(world, batch_size=64))  # unary
            loader.interactions(world.name, synthetic.iter_interactions(world))  # a stream
            return loader.report

    with pytest.raises(grpc.RpcError) as refused:
        await asyncio.to_thread(load, "")
    report = await asyncio.to_thread(load, str(token_file))

    assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert (report.products, report.failed, report.events_rejected) == (200, 0, 0)
    assert report.events_accepted == sum(map(len, synthetic.iter_interactions(world)))


async def test_event_ids_are_scoped_per_caller_and_a_reused_id_is_a_conflict(
    secured: Settings, tokens: dict[str, str], clean_db: str, serve
) -> None:  # type: ignore[no-untyped-def]
    add_products(clean_db, PRODUCTS)
    running = await serve(feedback_spec(secured), secured)

    def click(product_id: str) -> fb.RecordEventsRequest:
        return fb.RecordEventsRequest(
            events=[
                fb.Event(
                    event_id="e1",
                    user_id="u1",
                    product_id=product_id,
                    event_type=common_pb2.EVENT_TYPE_CLICK,
                )
            ]
        )

    async with grpc.aio.insecure_channel(running.address) as channel:
        stub = feedback_pb2_grpc.FeedbackServiceStub(channel)
        ingest, other = bearer(tokens["ingest"]), bearer(tokens["other-ingest"])
        first = await stub.RecordEvents(click("p1"), metadata=ingest)
        squat = await stub.RecordEvents(click("p2"), metadata=other)  # another caller's e1
        resent = await stub.RecordEvents(click("p1"), metadata=ingest)  # no time: server's
        reused = await stub.RecordEvents(click("p3"), metadata=ingest)

    outcomes = [r.results[0].outcome for r in (first, squat, resent, reused)]
    assert outcomes == [
        fb.EVENT_OUTCOME_ACCEPTED,
        fb.EVENT_OUTCOME_ACCEPTED,
        fb.EVENT_OUTCOME_DUPLICATE,
        fb.EVENT_OUTCOME_CONFLICT,
    ]
    assert reused.rejected == 1
    stored = query(clean_db, "SELECT source, product_id FROM events ORDER BY source")
    assert stored == [("ingest", "p1"), ("other-ingest", "p2")]


# --- TLS ---------------------------------------------------------------------------------


def tls_settings(base: Settings, ca: TestCA, leaf: Leaf, **more: object) -> Settings:
    return base.model_copy(
        update={
            "tls_cert_file": str(leaf.cert),
            "tls_key_file": str(leaf.key),
            "tls_ca_file": str(ca.cert),
            **more,
        }
    )


def served_certificate(port: int, ca: TestCA, client: Leaf) -> str:
    """Common name of the certificate a new TLS handshake with the server presents."""
    context = ssl.create_default_context(cafile=str(ca.cert))
    context.load_cert_chain(str(client.cert), str(client.key))
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", port)) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        subject = dict(pair[0] for pair in tls.getpeercert()["subject"])  # type: ignore[index]
    return str(subject["commonName"])


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path / "pki")


async def test_mutual_tls_refuses_clients_without_a_certificate_the_ca_signed(
    settings: Settings, ca: TestCA, tmp_path: Path, serve
) -> None:  # type: ignore[no-untyped-def]
    probe_port = free_port()
    server_settings = tls_settings(settings, ca, ca.issue("server"), probe_port=probe_port)
    running: RunningServer = await serve(profiles_spec(server_settings), server_settings)
    address = f"localhost:{running.port}"
    stranger_ca = TestCA(tmp_path / "stranger")
    request = pb.BatchGetProfilesRequest(user_ids=["u1"])

    async def code_on(channel: grpc.aio.Channel) -> grpc.StatusCode:
        async with channel:
            stub = profiles_pb2_grpc.ProfileServiceStub(channel)
            return await code_of(stub.BatchGetProfiles(request, timeout=3))

    trusted = await code_on(open_channel(address, tls_settings(settings, ca, ca.issue("client"))))
    plaintext = await code_on(open_channel(address, settings))
    no_client_certificate = await code_on(
        grpc.aio.secure_channel(
            address, grpc.ssl_channel_credentials(root_certificates=ca.cert.read_bytes())
        )
    )
    untrusted = await code_on(
        open_channel(address, tls_settings(settings, ca, stranger_ca.issue("client")))
    )

    async with grpc.aio.insecure_channel(f"127.0.0.1:{probe_port}") as channel:  # kubelet
        probe = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        probe_has_profiles = await code_of(
            profiles_pb2_grpc.ProfileServiceStub(channel).BatchGetProfiles(request)
        )

    assert probe.status == health_pb2.HealthCheckResponse.SERVING
    assert probe_has_profiles is grpc.StatusCode.UNIMPLEMENTED
    assert trusted is grpc.StatusCode.OK
    assert plaintext is grpc.StatusCode.UNAVAILABLE
    assert no_client_certificate is grpc.StatusCode.UNAVAILABLE
    assert untrusted is grpc.StatusCode.UNAVAILABLE


async def test_renewed_certificates_are_used_with_no_failed_call(
    settings: Settings, ca: TestCA, caplog: pytest.LogCaptureFixture, serve
) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO, logger="magpie.runtime.tls")
    server_settings = tls_settings(settings, ca, ca.issue("server", "server-v1"))
    running: RunningServer = await serve(profiles_spec(server_settings), server_settings)
    client_settings = tls_settings(settings, ca, ca.issue("client", "client-v1"))
    observer = ca.issue("observer")
    codes: list[grpc.StatusCode] = []
    stop = asyncio.Event()

    async def keep_calling() -> None:
        async with open_channel(f"localhost:{running.port}", client_settings) as channel:
            stub = profiles_pb2_grpc.ProfileServiceStub(channel)
            request = pb.BatchGetProfilesRequest(user_ids=["u1"])
            while not stop.is_set():
                codes.append(await code_of(stub.BatchGetProfiles(request, timeout=2)))
                await asyncio.sleep(0.01)

    calls = asyncio.create_task(keep_calling())
    await asyncio.sleep(0.3)
    before = served_certificate(running.port, ca, observer)
    ca.issue("server", "server-v2")  # cert-manager renews both leaves
    ca.issue("client", "client-v2")
    await asyncio.sleep(_RELOAD_SECONDS + 0.5)
    after = served_certificate(running.port, ca, observer)
    stop.set()
    await calls

    assert (before, after) == ("server-v1", "server-v2")
    assert "client TLS certificate renewed" in caplog.text
    assert len(codes) > 50
    assert set(codes) == {grpc.StatusCode.OK}
