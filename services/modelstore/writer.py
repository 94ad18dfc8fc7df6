"""Write a model bundle (:mod:`services.modelstore.bundle`) from a training run.

The bundle is built in a temporary directory beside its destination, validated there
(:func:`services.modelstore.validate.validate_bundle`), then renamed into
``<artifact_dir>/<version>`` in one step: readers see a complete bundle or none.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from services.common.errors import AlreadyExists
from services.datasets.schema import Dataset
from services.learning.signature import HISTORY_LEN
from services.learning.train import TrainedArtifacts
from services.modelstore.bundle import (
    COVISITATION,
    METADATA,
    RANKER_FP16,
    RANKER_FP32,
    RANKER_INT8,
    TEXT_VECTORS,
    VOCAB,
)
from services.modelstore.validate import validate_bundle

__all__ = ["COVISITATION_NEIGHBOURS", "covisitation_csr", "write_bundle"]

logger = logging.getLogger(__name__)

COVISITATION_NEIGHBOURS = 50
"""Neighbours kept per item in ``covisitation.npz``."""
_COVISITATION_RECENT = HISTORY_LEN
"""Only each user's most recent items count towards co-visitation."""


def covisitation_csr(
    sequences: Sequence[Sequence[int]], vocab_size: int, neighbours: int = COVISITATION_NEIGHBOURS
) -> dict[str, NDArray[Any]]:
    """Top ``neighbours`` co-visited items per item as CSR arrays, best first.

    Scores come from :func:`services.learning.baselines.covisitation_matrix` (the
    co-visitation baseline evaluated offline) over each sequence's recent tail; an item
    is never its own neighbour and zero scores are dropped. Note that it builds a dense
    [vocab, vocab] matrix, which bounds the catalog size it suits (~20k items).
    """
    from services.learning.baselines import covisitation_matrix

    recent = [list(sequence)[-_COVISITATION_RECENT:] for sequence in sequences]
    matrix = covisitation_matrix([s for s in recent if s], vocab_size)
    np.fill_diagonal(matrix, 0.0)
    k = min(neighbours, vocab_size)
    top = np.argpartition(-matrix, k - 1, axis=1)[:, :k]
    top_scores = np.take_along_axis(matrix, top, axis=1)
    order = np.argsort(-top_scores, axis=1, kind="stable")
    top = np.take_along_axis(top, order, axis=1)
    top_scores = np.take_along_axis(top_scores, order, axis=1)
    keep = top_scores > 0
    return {
        "indptr": np.concatenate([[0], np.cumsum(keep.sum(axis=1))]).astype(np.int64),
        "indices": top[keep].astype(np.int32),
        "scores": top_scores[keep].astype(np.float32),
    }


def _text_vectors(artifacts: TrainedArtifacts, text_table: NDArray[Any] | None) -> NDArray[Any]:
    """L2-normalised text rows; [vocab, 0] when the models were trained without text."""
    if text_table is None:
        buffer = getattr(artifacts.ranker.items, "text_table", None)
        text_table = buffer.numpy() if isinstance(buffer, torch.Tensor) else None
    if text_table is None:
        return np.zeros((artifacts.vocab.size, 0), dtype=np.float32)
    norms = np.linalg.norm(text_table, axis=1, keepdims=True)
    normalised: NDArray[Any] = (text_table / np.maximum(norms, 1e-12)).astype(np.float32)
    return normalised


def _metadata(
    artifacts: TrainedArtifacts, version: int, metrics: Mapping[str, Any], dataset: Dataset
) -> dict[str, Any]:
    return {
        "version": version,
        "created_at": datetime.datetime.now(datetime.UTC).isoformat(),
        "dataset": {
            "name": dataset.name,
            "items": len(dataset.items),
            "users": len(dataset.users),
            "interactions": len(dataset.interactions),
        },
        "vocab_size": artifacts.vocab.size,
        "history_len": HISTORY_LEN,
        "config": dataclasses.asdict(artifacts.config),
        "training_seconds": artifacts.seconds,
        "metrics": dict(metrics),
    }


def write_bundle(
    artifacts: TrainedArtifacts,
    dataset: Dataset,
    artifact_dir: Path,
    version: int,
    metrics: Mapping[str, Any] | None = None,
    text_table: NDArray[Any] | None = None,
) -> Path:
    """Export, validate and atomically place ``<artifact_dir>/<version>``; returns its path.

    ``dataset`` is what ``artifacts`` were trained on; co-visitation is computed from its
    leave-one-out training part, like the models. ``text_table`` defaults to the one baked
    into the ranker. Raises ``AlreadyExists`` if the version exists and ``InvalidBundle``
    if the result does not validate (nothing is left behind then).
    """
    from services.learning.export import (
        convert_fp16,
        export_ranker,
        export_user_tower,
        quantize_int8,
    )
    from services.learning.protocol import leave_one_out

    target = artifact_dir / str(version)
    if target.exists():
        raise AlreadyExists(f"bundle {target} exists")
    artifact_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".staging-{version}-", dir=artifact_dir))
    try:
        fp32 = export_ranker(artifacts.ranker, staging / RANKER_FP32)
        quantize_int8(fp32, staging / RANKER_INT8)
        convert_fp16(fp32, staging / RANKER_FP16)
        export_user_tower(artifacts.retrieval, staging)  # USER_TOWER and ITEM_VECTORS
        np.save(staging / TEXT_VECTORS, _text_vectors(artifacts, text_table))
        sequences = [
            items for items, _ in leave_one_out(dataset, artifacts.vocab).train_sequences()
        ]
        np.savez(staging / COVISITATION, **covisitation_csr(sequences, artifacts.vocab.size))
        (staging / VOCAB).write_text(json.dumps({"item_ids": list(artifacts.vocab.item_ids)}))
        metadata = _metadata(artifacts, version, metrics or {}, dataset)
        (staging / METADATA).write_text(json.dumps(metadata, indent=2, default=str) + "\n")
        validate_bundle(staging)
        staging.chmod(0o755)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("wrote model bundle %s", target)
    return target
