"""Scoring candidates with the Triton-served ranker, for the ranking service.

One call scores one user's candidates. The candidate list is padded with ``PAD_INDEX``
(and its candidate features with zeros, what a PAD candidate's features are) to a
multiple of ``CANDIDATE_BUCKET`` so concurrent requests share a shape and Triton's
dynamic batcher can merge them (see :mod:`magpie.modelstore.triton_repo`); the padding
scores are dropped before returning.

Failures follow :func:`magpie.runtime.breaker.dependency_error`: Triton's own faults
(down, overloaded, its queue timeout, longer than the client's budget, and an answer
that is no usable score per candidate) are `DependencyDown`; the caller's deadline
running out first is `DeadlineExceeded`. Each request also carries its time budget to
Triton, whose queue policy (:mod:`magpie.modelstore.triton_repo`) then drops it rather
than score it for a caller that has given up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
from numpy.typing import NDArray
from opentelemetry import propagate, trace
from tritonclient.utils import InferenceServerException

from magpie.contract.signature import (
    CANDIDATE_FEATURE_DIM,
    CANDIDATE_FEATURES,
    CANDIDATE_IDS,
    CONTEXT,
    HISTORY_IDS,
    PAD_INDEX,
    SCORES,
)
from magpie.modelstore.triton_repo import CANDIDATE_BUCKET
from magpie.runtime.breaker import DependencyDown, dependency_error
from magpie.runtime.settings import Settings
from magpie.runtime.telemetry import ATTR
from magpie.runtime.tls import Renewed

__all__ = ["RankerClient", "infer_inputs", "pad_candidates"]

_tracer = trace.get_tracer(__name__)


def pad_candidates(
    candidate_ids: NDArray[Any], candidate_features: NDArray[Any], bucket: int = CANDIDATE_BUCKET
) -> tuple[NDArray[Any], NDArray[Any]]:
    """``candidate_ids`` [B, C] right-padded with PAD to int64 [B, W] and
    ``candidate_features`` [B, C, CANDIDATE_FEATURE_DIM] with zeros to float32 [B, W, F],
    W = ceil(C / bucket) * bucket (at least ``bucket``)."""
    rows, count = candidate_ids.shape
    if candidate_features.shape != (rows, count, CANDIDATE_FEATURE_DIM):
        raise ValueError(
            f"candidate_features {candidate_features.shape} do not match candidate_ids "
            f"{candidate_ids.shape} x {CANDIDATE_FEATURE_DIM}"
        )
    width = max(-(-count // bucket) * bucket, bucket)
    ids = np.full((rows, width), PAD_INDEX, dtype=np.int64)
    ids[:, :count] = candidate_ids
    features = np.zeros((rows, width, CANDIDATE_FEATURE_DIM), dtype=np.float32)
    features[:, :count] = candidate_features
    return ids, features


def infer_inputs(
    history_ids: NDArray[Any],
    candidate_ids: NDArray[Any],
    context: NDArray[Any],
    candidate_features: NDArray[Any],
) -> list[grpcclient.InferInput]:
    """Triton inputs for ``history_ids`` [B, HISTORY_LEN], ``candidate_ids`` [B, C],
    ``context`` [B, CONTEXT_DIM] and ``candidate_features`` [B, C, CANDIDATE_FEATURE_DIM]
    (no padding applied here)."""
    inputs = []
    for name, array, dtype in (
        (HISTORY_IDS, history_ids.astype(np.int64), "INT64"),
        (CANDIDATE_IDS, candidate_ids.astype(np.int64), "INT64"),
        (CONTEXT, context.astype(np.float32), "FP32"),
        (CANDIDATE_FEATURES, candidate_features.astype(np.float32), "FP32"),
    ):
        tensor = grpcclient.InferInput(name, list(array.shape), dtype)
        tensor.set_data_from_numpy(np.ascontiguousarray(array))
        inputs.append(tensor)
    return inputs


_MICROS = 1_000_000


def _code(error: InferenceServerException) -> grpc.StatusCode | None:
    """The gRPC status of a failed call (tritonclient keeps it as "StatusCode.NAME")."""
    name = str(error.status() or "").removeprefix("StatusCode.")
    return grpc.StatusCode.__members__.get(name)


def _scores(result: Any, shape: tuple[int, ...]) -> NDArray[Any]:
    """The answer's ``SCORES``, which must be floats of the padded candidates' ``shape``;
    `DependencyDown` otherwise (missing, empty or misshapen: a broken model or backend)."""
    try:
        scores: NDArray[Any] | None = result.as_numpy(SCORES)
    except ValueError as error:  # raw bytes that do not fill the announced shape
        raise DependencyDown(f"ranker answered unreadable scores: {error}") from error
    if scores is None:
        raise DependencyDown(f"ranker answered no {SCORES!r} output")
    if scores.shape != shape or scores.dtype.kind != "f":
        raise DependencyDown(
            f"ranker answered {scores.dtype} scores of shape {scores.shape}, not float {shape}"
        )
    return scores


class RankerClient:
    """Async client of the ranker model on Triton's gRPC endpoint.

    ``score`` raises ``DependencyDown`` (an ``Unavailable``) when Triton fails or takes
    longer than ``timeout`` seconds, ``DeadlineExceeded`` when the caller's shorter
    deadline ran out first; the ranking service falls back to retrieval order on either.
    """

    def __init__(
        self, triton_addr: str, model: str, timeout: float, *, tls: Settings | None = None
    ) -> None:
        """``tls``: settings whose certificate files the client presents to Triton (mutual
        TLS), followed when they are renewed; None: plaintext."""
        if tls is None:
            client = aioclient.InferenceServerClient(triton_addr)
            self._client: Callable[[], aioclient.InferenceServerClient] = lambda: client
        else:
            self._client = Renewed(
                tls,
                lambda credentials: aioclient.InferenceServerClient(triton_addr, creds=credentials),
                lambda client: client.close(),
            ).current
        self._model = model
        self._timeout = timeout

    async def score(
        self,
        history_ids: NDArray[Any],
        candidate_ids: NDArray[Any],
        context: NDArray[Any],
        candidate_features: NDArray[Any],
        version: str = "",
        timeout: float | None = None,
    ) -> tuple[NDArray[Any], str]:
        """Scores float32 [B, C] for ``candidate_ids`` [B, C], and the model version used.

        ``candidate_features`` [B, C, CANDIDATE_FEATURE_DIM] come from the same version's
        co-visitation lists (:meth:`magpie.contract.covisitation.Covisitation.features`
        of these ``history_ids`` and ``candidate_ids``). ``version`` names the version
        whose vocabulary built the ids (the newest loaded when empty); ``timeout``
        shortens the client's own bound (the caller's deadline).
        """
        budget_bound = timeout is None or self._timeout <= timeout
        timeout = self._timeout if timeout is None else min(timeout, self._timeout)
        count = candidate_ids.shape[1]
        ids, features = pad_candidates(candidate_ids, candidate_features)
        inputs = infer_inputs(history_ids, ids, context, features)
        with _tracer.start_as_current_span(
            f"triton infer {self._model}", kind=trace.SpanKind.CLIENT
        ) as span:
            span.set_attributes(
                {ATTR.MODEL_VERSION: version, ATTR.CANDIDATES: count, ATTR.BATCH_SIZE: len(ids)}
            )
            headers: dict[str, str] = {}
            propagate.inject(headers)  # Triton's own spans join this trace (W3C traceparent)
            try:
                result = await self._client().infer(
                    self._model,
                    inputs,
                    model_version=version,
                    outputs=[grpcclient.InferRequestedOutput(SCORES)],
                    timeout=max(int(timeout * _MICROS), 1),  # then Triton's queue drops it
                    client_timeout=timeout,
                    headers=headers or None,
                )
            except InferenceServerException as error:
                raise dependency_error(
                    "ranker", _code(error), str(error.message()), budget_bound=budget_bound
                ) from error
        scores = _scores(result, ids.shape)[:, :count]
        if not np.isfinite(scores).all():
            raise DependencyDown(
                f"ranker answered {np.count_nonzero(~np.isfinite(scores))} "
                "scores that are NaN or infinite"
            )
        version = str(result.get_response().model_version)
        return scores, version

    async def close(self) -> None:
        await self._client().close()
