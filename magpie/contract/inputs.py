"""The models' request-side inputs, built the same way in training, evaluation and serving:
left-padded item histories and the request context vector (layout in
:mod:`magpie.contract.signature`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from magpie.contract.signature import CONTEXT_DIM, DEVICES, PAD_INDEX
from magpie.runtime.units import SECONDS_PER_DAY

__all__ = ["context_vector", "pad_left"]


def pad_left(sequences: Sequence[Sequence[int]], length: int) -> NDArray[Any]:
    """int64 [len(sequences), length]: the last ``length`` entries of each, left-padded."""
    out = np.full((len(sequences), length), PAD_INDEX, dtype=np.int64)
    for row, sequence in enumerate(sequences):
        tail = list(sequence)[-length:]
        if tail:
            out[row, length - len(tail) :] = tail
    return out


def context_vector(timestamp: float, previous: float | None, device: str = "") -> NDArray[Any]:
    """float32 [CONTEXT_DIM] for a request at ``timestamp`` (Unix seconds, UTC).

    ``previous`` is the time of the user's last event, ``device`` one of ``DEVICES`` or "".
    """
    hour = (timestamp / 3600.0) % 24.0
    weekday = ((timestamp / SECONDS_PER_DAY) + 3.0) % 7.0  # 1970-01-01 was a Thursday
    gap_hours = max(timestamp - previous, 0.0) / 3600.0 if previous is not None else 0.0
    out = np.zeros(CONTEXT_DIM, dtype=np.float32)
    out[:5] = (
        math.sin(2 * math.pi * hour / 24),
        math.cos(2 * math.pi * hour / 24),
        math.sin(2 * math.pi * weekday / 7),
        math.cos(2 * math.pi * weekday / 7),
        math.log1p(gap_hours),
    )
    if device in DEVICES:
        out[5 + DEVICES.index(device)] = 1.0
    return out
