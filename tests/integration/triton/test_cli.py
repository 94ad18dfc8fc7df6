"""`magpie model promote|rollback|list|history` against PostgreSQL and a running
tritonserver."""

from __future__ import annotations

import argparse
from pathlib import Path

import psycopg2
import pytest
import tritonclient.grpc as grpcclient

from magpie.modelstore import cli, registry
from magpie.modelstore.publish import published_versions

from .conftest import MODEL, Served


def _magpie(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli.add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["model", *argv])
    return int(args.handler(args))


def test_promote_and_rollback_reach_the_server(
    own_triton: Served,
    bundle: Path,
    fp32_bundle: Path,
    clean_db: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    triton = own_triton
    monkeypatch.setenv("MAGPIE_DATABASE_URL", clean_db)
    monkeypatch.setenv("MAGPIE_MODEL_REPOSITORY", str(triton.repository))
    monkeypatch.setenv("MAGPIE_TRITON_ADDR", triton.server.grpc_addr)
    monkeypatch.setenv("MAGPIE_TRITON_MODEL", MODEL)
    with psycopg2.connect(clean_db) as conn:
        registry.register_candidate(conn, "magpie", 1, {}, str(bundle))
        registry.register_candidate(conn, "magpie", 2, {}, f"file://{fp32_bundle}")
    client = grpcclient.InferenceServerClient(triton.server.grpc_addr)

    assert _magpie("promote", "1") == 0
    assert _magpie("promote", "2", "--reason", "better on the holdout") == 0
    both_loaded = client.is_model_ready(MODEL, "1") and client.is_model_ready(MODEL, "2")
    assert _magpie("rollback", "--reason", "CTR dropped") == 0
    still_loaded = client.is_model_ready(MODEL, "2")  # a rollback is an alias change only
    assert _magpie("list") == 0
    listing = capsys.readouterr().out.splitlines()
    assert _magpie("history") == 0
    log = capsys.readouterr().out.splitlines()
    client.close()

    assert both_loaded and still_loaded
    assert published_versions(triton.repository / MODEL) == [1, 2]
    with psycopg2.connect(clean_db) as conn:
        assert registry.aliases(conn, "magpie") == {"champion": 1, "previous": 2}
    conn.close()
    assert [line.split()[:3] for line in listing[-2:]] == [
        ["2", "candidate", "previous"],
        ["1", "candidate", "champion"],
    ]
    assert [line.split()[2:6] for line in log[1:]] == [
        ["rollback", "2", "1", "manual"],
        ["promote", "1", "2", "manual"],
        ["promote", "-", "1", "manual"],
    ]
    assert log[1].endswith("CTR dropped") and log[2].endswith("better on the holdout")
