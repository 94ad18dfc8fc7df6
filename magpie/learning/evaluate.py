"""``magpie eval``: every model row measured with the fixed protocol of
:mod:`magpie.learning.protocol` on the same split, in the same run."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from magpie.contract.inputs import pad_left
from magpie.contract.signature import FIRST_ITEM_INDEX, HISTORY_LEN
from magpie.datasets.schema import Dataset
from magpie.learning.baselines import (
    BPRConfig,
    covisitation_matrix,
    covisitation_scores,
    popularity_scores,
)
from magpie.learning.metrics import summarize
from magpie.learning.protocol import (
    PROTOCOL,
    LeaveOneOut,
    leave_one_out,
    mask_seen,
    stage_inputs,
    two_stage,
)
from magpie.learning.sequences import build_vocab
from magpie.learning.train import (
    PipelineConfig,
    batched_rerank,
    torch_scores,
    train_bpr,
    train_ranker,
    train_retrieval,
)

__all__ = ["ROWS", "EvalConfig", "EvalReport", "evaluate", "format_table"]

logger = logging.getLogger(__name__)

ROWS = (
    "popularity",
    "covisitation",
    "bpr",
    "retrieval",
    "retrieval-notext",
    "pipeline-fp32",
    "pipeline-int8",
    "pipeline-notext",
)
_COLUMNS = (
    "HR@10",
    "NDCG@10",
    "MRR@10",
    "HR@20",
    "NDCG@20",
    "coverage@10",
    "cold_NDCG@10",
    "cold_HR@100",
    "cold_median_rank",
)


@dataclass(frozen=True, slots=True)
class EvalConfig:
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    bpr: BPRConfig = field(default_factory=BPRConfig)
    artifacts_dir: Path = Path("artifacts/eval")
    """Where the exported ONNX rankers of the ``pipeline-int8`` row and the co-visitation
    lists of their features are written (``tools/bench/quantization.py`` reads them)."""


@dataclass(slots=True)
class EvalReport:
    protocol: str
    models: dict[str, dict[str, float]]
    seconds: dict[str, float]
    """Wall time of the phases (text embedding, each row) and ``total``."""


def format_table(report: EvalReport) -> str:
    widths = {c: max(14, len(c) + 2) for c in (*_COLUMNS, "train_seconds")}
    header = f"{'model':<18}" + "".join(f"{c:>{w}}" for c, w in widths.items())
    lines = [header, "-" * len(header)]
    for name, row in report.models.items():
        values = "".join(f"{row[c]:>{widths[c]}.4f}" for c in _COLUMNS)
        lines.append(f"{name:<18}{values}{row['train_seconds']:>{widths['train_seconds']}.1f}")
    return "\n".join(lines)


class _Rows:
    """Scores test rankings and records each row's metrics."""

    def __init__(self, split: LeaveOneOut) -> None:
        self.split = split
        self.test = stage_inputs(split, "test", HISTORY_LEN)
        self.cold = split.cold_mask("test")
        self.catalog = split.vocab.size - FIRST_ITEM_INDEX
        self.models: dict[str, dict[str, float]] = {}

    def masked(self, scores: NDArray[Any]) -> NDArray[Any]:
        return mask_seen(scores, self.test.histories)

    def add(self, name: str, masked_scores: NDArray[Any], train_seconds: float) -> None:
        metrics = summarize(masked_scores, self.test.targets, self.cold, self.catalog)
        self.models[name] = {**metrics, "train_seconds": round(train_seconds, 2)}
        logger.info("%s: NDCG@10 %.4f", name, metrics["NDCG@10"])


def _timed(function: Callable[[], NDArray[Any]]) -> tuple[NDArray[Any], float]:
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def _pipeline_rows(
    rows: _Rows,
    config: EvalConfig,
    text_table: NDArray[Any] | None,
    suffix: str,
) -> None:
    """Retrieval and two-stage rows of one pipeline variant (with or without text)."""
    from magpie.learning.export import OnnxRanker, export_ranker, quantize_int8

    pipeline = config.pipeline
    use_text = text_table is not None
    split, test = rows.split, rows.test
    retrieval, retrieval_seconds = train_retrieval(
        split, text_table, replace(pipeline.retrieval, use_text=use_text), pipeline.seed
    )
    first_stage = rows.masked(
        retrieval.score_all(pad_left(test.histories, retrieval.config.max_len))
    )
    rows.add(f"retrieval{suffix}", first_stage, retrieval_seconds)
    ranker, covisitation, ranker_seconds = train_ranker(
        split,
        text_table,
        retrieval,
        replace(pipeline.ranker, use_text=use_text),
        pipeline.candidates,
        pipeline.seed,
    )
    seconds = retrieval_seconds + ranker_seconds
    fp32 = batched_rerank(torch_scores(ranker), covisitation, test.history_ids, test.contexts)
    rows.add(
        "pipeline-fp32" if use_text else "pipeline-notext",
        two_stage(first_stage, fp32, pipeline.candidates),
        seconds,
    )
    if use_text:
        start = time.perf_counter()
        fp32_path = export_ranker(ranker, config.artifacts_dir / "ranker.onnx")
        int8_path = quantize_int8(fp32_path, config.artifacts_dir / "ranker.int8.onnx")
        np.savez(config.artifacts_dir / "covisitation.npz", **covisitation.arrays())
        int8 = batched_rerank(
            OnnxRanker(int8_path).scores, covisitation, test.history_ids, test.contexts
        )
        export_seconds = time.perf_counter() - start
        rows.add(
            "pipeline-int8",
            two_stage(first_stage, int8, pipeline.candidates),
            seconds + export_seconds,
        )


def evaluate(
    dataset: Dataset, config: EvalConfig, text_table: NDArray[Any] | None = None
) -> EvalReport:
    """All rows of :data:`ROWS` on ``dataset``; ``text_table`` is embedded when not given."""
    from magpie.learning.text import item_text_table

    start = time.perf_counter()
    vocab = build_vocab(dataset.items)
    split = leave_one_out(dataset, vocab)
    rows = _Rows(split)
    users = len(split.users)
    seconds: dict[str, float] = {}

    counts, elapsed = _timed(split.train_counts)
    rows.add("popularity", rows.masked(popularity_scores(counts, users)), elapsed)
    sequences = [items for items, _ in split.train_sequences()]
    matrix, elapsed = _timed(lambda: covisitation_matrix(sequences, vocab.size))
    rows.add("covisitation", rows.masked(covisitation_scores(matrix, rows.test.histories)), elapsed)
    bpr, elapsed = train_bpr(split, config.bpr, config.pipeline.seed)
    rows.add("bpr", rows.masked(bpr.score_all(users)), elapsed)

    if text_table is None:
        text_table, seconds["embed"] = _timed(
            lambda: item_text_table(vocab, dataset.items, config.pipeline.text)
        )
    _pipeline_rows(rows, config, text_table, "")
    _pipeline_rows(rows, config, None, "-notext")
    seconds["total"] = time.perf_counter() - start
    ordered = {name: rows.models[name] for name in ROWS if name in rows.models}
    return EvalReport(protocol=PROTOCOL, models=ordered, seconds=seconds)
