"""`magpie model promote|rollback|list` against PostgreSQL and the running tritonserver."""

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
    triton: Served,
    bundle: Path,
    fp32_bundle: Path,
    clean_db: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MAGPIE_DATABASE_URL", clean_db)
    monkeypatch.setenv("MAGPIE_MODEL_REPOSITORY", str(triton.repository))
    monkeypatch.setenv("MAGPIE_TRITON_ADDR", triton.server.grpc_addr)
    monkeypatch.setenv("MAGPIE_TRITON_MODEL", MODEL)
    with psycopg2.connect(clean_db) as conn:
        registry.register_candidate(conn, "magpie", 1, {}, str(bundle))
        registry.register_candidate(conn, "magpie", 2, {}, f"file://{fp32_bundle}")
    client = grpcclient.InferenceServerClient(triton.server.grpc_addr)

    assert _magpie("promote", "1") == 0
    assert _magpie("promote", "2") == 0
    served_after_promote = client.is_model_ready(MODEL, "2")
    assert _magpie("rollback") == 0
    assert _magpie("list") == 0
    client.close()

    assert served_after_promote
    assert published_versions(triton.repository / MODEL) == [1]
    with psycopg2.connect(clean_db) as conn:
        statuses = {v.version: v.status for v in registry.list_versions(conn, "magpie")}
    assert statuses == {1: "promoted", 2: "retired"}
    listing = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in listing[-2:]] == [["2", "retired"], ["1", "promoted"]]
