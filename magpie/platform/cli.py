"""The `magpie` command: database, local platform, services, models."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from pydantic import ValidationError

from magpie.datasets import cli as datasets_cli
from magpie.learning import cli as learning_cli
from magpie.modelstore import cli as modelstore_cli
from magpie.platform import traces
from magpie.platform.local import (
    CONSOLE,
    SERVICES,
    SOURCE_ROOT,
    LocalPlatform,
    PlatformLayout,
    available_services,
    console_available,
)
from magpie.retraining import cli as retraining_cli
from magpie.retraining import tune as tune_cli
from magpie.runtime import schema
from magpie.runtime.auth import Role, new_token
from magpie.runtime.logs import configure_logging
from magpie.runtime.settings import ENV_PREFIX, load_settings

__all__ = ["main"]


def _db_upgrade(args: argparse.Namespace) -> int:
    url = args.database_url or load_settings().database_url
    schema.ensure_database(url)
    schema.upgrade(url, args.revision)
    print(f"schema at revision {schema.current_revision(url)}")
    return 0


def _up(args: argparse.Namespace) -> int:
    from magpie.platform import demo  # training code: imported only when needed

    platform = LocalPlatform(PlatformLayout(Path(args.state_dir)))
    if args.trace:
        platform.start_trace_receiver()
    services = args.services or available_services()
    started = platform.up(services)
    print(f"{'process':<12} {'address':<18} health")
    for name, address in started.items():
        print(f"{name:<12} {address:<18} SERVING")
    if not args.services and not args.no_demo:
        settings = demo.settings_for_cli(platform.service_settings())
        version = demo.bootstrap(settings)
        demo.wait_for_version(settings, version)
        demo.print_recommendations(settings, ["u000001", "u000002", "u000003"])
    if not args.services:
        if platform.can_run_workers:
            broker = platform.up([], workers=True).get("worker", "")
            print(f"\nretraining worker and beat running (broker {broker})")
            print("runs: magpie retrain status; promotions: magpie model history")
        else:
            print("\nno Redis on 127.0.0.1:6379: no retraining worker (retrain with magpie train)")
    print(f"\nlogs in {platform.layout.log_dir}; stop with: magpie down")
    if not args.services and not args.no_console and console_available():
        url = platform.start_console()
        print(f"console: {url} (no sign-in, feedback open to all: no authentication locally)")
    return 0


def _trace(args: argparse.Namespace) -> int:
    platform = LocalPlatform(PlatformLayout(Path(args.state_dir)))
    found = traces.trace_of(traces.read_spans(platform.trace_file), args.id)
    if not found:
        print(f"no spans of {args.id} in {platform.trace_file} (was it `magpie up --trace`?)")
        return 1
    print(traces.format_tree(found))
    return 0


def _down(args: argparse.Namespace) -> int:
    stopped = LocalPlatform(PlatformLayout(Path(args.state_dir))).down()
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0


def _status(args: argparse.Namespace) -> int:
    running = LocalPlatform(PlatformLayout(Path(args.state_dir))).running()
    for name in [*SERVICES, CONSOLE, "triton"]:
        pid = running.get(name)
        print(f"{name:<12} {f'running (pid {pid})' if pid else 'stopped'}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    """Replaces this process with the service, run from the checkout as production runs it."""
    os.chdir(SOURCE_ROOT)
    os.execv(sys.executable, [sys.executable, "-m", f"services.{args.service}"])


def _token(args: argparse.Namespace) -> int:
    """Prints a new caller token, and its entry for the services' tokens file (JSON)."""
    token, entry = new_token(args.name, args.role)
    print(f"token (give it to the caller, e.g. as a Secret): {token}")
    print(f"entry (merge it into the tokens file): {json.dumps(entry)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="magpie", description=__doc__)
    parser.add_argument(
        "--log-level",
        default=None,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="default: MAGPIE_LOG_LEVEL, else INFO",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    db = commands.add_parser("db", help="database schema").add_subparsers(dest="db", required=True)
    upgrade = db.add_parser("upgrade", help="create the database if needed and migrate it")
    upgrade.add_argument("--database-url", help="default: MAGPIE_DATABASE_URL")
    upgrade.add_argument("--revision", default="head")
    upgrade.set_defaults(handler=_db_upgrade)

    for name, run, text in (
        ("up", _up, "start the platform locally"),
        ("down", _down, "stop the local platform"),
        ("status", _status, "show the local platform's processes"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("--state-dir", default=".magpie", help="pids, logs, embedded data")
        command.set_defaults(handler=run)
        if name == "up":
            command.add_argument("services", nargs="*", choices=[[], *SERVICES], default=[])
            command.add_argument(
                "--no-demo", action="store_true", help="skip demo data, first model, examples"
            )
            command.add_argument(
                "--no-console", action="store_true", help="do not start the web console"
            )
            command.add_argument(
                "--trace",
                action="store_true",
                help="trace every request into a local receiver (see: magpie trace ID)",
            )

    trace = commands.add_parser("trace", help="the span tree of one traced request")
    trace.add_argument("id", help="a trace id, or a recommendation_id from a Recommend answer")
    trace.add_argument("--state-dir", default=".magpie")
    trace.set_defaults(handler=_trace)

    token = commands.add_parser("token", help="a new caller token and its tokens-file entry")
    token.add_argument("name", help="the caller, e.g. storefront; it scopes its event ids")
    token.add_argument("role", choices=[r.name.lower() for r in Role])
    token.set_defaults(handler=_token)

    serve = commands.add_parser("serve", help="run one service in the foreground")
    serve.add_argument("service", choices=[*SERVICES, CONSOLE])
    serve.set_defaults(handler=_serve)

    for extension in (datasets_cli, learning_cli, modelstore_cli, retraining_cli, tune_cli):
        extension.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parses the command line, configures logging once (plain text on the terminal, level
    from ``--log-level`` or MAGPIE_LOG_LEVEL) and runs the command."""
    args = build_parser().parse_args(argv)
    level = args.log_level or os.environ.get(ENV_PREFIX + "LOG_LEVEL", "INFO")
    configure_logging("magpie", level, json_lines=False)
    for chatty in ("onnxscript", "onnx_ir", "torch", "sentence_transformers"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLogger().level))
    logging.captureWarnings(True)
    try:
        return int(args.handler(args))
    except ValidationError as error:
        print(f"invalid settings: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
