"""The evaluation gate: a candidate against the champion and the baselines, on the same
time-forward holdout.

Protocol (fixed; every verdict records its numbers):

* The run's snapshot fixes the events (up to a sequence number) and a cutoff: the
  holdout is the newest ``retrain_holdout_days`` of positive events, which the candidate
  never trains on.
* A holdout user has positive events before the cutoff (their history, oldest first)
  and, after it, a first positive item they had not interacted with before: the target.
  Up to ``MAX_USERS`` users, drawn with a fixed seed.
* Each model ranks the whole catalog for each user, the user's history masked (full
  ranking, no sampled negatives): the candidate and the champion as they would be served
  (their bundles: user tower + item vectors for retrieval, the top ``CANDIDATES``
  re-ranked by the INT8 ranker with the bundle's co-visitation features), popularity and
  co-visitation (top-50 lists) over the events before the cutoff. A product a bundle does
  not know ranks last for it.
* Metrics: NDCG@10 and HR@10 of the target.
* A champion whose bundle trained on events inside the holdout (the platform's first
  model, trained on everything) would be judged on what it memorised: it is then not
  compared, and the verdict says so.

Verdict: rejected if the candidate's NDCG@10 is below the best baseline's, or below the
champion's by more than ``gate_margin`` of it, or if its INT8 ranker loses more than
``gate_int8_drift`` of its FP32 NDCG@10, or if the INT8 ranker takes longer than
``gate_ranker_ms`` (p50, 500 candidates, one thread); or when the holdout has fewer than
``MIN_USERS`` users (nothing would show the candidate is better). The verdict carries
one readable sentence per check.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from magpie.contract.covisitation import Covisitation
from magpie.contract.inputs import context_vector, pad_left
from magpie.contract.signature import (
    FIRST_ITEM_INDEX,
    HISTORY_IDS,
    HISTORY_LEN,
    OOV_INDEX,
    USER_TOWER_HISTORY_LEN,
    USER_TOWER_MIN_HISTORY,
    USER_VECTORS,
)
from magpie.datasets.schema import Dataset, Interaction
from magpie.learning.export import OnnxRanker
from magpie.learning.metrics import hit_rate, ndcg
from magpie.learning.protocol import two_stage
from magpie.modelstore import bundle
from magpie.runtime.settings import Settings

__all__ = [
    "CANDIDATES",
    "MAX_USERS",
    "MIN_USERS",
    "Holdout",
    "decide",
    "judge",
    "time_split",
]

logger = logging.getLogger(__name__)

CANDIDATES = 200
"""Retrieval results the ranker re-ranks, as in offline evaluation."""
MIN_USERS = 30
MAX_USERS = 5000
LATENCY_CANDIDATES = 500
_SEED = 0


@dataclass(frozen=True, slots=True)
class Holdout:
    """The users the gate asks, in one order for every model."""

    catalog: tuple[str, ...]
    """Product ids; scores are columns in this order."""
    histories: list[list[str]]
    """Each user's positive items before the cutoff, oldest first."""
    targets: list[str]
    target_times: list[float]
    last_times: list[float]
    """Each user's last event before the cutoff (the request context's gap)."""

    def __len__(self) -> int:
        return len(self.targets)


def time_split(dataset: Dataset, cutoff: float) -> tuple[Dataset, Holdout]:
    """The events before ``cutoff`` (training data) and the holdout after it."""
    catalog = tuple(item.item_id for item in dataset.items)
    known = set(catalog)
    by_user: dict[str, list[Interaction]] = {}
    for interaction in dataset.interactions:
        by_user.setdefault(interaction.user_id, []).append(interaction)
    histories: list[list[str]] = []
    targets: list[str] = []
    target_times: list[float] = []
    last_times: list[float] = []
    for events in by_user.values():
        before = [e for e in events if e.timestamp < cutoff]
        seen = {e.item_id for e in before}
        after = [e for e in events if e.timestamp >= cutoff and e.item_id not in seen]
        target = next((e for e in after if e.item_id in known), None)
        if before and target is not None:
            histories.append([e.item_id for e in before])
            targets.append(target.item_id)
            target_times.append(target.timestamp)
            last_times.append(before[-1].timestamp)
    if len(targets) > MAX_USERS:
        keep = np.sort(np.random.default_rng(_SEED).choice(len(targets), MAX_USERS, False))
        histories = [histories[i] for i in keep]
        targets = [targets[i] for i in keep]
        target_times = [target_times[i] for i in keep]
        last_times = [last_times[i] for i in keep]
    training = Dataset(
        dataset.name,
        dataset.items,
        dataset.users,
        [e for e in dataset.interactions if e.timestamp < cutoff],
    )
    return training, Holdout(catalog, histories, targets, target_times, last_times)


def _batches(users: int, columns: int) -> list[slice]:
    size = max(1, (1 << 23) // max(columns, 1))
    return [slice(start, start + size) for start in range(0, users, size)]


class _Ranks:
    """Target ranks of one model, batch by batch, each user's history masked."""

    def __init__(self, holdout: Holdout) -> None:
        self._columns = {pid: i for i, pid in enumerate(holdout.catalog)}
        self._holdout = holdout
        self.ranks: list[NDArray[Any]] = []

    def add(self, rows: slice, scores: NDArray[Any]) -> None:
        holdout = self._holdout
        masked = scores.astype(np.float64)
        for row, history in enumerate(holdout.histories[rows]):
            masked[row, [self._columns[p] for p in history if p in self._columns]] = -np.inf
        targets = np.array([self._columns[t] for t in holdout.targets[rows]])
        target_scores = masked[np.arange(len(targets)), targets][:, None]
        # Ties count against the target: a model that cannot tell items apart earns nothing.
        self.ranks.append((masked >= target_scores).sum(axis=1) - 1)

    def metrics(self) -> dict[str, float]:
        ranks = np.concatenate(self.ranks) if self.ranks else np.empty(0)
        return {"NDCG@10": ndcg(ranks, 10), "HR@10": hit_rate(ranks, 10), "users": len(ranks)}


class BundleScorer:
    """A bundle as serving uses it: user tower and item vectors for retrieval, a ranker file
    and the co-visitation lists for its candidate features."""

    def __init__(self, directory: Path, catalog: Sequence[str]) -> None:
        import onnxruntime as ort

        item_ids = json.loads((directory / bundle.VOCAB).read_text())["item_ids"]
        self._rows = {pid: i + FIRST_ITEM_INDEX for i, pid in enumerate(item_ids)}
        self._catalog_rows = np.array([self._rows.get(p, OOV_INDEX) for p in catalog])
        self._known = self._catalog_rows >= FIRST_ITEM_INDEX
        self._items = np.load(directory / bundle.ITEM_VECTORS).astype(np.float32)
        with np.load(directory / bundle.COVISITATION) as arrays:
            self._covisitation = Covisitation.from_arrays(arrays)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self._tower = ort.InferenceSession(
            str(directory / bundle.USER_TOWER), options, providers=["CPUExecutionProvider"]
        )
        self.directory = directory

    def _history_rows(self, history: Sequence[str], length: int) -> list[int]:
        return [self._rows.get(p, OOV_INDEX) for p in history][-length:]

    def retrieval(self, histories: Sequence[Sequence[str]]) -> NDArray[Any]:
        """float32 [users, catalog]: user vector . item vector; -inf where unknown."""
        width = max(USER_TOWER_MIN_HISTORY, min(USER_TOWER_HISTORY_LEN, max(map(len, histories))))
        rows = [self._history_rows(h, width) for h in histories]
        vectors = self._tower.run([USER_VECTORS], {HISTORY_IDS: pad_left(rows, width)})[0]
        scores: NDArray[Any] = (vectors @ self._items[self._catalog_rows].T).astype(np.float32)
        scores[:, ~self._known] = -np.inf
        return scores

    def pipeline(
        self, holdout: Holdout, rows: slice, ranker: OnnxRanker, retrieval: NDArray[Any]
    ) -> NDArray[Any]:
        """Full-ranking scores: the ranker re-ranks retrieval's top ``CANDIDATES``."""
        histories = holdout.histories[rows]
        history_ids = pad_left([self._history_rows(h, HISTORY_LEN) for h in histories], HISTORY_LEN)
        contexts = np.stack(
            [
                context_vector(at, last)
                for at, last in zip(
                    holdout.target_times[rows], holdout.last_times[rows], strict=True
                )
            ]
        )
        columns = {pid: i for i, pid in enumerate(holdout.catalog)}
        first = retrieval.astype(np.float64)
        for row, history in enumerate(histories):
            first[row, [columns[p] for p in history if p in columns]] = -np.inf

        def rerank(candidates: NDArray[Any]) -> NDArray[Any]:
            ids = self._catalog_rows[candidates]
            features = self._covisitation.features(history_ids, ids)
            scores: NDArray[Any] = ranker.scores((history_ids, ids, contexts, features))
            return scores

        n = min(CANDIDATES, int(self._known.sum()))
        combined: NDArray[Any] = two_stage(first, rerank, n)
        return combined


def _bundle_metrics(
    directory: Path, holdout: Holdout, with_fp32: bool
) -> tuple[dict[str, float], dict[str, float] | None]:
    scorer = BundleScorer(directory, holdout.catalog)
    int8 = OnnxRanker(directory / bundle.RANKER_INT8, threads=1)
    fp32 = OnnxRanker(directory / bundle.RANKER_FP32, threads=1) if with_fp32 else None
    ranks, fp32_ranks = _Ranks(holdout), _Ranks(holdout)
    for rows in _batches(len(holdout), len(holdout.catalog)):
        retrieval = scorer.retrieval(holdout.histories[rows])
        ranks.add(rows, scorer.pipeline(holdout, rows, int8, retrieval))
        if fp32 is not None:
            fp32_ranks.add(rows, scorer.pipeline(holdout, rows, fp32, retrieval))
    return ranks.metrics(), fp32_ranks.metrics() if fp32 is not None else None


def _baseline_metrics(training: Dataset, holdout: Holdout) -> dict[str, dict[str, float]]:
    # Rows as a vocabulary: catalog column j is row j + FIRST_ITEM_INDEX (0 pads histories).
    rows = {pid: i + FIRST_ITEM_INDEX for i, pid in enumerate(holdout.catalog)}
    counts = np.zeros(len(holdout.catalog), dtype=np.float32)
    sequences: dict[str, list[int]] = {}
    for e in training.interactions:
        if e.item_id in rows:
            counts[rows[e.item_id] - FIRST_ITEM_INDEX] += 1
            sequences.setdefault(e.user_id, []).append(rows[e.item_id])
    vocab = len(holdout.catalog) + FIRST_ITEM_INDEX
    lists = Covisitation.from_sequences(list(sequences.values()), vocab)
    popularity, covisitation = _Ranks(holdout), _Ranks(holdout)
    everything = np.arange(FIRST_ITEM_INDEX, vocab)
    backfill = 1e-6 * counts / max(float(counts.max()), 1.0)
    for batch in _batches(len(holdout), len(holdout.catalog)):
        users = len(holdout.histories[batch])
        popularity.add(batch, np.broadcast_to(counts, (users, len(counts))))
        history = pad_left(
            [[rows[p] for p in h if p in rows] for h in holdout.histories[batch]], HISTORY_LEN
        )
        features = lists.features(history, np.broadcast_to(everything, (users, len(everything))))
        # Ties broken by popularity, as a co-visitation recommender backfills.
        covisitation.add(batch, features[..., 0] + backfill)
    return {"popularity": popularity.metrics(), "covisitation": covisitation.metrics()}


def _trained_on_holdout(directory: Path, holdout: Holdout) -> bool:
    """Whether a bundle's training data reaches past the holdout's first target."""
    metadata = json.loads((directory / bundle.METADATA).read_text())
    last = metadata.get("dataset", {}).get("last_event_time")
    first_target = min(holdout.target_times, default=float("inf"))
    return last is None or float(last) >= first_target


def ranker_latency_ms(directory: Path, repeats: int = 30) -> float:
    """p50 of the INT8 ranker on ``LATENCY_CANDIDATES`` candidates, one thread."""
    vocab = len(json.loads((directory / bundle.VOCAB).read_text())["item_ids"]) + FIRST_ITEM_INDEX
    rng = np.random.default_rng(_SEED)
    history = pad_left([list(rng.integers(FIRST_ITEM_INDEX, vocab, 30))], HISTORY_LEN)
    ids = rng.integers(FIRST_ITEM_INDEX, vocab, (1, LATENCY_CANDIDATES))
    with np.load(directory / bundle.COVISITATION) as arrays:
        features = Covisitation.from_arrays(arrays).features(history, ids)
    inputs = (history, ids, context_vector(0.0, None)[None, :], features)
    ranker = OnnxRanker(directory / bundle.RANKER_INT8, threads=1)
    for _ in range(3):
        ranker.scores(inputs)
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        ranker.scores(inputs)
        timings.append((time.perf_counter() - started) * 1000.0)
    return float(np.median(timings))


def judge(
    settings: Settings,
    candidate: Path,
    champion: Path | None,
    training: Dataset,
    holdout: Holdout,
) -> dict[str, Any]:
    """Measures the candidate, the champion (unless it trained on the holdout) and the
    baselines on ``holdout``, then :func:`decide`."""
    started = time.perf_counter()
    metrics: dict[str, Any] = {"holdout_users": len(holdout)}
    if len(holdout) >= MIN_USERS:
        metrics["candidate"], metrics["candidate_fp32"] = _bundle_metrics(
            candidate, holdout, with_fp32=True
        )
        metrics.update(_baseline_metrics(training, holdout))
        if champion is not None and _trained_on_holdout(champion, holdout):
            metrics["champion_trained_on_holdout"] = True
        elif champion is not None:
            metrics["champion"], _ = _bundle_metrics(champion, holdout, with_fp32=False)
        metrics["ranker_p50_ms"] = ranker_latency_ms(candidate)
    verdict = decide(
        metrics, settings.gate_margin, settings.gate_int8_drift, settings.gate_ranker_ms
    )
    verdict["metrics"]["gate_seconds"] = round(time.perf_counter() - started, 2)
    logger.info("gate %s", verdict["reason"])
    return verdict


def decide(
    metrics: dict[str, Any], margin: float, int8_drift: float, ranker_ms: float
) -> dict[str, Any]:
    """The verdict on measured ``metrics`` (what :func:`judge` gathers): ``accepted``, a
    ``reason`` with one sentence per check, the ``checks`` and the metrics themselves."""
    checks: list[dict[str, Any]] = []

    def check(name: str, passed: bool, sentence: str) -> None:
        checks.append({"check": name, "passed": passed, "reason": sentence})

    users = metrics["holdout_users"]
    if users < MIN_USERS:
        check(
            "holdout",
            False,
            f"the holdout has {users} users, fewer than {MIN_USERS}: nothing would show the "
            "candidate is better",
        )
        return _verdict(checks, metrics)
    score = metrics["candidate"]["NDCG@10"]
    best = max(("popularity", "covisitation"), key=lambda name: metrics[name]["NDCG@10"])
    baseline = metrics[best]["NDCG@10"]
    check(
        "baselines",
        score >= baseline,
        f"NDCG@10 {score:.4f} {'>=' if score >= baseline else '<'} the best baseline "
        f"({best}) {baseline:.4f}",
    )
    if metrics.get("champion_trained_on_holdout"):
        check(
            "champion",
            True,
            "the champion trained on events inside this holdout, so it is not compared "
            "(only the baselines are)",
        )
    elif "champion" in metrics:
        theirs = metrics["champion"]["NDCG@10"]
        change = score / theirs - 1.0 if theirs else 0.0
        check(
            "champion",
            score >= theirs * (1.0 - margin),
            f"NDCG@10 {score:.4f} vs the champion's {theirs:.4f} ({change:+.1%}; at most "
            f"{margin:.0%} worse is accepted)",
        )
    reference = metrics["candidate_fp32"]["NDCG@10"]
    drift = (reference - score) / reference if reference > 0 else 0.0
    metrics["int8_drift"] = drift
    check(
        "int8",
        drift <= int8_drift,
        f"INT8 ranker loses {drift:.2%} of the FP32 NDCG@10 (bound {int8_drift:.0%})",
    )
    latency = metrics["ranker_p50_ms"]
    check(
        "latency",
        latency <= ranker_ms,
        f"INT8 ranker p50 {latency:.2f} ms for {LATENCY_CANDIDATES} candidates "
        f"(budget {ranker_ms:g} ms)",
    )
    return _verdict(checks, metrics)


def _verdict(checks: list[dict[str, Any]], metrics: dict[str, Any]) -> dict[str, Any]:
    accepted = all(c["passed"] for c in checks)
    failed = [c["reason"] for c in checks if not c["passed"]]
    reason = (
        "accepted: " + "; ".join(c["reason"] for c in checks)
        if accepted
        else "rejected: " + "; ".join(failed)
    )
    return {"accepted": accepted, "reason": reason, "checks": checks, "metrics": metrics}
