from pathlib import Path

import numpy as np
import pytest
import torch

from services.learning.export import (
    OnnxRanker,
    convert_fp16,
    export_ranker,
    export_user_tower,
    max_abs_difference,
    quantize_int8,
)
from services.learning.ranker_model import Ranker, RankerConfig
from services.learning.retrieval_model import RetrievalConfig, RetrievalModel
from services.learning.signature import CONTEXT_DIM, HISTORY_LEN

VOCAB = 60


def _ranker() -> Ranker:
    torch.manual_seed(0)
    category = torch.arange(VOCAB) % 4
    ranker = Ranker(RankerConfig(dim=32, hidden=64), category, torch.randn(VOCAB, 24))
    with torch.no_grad():  # untrained weights are near zero; spread scores out
        for parameter in ranker.parameters():
            parameter.mul_(3.0)
    return ranker.eval()


def _inputs(batch: int, candidates: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    history = rng.integers(2, VOCAB, (batch, HISTORY_LEN))
    history[:, : HISTORY_LEN - 30] = 0
    history[0, :-3] = 0  # a very short history
    return (
        history.astype(np.int64),
        rng.integers(1, VOCAB, (batch, candidates)).astype(np.int64),
        rng.normal(size=(batch, CONTEXT_DIM)).astype(np.float32),
    )


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Ranker, Path]:
    ranker = _ranker()
    return ranker, export_ranker(ranker, tmp_path_factory.mktemp("onnx") / "ranker.onnx")


@pytest.mark.parametrize(("batch", "candidates"), [(1, 7), (3, 50)])
def test_fp32_onnx_matches_torch_for_any_batch_and_candidate_count(
    exported: tuple[Ranker, Path], batch: int, candidates: int
) -> None:
    ranker, path = exported
    assert max_abs_difference(ranker, OnnxRanker(path), _inputs(batch, candidates)) < 1e-4


def test_int8_drift_is_bounded_and_keeps_the_order(exported: tuple[Ranker, Path]) -> None:
    _, path = exported
    inputs = _inputs(4, 200, seed=1)
    fp32 = OnnxRanker(path)(*inputs)
    int8 = OnnxRanker(quantize_int8(path, path.with_suffix(".int8.onnx")))(*inputs)
    spread = fp32.std()
    assert spread > 0.1
    assert np.abs(int8 - fp32).max() < 0.5 * spread
    assert np.abs(int8 - fp32).mean() < 0.05 * spread
    for row in range(len(fp32)):
        assert np.corrcoef(fp32[row], int8[row])[0, 1] > 0.99


def test_fp16_keeps_io_types_and_stays_close(exported: tuple[Ranker, Path]) -> None:
    _, path = exported
    inputs = _inputs(2, 30, seed=2)
    fp32 = OnnxRanker(path)(*inputs)
    fp16 = OnnxRanker(convert_fp16(path, path.with_suffix(".fp16.onnx")))(*inputs)
    assert fp16.dtype == np.float32
    assert np.abs(fp16 - fp32).max() < 2e-2 * max(1.0, float(np.abs(fp32).max()))


def test_user_tower_matches_torch(tmp_path: Path) -> None:
    import onnxruntime as ort

    torch.manual_seed(0)
    model = RetrievalModel(RetrievalConfig(dim=32), torch.arange(VOCAB) % 4, None).eval()
    path = export_user_tower(model, tmp_path)
    rng = np.random.default_rng(0)
    history = rng.integers(0, VOCAB, (3, model.config.max_len)).astype(np.int64)
    (onnx_users,) = ort.InferenceSession(str(path)).run(None, {"history_ids": history})
    with torch.no_grad():
        expected = model.user_vectors(torch.from_numpy(history)).numpy()
    assert np.abs(onnx_users - expected).max() < 1e-4
    assert np.load(tmp_path / "item_vectors.npy").shape == (VOCAB, 32)
