"""``magpie train`` and ``magpie model ...``: the registry and the Triton repository from
the command line.

    magpie train [--dataset D] [--config F]  train, write a bundle, register a candidate
    magpie model list                       versions, status, aliases, metrics
    magpie model promote VERSION            roll out: staged, loaded everywhere, switched
    magpie model rollback                   swap champion and previous (one alias change)
    magpie model history [--at TIME]        the promotion log; which version served when
    magpie model triton-config --target cpu|gpu --out DIR

``promote`` stages the version, publishes it (validated, loaded by a running Triton at
``MAGPIE_TRITON_ADDR`` beside the versions in use), waits until every live retrieval and
ranking replica has loaded it, and only then switches the champion alias, in one
transaction that also appends to the promotion log. ``rollback`` swaps the champion with
the previous version, which every replica keeps loaded. With no Triton running, the
version lands in the repository and is loaded when Triton starts.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
from collections.abc import Callable
from pathlib import Path

from magpie.modelstore import registry
from magpie.modelstore.lifecycle import connection, roll_back, roll_out
from magpie.modelstore.triton_repo import CONFIG_FILE, TARGETS, write_model_dir
from magpie.runtime.settings import Settings, load_settings

__all__ = ["add_commands"]

logger = logging.getLogger(__name__)


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings()
    return settings.model_copy(update={"model_name": args.name}) if args.name else settings


def _list(args: argparse.Namespace) -> int:
    settings = _settings(args)
    with connection(settings) as conn:
        rows = registry.list_versions(conn, settings.model_name)
        named = registry.aliases(conn, settings.model_name)
    by_version: dict[int, list[str]] = {}
    for alias, version in named.items():
        by_version.setdefault(version, []).append(alias)
    print(f"{'version':>7}  {'status':<9}  {'aliases':<17}  {'created':<16}  metrics")
    for row in rows:
        tags = ",".join(sorted(by_version.get(row.version, []))) or "-"
        print(
            f"{row.version:>7}  {row.status:<9}  {tags:<17}  {row.created_at:%Y-%m-%d %H:%M}  "
            f"{json.dumps(row.metrics, sort_keys=True)}"
        )
    return 0


def _promote(args: argparse.Namespace) -> int:
    settings = _settings(args)
    row = roll_out(settings, args.version, "manual", reason=args.reason)
    print(f"{settings.model_name} version {row.version} promoted and published")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    settings = _settings(args)
    row = roll_back(settings, "manual", reason=args.reason)
    print(f"{settings.model_name} rolled back to version {row.version}")
    return 0


def _history(args: argparse.Namespace) -> int:
    settings = _settings(args)
    with connection(settings) as conn:
        if args.at is not None:
            found = registry.served_at(conn, settings.model_name, args.at)
            changes = [found] if found is not None else []
        else:
            changes = registry.history(conn, settings.model_name, args.limit)
    if args.at is not None and not changes:
        print(f"no version of {settings.model_name} was served at {args.at:%Y-%m-%d %H:%M:%S %Z}")
        return 1
    print(f"{'when (UTC)':<19}  {'action':<8}  {'from':>4}  {'to':>4}  {'trigger':<9}  reason")
    for change in changes:
        source = "-" if change.from_version is None else str(change.from_version)
        print(
            f"{change.at.astimezone(datetime.UTC):%Y-%m-%d %H:%M:%S}  {change.action:<8}  "
            f"{source:>4}  {change.to_version:>4}  {change.trigger:<9}  {change.reason}"
        )
    return 0


def _moment(text: str) -> datetime.datetime:
    """An ISO 8601 time; without an offset it is UTC."""
    moment = datetime.datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


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

    command("list", "list versions, their status and the aliases naming them", _list)
    promote = command(
        "promote",
        "roll a version out: load it everywhere beside the champion, then switch",
        _promote,
    )
    promote.add_argument("version", type=int)
    promote.add_argument("--reason", default="", help="recorded in the promotion log")
    rollback = command("rollback", "swap the champion with the previous version", _rollback)
    rollback.add_argument("--reason", default="", help="recorded in the promotion log")
    history = command("history", "the promotion log, newest first", _history)
    history.add_argument("--limit", type=int, default=20)
    history.add_argument(
        "--at", type=_moment, default=None, help="which version served at this time (ISO 8601)"
    )

    config = commands.add_parser("triton-config", help="write the ranker's Triton config")
    config.add_argument("--target", choices=sorted(TARGETS), default="cpu")
    config.add_argument("--out", type=Path, required=True, help="model repository directory")
    config.add_argument(
        "--model", dest="name_override", default=None, help="default: MAGPIE_TRITON_MODEL"
    )
    config.set_defaults(handler=_triton_config)
