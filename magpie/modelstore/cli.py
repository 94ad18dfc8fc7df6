"""``magpie train`` and ``magpie model ...``: the registry and the Triton repository from
the command line.

    magpie train [--dataset D] [--config F]  train, write a bundle, register a candidate
    magpie model list                       versions, status, metrics
    magpie model promote VERSION            publish to Triton, then mark promoted
    magpie model rollback                   back to the previously promoted version
    magpie model triton-config --target cpu|gpu --out DIR

``promote`` and ``rollback`` publish first (validated, loaded by a running Triton at
``MAGPIE_TRITON_ADDR`` with no dropped request) and commit the registry change only if
that worked, in one transaction. With no Triton running, the version lands in the
repository and is loaded when Triton starts.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from pathlib import Path

from magpie.modelstore import registry
from magpie.modelstore.lifecycle import connection, promote_and_publish
from magpie.modelstore.triton_repo import CONFIG_FILE, TARGETS, write_model_dir
from magpie.runtime.settings import load_settings

__all__ = ["add_commands"]

logger = logging.getLogger(__name__)


def _list(args: argparse.Namespace) -> int:
    settings = load_settings()
    with connection(settings) as conn:
        rows = registry.list_versions(conn, args.name or settings.model_name)
    print(f"{'version':>7}  {'status':<9}  {'created':<16}  {'promoted':<16}  metrics")
    for row in rows:
        promoted = row.promoted_at.strftime("%Y-%m-%d %H:%M") if row.promoted_at else "-"
        print(
            f"{row.version:>7}  {row.status:<9}  {row.created_at:%Y-%m-%d %H:%M}  "
            f"{promoted:<16}  {json.dumps(row.metrics, sort_keys=True)}"
        )
    return 0


def _promote(args: argparse.Namespace) -> int:
    settings = load_settings()
    with connection(settings) as conn:
        name = args.name or settings.model_name
        row = promote_and_publish(conn, settings, name, getattr(args, "version", None))
    print(f"{name} version {row.version} promoted and published")
    return 0


def _train(args: argparse.Namespace) -> int:
    from magpie.learning.cli import load_dataset, pipeline_from_args
    from magpie.modelstore.lifecycle import train_candidate

    settings = load_settings()
    config = pipeline_from_args(args)
    row = train_candidate(settings, load_dataset(args.dataset, settings.database_url), config)
    print(f"{settings.model_name} version {row.version} registered as a candidate")
    print(f"bundle: {row.artifact_uri}")
    print(f"serve it with: magpie model promote {row.version}")
    return 0


def _triton_config(args: argparse.Namespace) -> int:
    name = args.name_override or load_settings().triton_model
    directory = write_model_dir(args.out, name, args.target)
    print(f"wrote {directory / CONFIG_FILE} for {args.target}")
    return 0


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``magpie train`` and ``magpie model list|promote|rollback|triton-config``."""
    from magpie.learning.cli import add_training_options

    train = subparsers.add_parser(
        "train",
        help="train retrieval + ranker, write a model bundle, register it as a candidate",
        description="Trains on a data set, writes the bundle into MAGPIE_ARTIFACT_DIR with the "
        "writer retraining uses and registers it in MAGPIE_DATABASE_URL's registry as a "
        "candidate; `magpie model promote VERSION` then publishes and serves it.",
    )
    add_training_options(train)
    train.add_argument(
        "--dataset",
        default="movielens",
        help="movielens (default), synthetic-PRESET (e.g. synthetic-tiny), or stored: the "
        "catalog and events in the platform's PostgreSQL",
    )
    train.set_defaults(handler=_train)

    model = subparsers.add_parser("model", help="model registry and Triton repository")
    commands = model.add_subparsers(dest="model_command", required=True)

    def command(
        name: str, text: str, run: Callable[[argparse.Namespace], int]
    ) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, help=text)
        parser.add_argument("--name", help="registry model name (default: MAGPIE_MODEL_NAME)")
        parser.set_defaults(handler=run)
        return parser

    command("list", "list versions", _list)
    promote = command("promote", "publish a version to Triton and promote it", _promote)
    promote.add_argument("version", type=int)
    command("rollback", "promote and publish the previously promoted version", _promote)

    config = commands.add_parser("triton-config", help="write the ranker's Triton config")
    config.add_argument("--target", choices=sorted(TARGETS), default="cpu")
    config.add_argument("--out", type=Path, required=True, help="model repository directory")
    config.add_argument(
        "--model", dest="name_override", default=None, help="default: MAGPIE_TRITON_MODEL"
    )
    config.set_defaults(handler=_triton_config)
