"""``magpie eval``, registered on the ``magpie`` parser by :func:`add_commands`, and the
training options and data sets that ``magpie train`` (:mod:`magpie.modelstore.cli`) shares."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from magpie.runtime.machine import machine_info

if TYPE_CHECKING:
    from magpie.datasets.schema import Dataset
    from magpie.learning.train import PipelineConfig

__all__ = ["add_commands", "add_training_options", "load_dataset", "pipeline_from_args"]

logger = logging.getLogger(__name__)


def add_training_options(parser: argparse.ArgumentParser) -> None:
    """Options of every command that trains: settings file, seed, and caps for smoke runs."""
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="JSON object of pipeline settings, nested per model, e.g. "
        '{"ranker": {"epochs": 2}, "use_text": false}; unknown keys are refused',
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--encoder", default=None, help="sentence encoder path or name")
    parser.add_argument(
        "--epochs", type=int, default=None, help="cap the epochs of every model (smoke runs)"
    )
    parser.add_argument(
        "--max-seconds", type=float, default=None, help="training budget per neural model"
    )


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    evaluate = subparsers.add_parser("eval", help="evaluate all models on MovieLens-100k")
    add_training_options(evaluate)
    evaluate.add_argument("--output", type=Path, default=Path("bench-results/eval-ml100k.json"))
    evaluate.add_argument("--artifacts", type=Path, default=Path("artifacts/eval"))
    evaluate.set_defaults(handler=_run_eval)


def pipeline_from_args(args: argparse.Namespace) -> PipelineConfig:
    """The pipeline the options of :func:`add_training_options` describe."""
    from magpie.learning.text import TextConfig
    from magpie.learning.train import PipelineConfig, pipeline_config

    config = PipelineConfig()
    if args.config is not None:
        config = pipeline_config(json.loads(args.config.read_text()))
    config = replace(config, seed=args.seed)
    if args.encoder:
        config = replace(config, text=TextConfig(encoder=args.encoder))
    retrieval, ranker = config.retrieval, config.ranker
    if args.epochs is not None:
        retrieval, ranker = (
            replace(retrieval, epochs=args.epochs),
            replace(ranker, epochs=args.epochs),
        )
    if args.max_seconds is not None:
        retrieval = replace(retrieval, max_seconds=args.max_seconds)
        ranker = replace(ranker, max_seconds=args.max_seconds)
    return replace(config, retrieval=retrieval, ranker=ranker)


def _command() -> str:
    return shlex.join(["magpie", *sys.argv[1:]])


def _run_eval(args: argparse.Namespace) -> int:
    from magpie.datasets.movielens import load_movielens_100k
    from magpie.learning.evaluate import EvalConfig, evaluate, format_table

    pipeline = pipeline_from_args(args)
    config = EvalConfig(pipeline=pipeline, artifacts_dir=args.artifacts)
    if args.epochs is not None:
        config = replace(config, bpr=replace(config.bpr, epochs=args.epochs))
    report = evaluate(load_movielens_100k(), config)
    print(format_table(report))
    print(f"total seconds: {report.seconds['total']:.1f}")
    payload = {
        "protocol": report.protocol,
        "models": report.models,
        "seconds": {k: round(v, 1) for k, v in report.seconds.items()},
        "command": _command(),
        "machine": machine_info(),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


def load_dataset(name: str, database_url: str) -> Dataset:
    """``movielens``, ``synthetic-PRESET`` or ``stored`` (the catalog and events in the
    platform's PostgreSQL at ``database_url``)."""
    from magpie.datasets import synthetic
    from magpie.datasets.movielens import load_movielens_100k
    from magpie.datasets.warehouse import read_dataset

    if name == "movielens":
        return load_movielens_100k()
    if name == "stored":
        return read_dataset(database_url)
    if name.startswith("synthetic-"):
        return synthetic.generate(synthetic.preset(name.removeprefix("synthetic-")))
    raise ValueError(f"unknown data set {name!r}: movielens, synthetic-PRESET or stored")
