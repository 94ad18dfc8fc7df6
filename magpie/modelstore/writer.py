"""Write a model bundle (:mod:`magpie.modelstore.bundle`) from a training run.

The bundle is built in a temporary directory beside its destination, validated there
(:func:`magpie.modelstore.validate.validate_bundle`), then renamed into
``<artifact_dir>/<version>`` in one step: readers see a complete bundle or none.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from magpie.contract.signature import HISTORY_LEN
from magpie.datasets.schema import Dataset
from magpie.learning.train import TrainedArtifacts
from magpie.modelstore.bundle import (
    COVISITATION,
    METADATA,
    RANKER_FP32,
    RANKER_INT8,
    TEXT_VECTORS,
    VOCAB,
)
from magpie.modelstore.validate import validate_bundle
from magpie.runtime.errors import AlreadyExists

__all__ = ["write_bundle"]

logger = logging.getLogger(__name__)


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
            "last_event_time": max((i.timestamp for i in dataset.interactions), default=None),
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

    ``dataset`` is what ``artifacts`` were trained on. ``text_table`` defaults to the one baked
    into the ranker. Raises ``AlreadyExists`` if the version exists and ``InvalidBundle``
    if the result does not validate (nothing is left behind then).
    """
    from magpie.learning.export import (
        check_export,
        export_ranker,
        export_user_tower,
        quantize_int8,
    )

    target = artifact_dir / str(version)
    if target.exists():
        raise AlreadyExists(f"bundle {target} exists")
    artifact_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".staging-{version}-", dir=artifact_dir))
    try:
        fp32 = export_ranker(artifacts.ranker, staging / RANKER_FP32)
        check_export(artifacts, fp32)
        quantize_int8(fp32, staging / RANKER_INT8)
        export_user_tower(artifacts.retrieval, staging)  # USER_TOWER and ITEM_VECTORS
        np.save(staging / TEXT_VECTORS, _text_vectors(artifacts, text_table))
        np.savez(staging / COVISITATION, **artifacts.covisitation.arrays())
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
