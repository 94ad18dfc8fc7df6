"""``magpie eval`` and ``magpie train``, registered on the ``magpie`` parser by
:func:`add_commands`."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from magpie.runtime.machine import machine_info

if TYPE_CHECKING:
    from magpie.learning.train import PipelineConfig

__all__ = ["add_commands"]

logger = logging.getLogger(__name__)


def _common(parser: argparse.ArgumentParser) -> None:
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
    _common(evaluate)
    evaluate.add_argument("--output", type=Path, default=Path("bench-results/eval-ml100k.json"))
    evaluate.add_argument("--artifacts", type=Path, default=Path("artifacts/eval"))
    evaluate.set_defaults(handler=_run_eval)

    train = subparsers.add_parser("train", help="train retrieval + ranker and export ONNX")
    _common(train)
    train.add_argument("--output", type=Path, default=Path("artifacts/ml100k"))
    train.set_defaults(handler=_run_train)


def _pipeline_config(args: argparse.Namespace) -> PipelineConfig:
    from magpie.learning.text import TextConfig
    from magpie.learning.train import PipelineConfig

    config = PipelineConfig(seed=args.seed)
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

    pipeline = _pipeline_config(args)
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


def _run_train(args: argparse.Namespace) -> int:
    from magpie.datasets.movielens import load_movielens_100k
    from magpie.learning.export import export_artifacts
    from magpie.learning.train import train_pipeline

    start = time.perf_counter()
    artifacts = train_pipeline(load_movielens_100k(), _pipeline_config(args))
    export_artifacts(artifacts, args.output)
    logger.info("trained and exported to %s in %.1f s", args.output, time.perf_counter() - start)
    return 0
