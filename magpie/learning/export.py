"""ONNX export of the ranker and of the retrieval user tower, INT8 and FP16 variants.

The exported graphs bake the item table (id + text + category parts folded into one
[vocab, dim] matrix), so a request carries only ids; names, dtypes and shapes are in
:mod:`magpie.contract.signature`. Batch and candidate dimensions are dynamic; the
history is always ``HISTORY_LEN`` long for the ranker and ``USER_TOWER_HISTORY_LEN`` for the
user tower (left-padded with ``PAD_INDEX``).

* ``ranker.onnx``: FP32, served by the GPU target (TensorRT FP16 engines are built from it).
* ``ranker.int8.onnx``: dynamic INT8 quantization of MatMul/Gemm weights for CPU
  (``reduce_range`` because AVX2 without VNNI saturates u8*s8 pairs otherwise).
  Products of two activations (attention) stay FP32.
* :func:`convert_fp16`: FP16 weights and compute, FP32 inputs/outputs (the GPU benchmark's
  ONNX Runtime CUDA path; the GPU target itself builds FP16 TensorRT engines from the FP32
  export).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn
from torch.export import Dim

from magpie.contract.signature import (
    CANDIDATE_FEATURE_DIM,
    CANDIDATE_FEATURES,
    CANDIDATE_IDS,
    CONTEXT,
    CONTEXT_DIM,
    HISTORY_IDS,
    HISTORY_LEN,
    SCORES,
    USER_TOWER_MIN_HISTORY,
    USER_VECTORS,
)
from magpie.learning.ranker_model import Ranker
from magpie.learning.retrieval_model import RetrievalModel
from magpie.learning.train import RankerInputs, TrainedArtifacts, torch_scores

__all__ = [
    "OnnxRanker",
    "check_export",
    "convert_fp16",
    "export_ranker",
    "export_user_tower",
    "max_abs_difference",
    "quantize_int8",
]

logger = logging.getLogger(__name__)


class _BakedRanker(nn.Module):
    """The ranker with its item encoder folded into one embedding table."""

    def __init__(self, ranker: Ranker) -> None:
        super().__init__()
        self.ranker = ranker
        with torch.no_grad():
            self.table = nn.Parameter(ranker.items.table().detach().clone(), requires_grad=False)

    def forward(
        self,
        history_ids: torch.Tensor,
        candidate_ids: torch.Tensor,
        context: torch.Tensor,
        candidate_features: torch.Tensor,
    ) -> torch.Tensor:
        return self.ranker.score_vectors(
            nn.functional.embedding(history_ids, self.table),
            history_ids == 0,
            nn.functional.embedding(candidate_ids, self.table),
            context,
            candidate_features,
        )


class _BakedUserTower(nn.Module):
    def __init__(self, retrieval: RetrievalModel) -> None:
        super().__init__()
        self.retrieval = retrieval
        with torch.no_grad():
            self.table = nn.Parameter(retrieval.items.table().detach().clone(), requires_grad=False)

    def forward(self, history_ids: torch.Tensor) -> torch.Tensor:
        history = nn.functional.embedding(history_ids, self.table)
        hidden: torch.Tensor = self.retrieval.encoder(history, history_ids == 0)
        return hidden[:, -1]


def _example_inputs(
    candidates: int = 8, history_len: int = HISTORY_LEN
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    history = torch.zeros(2, history_len, dtype=torch.long)
    history[:, -3:] = 2
    return (
        history,
        torch.full((2, candidates), 2, dtype=torch.long),
        torch.zeros(2, CONTEXT_DIM),
        torch.zeros(2, candidates, CANDIDATE_FEATURE_DIM),
    )


def _export(module: nn.Module, inputs: tuple[torch.Tensor, ...], path: Path, **names: Any) -> Path:
    """torch.export-based ONNX export; silences the exporter's own internal warnings."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*axis name.*", category=UserWarning)
        program = torch.onnx.export(module.eval(), inputs, dynamo=True, verbose=False, **names)
    assert program is not None
    program.save(str(path))
    return path


def export_ranker(ranker: Ranker, path: Path) -> Path:
    """Write the FP32 ranker to ``path`` (eval mode, dynamic batch and candidates)."""
    ranker.eval()
    batch, candidates = Dim("batch"), Dim("candidates")
    return _export(
        _BakedRanker(ranker),
        _example_inputs(),
        path,
        input_names=[HISTORY_IDS, CANDIDATE_IDS, CONTEXT, CANDIDATE_FEATURES],
        output_names=[SCORES],
        dynamic_shapes={
            HISTORY_IDS: {0: batch},
            CANDIDATE_IDS: {0: batch, 1: candidates},
            CONTEXT: {0: batch},
            CANDIDATE_FEATURES: {0: batch, 1: candidates},
        },
    )


def export_user_tower(retrieval: RetrievalModel, directory: Path) -> Path:
    """Write ``user_tower.onnx`` and the FAISS item matrix ``item_vectors.npy``."""
    retrieval.eval()
    path = _export(
        _BakedUserTower(retrieval),
        (_example_inputs(history_len=retrieval.config.max_len)[0],),
        directory / "user_tower.onnx",
        input_names=[HISTORY_IDS],
        output_names=[USER_VECTORS],
        # Any history length up to the tower's: serving sends only the items it has.
        dynamic_shapes={
            HISTORY_IDS: {
                0: Dim("batch"),
                1: Dim("history", min=USER_TOWER_MIN_HISTORY, max=retrieval.config.max_len),
            }
        },
    )
    with torch.no_grad():
        np.save(directory / "item_vectors.npy", retrieval.item_matrix().numpy().astype(np.float32))
    return path


def quantize_int8(source: Path, target: Path) -> Path:
    """Dynamic INT8 quantization of MatMul/Gemm weights (per channel, reduced range)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(source),
        str(target),
        op_types_to_quantize=["MatMul", "Gemm"],
        per_channel=True,
        reduce_range=True,
        weight_type=QuantType.QInt8,
    )
    return target


def convert_fp16(source: Path, target: Path) -> Path:
    """FP16 copy of a model for GPU serving; inputs and outputs keep their FP32/int64 types."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    onnx.save(model, str(target))
    return target


def check_export(artifacts: TrainedArtifacts, fp32: Path, tolerance: float = 1e-3) -> float:
    """Largest |torch - ONNX| score of the exported FP32 ranker on random requests; raises
    ``RuntimeError`` above ``tolerance`` (an export that does not compute the model)."""
    rng = np.random.default_rng(0)
    history = rng.integers(2, artifacts.vocab.size, (2, HISTORY_LEN))
    candidates = rng.integers(1, artifacts.vocab.size, (2, 100))
    context = np.zeros((2, CONTEXT_DIM), dtype=np.float32)
    features = artifacts.covisitation.features(history, candidates)
    difference = max_abs_difference(
        artifacts.ranker, OnnxRanker(fp32), (history, candidates, context, features)
    )
    if difference > tolerance:
        raise RuntimeError(f"exported ranker differs from torch by {difference}")
    logger.info("exported %s (max |torch - onnx| = %.2e)", fp32, difference)
    return difference


class OnnxRanker:
    """The exported ranker run through onnxruntime (CPU unless ``providers`` say otherwise)."""

    def __init__(self, path: Path, threads: int = 0, providers: list[str] | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(path), options, providers=providers or ["CPUExecutionProvider"]
        )

    def scores(self, inputs: RankerInputs) -> NDArray[Any]:
        """Scores [batch, candidates] of (history_ids, candidate_ids, context, features)."""
        history_ids, candidate_ids, context, features = inputs
        feeds = {
            HISTORY_IDS: history_ids.astype(np.int64),
            CANDIDATE_IDS: candidate_ids.astype(np.int64),
            CONTEXT: context.astype(np.float32),
            CANDIDATE_FEATURES: features.astype(np.float32),
        }
        scores: NDArray[Any] = self.session.run([SCORES], feeds)[0]
        return scores


def max_abs_difference(ranker: Ranker, onnx_ranker: OnnxRanker, inputs: RankerInputs) -> float:
    """Largest |torch - onnx| score difference on ``inputs``."""
    return float(np.abs(torch_scores(ranker)(inputs) - onnx_ranker.scores(inputs)).max())
