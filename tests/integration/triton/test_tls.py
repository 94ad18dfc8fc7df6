"""Ranking to Triton over mutual TLS: a real tritonserver with its gRPC endpoint on TLS."""

from __future__ import annotations

from pathlib import Path

import pytest

from magpie.modelstore.client import RankerClient
from magpie.modelstore.publish import publish
from magpie.modelstore.tritonserver import TritonServer
from magpie.runtime.breaker import DependencyDown
from magpie.runtime.settings import Settings, load_settings
from tests.certs import TestCA

from .conftest import MODEL, free_ports, new_repository
from .test_serving import _covisitation, _request


async def test_the_ranker_is_scored_over_mutual_tls_and_plaintext_is_refused(
    bundle: Path, tmp_path: Path
) -> None:
    ca = TestCA(tmp_path / "pki")
    server, client = ca.issue("triton"), ca.issue("ranking")
    repository = new_repository(tmp_path / "repo")
    publish(bundle, 1, repository, MODEL)
    tls_flags = [
        "--grpc-use-ssl=true",
        "--grpc-use-ssl-mutual=true",
        f"--grpc-server-cert={server.cert}",
        f"--grpc-server-key={server.key}",
        f"--grpc-root-cert={ca.cert}",
    ]
    ranking: Settings = load_settings(
        {
            "tls_cert_file": str(client.cert),
            "tls_key_file": str(client.key),
            "tls_ca_file": str(ca.cert),
        }
    )
    request = _request(0, 50, _covisitation(bundle))

    with TritonServer.start(
        repository, repository.parent, free_ports(), load=[MODEL], extra=tls_flags
    ) as triton:
        address = f"localhost:{triton.ports.grpc}"
        secure = RankerClient(address, MODEL, timeout=10.0, tls=ranking)
        plain = RankerClient(address, MODEL, timeout=2.0)
        try:
            scores, version = await secure.score(*request)
            with pytest.raises(DependencyDown):
                await plain.score(*request)
        finally:
            await secure.close()
            await plain.close()

    assert version == "1"
    assert scores.shape == (1, 50)
