"""What each stage of a retraining run does. Every stage is idempotent: it may run again
after its worker died half-way, and its outputs are written so that a repeat either
finds them complete or replaces them (staged files renamed into place, upserts).

A stage returns the run fields it sets (``snapshot``, ``progress``, ``verdict``,
``version``); it raises :class:`Rejected` to end the run as rejected, :class:`Pending`
to be asked again later (a Kubernetes Job still running), and anything else to fail the
attempt (transient errors are retried by the pipeline).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psycopg2
from opentelemetry import trace

from magpie.datasets.schema import Dataset
from magpie.datasets.warehouse import ANALYTICS_ALLOWED, POSITIVE_EVENT_TYPES, read_dataset
from magpie.modelstore import registry
from magpie.modelstore.lifecycle import (
    bundle_path,
    connection,
    publish_version,
    wait_replicas_ready,
)
from magpie.modelstore.validate import InvalidBundle, validate_bundle
from magpie.retraining.runs import Run, Stage
from magpie.runtime.errors import AlreadyExists, Unavailable
from magpie.runtime.settings import Settings
from magpie.runtime.telemetry import ATTR
from magpie.runtime.units import SECONDS_PER_DAY

__all__ = ["STAGE_FUNCTIONS", "Pending", "Rejected", "StageContext", "pipeline_for"]

logger = logging.getLogger(__name__)

MIN_TRAINING_EVENTS = 200
"""Fewer positive events before the cutoff than this cannot train a model worth judging."""


class Rejected(Exception):
    """The gate rejected the candidate: the run ends, nothing is served."""

    def __init__(self, verdict: Mapping[str, Any]) -> None:
        self.verdict = dict(verdict)
        super().__init__(str(verdict.get("reason", "rejected")))


class Pending(Exception):
    """The stage is not done yet (work elsewhere is running): ask again in ``seconds``."""

    def __init__(self, seconds: float, what: str) -> None:
        self.seconds = seconds
        super().__init__(what)


@dataclass(frozen=True)
class StageContext:
    settings: Settings
    run: Run
    report: Callable[[Mapping[str, Any]], None]
    """Merges progress (epoch, metrics so far) into the run, for `magpie retrain status`."""

    @property
    def run_dir(self) -> Path:
        """The run's scratch space beside the bundles (shared with training Jobs)."""
        return Path(self.settings.artifact_dir) / ".runs" / self.run.run_id

    def dataset(self) -> Dataset:
        """The snapshot's events: everything stored up to its sequence number."""
        return read_dataset(
            self.settings.database_url,
            name=f"run-{self.run.run_id[:8]}",
            through_seq=int(self.run.snapshot["through_seq"]),
        )


def snapshot(ctx: StageContext) -> dict[str, Any]:
    """Fixes what the run learns from and is judged on, and reserves its version."""
    settings, run = ctx.settings, ctx.run
    with connection(settings) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT coalesce(max(seq), 0), extract(epoch FROM max(occurred_at)), count(*)"
            f" FROM events WHERE event_type = ANY(%s) AND {ANALYTICS_ALLOWED}",
            (list(POSITIVE_EVENT_TYPES),),
        )
        through_seq, newest, positives = cur.fetchone()  # type: ignore[misc]
        if newest is None:
            raise Unavailable("no events stored yet")
        cutoff = float(newest) - settings.retrain_holdout_days * SECONDS_PER_DAY
        cur.execute(
            f"SELECT count(*) FROM events WHERE event_type = ANY(%s) AND {ANALYTICS_ALLOWED}"
            " AND seq <= %s AND occurred_at < to_timestamp(%s)",
            (list(POSITIVE_EVENT_TYPES), through_seq, cutoff),
        )
        (before,) = cur.fetchone()  # type: ignore[misc]
        reserved = registry.reserve_version(
            conn,
            run.model_name,
            str(Path(settings.artifact_dir).resolve()) + "/{version}",
            run.run_id,
        )
    if before < MIN_TRAINING_EVENTS:
        raise ValueError(
            f"{before} positive events before the holdout cutoff, fewer than "
            f"{MIN_TRAINING_EVENTS}: not enough to train on"
        )
    return {
        "version": reserved.version,
        "snapshot": {
            "through_seq": int(through_seq),
            "cutoff": cutoff,
            "positive_events": int(positives),
            "training_events": int(before),
        },
    }


def pipeline_for(settings: Settings, run: Run) -> Any:
    """The training configuration: defaults, then the tuned parameters if ``magpie tune``
    proved them better, then ``MAGPIE_RETRAIN_PIPELINE``, then the run's own parameters."""
    from magpie.learning.train import PipelineConfig, pipeline_config
    from magpie.retraining.tune import proven_parameters

    config = PipelineConfig()
    with connection(settings) as conn:
        tuned = proven_parameters(conn, settings.model_name)
    if tuned:
        config = pipeline_config(tuned, config)
    if settings.retrain_pipeline:
        config = pipeline_config(json.loads(Path(settings.retrain_pipeline).read_text()), config)
    return pipeline_config(run.params.get("pipeline", {}), config)


def embed(ctx: StageContext) -> dict[str, Any]:
    """Embeds the products whose text is new or changed (content hash) and writes the run's
    text table, one row per product in catalog order."""
    from magpie.learning.text import item_text
    from magpie.retraining.embeddings import embed_with_cache

    config = pipeline_for(ctx.settings, ctx.run)
    if not config.use_text:
        return {"progress": {"embedded": 0, "reused": 0, "text": False}}
    items = ctx.dataset().items
    with connection(ctx.settings) as conn:
        embedded = embed_with_cache(conn, [item_text(item) for item in items], config.text)
    ctx.run_dir.mkdir(parents=True, exist_ok=True)
    staging = ctx.run_dir / "text.tmp.npz"
    np.savez(staging, ids=np.array([item.item_id for item in items]), vectors=embedded.vectors)
    staging.replace(ctx.run_dir / "text.npz")
    return {"progress": {"embedded": embedded.new, "reused": embedded.reused, "text": True}}


def _text_table(ctx: StageContext, vocab_ids: tuple[str, ...]) -> Any:
    """The run's text vectors as a vocabulary-indexed table (reserved rows zero)."""
    from magpie.contract.signature import FIRST_ITEM_INDEX

    with np.load(ctx.run_dir / "text.npz") as stored:
        rows = {pid: i for i, pid in enumerate(stored["ids"].tolist())}
        vectors = stored["vectors"]
    table = np.zeros((len(vocab_ids) + FIRST_ITEM_INDEX, vectors.shape[1]), dtype=np.float32)
    table[FIRST_ITEM_INDEX:] = vectors[[rows[pid] for pid in vocab_ids]]
    return table


def _shuffled(dataset: Dataset, seed: int) -> Dataset:
    """The negative control: every interaction keeps its user and time, its item is drawn
    from another interaction. A model trained on this learns nothing real."""
    items = [e.item_id for e in dataset.interactions]
    random.Random(seed).shuffle(items)
    events = [
        dataclasses.replace(e, item_id=i) for e, i in zip(dataset.interactions, items, strict=True)
    ]
    return Dataset(dataset.name, dataset.items, dataset.users, events)


def train(ctx: StageContext) -> dict[str, Any]:
    """Trains on the events before the cutoff and writes the candidate's bundle (validated,
    renamed into ``<artifact_dir>/<version>`` in one step). A bundle left complete by an
    attempt that died after writing it is kept."""
    from magpie.learning.sequences import build_vocab
    from magpie.learning.train import train_pipeline
    from magpie.modelstore.writer import write_bundle
    from magpie.retraining.gate import time_split

    settings, run = ctx.settings, ctx.run
    assert run.version is not None
    target = Path(settings.artifact_dir) / str(run.version)
    if target.is_dir():
        try:
            validate_bundle(target)
            return {"progress": {"stage": "train", "reused_bundle": True}}
        except InvalidBundle:
            shutil.rmtree(target)
    config = pipeline_for(settings, run)
    training, _ = time_split(ctx.dataset(), float(run.snapshot["cutoff"]))
    if run.params.get("shuffle_events"):
        training = _shuffled(training, config.seed)
    text = _text_table(ctx, build_vocab(training.items).item_ids) if config.use_text else None
    started = time.monotonic()

    def progress(model: str, epoch: int, epochs: int, metric: float) -> None:
        ctx.report({"model": model, "epoch": epoch, "epochs": epochs, "valid_ndcg10": metric})

    artifacts = train_pipeline(training, config, text, progress)
    seconds = round(time.monotonic() - started, 1)
    metrics = {"train_seconds": seconds, "events": len(training.interactions), "run_id": run.run_id}
    try:
        write_bundle(artifacts, training, Path(settings.artifact_dir), run.version, metrics)
    except AlreadyExists:  # another attempt finished it meanwhile: keep the valid one
        validate_bundle(target)
    return {"progress": {"train_seconds": seconds}, "snapshot": {"train_seconds": seconds}}


def evaluate(ctx: StageContext) -> dict[str, Any]:
    """The gate (:mod:`magpie.retraining.gate`); rejects the run or makes the version a
    candidate, the verdict recorded either way."""
    from magpie.retraining.gate import judge, time_split

    settings, run = ctx.settings, ctx.run
    assert run.version is not None
    training, holdout = time_split(ctx.dataset(), float(run.snapshot["cutoff"]))
    with connection(settings) as conn:
        champion = registry.active_version(conn, run.model_name)
    champion_dir = bundle_path(champion.artifact_uri) if champion is not None else None
    verdict = judge(
        settings, Path(settings.artifact_dir) / str(run.version), champion_dir, training, holdout
    )
    span = trace.get_current_span()
    span.set_attributes(
        {ATTR.GATE_ACCEPTED: verdict["accepted"], ATTR.GATE_REASON: verdict["reason"]}
    )
    with connection(settings) as conn:
        status: registry.Status = "candidate" if verdict["accepted"] else "rejected"
        registry.set_status(
            conn, run.model_name, run.version, status, metrics=verdict["metrics"], verdict=verdict
        )
    if not verdict["accepted"]:
        raise Rejected(verdict)
    return {"verdict": verdict}


def publish(ctx: StageContext) -> dict[str, Any]:
    """Stages the candidate: Triton loads it beside the versions in use, and every retrieval
    and ranking replica loads it beside the champion."""
    settings, run = ctx.settings, ctx.run
    assert run.version is not None
    with connection(settings) as conn:
        registry.set_staged(conn, run.model_name, run.version)
        row = registry.get_version(conn, run.model_name, run.version)
        keep = {
            v for alias, v in registry.aliases(conn, run.model_name).items() if alias != "staged"
        }
    publish_version(settings, row, keep)
    return {"progress": {"published": run.version}}


def promote(ctx: StageContext) -> dict[str, Any]:
    """Switches the champion alias once every live replica holds the candidate."""
    settings, run = ctx.settings, ctx.run
    assert run.version is not None
    ready = wait_replicas_ready(settings, run.version, timeout=60.0)
    if not ready.complete:
        raise Unavailable(f"waiting for {', '.join(ready.waiting)} to load {run.version}")
    reason = (run.verdict or {}).get("reason", "")
    with connection(settings) as conn:
        registry.promote(
            conn, run.model_name, run.version, run.trigger, reason=reason, run_id=run.run_id
        )
    return {"progress": {"promoted": run.version, "replicas": ready.ready}}


def train_stage(ctx: StageContext) -> dict[str, Any]:
    """``train`` in this worker, or as a Kubernetes Job (``MAGPIE_RETRAIN_EXECUTOR``)."""
    if ctx.settings.retrain_executor == "kubernetes":
        from magpie.retraining import jobs  # imports this module: only at call time

        return jobs.train_on_kubernetes(ctx)
    return train(ctx)


STAGE_FUNCTIONS: dict[Stage, Callable[[StageContext], dict[str, Any]]] = {
    "snapshot": snapshot,
    "embed": embed,
    "train": train_stage,
    "evaluate": evaluate,
    "publish": publish,
    "promote": promote,
}


def fail_version(settings: Settings, run: Run) -> None:
    """A failed run's reserved version, if still training, is marked failed."""
    if run.version is None:
        return
    try:
        with connection(settings) as conn:
            row = registry.get_version(conn, run.model_name, run.version)
            if row.status == "training":
                registry.set_status(conn, run.model_name, run.version, "failed")
    except (psycopg2.Error, Unavailable) as error:
        logger.warning("could not mark version %s failed: %s", run.version, error)
