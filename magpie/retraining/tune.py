"""Hyper-parameter search (``magpie tune``) and the parameters it proved better.

:func:`tune` runs an Optuna study over :data:`SEARCH_SPACE` on the validation items of the
leave-one-out protocol (:mod:`magpie.learning.protocol`; the test items are never looked
at). Each trial trains the two-stage pipeline with :func:`~magpie.learning.train.
train_pipeline`; its value is the pipeline's validation NDCG@10
(:func:`validation_ndcg10`). The first trial of every study is the base configuration
itself (the defaults, or ``--config``): its value is the baseline. When the best trial
beats it, its settings are recorded in ``tuned_parameters`` and the next retraining run
starts from them (:func:`proven_parameters`, applied by
:func:`magpie.retraining.stages.pipeline_for`).

Studies live in Magpie's PostgreSQL (Optuna's RDB storage, in the schema
:data:`OPTUNA_SCHEMA`), so several processes or Kubernetes Jobs given the same study name
work on one study.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import os
import socket
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg2

from magpie.runtime.db import Connection

if TYPE_CHECKING:
    import optuna
    from numpy.typing import NDArray

    from magpie.datasets.schema import Dataset
    from magpie.learning.train import PipelineConfig, TrainedArtifacts
    from magpie.runtime.settings import Settings

__all__ = [
    "DEFAULTS_ATTR",
    "OPTUNA_SCHEMA",
    "SEARCH_SPACE",
    "WORKER_ATTR",
    "Parameter",
    "TrialRow",
    "TuneResult",
    "add_commands",
    "default_pruner",
    "defaults_params",
    "format_trials",
    "open_study",
    "outcome",
    "proven_parameters",
    "record_parameters",
    "settings_for",
    "storage_url",
    "suggest",
    "tune",
    "validation_ndcg10",
]

logger = logging.getLogger(__name__)

OPTUNA_SCHEMA = "optuna"
"""The PostgreSQL schema of Optuna's tables. Not ``public``: Optuna keeps its own Alembic
revision in a table named ``alembic_version``, which in ``public`` is Magpie's."""

DEFAULTS_ATTR = "defaults"
"""User attribute (True) of the trial that measures the base configuration: the baseline."""

WORKER_ATTR = "worker"
"""User attribute: the ``host:pid`` of the process that ran the trial."""

_SETUP_LOCK = "magpie tune: optuna storage"
"""Advisory lock (``hashtext``) held while a process creates Optuna's tables or a study
and enqueues the defaults, so that workers starting together neither race on DDL nor
enqueue the defaults twice."""


@dataclass(frozen=True, slots=True)
class Parameter:
    """One searched hyper-parameter: an Optuna distribution and the pipeline settings it
    sets, all to the value drawn."""

    name: str
    """Optuna's name of the parameter (``trial.params`` key)."""
    settings: tuple[str, ...]
    """Dotted pipeline settings, e.g. ``("ranker.lr",)``."""
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    """Sampled uniformly in log space (learning rates)."""
    choices: tuple[int, ...] = ()
    """When given, a categorical parameter over these values instead of ``[low, high]``."""
    why: str = ""

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is a value this parameter can take."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.choices:
            return value in self.choices
        return self.low <= value <= self.high

    def suggest(self, trial: optuna.trial.BaseTrial) -> float | int:
        if self.choices:
            choice: int = trial.suggest_categorical(self.name, self.choices)
            return choice
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)


SEARCH_SPACE: tuple[Parameter, ...] = (
    Parameter(
        "retrieval.lr",
        ("retrieval.lr",),
        5e-4,
        5e-3,
        log=True,
        why="Adam's step for the retrieval transformer (default 2e-3), decayed linearly",
    ),
    Parameter(
        "retrieval.dropout",
        ("retrieval.dropout",),
        0.1,
        0.5,
        why="retrieval encoder dropout (default 0.3): the main regulariser on small catalogs",
    ),
    Parameter(
        "ranker.lr",
        ("ranker.lr",),
        2e-4,
        3e-3,
        log=True,
        why="Adam's step for the ranker (default 1e-3); it starts from retrieval's weights",
    ),
    Parameter(
        "ranker.dropout",
        ("ranker.dropout",),
        0.1,
        0.5,
        why="ranker encoder dropout (default 0.3)",
    ),
    Parameter(
        "ranker.negatives",
        ("ranker.negatives",),
        choices=(31, 63, 127),
        why="negatives per positive in the listwise loss, drawn from retrieval's top list "
        "(default 63)",
    ),
    Parameter(
        "dim",
        ("retrieval.dim", "ranker.dim"),
        choices=(32, 64),
        why="model width of both models (default 64): the ranker warm-starts from the "
        "retrieval weights, so the two share it",
    ),
)
"""The declared search space. Epochs, validation schedule and model depth are not searched:
every trial trains on the same schedule, so intermediate values at one step compare."""


def settings_for(
    values: Mapping[str, Any], space: Sequence[Parameter] = SEARCH_SPACE
) -> dict[str, Any]:
    """Nested pipeline settings (what :func:`~magpie.learning.train.pipeline_config`
    accepts) from parameter values by name; parameters not in ``values`` are left out."""
    nested: dict[str, Any] = {}
    for parameter in space:
        if parameter.name not in values:
            continue
        for path in parameter.settings:
            *parents, leaf = path.split(".")
            node = nested
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = values[parameter.name]
    return nested


def suggest(
    trial: optuna.trial.BaseTrial, space: Sequence[Parameter] = SEARCH_SPACE
) -> dict[str, Any]:
    """Draws every parameter of ``space`` for ``trial`` (a study's, or a
    :class:`~optuna.trial.FixedTrial`): nested pipeline settings."""
    return settings_for({p.name: p.suggest(trial) for p in space}, space)


def _setting(config: Any, path: str) -> Any:
    for part in path.split("."):
        config = getattr(config, part)
    return config


def defaults_params(
    base: PipelineConfig, space: Sequence[Parameter] = SEARCH_SPACE
) -> dict[str, Any]:
    """``base``'s value of each parameter, by name, where it is one the parameter can take
    (the trial measuring ``base`` records these; the others it leaves unset)."""
    found: dict[str, Any] = {}
    for parameter in space:
        values = {_setting(base, path) for path in parameter.settings}
        if len(values) == 1 and parameter.contains(value := values.pop()):
            found[parameter.name] = value
    return found


def default_pruner(base: PipelineConfig) -> optuna.pruners.BasePruner:
    """Median pruning: a trial stops when its best validation so far is below the median of
    the finished trials at the same step, once two trials (the defaults and one more) have
    finished and after the first third of the retrieval epochs (early validation says
    little about where a decaying schedule ends)."""
    import optuna

    return optuna.pruners.MedianPruner(
        n_startup_trials=2, n_warmup_steps=max(1, base.retrieval.epochs // 3)
    )


def storage_url(settings: Settings) -> str:
    """The SQLAlchemy URL of the settings' database (Optuna's RDB storage URL; its tables
    are in :data:`OPTUNA_SCHEMA`, which :func:`open_study` selects)."""
    # The project's one libpq-to-SQLAlchemy conversion (private there; to be made public).
    from magpie.runtime.schema import sqlalchemy_url

    return sqlalchemy_url(settings.database_url)


def _config_dict(config: PipelineConfig) -> dict[str, Any]:
    """The settings a study's trials depend on, as JSON (machine-local paths left out)."""
    values = dataclasses.asdict(config)
    values["text"].pop("cache_dir", None)
    loaded: dict[str, Any] = json.loads(json.dumps(values, default=str))
    return loaded


@contextlib.contextmanager
def _setup_lock(settings: Settings) -> Iterator[None]:
    with contextlib.closing(psycopg2.connect(settings.database_url)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(hashtext(%s))", (_SETUP_LOCK,))
            try:
                cur.execute(f"CREATE SCHEMA IF NOT EXISTS {OPTUNA_SCHEMA}")
                yield
            finally:
                cur.execute("SELECT pg_advisory_unlock(hashtext(%s))", (_SETUP_LOCK,))


@contextlib.contextmanager
def open_study(
    settings: Settings,
    study_name: str,
    *,
    base: PipelineConfig,
    dataset_name: str,
    seed: int | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
    space: Sequence[Parameter] = SEARCH_SPACE,
) -> Iterator[optuna.Study]:
    """The study named ``study_name`` in the settings' database, created if missing with the
    trial measuring ``base`` enqueued first; its connections are closed when the block ends.

    ``seed`` seeds the sampler (give each worker of one study its own, or None). Raises
    ``ValueError`` when the study was started on another data set or base configuration:
    its baseline would not be this one's.
    """
    import optuna

    stamp = {"dataset": dataset_name, "base": _config_dict(base)}
    alembic_logger = logging.getLogger("alembic")
    alembic_level = alembic_logger.level  # Optuna's storage sets it to WARNING
    with _setup_lock(settings):
        storage = optuna.storages.RDBStorage(
            storage_url(settings),
            engine_kwargs={"connect_args": {"options": f"-c search_path={OPTUNA_SCHEMA}"}},
        )
        alembic_logger.setLevel(alembic_level)
        try:
            study = optuna.create_study(
                storage=storage,
                study_name=study_name,
                direction="maximize",
                load_if_exists=True,
                sampler=optuna.samplers.TPESampler(seed=seed),
                pruner=pruner or default_pruner(base),
            )
            for key, value in stamp.items():
                found = study.user_attrs.get(key)
                if found is None:
                    study.set_user_attr(key, value)
                elif found != value:
                    raise ValueError(
                        f"study {study_name!r} was started with another {key}; "
                        "its trials do not compare with these: choose another study name"
                    )
            trials = study.get_trials(deepcopy=False)
            if not any(t.user_attrs.get(DEFAULTS_ATTR) for t in trials):
                study.enqueue_trial(defaults_params(base, space), user_attrs={DEFAULTS_ATTR: True})
        except BaseException:
            storage.engine.dispose()
            raise
    try:
        yield study
    finally:
        storage.engine.dispose()


def validation_ndcg10(dataset: Dataset, artifacts: TrainedArtifacts) -> float:
    """The trained two-stage pipeline's NDCG@10 on the validation items of ``dataset``'s
    leave-one-out split, computed as :func:`~magpie.learning.train.train_ranker` validates
    (its last validation matches this when the returned ranker is the last one validated)."""
    from magpie.learning.protocol import leave_one_out, stage_inputs
    from magpie.learning.train import pipeline_valid_ndcg, valid_first_stage

    split = leave_one_out(dataset, artifacts.vocab)
    valid = stage_inputs(split, "valid", artifacts.ranker.config.max_len)
    return pipeline_valid_ndcg(
        valid,
        valid_first_stage(artifacts.retrieval, valid),
        artifacts.ranker,
        artifacts.covisitation,
        artifacts.config.candidates,
    )


class _Prune(Exception):
    """Raised from the training progress callback to stop a trial the pruner gave up on."""


def _objective(
    trial: optuna.Trial,
    dataset: Dataset,
    base: PipelineConfig,
    text_table: NDArray[Any] | None,
    space: Sequence[Parameter],
) -> float:
    import optuna

    from magpie.learning.train import pipeline_config, train_pipeline

    trial.set_user_attr(WORKER_ATTR, f"{socket.gethostname()}:{os.getpid()}")
    measures_defaults = bool(trial.user_attrs.get(DEFAULTS_ATTR))
    if measures_defaults:
        fixed = defaults_params(base, space)
        suggest(trial, [p for p in space if p.name in fixed])  # records them, = base
        config = base
    else:
        config = pipeline_config(suggest(trial, space), base)
    retrieval_epochs = config.retrieval.epochs

    def progress(model: str, epochs_done: int, epochs_total: int, valid_ndcg10: float) -> None:
        # One step axis for both models: retrieval's epochs, then the ranker's.
        step = epochs_done if model == "retrieval" else retrieval_epochs + epochs_done
        trial.report(valid_ndcg10, step)
        if not measures_defaults and trial.should_prune():
            raise _Prune(f"{model} epoch {epochs_done}: valid NDCG@10 {valid_ndcg10:.4f}")

    try:
        artifacts = train_pipeline(dataset, config, text_table, progress)
    except _Prune as pruned:
        logger.info("trial %s pruned at %s", trial.number, pruned)
        raise optuna.TrialPruned(str(pruned)) from None
    value = validation_ndcg10(dataset, artifacts)
    logger.info(
        "trial %s%s: valid NDCG@10 %.4f",
        trial.number,
        " (defaults)" if measures_defaults else "",
        value,
    )
    return value


@dataclass(frozen=True, slots=True)
class TrialRow:
    number: int
    state: str
    """COMPLETE, PRUNED, FAIL, RUNNING or WAITING."""
    value: float | None
    params: dict[str, Any]
    defaults: bool
    seconds: float | None


@dataclass(frozen=True, slots=True)
class TuneResult:
    study: str
    best_params: dict[str, Any]
    """Nested pipeline settings of the best trial ({} when no trial finished)."""
    best_value: float | None
    """The best trial's validation NDCG@10."""
    baseline: float | None
    """The defaults' validation NDCG@10; None while their trial has not finished."""
    trials: int
    """Finished (complete or pruned) trials in the whole study, every worker's."""
    recorded: bool
    """Whether the best was recorded in ``tuned_parameters`` (it beats the baseline)."""
    history: tuple[TrialRow, ...] = ()

    @property
    def improvement(self) -> float | None:
        if self.best_value is None or self.baseline is None:
            return None
        return self.best_value - self.baseline


def record_parameters(
    conn: Connection,
    model_name: str,
    study: str,
    params: Mapping[str, Any],
    value: float,
    baseline: float,
    trials: int,
) -> None:
    """Stores a study's outcome; :func:`proven_parameters` only returns it if it won."""
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO tuned_parameters (model_name, study, params, value, baseline, trials)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            (model_name, study, json.dumps(params), value, baseline, trials),
        )


def proven_parameters(conn: Connection, model_name: str) -> dict[str, Any]:
    """The newest tuned pipeline settings that beat the defaults on validation ({} if none)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT params FROM tuned_parameters WHERE model_name = %s AND value > baseline"
            " ORDER BY created_at DESC, id DESC LIMIT 1",
            (model_name,),
        )
        row = cur.fetchone()
    return dict(row[0]) if row else {}


def _result(study: optuna.Study, space: Sequence[Parameter], recorded: bool) -> TuneResult:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state is TrialState.COMPLETE and t.value is not None]
    baselines = [t.value for t in complete if t.user_attrs.get(DEFAULTS_ATTR)]
    best = max(complete, key=lambda t: (t.value, -t.number), default=None)
    history = tuple(
        TrialRow(
            number=t.number,
            state=t.state.name,
            value=t.value,
            params=dict(t.params),
            defaults=bool(t.user_attrs.get(DEFAULTS_ATTR)),
            seconds=t.duration.total_seconds() if t.duration is not None else None,
        )
        for t in sorted(trials, key=lambda t: t.number)
    )
    return TuneResult(
        study=study.study_name,
        best_params=settings_for(best.params, space) if best else {},
        best_value=best.value if best else None,
        baseline=max(v for v in baselines if v is not None) if baselines else None,
        trials=sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials),
        recorded=recorded,
        history=history,
    )


def tune(
    settings: Settings,
    dataset: Dataset,
    *,
    trials: int,
    timeout_seconds: float | None,
    study_name: str,
    base: PipelineConfig | None = None,
    seed: int | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
    space: Sequence[Parameter] = SEARCH_SPACE,
) -> TuneResult:
    """Runs up to ``trials`` trials of the study ``study_name`` in this process (the first
    trial of a new study measures ``base``, default the defaults), starting none after
    ``timeout_seconds`` (a running trial finishes; training's ``max_seconds`` bound it).
    Records the study's best in ``tuned_parameters`` for ``settings.model_name`` when it
    beats the defaults. ``seed`` seeds the sampler; ``pruner`` defaults to
    :func:`default_pruner`.
    """
    import optuna

    from magpie.learning.sequences import build_vocab
    from magpie.learning.text import item_text_table
    from magpie.learning.train import PipelineConfig
    from magpie.modelstore.lifecycle import connection

    base = base or PipelineConfig()
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with open_study(
            settings,
            study_name,
            base=base,
            dataset_name=dataset.name,
            seed=seed,
            pruner=pruner,
            space=space,
        ) as study:
            text_table = (
                item_text_table(build_vocab(dataset.items), dataset.items, base.text)
                if base.use_text
                else None
            )
            logger.info(
                "study %s: up to %s trials, %s s, %s trials so far",
                study_name,
                trials,
                timeout_seconds,
                len(study.get_trials(deepcopy=False)),
            )
            study.optimize(
                lambda trial: _objective(trial, dataset, base, text_table, space),
                n_trials=trials,
                timeout=timeout_seconds,
                gc_after_trial=True,
            )
            result = _result(study, space, recorded=False)
    finally:
        optuna.logging.set_verbosity(verbosity)
    if (
        result.best_value is not None
        and result.baseline is not None
        and result.best_value > result.baseline
    ):
        with connection(settings) as conn:
            record_parameters(
                conn,
                settings.model_name,
                study_name,
                result.best_params,
                result.best_value,
                result.baseline,
                result.trials,
            )
        result = dataclasses.replace(result, recorded=True)
        logger.info(
            "study %s: recorded %s (valid NDCG@10 %.4f, defaults %.4f)",
            study_name,
            result.best_params,
            result.best_value,
            result.baseline,
        )
    return result


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def format_trials(result: TuneResult) -> str:
    """The study's trials as a table a person reads."""
    header = f"{'trial':>5}  {'state':<8}  {'valid NDCG@10':>13}  {'seconds':>8}  parameters"
    lines = [header, "-" * len(header)]
    for row in result.history:
        params = " ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.params.items()
        )
        if row.defaults:
            params = "defaults" + (f" ({params})" if params else "")
        lines.append(
            f"{row.number:>5}  {row.state:<8}  {_number(row.value, 4):>13}  "
            f"{_number(row.seconds, 1):>8}  {params}"
        )
    return "\n".join(lines)


def outcome(result: TuneResult) -> str:
    """One line: whether the best was recorded, and by how much it beats the defaults."""
    if result.recorded and result.improvement is not None:
        return (
            f"recorded: beats the defaults by {result.improvement:.4f} valid NDCG@10 "
            f"({result.best_value:.4f} vs {result.baseline:.4f}); "
            f"the next retraining run starts from {json.dumps(result.best_params)}"
        )
    if result.baseline is None:
        return "not recorded: the defaults' trial has not finished (another worker runs it?)"
    return (
        f"not recorded: the defaults are as good (valid NDCG@10 {result.baseline:.4f}, "
        f"best trial {_number(result.best_value, 4)})"
    )


def _run_tune(args: argparse.Namespace) -> int:
    from magpie.learning.cli import load_dataset, pipeline_from_args
    from magpie.runtime.settings import load_settings

    settings = load_settings()
    base = pipeline_from_args(args)
    dataset = load_dataset(args.dataset, settings.database_url)
    result = tune(
        settings,
        dataset,
        trials=args.trials,
        timeout_seconds=args.timeout,
        study_name=args.study or f"{settings.model_name}-{args.dataset}",
        base=base,
        seed=args.sampler_seed,
    )
    print(format_trials(result))
    print(outcome(result))
    return 0


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Registers ``magpie tune``."""
    from magpie.learning.cli import add_training_options

    command = subparsers.add_parser(
        "tune",
        help="search hyper-parameters on the validation split; keep them if they beat the defaults",
        description="An Optuna study over the declared search space, stored in "
        "MAGPIE_DATABASE_URL: the first trial measures the base configuration (defaults or "
        "--config), the others are drawn by TPE and pruned by the median rule. The best "
        "is recorded for MAGPIE_MODEL_NAME, and used by the next retraining run, only if "
        "it beats the base on validation NDCG@10. Workers given the same --study share it.",
    )
    add_training_options(command)
    command.add_argument(
        "--dataset",
        default="movielens",
        help="movielens (default), synthetic-PRESET (e.g. synthetic-tiny), or stored",
    )
    command.add_argument(
        "--trials", type=int, default=20, help="trials this process runs (default 20)"
    )
    command.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds after which this process starts no new trial (default: none)",
    )
    command.add_argument(
        "--study", default=None, help="study name (default: MODEL_NAME-DATASET); shared by name"
    )
    command.add_argument(
        "--sampler-seed",
        type=int,
        default=None,
        help="seed of the sampler (--seed seeds training); differ per worker of one study",
    )
    command.set_defaults(handler=_run_tune)
