"""The declared search space of ``magpie tune``, the settings it yields, the objective's
metric and the printed outcome (no servers: Optuna's in-memory storage)."""

from __future__ import annotations

import dataclasses

import optuna
import pytest

from magpie.datasets.synthetic import generate, preset
from magpie.learning.ranker_model import RankerConfig
from magpie.learning.retrieval_model import RetrievalConfig
from magpie.learning.train import PipelineConfig, pipeline_config, train_pipeline
from magpie.retraining.tune import (
    DEFAULTS_ATTR,
    SEARCH_SPACE,
    TrialRow,
    TuneResult,
    defaults_params,
    format_trials,
    outcome,
    settings_for,
    suggest,
    validation_ndcg10,
)

_TINY = PipelineConfig(
    use_text=False,
    candidates=20,
    retrieval=RetrievalConfig(dim=16, layers=1, heads=1, epochs=1, eval_every=1),
    ranker=RankerConfig(
        dim=16,
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


def _setting(config: object, path: str) -> object:
    for part in path.split("."):
        config = getattr(config, part)
    return config


def test_the_space_is_declared_with_distinct_names_and_sane_bounds() -> None:
    names = [p.name for p in SEARCH_SPACE]
    assert len(set(names)) == len(names)
    for parameter in SEARCH_SPACE:
        assert parameter.why
        assert parameter.settings
        if parameter.choices:
            assert len(set(parameter.choices)) == len(parameter.choices) > 1
        else:
            assert 0 < parameter.low < parameter.high
    paths = [path for p in SEARCH_SPACE for path in p.settings]
    assert len(set(paths)) == len(paths)


def test_suggest_stays_inside_the_space_and_pipeline_config_accepts_it() -> None:
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(40):
        trial = study.ask()
        settings = suggest(trial)
        config = pipeline_config(settings)
        for parameter in SEARCH_SPACE:
            value = trial.params[parameter.name]
            assert parameter.contains(value), (parameter.name, value)
            for path in parameter.settings:
                assert _setting(config, path) == value
        assert config.retrieval.dim == config.ranker.dim  # the ranker warm-starts
        assert config.ranker.dim % config.ranker.heads == 0
        study.tell(trial, 0.0)


@pytest.mark.parametrize("end", ["low", "high"])
def test_the_bounds_of_the_space_are_valid_settings(end: str) -> None:
    values = {
        p.name: (p.choices[0 if end == "low" else -1] if p.choices else getattr(p, end))
        for p in SEARCH_SPACE
    }
    settings = suggest(optuna.trial.FixedTrial(values))
    assert settings == settings_for(values)
    assert set(settings) == {"retrieval", "ranker"}
    config = pipeline_config(settings, _TINY)
    assert config.retrieval.lr == values["retrieval.lr"]
    assert config.ranker.negatives == values["ranker.negatives"]
    assert config.retrieval.dim == config.ranker.dim == values["dim"]
    assert config.ranker.epochs == _TINY.ranker.epochs  # what is not searched stays


def test_the_defaults_lie_inside_the_space() -> None:
    base = PipelineConfig()
    defaults = defaults_params(base)
    assert set(defaults) == {p.name for p in SEARCH_SPACE}
    assert pipeline_config(settings_for(defaults), base) == base


def test_base_values_outside_the_space_are_left_unset() -> None:
    defaults = defaults_params(_TINY)  # dim 16 and 7 negatives are no choices
    assert set(defaults) == {p.name for p in SEARCH_SPACE} - {"dim", "ranker.negatives"}
    mixed = dataclasses.replace(_TINY, ranker=dataclasses.replace(_TINY.ranker, dim=32))
    assert "dim" not in defaults_params(mixed)  # the two models disagree


def test_the_enqueued_defaults_trial_measures_the_base_itself() -> None:
    base = dataclasses.replace(_TINY, retrieval=dataclasses.replace(_TINY.retrieval, lr=3e-3))
    study = optuna.create_study(direction="maximize")
    fixed = defaults_params(base)
    study.enqueue_trial(fixed, user_attrs={DEFAULTS_ATTR: True})
    trial = study.ask()
    assert trial.user_attrs[DEFAULTS_ATTR] is True
    settings = suggest(trial, [p for p in SEARCH_SPACE if p.name in fixed])
    assert trial.params == fixed
    assert pipeline_config(settings, base) == base


@pytest.mark.slow
def test_the_objective_metric_is_the_rankers_own_validation() -> None:
    """With one ranker epoch the weight average holds one checkpoint, the last validated:
    then the pipeline's validation NDCG@10 must equal the ranker's last report."""
    dataset = generate(preset("tiny", n_products=60, n_users=40, n_events=1500))
    reports: list[tuple[str, int, int, float]] = []
    artifacts = train_pipeline(dataset, _TINY, progress=lambda *report: reports.append(report))
    ranker_reports = [r for r in reports if r[0] == "ranker"]
    assert ranker_reports[-1][1:3] == (1, 1)
    assert validation_ndcg10(dataset, artifacts) == pytest.approx(ranker_reports[-1][3])


def _result(best: float | None, baseline: float | None, recorded: bool) -> TuneResult:
    history = (
        TrialRow(0, "COMPLETE", baseline, {"retrieval.lr": 0.002}, True, 3.2),
        TrialRow(1, "PRUNED", 0.01, {"retrieval.lr": 0.0009, "dim": 32}, False, 1.0),
        TrialRow(2, "RUNNING", None, {}, False, None),
    )
    return TuneResult("s", {"retrieval": {"lr": 0.003}}, best, baseline, 2, recorded, history)


def test_the_printed_table_and_outcome() -> None:
    table = format_trials(_result(0.30, 0.25, True))
    lines = table.splitlines()
    assert "valid NDCG@10" in lines[0]
    assert "defaults (retrieval.lr=0.002)" in lines[2]
    assert "PRUNED" in lines[3] and "dim=32" in lines[3]
    assert lines[4].split()[:4] == ["2", "RUNNING", "-", "-"]
    assert outcome(_result(0.30, 0.25, True)).startswith("recorded: beats the defaults by 0.0500")
    assert outcome(_result(0.25, 0.25, False)).startswith("not recorded: the defaults are as good")
    assert outcome(_result(0.30, None, False)).startswith("not recorded")
