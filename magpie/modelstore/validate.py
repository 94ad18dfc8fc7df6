"""Checks a bundle must pass before it is published: a broken model must never land where
a server loads it (a starting Triton exits when its highest version fails to load)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from magpie.contract.signature import (
    CANDIDATE_FEATURE_DIM,
    CANDIDATE_FEATURES,
    CANDIDATE_IDS,
    CONTEXT,
    CONTEXT_DIM,
    FIRST_ITEM_INDEX,
    HISTORY_IDS,
    HISTORY_LEN,
    OOV_INDEX,
    SCORES,
    USER_TOWER_HISTORY_LEN,
    USER_VECTORS,
)
from magpie.modelstore.bundle import (
    COVISITATION,
    ITEM_VECTORS,
    METADATA,
    RANKER_FP32,
    RANKER_INT8,
    REQUIRED_FILES,
    TEXT_VECTORS,
    USER_TOWER,
    VOCAB,
)
from magpie.runtime.errors import FailedPrecondition

__all__ = ["InvalidBundle", "check_ranker", "validate_bundle"]


class InvalidBundle(FailedPrecondition):
    """A bundle (or one of its models) that must not be published; lists every problem."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"invalid bundle {path}: " + "; ".join(problems))


def _session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _dummy_history(vocab_size: int, length: int) -> NDArray[Any]:
    history = np.zeros((1, length), dtype=np.int64)
    history[0, -3:] = np.minimum(np.arange(3) + FIRST_ITEM_INDEX, vocab_size - 1)
    return history


def check_ranker(path: Path, vocab_size: int) -> list[str]:
    """Problems of the ranker at ``path`` on a dummy request touching the last item index
    (and every input of :mod:`magpie.contract.signature`: a ranker exported before
    ``candidate_features`` existed is refused, the client would send it one)."""
    candidates = np.array([[OOV_INDEX, FIRST_ITEM_INDEX, vocab_size - 1]], dtype=np.int64)
    features = np.zeros((*candidates.shape, CANDIDATE_FEATURE_DIM), dtype=np.float32)
    features[0, 1:] = np.log1p(np.arange(1, CANDIDATE_FEATURE_DIM + 1, dtype=np.float32))
    feeds = {
        HISTORY_IDS: _dummy_history(vocab_size, HISTORY_LEN),
        CANDIDATE_IDS: candidates,
        CONTEXT: np.zeros((1, CONTEXT_DIM), dtype=np.float32),
        CANDIDATE_FEATURES: features,
    }
    try:
        scores = np.asarray(_session(path).run([SCORES], feeds)[0])
    except Exception as error:  # noqa: BLE001 - any load or run failure disqualifies the model
        return [f"{path.name}: {type(error).__name__}: {error}"]
    if scores.shape != candidates.shape:
        return [f"{path.name}: scores shape {scores.shape}, expected {candidates.shape}"]
    if not np.isfinite(scores).all():
        return [f"{path.name}: non-finite scores"]
    return []


def _check_user_tower(path: Path, vocab_size: int, dim: int) -> list[str]:
    problems = []
    try:
        session = _session(path)
        # The full length and a short one: retrieval sends only the history a user has.
        for length in (USER_TOWER_HISTORY_LEN, 3):
            history = _dummy_history(vocab_size, length)
            vectors = np.asarray(session.run([USER_VECTORS], {HISTORY_IDS: history})[0])
            if vectors.shape != (1, dim) or not np.isfinite(vectors).all():
                problems.append(
                    f"{path.name}: user vector of a {length}-item history has shape "
                    f"{vectors.shape} (expected (1, {dim})) or is not finite"
                )
    except Exception as error:  # noqa: BLE001 - any load or run failure disqualifies the model
        return [f"{path.name}: {type(error).__name__}: {error}"]
    return problems


def _check_arrays(path: Path, vocab_size: int) -> list[str]:
    problems = []
    items = np.load(path / ITEM_VECTORS, mmap_mode="r")
    text = np.load(path / TEXT_VECTORS, mmap_mode="r")
    for name, array in ((ITEM_VECTORS, items), (TEXT_VECTORS, text)):
        if array.ndim != 2 or array.shape[0] != vocab_size:
            problems.append(f"{name}: shape {array.shape}, expected ({vocab_size}, dim)")
    with np.load(path / COVISITATION) as covisitation:
        indptr, indices = covisitation["indptr"], covisitation["indices"]
        scores = covisitation["scores"]
    if (
        len(indptr) != vocab_size + 1
        or indptr[-1] != len(indices)
        or len(indices) != len(scores)
        or (len(indices) and (indices.min() < 0 or indices.max() >= vocab_size))
    ):
        problems.append(f"{COVISITATION}: CSR arrays inconsistent with {vocab_size} rows")
    return problems


def validate_bundle(path: Path) -> None:
    """Raise ``InvalidBundle`` unless every required file is present and sound.

    Both rankers and the user tower must load in ONNX Runtime and give finite outputs of
    the expected shapes for a dummy request; array row counts must match the vocabulary.
    """
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if missing:
        raise InvalidBundle(path, [f"missing {', '.join(missing)}"])
    try:
        item_ids = json.loads((path / VOCAB).read_text())["item_ids"]
        json.loads((path / METADATA).read_text())
        vocab_size = len(item_ids) + FIRST_ITEM_INDEX
        problems = _check_arrays(path, vocab_size)
        dim = int(np.load(path / ITEM_VECTORS, mmap_mode="r").shape[-1])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InvalidBundle(path, [f"{type(error).__name__}: {error}"]) from error
    for ranker in (RANKER_FP32, RANKER_INT8):
        problems += check_ranker(path / ranker, vocab_size)
    problems += _check_user_tower(path / USER_TOWER, vocab_size, dim)
    if problems:
        raise InvalidBundle(path, problems)
