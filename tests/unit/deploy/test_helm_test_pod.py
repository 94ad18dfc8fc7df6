"""The script of the `helm test` pod (helm/magpie/files/helm_test.py) against a gRPC server
that answers health and Recommend: in the open, and with mutual TLS and a bearer token as
the chart's security values set them up (certificates from tests.certs, mounted as the
kubelet lays out a Secret)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2_grpc

from magpie.v1 import ranking_pb2, ranking_pb2_grpc
from tests.certs import TestCA
from tests.support import REPO
from tests.unit.deploy.conftest import CHART

SCRIPT = (CHART / "files" / "helm_test.py").read_text()
TOKEN = "service-token-of-the-test"


class _Ranking(ranking_pb2_grpc.RankingServiceServicer):
    def __init__(self, token: str | None) -> None:
        self._token = token

    def Recommend(
        self, request: ranking_pb2.RecommendRequest, context: grpc.ServicerContext
    ) -> ranking_pb2.RecommendResponse:
        presented = dict(context.invocation_metadata()).get("authorization")
        if self._token is not None and presented != f"Bearer {self._token}":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "no valid token")
        return ranking_pb2.RecommendResponse()


def _serve(credentials: grpc.ServerCredentials | None, token: str | None) -> Iterator[int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    ranking = _Ranking(token)  # type: ignore[abstract]  # Rank: the base's UNIMPLEMENTED
    ranking_pb2_grpc.add_RankingServiceServicer_to_server(ranking, server)
    if credentials is None:
        port = server.add_insecure_port("localhost:0")
    else:
        port = server.add_secure_port("localhost:0", credentials)
    server.start()
    try:
        yield port
    finally:
        server.stop(grace=None)


@pytest.fixture(params=["open", "mutual-tls-and-token"])
def environment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The pod's environment for a server in one of the two modes."""
    env = {"TEST_SERVICES": "ranking", "TEST_USER": "u1", "TEST_TIMEOUT": "5"}
    if request.param == "open":
        for port in _serve(None, None):
            yield {**env, "MAGPIE_RANKING_ADDR": f"localhost:{port}"}
        return
    ca = TestCA(tmp_path / "tls")
    leaf = ca.issue("magpie")  # one certificate, served and presented, as in the chart
    credentials = grpc.ssl_server_credentials(
        [(leaf.key.read_bytes(), leaf.cert.read_bytes())],
        root_certificates=ca.cert.read_bytes(),
        require_client_auth=True,
    )
    token_file = tmp_path / "auth" / "service-token"
    token_file.parent.mkdir()
    token_file.write_text(TOKEN + "\n")
    for port in _serve(credentials, TOKEN):
        yield {
            **env,
            "MAGPIE_RANKING_ADDR": f"localhost:{port}",
            "MAGPIE_AUTH_TOKEN_FILE": str(token_file),
            "MAGPIE_TLS_CERT_FILE": str(leaf.cert),
            "MAGPIE_TLS_KEY_FILE": str(leaf.key),
            "MAGPIE_TLS_CA_FILE": str(ca.cert),
        }


def test_the_helm_test_pod_checks_health_and_recommends(environment: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), **environment},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Recommend(u1): 0 items" in done.stdout, done.stdout
