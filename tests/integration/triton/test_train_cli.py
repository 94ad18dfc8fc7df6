"""`magpie train` writes a bundle that `magpie model promote` publishes to a real Triton.

Both commands run as their own processes, as a person runs them: one bundle writer, from
the training command to what the server loads.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import psycopg2
import pytest
import tritonclient.grpc as grpcclient

from magpie.contract.signature import CONTEXT_DIM, HISTORY_LEN, SCORES
from magpie.modelstore import registry
from magpie.modelstore.client import infer_inputs, pad_candidates
from magpie.modelstore.tritonserver import TritonServer
from magpie.modelstore.validate import validate_bundle
from tests.support import run_magpie

from .conftest import MODEL, free_ports, new_repository

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TINY = {
    "use_text": False,
    "candidates": 20,
    "retrieval": {"dim": 16, "layers": 1, "heads": 1, "epochs": 1, "eval_every": 1},
    "ranker": {
        "dim": 16,
        "layers": 1,
        "heads": 1,
        "hidden": 32,
        "epochs": 1,
        "eval_every": 1,
        "positions": 2,
        "negative_pool": 8,
        "negatives": 7,
    },
}


def test_trained_bundle_is_registered_published_and_served(clean_db: str, tmp_path: Path) -> None:
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY))
    repository = new_repository(tmp_path / "repo")
    env = {
        "PATH": str(Path(sys.executable).parent),
        "MAGPIE_DATABASE_URL": clean_db,
        "MAGPIE_ARTIFACT_DIR": str(tmp_path / "artifacts"),
        "MAGPIE_MODEL_REPOSITORY": str(repository),
        "MAGPIE_TRITON_MODEL": MODEL,
        "MAGPIE_LOG_LEVEL": "WARNING",
    }

    trained = run_magpie(env, "train", "--dataset", "synthetic-tiny", "--config", str(config))
    with psycopg2.connect(clean_db) as conn:
        (candidate,) = registry.list_versions(conn, "magpie")
    conn.close()
    validate_bundle(Path(candidate.artifact_uri))
    with TritonServer.start(repository, tmp_path, free_ports()) as server:
        env["MAGPIE_TRITON_ADDR"] = server.grpc_addr
        promoted = run_magpie(env, "model", "promote", str(candidate.version))
        client = grpcclient.InferenceServerClient(server.grpc_addr)
        ready = client.is_model_ready(MODEL, str(candidate.version))
        history = np.zeros((1, HISTORY_LEN), dtype=np.int64)
        history[0, -3:] = [2, 3, 4]
        ids, features = pad_candidates(
            np.arange(2, 12, dtype=np.int64)[None, :], np.zeros((1, 10, 2), np.float32)
        )
        scores = client.infer(
            MODEL,
            infer_inputs(history, ids, np.zeros((1, CONTEXT_DIM), np.float32), features),
        ).as_numpy(SCORES)
        client.close()

    assert f"version {candidate.version} registered as a candidate" in trained
    assert candidate.status == "candidate" and candidate.version == 1
    assert f"version {candidate.version} promoted and published" in promoted
    assert ready
    assert scores.shape == ids.shape and np.isfinite(scores).all()
