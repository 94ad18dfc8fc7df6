"""The generated queue policy in a real tritonserver: an overloaded ranker answers at once
(and RankerClient says ``DependencyDown``) instead of queueing past its callers' budgets,
and scores no request whose caller's time ran out while it waited."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format
from numpy.typing import NDArray
from tritonclient.grpc import aio as aioclient
from tritonclient.utils import InferenceServerException

from magpie.contract.signature import CANDIDATE_FEATURE_DIM, CONTEXT_DIM, HISTORY_LEN
from magpie.modelstore.client import RankerClient, infer_inputs
from magpie.modelstore.triton_repo import CONFIG_FILE, MODEL_PY, TARGETS, model_config
from magpie.modelstore.tritonserver import TritonServer
from magpie.runtime.breaker import DependencyDown

from .conftest import MODEL, free_ports

SCORE_SECONDS = 0.3
"""What the stand-in ranker takes per request."""
_SLOW_MODEL = f"""
import time
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        answers = []
        for request in requests:
            ids = pb_utils.get_input_tensor_by_name(request, "candidate_ids").as_numpy()
            time.sleep({SCORE_SECONDS})
            scores = pb_utils.Tensor("scores", np.zeros(ids.shape, np.float32))
            answers.append(pb_utils.InferenceResponse(output_tensors=[scores]))
        return answers
"""
BUDGET_SECONDS = 2.0
"""The client's own timeout: long enough for every request, had they all been queued."""


def _inputs() -> tuple[
    NDArray[np.int64], NDArray[np.int64], NDArray[np.float32], NDArray[np.float32]
]:
    return (
        np.zeros((1, HISTORY_LEN), np.int64),
        np.full((1, 10), 2, np.int64),
        np.zeros((1, CONTEXT_DIM), np.float32),
        np.zeros((1, 10, CANDIDATE_FEATURE_DIM), np.float32),
    )


async def _score(client: RankerClient) -> tuple[str, float]:
    started = time.monotonic()
    try:
        await client.score(*_inputs())
        outcome = "scored"
    except DependencyDown as error:
        outcome = str(error)
    return outcome, time.monotonic() - started


async def _executions(stats: aioclient.InferenceServerClient) -> int:
    (model,) = (await stats.get_inference_statistics(MODEL)).model_stats
    return int(model.execution_count)


@pytest.mark.timeout(60)
async def test_an_overloaded_ranker_turns_away_what_it_cannot_score_in_time(
    tmp_path: Path,
) -> None:
    """One instance and a queue of 2. Six callers at once: without the policy all six are
    queued and scored one after another (1.8 s, within every budget); with it the ones
    that find the queue full are answered at once. A request whose own timeout passed
    while it waited is dropped unscored."""
    knobs = replace(TARGETS["cpu"], instances=1, max_queue_size=2)
    model_dir = tmp_path / "repo" / MODEL
    (model_dir / "1").mkdir(parents=True)
    (model_dir / CONFIG_FILE).write_text(
        text_format.MessageToString(model_config(MODEL, "cpu", knobs))
    )
    (model_dir / "1" / MODEL_PY).write_text(_SLOW_MODEL)

    with TritonServer.start(model_dir.parent, tmp_path, free_ports(), load=[MODEL]) as server:
        client = RankerClient(server.grpc_addr, MODEL, timeout=BUDGET_SECONDS)
        raw = aioclient.InferenceServerClient(server.grpc_addr)
        try:
            answers = await asyncio.gather(*(_score(client) for _ in range(6)))
            scored = await _executions(raw)
            busy = asyncio.create_task(_score(client))
            await asyncio.sleep(SCORE_SECONDS * 2 / 3)  # it is being scored now
            with pytest.raises(InferenceServerException) as expired:
                await raw.infer(MODEL, infer_inputs(*_inputs()), timeout=10_000)  # 10 ms
            await busy
            executions = await _executions(raw)
        finally:
            await client.close()
            await raw.close()

    outcomes = [outcome for outcome, _ in answers]
    room = 1 + knobs.max_queue_size  # the one scored and the ones queued behind it
    assert 1 <= outcomes.count("scored") == scored <= room, answers  # the rest never ran
    full = [seconds for outcome, seconds in answers if "queue size" in outcome]
    assert len(full) >= len(answers) - room, answers
    assert max(full) < 2 * SCORE_SECONDS, answers  # no room: told at once, not queued
    assert all("UNAVAILABLE" in o for o in outcomes if o != "scored"), answers
    assert "timeout expired" in str(expired.value.message())
    assert executions == scored + 1  # the busy one; the expired one was never scored
