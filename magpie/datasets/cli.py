"""`magpie load movielens|synthetic`: fill a running platform through its gRPC APIs."""

from __future__ import annotations

import argparse

from magpie.datasets.loader import Addresses, Loader, LoadReport
from magpie.runtime.settings import load_settings

__all__ = ["add_commands"]


def _loader() -> Loader:
    """A loader to the platform the MAGPIE_* settings name, with their token."""
    settings = load_settings()
    addresses = Addresses(settings.catalog_addr, settings.profiles_addr, settings.feedback_addr)
    return Loader(addresses, token_file=settings.auth_token_file)


def _print(report: LoadReport) -> None:
    print(f"{'products':<18} {report.products}")
    print(f"{'users':<18} {report.users}")
    print(f"{'events accepted':<18} {report.events_accepted}")
    print(f"{'events duplicate':<18} {report.events_duplicate}")
    print(f"{'events rejected':<18} {report.events_rejected}")
    print(f"{'refused records':<18} {report.failed}")


def _load_movielens(args: argparse.Namespace) -> int:
    from magpie.datasets.movielens import load_movielens_100k

    dataset = load_movielens_100k()
    with _loader() as loader:
        report = loader.load(dataset)
    _print(report)
    return 1 if report.failed or report.events_rejected else 0


def _load_synthetic(args: argparse.Namespace) -> int:
    from magpie.datasets import synthetic

    config = synthetic.preset(args.preset, seed=args.seed)
    with _loader() as loader:
        loader.products(synthetic.iter_items(config), total=config.n_products)
        loader.users(synthetic.iter_users(config), total=config.n_users)
        loader.interactions(config.name, synthetic.iter_interactions(config), total=config.n_events)
        report = loader.report
    _print(report)
    return 1 if report.failed or report.events_rejected else 0


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Registers `load movielens` and `load synthetic [--preset NAME] [--seed N]`."""
    from magpie.datasets.synthetic import PRESETS

    load = subparsers.add_parser("load", help="load a data set into the running platform")
    sources = load.add_subparsers(dest="source", required=True)
    movielens = sources.add_parser("movielens", help="MovieLens-100k (from the RecBole wheel)")
    movielens.set_defaults(handler=_load_movielens)
    generated = sources.add_parser("synthetic", help="the generated e-commerce world")
    generated.add_argument("--preset", choices=sorted(PRESETS), default="small")
    generated.add_argument("--seed", type=int, default=0)
    generated.set_defaults(handler=_load_synthetic)
