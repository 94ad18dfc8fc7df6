"""``magpie tune`` against real PostgreSQL: the study in Optuna's RDB storage in a throwaway
database migrated to head, the baseline trial, what is recorded, sharing one study between
processes, and pruning.

The data is a tiny world whose next item is predictable (each user walks the catalog in
steps of one), so a trained pipeline beats an untrained one by a wide margin and the
outcomes asserted here do not depend on noise.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import multiprocessing
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import psycopg2
import pytest
from optuna.trial import TrialState

from magpie.datasets.schema import Dataset, EventKind, Interaction, Item, User
from magpie.learning.ranker_model import RankerConfig
from magpie.learning.retrieval_model import RetrievalConfig
from magpie.learning.train import PipelineConfig, pipeline_config
from magpie.retraining.tune import (
    DEFAULTS_ATTR,
    WORKER_ATTR,
    add_commands,
    defaults_params,
    open_study,
    proven_parameters,
    record_parameters,
    tune,
)
from magpie.runtime import schema
from magpie.runtime.settings import Settings, load_settings
from tests.support import ADMIN_URL

_TINY = PipelineConfig(
    use_text=False,
    candidates=20,
    retrieval=RetrievalConfig(
        dim=32, layers=1, heads=1, epochs=4, eval_every=2, lr=5e-3, average_tail=0.5
    ),
    ranker=RankerConfig(
        dim=32,
        layers=1,
        heads=1,
        hidden=32,
        epochs=1,
        eval_every=1,
        positions=2,
        negative_pool=8,
        negatives=7,
    ),
)
"""Steps reported per trial: retrieval after epochs 2 and 4, the ranker's epoch as step 5."""

_UNTRAINED = dataclasses.replace(
    _TINY,
    retrieval=dataclasses.replace(_TINY.retrieval, lr=1e-12),
    ranker=dataclasses.replace(_TINY.ranker, lr=1e-12),
)
"""Defaults that cannot learn: their learning rates lie outside the search space, so every
other trial draws a real one and trains."""


def _walks(users: int = 40, items: int = 30, length: int = 12) -> Dataset:
    catalog = [
        Item(
            item_id=f"i{n}",
            title=f"Item {n}",
            description=f"Item {n} of group {n % 3}",
            category_path=("Things", f"group{n % 3}"),
        )
        for n in range(items)
    ]
    interactions = [
        Interaction(
            user_id=f"u{u}",
            item_id=f"i{(u * 7 + step) % items}",
            kind=EventKind.RATING,
            timestamp=1_000_000.0 + 3600.0 * (u + step),
            rating=4.0,
        )
        for u in range(users)
        for step in range(length)
    ]
    return Dataset("walks", catalog, [User(f"u{u}") for u in range(users)], interactions)


@pytest.fixture(scope="module")
def tune_db() -> Iterator[str]:
    with schema.throwaway_database(ADMIN_URL, "magpie_tune") as url:
        yield url


@pytest.fixture
def tune_settings(tune_db: str) -> Settings:
    """Settings on the module's database with a model name of this test's own."""
    return load_settings({"database_url": tune_db, "model_name": f"m{uuid.uuid4().hex[:8]}"})


@pytest.fixture(scope="module")
def walks() -> Dataset:
    return _walks()


@contextlib.contextmanager
def _conn(url: str) -> Iterator[psycopg2.extensions.connection]:
    with contextlib.closing(psycopg2.connect(url)) as conn, conn:
        yield conn


def _rows(settings: Settings) -> list[tuple[object, ...]]:
    with _conn(settings.database_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT study, params, value, baseline, trials FROM tuned_parameters"
            " WHERE model_name = %s ORDER BY id",
            (settings.model_name,),
        )
        return list(cur.fetchall())


def _study_name() -> str:
    return f"study-{uuid.uuid4().hex[:8]}"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_best_is_recorded_when_it_beats_the_defaults(
    tune_settings: Settings, walks: Dataset
) -> None:
    name = _study_name()
    result = tune(
        tune_settings,
        walks,
        trials=3,
        timeout_seconds=240,
        study_name=name,
        base=_UNTRAINED,
        seed=0,
        pruner=optuna.pruners.NopPruner(),
    )

    first = result.history[0]
    assert first.number == 0 and first.defaults and first.state == "COMPLETE"
    assert first.params == defaults_params(_UNTRAINED)
    assert "retrieval.lr" not in first.params  # 1e-12 is outside the space: left unset
    assert result.baseline == first.value
    assert [row.state for row in result.history] == ["COMPLETE"] * 3
    assert not any(row.defaults for row in result.history[1:])
    assert result.trials == 3
    assert result.best_value is not None and result.baseline is not None
    assert result.best_value > result.baseline + 0.1
    assert result.recorded

    [(study, params, value, baseline, trials)] = _rows(tune_settings)
    assert (study, params, value, baseline, trials) == (
        name,
        result.best_params,
        result.best_value,
        result.baseline,
        3,
    )
    with _conn(tune_settings.database_url) as conn:
        proven = proven_parameters(conn, tune_settings.model_name)
    assert proven == result.best_params
    config = pipeline_config(proven, _UNTRAINED)
    assert 5e-4 <= config.retrieval.lr <= 5e-3
    assert config.retrieval.dim == config.ranker.dim

    with open_study(tune_settings, name, base=_UNTRAINED, dataset_name=walks.name) as loaded:
        trials_ = loaded.get_trials()
    assert [t.user_attrs.get(DEFAULTS_ATTR, False) for t in trials_] == [True, False, False]
    assert all(t.intermediate_values.keys() == {2, 4, 5} for t in trials_)


def test_parameters_that_do_not_beat_the_defaults_are_never_proven(
    tune_settings: Settings,
) -> None:
    model = tune_settings.model_name
    winner = {"ranker": {"lr": 0.002}}
    with _conn(tune_settings.database_url) as conn:
        record_parameters(conn, model, "s1", {"ranker": {"lr": 0.0005}}, 0.20, 0.25, 4)
        record_parameters(conn, model, "s2", {"ranker": {"lr": 0.0007}}, 0.25, 0.25, 4)
        assert proven_parameters(conn, model) == {}
        record_parameters(conn, model, "s3", winner, 0.30, 0.25, 4)
        record_parameters(conn, model, "s4", {"ranker": {"lr": 0.0009}}, 0.10, 0.30, 4)
        assert proven_parameters(conn, model) == winner  # the newest that won
        assert proven_parameters(conn, "another-model") == {}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_cli_records_nothing_when_only_the_defaults_ran(
    tune_settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "tiny.json"
    config.write_text(
        json.dumps(
            {
                "use_text": False,
                "candidates": 20,
                "retrieval": {"dim": 32, "layers": 1, "heads": 1, "epochs": 1},
                "ranker": {"dim": 32, "layers": 1, "heads": 1, "hidden": 32, "epochs": 1},
            }
        )
    )
    monkeypatch.setenv("MAGPIE_DATABASE_URL", tune_settings.database_url)
    monkeypatch.setenv("MAGPIE_MODEL_NAME", tune_settings.model_name)
    parser = argparse.ArgumentParser(prog="magpie")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        [
            *("tune", "--dataset", "synthetic-tiny", "--trials", "1", "--timeout", "120"),
            *("--config", str(config), "--seed", "3"),
        ]
    )

    assert args.handler(args) == 0

    out = capsys.readouterr().out.splitlines()
    assert "valid NDCG@10" in out[0]
    assert out[2].split()[:2] == ["0", "COMPLETE"] and "defaults" in out[2]
    assert out[-1].startswith("not recorded: the defaults are as good")
    assert _rows(tune_settings) == []
    with _conn(tune_settings.database_url) as conn:
        assert proven_parameters(conn, tune_settings.model_name) == {}
    name = f"{tune_settings.model_name}-synthetic-tiny"
    base = dataclasses.replace(pipeline_config(json.loads(config.read_text())), seed=3)
    with open_study(tune_settings, name, base=base, dataset_name="synthetic-tiny") as study:
        assert len(study.trials) == 1


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_processes_share_one_study(tune_settings: Settings, walks: Dataset) -> None:
    name = _study_name()
    spawn = multiprocessing.get_context("spawn")
    workers = [
        spawn.Process(
            target=tune,
            args=(tune_settings, walks),
            kwargs={
                "trials": 2,
                "timeout_seconds": 200,
                "study_name": name,
                "base": _TINY,
                "seed": worker,
            },
        )
        for worker in range(2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=250)
    assert [w.exitcode for w in workers] == [0, 0]

    with open_study(tune_settings, name, base=_TINY, dataset_name=walks.name) as study:
        trials = study.get_trials()
    assert len(trials) == 4
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert sum(bool(t.user_attrs.get(DEFAULTS_ATTR)) for t in trials) == 1
    by_worker: dict[str, int] = {}
    for t in trials:
        by_worker[t.user_attrs[WORKER_ATTR]] = by_worker.get(t.user_attrs[WORKER_ATTR], 0) + 1
    assert sorted(by_worker.values()) == [2, 2]


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.filterwarnings("ignore:Fixed parameter .* is out of range")
def test_an_obviously_bad_trial_is_pruned(tune_settings: Settings, walks: Dataset) -> None:
    name = _study_name()
    with open_study(tune_settings, name, base=_TINY, dataset_name=walks.name) as study:
        bad = {**defaults_params(_TINY), "retrieval.lr": 1e-12, "ranker.lr": 1e-12}
        study.enqueue_trial(bad)  # after the defaults, which open_study enqueued first

    result = tune(
        tune_settings,
        walks,
        trials=2,
        timeout_seconds=240,
        study_name=name,
        base=_TINY,
        pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0),
    )

    defaults, pruned = result.history
    assert defaults.defaults and defaults.state == "COMPLETE"
    assert pruned.state == "PRUNED" and pruned.params["retrieval.lr"] == 1e-12
    assert not result.recorded and _rows(tune_settings) == []
    with open_study(tune_settings, name, base=_TINY, dataset_name=walks.name) as loaded:
        [_, trial] = loaded.get_trials()
    assert trial.state is TrialState.PRUNED
    assert list(trial.intermediate_values) == [2]  # stopped at its first report


def test_a_study_refuses_another_base(tune_settings: Settings) -> None:
    name = _study_name()
    with open_study(tune_settings, name, base=_TINY, dataset_name="walks") as study:
        assert [t.state for t in study.get_trials()] == [TrialState.WAITING]
    other = dataclasses.replace(_TINY, candidates=10)
    with (
        pytest.raises(ValueError, match="another base"),
        open_study(tune_settings, name, base=other, dataset_name="walks"),
    ):
        pass
    with (
        pytest.raises(ValueError, match="another dataset"),
        open_study(tune_settings, name, base=_TINY, dataset_name="movielens"),
    ):
        pass
    with open_study(tune_settings, name, base=_TINY, dataset_name="walks") as study:
        assert len(study.get_trials()) == 1  # the defaults are enqueued once
