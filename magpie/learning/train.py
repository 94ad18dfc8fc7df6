"""Training: the retrieval model, the ranker on top of it, and BPR, with model selection
on the validation items of the leave-one-out split.

Library entry point for retraining workers: :func:`train_pipeline`.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from magpie.contract.covisitation import FEATURE_RECENT, Covisitation
from magpie.contract.inputs import context_vector, pad_left
from magpie.contract.signature import CANDIDATE_FEATURE_DIM, CONTEXT_DIM, FIRST_ITEM_INDEX
from magpie.datasets.schema import Dataset
from magpie.learning.baselines import BPR, BPRConfig
from magpie.learning.metrics import ndcg, target_ranks
from magpie.learning.protocol import LeaveOneOut, StageInputs, mask_seen, stage_inputs, two_stage
from magpie.learning.ranker_model import Ranker, RankerConfig
from magpie.learning.retrieval_model import RetrievalConfig, RetrievalModel
from magpie.learning.sequences import ItemVocab
from magpie.learning.text import TextConfig

__all__ = [
    "PipelineConfig",
    "Progress",
    "RankerInputs",
    "TrainedArtifacts",
    "TrainingSequences",
    "batched_rerank",
    "pipeline_config",
    "pipeline_valid_ndcg",
    "seed_everything",
    "torch_scores",
    "train_bpr",
    "train_pipeline",
    "train_ranker",
    "train_retrieval",
    "training_sequences",
    "valid_first_stage",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    ranker: RankerConfig = field(default_factory=RankerConfig)
    text: TextConfig = field(default_factory=TextConfig)
    use_text: bool = True
    """Overrides ``use_text`` of both models (the "notext" ablation sets it False)."""
    candidates: int = 200
    """How many retrieval results the ranker reorders."""
    seed: int = 0


def pipeline_config(
    values: Mapping[str, Any], base: PipelineConfig | None = None
) -> PipelineConfig:
    """``base`` (default: the defaults) with the fields in ``values`` replaced: plain,
    JSON-like values, nested per model (``{"ranker": {"epochs": 2}, "seed": 1}``).

    Raises ``ValueError`` naming a key that is no field, or a value of the wrong type.
    """
    config: PipelineConfig = _replaced(base or PipelineConfig(), values, "")
    return config


def _replaced(config: Any, values: Mapping[str, Any], path: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(config)}
    changes: dict[str, Any] = {}
    for key, value in values.items():
        if key not in fields:
            raise ValueError(f"{path}{key}: no such setting; known: {', '.join(sorted(fields))}")
        current = getattr(config, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, Mapping):
                raise ValueError(f"{path}{key}: expected an object")
            changes[key] = _replaced(current, value, f"{path}{key}.")
        elif isinstance(current, bool) or not isinstance(current, int | float):
            if not isinstance(value, type(current)):
                raise ValueError(f"{path}{key}: expected {type(current).__name__}")
            changes[key] = value
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{path}{key}: expected a number")
        elif isinstance(current, int) and not float(value).is_integer():
            raise ValueError(f"{path}{key}: expected an integer")
        else:
            changes[key] = type(current)(value)
    return dataclasses.replace(config, **changes)


@dataclass(slots=True)
class TrainedArtifacts:
    vocab: ItemVocab
    retrieval: RetrievalModel
    ranker: Ranker
    covisitation: Covisitation
    """Over the whole training part: what serving computes the ranker's features with."""
    config: PipelineConfig
    seconds: dict[str, float]
    """Training wall time per model."""


@dataclass(frozen=True, slots=True)
class TrainingSequences:
    """Next-item training data: ``targets[:, t]`` follows ``inputs[:, :t+1]``."""

    inputs: NDArray[Any]
    """int64 [users, max_len], left-padded."""
    targets: NDArray[Any]
    contexts: NDArray[Any]
    """float32 [users, max_len, CONTEXT_DIM]: the request context of each target."""
    lengths: NDArray[Any]

    def batches(self, batch_size: int, rng: np.random.Generator) -> Iterator[NDArray[Any]]:
        """Row indices of similar-length users, batches in random order (less padding)."""
        order = np.argsort(self.lengths + rng.random(len(self.lengths)), kind="stable")
        chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        for chunk in rng.permutation(len(chunks)):
            yield chunks[chunk]

    def take(self, rows: NDArray[Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Inputs, targets and contexts of ``rows``, trimmed to their longest sequence."""
        width = max(int(self.lengths[rows].max()), 1)
        return (
            torch.from_numpy(self.inputs[rows, -width:]),
            torch.from_numpy(self.targets[rows, -width:]),
            torch.from_numpy(self.contexts[rows, -width:]),
        )


def training_sequences(split: LeaveOneOut, max_len: int) -> TrainingSequences:
    data = split.train_sequences()
    contexts = np.zeros((len(data), max_len, CONTEXT_DIM), dtype=np.float32)
    for row, (items, times) in enumerate(data):
        tail = range(max(1, len(items) - max_len), len(items))
        for column, t in enumerate(tail, start=max_len - len(tail)):
            contexts[row, column] = context_vector(times[t], times[t - 1])
    return TrainingSequences(
        inputs=pad_left([items[:-1] for items, _ in data], max_len),
        targets=pad_left([items[1:] for items, _ in data], max_len),
        contexts=contexts,
        lengths=np.array([min(max(len(items) - 1, 0), max_len) for items, _ in data]),
    )


def seed_everything(seed: int) -> np.random.Generator:
    random.seed(seed)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


class _Schedule(Protocol):
    @property
    def epochs(self) -> int: ...
    @property
    def lr(self) -> float: ...
    @property
    def weight_decay(self) -> float: ...
    @property
    def eval_every(self) -> int: ...
    @property
    def patience(self) -> int: ...
    @property
    def max_seconds(self) -> float: ...
    @property
    def average_tail(self) -> float: ...


Progress = Callable[[str, int, int, float], None]
"""Called after each validation: model name, epochs done, epochs planned, valid NDCG@10."""


def _fit(
    name: str,
    model: nn.Module,
    schedule: _Schedule,
    epoch_losses: Callable[[], Iterator[torch.Tensor]],
    validate: Callable[[], float],
    progress: Progress | None = None,
) -> float:
    """Adam, learning rate decaying linearly to zero over ``schedule.epochs``; validation
    every ``schedule.eval_every`` epochs (and after the last, or when out of time) feeds the
    result's selection:

    * ``schedule.average_tail`` 0: the checkpoint with the best ``validate`` (higher is
      better), with early stopping (:class:`_BestCheckpoint`);
    * otherwise every epoch runs and the result is the mean of the weights at each
      validation in that final share of the schedule (:class:`_TailAverage`).

    Returns the wall time in seconds.
    """
    from tqdm import tqdm

    optimizer = torch.optim.Adam(
        [p for p in model.parameters() if p.requires_grad],
        lr=schedule.lr,
        weight_decay=schedule.weight_decay,
    )
    decay = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda epoch: 1.0 - epoch / schedule.epochs
    )
    start = time.perf_counter()
    model.eval()
    with torch.no_grad():
        start_metric = validate()  # a warm-started model must beat where it started
    selection: _Selection = (
        _TailAverage(name, model, schedule, start_metric)
        if schedule.average_tail > 0
        else _BestCheckpoint(model, schedule, start_metric)
    )
    bar = tqdm(range(schedule.epochs), desc=name, unit="epoch", leave=False)
    for epoch in bar:
        model.train()
        for loss in epoch_losses():
            optimizer.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
        decay.step()
        out_of_time = time.perf_counter() - start > schedule.max_seconds
        last = epoch + 1 == schedule.epochs
        if (epoch + 1) % schedule.eval_every and not (out_of_time or last):
            continue
        model.eval()
        with torch.no_grad():
            metric = validate()
        keep_going = selection.observe(epoch + 1, metric)
        if progress is not None:
            progress(name, epoch + 1, schedule.epochs, metric)
        bar.set_postfix(valid_ndcg10=f"{metric:.4f}", best=f"{selection.best:.4f}")
        logger.info(
            "%s epoch %s: valid NDCG@10 %.4f (best %.4f)", name, epoch + 1, metric, selection.best
        )
        if out_of_time or not keep_going:
            break
    selection.finish(validate)
    model.eval()
    return time.perf_counter() - start


class _Selection(Protocol):
    """How :func:`_fit` turns the validated epochs into the model it returns."""

    @property
    def best(self) -> float:
        """The best validation metric so far (the starting model's included)."""
        ...

    def observe(self, epochs_done: int, metric: float) -> bool:
        """Records a validation after ``epochs_done`` epochs; False to stop training."""
        ...

    def finish(self, validate: Callable[[], float]) -> None:
        """Leaves the model holding the result."""
        ...


class _BestCheckpoint:
    """The checkpoint with the best validation metric; stops after ``patience`` validations
    without improvement."""

    def __init__(self, model: nn.Module, schedule: _Schedule, start_metric: float) -> None:
        self._model = model
        self._patience = schedule.patience
        self.best = start_metric
        self._state = copy.deepcopy(model.state_dict())
        self._stale = 0

    def observe(self, epochs_done: int, metric: float) -> bool:
        if metric > self.best:
            self.best, self._stale = metric, 0
            self._state = copy.deepcopy(self._model.state_dict())
        else:
            self._stale += 1
        return self._stale < self._patience

    def finish(self, validate: Callable[[], float]) -> None:
        self._model.load_state_dict(self._state)


class _TailAverage:
    """The mean of the weights at every validation in the final ``average_tail`` share of the
    epochs (weight averaging over the decaying tail: on MovieLens one validation user set
    moves NDCG@10 by more than the gaps between checkpoints, so picking one checkpoint by
    it is noisy). Never stops early; validation only reports progress."""

    def __init__(
        self, name: str, model: nn.Module, schedule: _Schedule, start_metric: float
    ) -> None:
        self._name = name
        self._model = model
        self._average_from = schedule.epochs * (1.0 - schedule.average_tail)
        self._average = _WeightAverage()
        self.best = start_metric

    def observe(self, epochs_done: int, metric: float) -> bool:
        if epochs_done >= self._average_from:
            self._average.add(self._model.state_dict())
        self.best = max(self.best, metric)
        return True

    def finish(self, validate: Callable[[], float]) -> None:
        self._model.load_state_dict(self._average.state or self._model.state_dict())
        self._model.eval()
        with torch.no_grad():
            logger.info(
                "%s: averaged %d checkpoints, valid NDCG@10 %.4f",
                self._name,
                self._average.count,
                validate(),
            )


class _WeightAverage:
    """Running mean of state dicts (floating-point entries; others keep the latest)."""

    def __init__(self) -> None:
        self.state: dict[str, torch.Tensor] | None = None
        self.count = 0

    def add(self, state: dict[str, torch.Tensor]) -> None:
        self.count += 1
        if self.state is None:
            self.state = copy.deepcopy(state)
            return
        for key, value in state.items():
            if value.is_floating_point():
                self.state[key] += (value - self.state[key]) / self.count
            else:
                self.state[key] = value.clone()


def _valid_ndcg(split: LeaveOneOut, scores: NDArray[Any]) -> float:
    inputs = stage_inputs(split, "valid", 1)
    return ndcg(target_ranks(mask_seen(scores, inputs.histories), inputs.targets), 10)


def _tensors(
    split: LeaveOneOut, text_table: NDArray[Any] | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    category = torch.from_numpy(split.vocab.item_category)
    return category, torch.from_numpy(text_table) if text_table is not None else None


def train_retrieval(
    split: LeaveOneOut,
    text_table: NDArray[Any] | None,
    config: RetrievalConfig,
    seed: int = 0,
    progress: Progress | None = None,
) -> tuple[RetrievalModel, float]:
    """The retrieval model (best validation NDCG@10) and its training seconds."""
    rng = seed_everything(seed)
    model = RetrievalModel(config, *_tensors(split, text_table))
    data = training_sequences(split, config.max_len)
    valid = stage_inputs(split, "valid", config.max_len)

    def losses() -> Iterator[torch.Tensor]:
        for rows in data.batches(config.batch_size, rng):
            inputs, targets, _ = data.take(rows)
            yield model.loss(inputs, targets)

    seconds = _fit(
        "retrieval",
        model,
        config,
        losses,
        lambda: _valid_ndcg(split, model.score_all(valid.history_ids)),
        progress,
    )
    return model, seconds


FEATURE_FOLDS = 5
"""Training users are split this many ways for their co-visitation features (see
:class:`_FoldFeatures`)."""


class _FoldFeatures:
    """Out-of-fold co-visitation features for training.

    Lists built over all training sequences would contain each training target's own
    co-visitation with its history, a signal a validation or test item never has; so a
    training user's features come from lists built without that user's fold.
    """

    def __init__(self, sequences: list[tuple[int, ...]], vocab_size: int) -> None:
        self.fold = np.arange(len(sequences)) % FEATURE_FOLDS
        self.lists = [
            Covisitation.from_sequences(
                [s for s, f in zip(sequences, self.fold, strict=True) if f != k], vocab_size
            )
            for k in range(FEATURE_FOLDS)
        ]

    def at_positions(
        self,
        rows: NDArray[Any],
        inputs: torch.Tensor,
        positions: torch.Tensor,
        candidates: torch.Tensor,
    ) -> torch.Tensor:
        """[B, S, C, F]: features of candidates [B, S, C] after ``inputs[b, :position+1]``."""
        b, s, c = candidates.shape
        back = positions.unsqueeze(-1) - torch.arange(FEATURE_RECENT - 1, -1, -1)
        gathered = torch.gather(inputs.unsqueeze(1).expand(b, s, -1), 2, back.clamp(min=0))
        recent = (gathered * (back >= 0)).numpy()
        out = np.empty((b, s, c, CANDIDATE_FEATURE_DIM), np.float32)
        folds = self.fold[rows]
        for k in np.unique(folds):
            mine = folds == k
            found = self.lists[k].features(
                recent[mine].reshape(-1, FEATURE_RECENT), candidates[mine].reshape(-1, c).numpy()
            )
            out[mine] = found.reshape(int(mine.sum()), s, c, CANDIDATE_FEATURE_DIM)
        return torch.from_numpy(out)


def _candidate_loss(
    ranker: Ranker,
    retrieval: RetrievalModel,
    features: _FoldFeatures,
    rows: NDArray[Any],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    contexts: torch.Tensor,
    rng: np.random.Generator,
) -> torch.Tensor:
    """Full-softmax loss of the ranker's user states plus a listwise loss at random target
    positions: the positive against negatives sampled from the retrieval top list."""
    config = ranker.config
    table = ranker.items.table()
    hidden = ranker.encode(ranker.items(inputs), inputs == 0)
    mask = targets != 0
    logits = hidden[mask] @ table.T
    logits[:, :FIRST_ITEM_INDEX] = -1e9
    full = nn.functional.cross_entropy(logits, targets[mask])

    b, length = inputs.shape
    valid_from = (length - mask.sum(1)).numpy()
    offsets = rng.random((b, config.positions)) * (length - valid_from[:, None])
    positions = torch.from_numpy(
        (valid_from[:, None] + offsets).astype(np.int64).clip(0, length - 1)
    )
    positives = torch.gather(targets, 1, positions)
    with torch.no_grad():
        states = torch.gather(
            retrieval.hidden(inputs), 1, positions.unsqueeze(-1).expand(-1, -1, hidden.shape[-1])
        )
        retrieval_scores = states @ retrieval.item_matrix().T
        retrieval_scores[..., :FIRST_ITEM_INDEX] = -1e9
        user_items = (
            torch.cat([inputs, targets], dim=1).unsqueeze(1).expand(-1, config.positions, -1)
        )
        retrieval_scores.scatter_(2, user_items, -1e9)
        pool = retrieval_scores.topk(config.negative_pool, dim=-1).indices
        pick = torch.from_numpy(rng.random(pool.shape)).argsort(dim=-1)[..., : config.negatives]
        negatives = torch.gather(pool, 2, pick)
    candidates = torch.cat([positives.unsqueeze(-1), negatives], dim=-1)
    visible = (torch.arange(length)[None, None, :] <= positions.unsqueeze(-1)) & ~(
        inputs == 0
    ).unsqueeze(1)
    context = torch.gather(contexts, 1, positions.unsqueeze(-1).expand(-1, -1, CONTEXT_DIM))
    scores = ranker.score(
        hidden,
        visible,
        positions,
        table[candidates],
        context,
        features.at_positions(rows, inputs, positions, candidates),
    )
    listwise = nn.functional.cross_entropy(
        scores.reshape(-1, scores.shape[-1]),
        torch.zeros(scores.numel() // scores.shape[-1], dtype=torch.long),
    )
    return full + listwise


RankerInputs = tuple[NDArray[Any], NDArray[Any], NDArray[Any], NDArray[Any]]
"""history_ids, candidate_ids, context, candidate_features: the exported ranker's inputs."""


def batched_rerank(
    score: Callable[[RankerInputs], NDArray[Any]],
    covisitation: Covisitation,
    history_ids: NDArray[Any],
    contexts: NDArray[Any],
    batch_size: int = 64,
) -> Callable[[NDArray[Any]], NDArray[Any]]:
    """A ``rerank`` callback for :func:`~magpie.learning.protocol.two_stage` from a ranker
    ``score`` function (torch or ONNX), in batches of users."""

    def rerank(candidates: NDArray[Any]) -> NDArray[Any]:
        out = []
        for start in range(0, len(candidates), batch_size):
            rows = slice(start, start + batch_size)
            history = history_ids[rows]
            features = covisitation.features(history, candidates[rows])
            out.append(score((history, candidates[rows], contexts[rows], features)))
        return np.concatenate(out)

    return rerank


def torch_scores(ranker: Ranker) -> Callable[[RankerInputs], NDArray[Any]]:
    """The torch ranker as a ``score`` function of numpy inputs (eval mode, no grad)."""

    @torch.no_grad()
    def score(inputs: RankerInputs) -> NDArray[Any]:
        ranker.eval()
        scores: NDArray[Any] = ranker(*(torch.from_numpy(a) for a in inputs)).numpy()
        return scores

    return score


def valid_first_stage(retrieval: RetrievalModel, valid: StageInputs) -> NDArray[Any]:
    """Retrieval's full-ranking scores for the validation targets, histories masked."""
    history = pad_left(valid.histories, retrieval.config.max_len)
    return mask_seen(retrieval.score_all(history), valid.histories)


def pipeline_valid_ndcg(
    valid: StageInputs,
    first_stage: NDArray[Any],
    ranker: Ranker,
    covisitation: Covisitation,
    candidates: int,
) -> float:
    """Validation NDCG@10 of the two-stage pipeline: ``ranker`` reorders the top
    ``candidates`` of ``first_stage`` (:func:`valid_first_stage`)."""
    rerank = batched_rerank(torch_scores(ranker), covisitation, valid.history_ids, valid.contexts)
    return ndcg(target_ranks(two_stage(first_stage, rerank, candidates), valid.targets), 10)


def train_ranker(
    split: LeaveOneOut,
    text_table: NDArray[Any] | None,
    retrieval: RetrievalModel,
    config: RankerConfig,
    candidates: int = 200,
    seed: int = 0,
    progress: Progress | None = None,
) -> tuple[Ranker, Covisitation, float]:
    """The ranker, selected by validation NDCG@10 of the two-stage ranking, the
    co-visitation lists its features come from, and its training seconds."""
    rng = seed_everything(seed)
    ranker = Ranker(config, *_tensors(split, text_table))
    if config.warm_start:
        ranker.items.load_state_dict(retrieval.items.state_dict())
        encoder = retrieval.encoder.state_dict()
        encoder["positions.weight"] = encoder["positions.weight"][-config.max_len :]
        ranker.encoder.load_state_dict(encoder)
    retrieval.eval()
    data = training_sequences(split, config.max_len)
    sequences = [items for items, _ in split.train_sequences()]
    fold_features = _FoldFeatures(sequences, split.vocab.size)
    covisitation = Covisitation.from_sequences(sequences, split.vocab.size)
    valid = stage_inputs(split, "valid", config.max_len)
    first_stage = valid_first_stage(retrieval, valid)

    def losses() -> Iterator[torch.Tensor]:
        for rows in data.batches(config.batch_size, rng):
            yield _candidate_loss(ranker, retrieval, fold_features, rows, *data.take(rows), rng)

    def validate() -> float:
        return pipeline_valid_ndcg(valid, first_stage, ranker, covisitation, candidates)

    seconds = _fit("ranker", ranker, config, losses, validate, progress)
    return ranker, covisitation, seconds


def train_bpr(split: LeaveOneOut, config: BPRConfig, seed: int = 0) -> tuple[BPR, float]:
    rng = seed_everything(seed)
    sequences = split.train_sequences()
    model = BPR(config, len(sequences), split.vocab.size)
    pairs = np.array(
        [(row, item) for row, (items, _) in enumerate(sequences) for item in items], dtype=np.int64
    )
    seconds = _fit(
        "bpr",
        model,
        config,
        lambda: model.epoch_losses(pairs, rng, FIRST_ITEM_INDEX),
        lambda: _valid_ndcg(split, model.score_all(len(split.users))),
    )
    return model, seconds


def train_pipeline(
    dataset: Dataset,
    config: PipelineConfig,
    text_table: NDArray[Any] | None = None,
    progress: Progress | None = None,
) -> TrainedArtifacts:
    """Retrieval then ranker on ``dataset``'s leave-one-out training part.

    ``text_table`` (from :func:`magpie.learning.text.item_text_table`) is computed
    when ``config.use_text`` and it is not given.
    """
    from dataclasses import replace

    from magpie.learning.protocol import leave_one_out
    from magpie.learning.sequences import build_vocab
    from magpie.learning.text import item_text_table

    vocab = build_vocab(dataset.items)
    split = leave_one_out(dataset, vocab)
    if config.use_text and text_table is None:
        text_table = item_text_table(vocab, dataset.items, config.text)
    table = text_table if config.use_text else None
    retrieval, retrieval_seconds = train_retrieval(
        split, table, replace(config.retrieval, use_text=config.use_text), config.seed, progress
    )
    ranker, covisitation, ranker_seconds = train_ranker(
        split,
        table,
        retrieval,
        replace(config.ranker, use_text=config.use_text),
        config.candidates,
        config.seed,
        progress,
    )
    seconds = {"retrieval": retrieval_seconds, "ranker": ranker_seconds}
    return TrainedArtifacts(vocab, retrieval, ranker, covisitation, config, seconds)
