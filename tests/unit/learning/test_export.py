from pathlib import Path

import numpy as np
import pytest
import torch

from magpie.contract.signature import CANDIDATE_FEATURE_DIM, CONTEXT_DIM, HISTORY_LEN
from magpie.learning.export import (
    OnnxRanker,
    convert_fp16,
    export_ranker,
    export_user_tower,
    max_abs_difference,
    quantize_int8,
)
from magpie.learning.ranker_model import Ranker, RankerConfig
from magpie.learning.retrieval_model import RetrievalConfig, RetrievalModel
from magpie.learning.train import RankerInputs, torch_scores

VOCAB = 60


def _ranker() -> Ranker:
    torch.manual_seed(0)
    category = torch.arange(VOCAB) % 4
    ranker = Ranker(RankerConfig(dim=32, hidden=64), category, torch.randn(VOCAB, 24))
    with torch.no_grad():  # untrained weights are near zero; spread scores out
        for parameter in ranker.parameters():
            parameter.mul_(3.0)
    return ranker.eval()


def _inputs(batch: int, candidates: int, seed: int = 0) -> RankerInputs:
    rng = np.random.default_rng(seed)
    history = rng.integers(2, VOCAB, (batch, HISTORY_LEN))
    history[:, : HISTORY_LEN - 30] = 0
    history[0, :-3] = 0  # a very short history
    # log1p co-visitation scores: zero for most candidates, up to a few for some
    features = np.log1p(rng.exponential(3.0, (batch, candidates, CANDIDATE_FEATURE_DIM)))
    features *= rng.random((batch, candidates, 1)) < 0.4
    return (
        history.astype(np.int64),
        rng.integers(1, VOCAB, (batch, candidates)).astype(np.int64),
        rng.normal(size=(batch, CONTEXT_DIM)).astype(np.float32),
        features.astype(np.float32),
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


def test_onnx_ranker_reads_the_candidate_features(exported: tuple[Ranker, Path]) -> None:
    ranker, path = exported
    history, candidates, context, features = _inputs(2, 40)
    without = (history, candidates, context, np.zeros_like(features))
    onnx, torch_ranker = OnnxRanker(path).scores, torch_scores(ranker)
    effect = onnx((history, candidates, context, features)) - onnx(without)
    assert np.abs(effect).max() > 1e-2
    expected = torch_ranker((history, candidates, context, features)) - torch_ranker(without)
    np.testing.assert_allclose(effect, expected, rtol=0, atol=1e-3)


def test_int8_drift_is_bounded_and_keeps_the_order(exported: tuple[Ranker, Path]) -> None:
    _, path = exported
    inputs = _inputs(4, 200, seed=1)
    fp32 = OnnxRanker(path).scores(inputs)
    int8 = OnnxRanker(quantize_int8(path, path.with_suffix(".int8.onnx"))).scores(inputs)
    spread = fp32.std()
    assert spread > 0.1
    assert np.abs(int8 - fp32).max() < 0.5 * spread
    assert np.abs(int8 - fp32).mean() < 0.05 * spread
    for row in range(len(fp32)):
        assert np.corrcoef(fp32[row], int8[row])[0, 1] > 0.99


def test_fp16_keeps_io_types_and_stays_close(exported: tuple[Ranker, Path]) -> None:
    _, path = exported
    inputs = _inputs(2, 30, seed=2)
    fp32 = OnnxRanker(path).scores(inputs)
    fp16 = OnnxRanker(convert_fp16(path, path.with_suffix(".fp16.onnx"))).scores(inputs)
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


def test_user_tower_takes_short_histories(tmp_path: Path) -> None:
    """Retrieval sends only the items a user has: same vector as the fully padded input."""
    import onnxruntime as ort

    torch.manual_seed(0)
    model = RetrievalModel(RetrievalConfig(dim=32), torch.arange(VOCAB) % 4, None).eval()
    session = ort.InferenceSession(str(export_user_tower(model, tmp_path)))
    padded = np.zeros((1, model.config.max_len), dtype=np.int64)
    padded[0, -5:] = [3, 9, 4, 7, 2]
    (full,) = session.run(None, {"history_ids": padded})
    for length in (5, 6, 40):
        (short,) = session.run(None, {"history_ids": padded[:, -length:]})
        np.testing.assert_allclose(short, full, rtol=0, atol=1e-5)
