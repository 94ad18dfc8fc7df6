"""The fixed leave-one-out protocol every ``magpie eval`` row is measured with.

* Every interaction (on MovieLens every rating) counts as one implicit interaction.
* Per user, interactions are ordered by timestamp; ties keep the data set's row order.
* The last interaction is the test item, the one before it the validation item, the rest
  is training data. Users with fewer than three interactions only contribute training data.
* The validation item is used for early stopping and model selection only.
* A test item is ranked against all items except those the user interacted with before it
  (training and validation items are masked): full ranking, no sampled negatives.
* Cold items: a test item is cold when it has at most ``COLD_MAX_TRAIN_INTERACTIONS``
  interactions in the training data (all users' training parts).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from magpie.contract.inputs import context_vector, pad_left
from magpie.contract.signature import FIRST_ITEM_INDEX
from magpie.datasets.schema import Dataset, Interaction
from magpie.learning.metrics import top_k
from magpie.learning.sequences import ItemVocab

__all__ = [
    "COLD_MAX_TRAIN_INTERACTIONS",
    "PROTOCOL",
    "LeaveOneOut",
    "StageInputs",
    "UserSplit",
    "leave_one_out",
    "mask_seen",
    "stage_inputs",
    "two_stage",
]

COLD_MAX_TRAIN_INTERACTIONS = 10

PROTOCOL = (
    "Leave-one-out on implicit interactions (every rating counts). Per user, interactions "
    "sorted by timestamp, ties keep file order; last = test, second to last = validation "
    "(early stopping / model selection only), rest = training. Each test item is ranked "
    "against all items except those the user interacted with before it (train and "
    "validation items masked); full ranking, no sampled negatives; ties between scores "
    "break by catalog order. Metrics are means over users with >= 3 interactions. "
    f"Cold items: test items with <= {COLD_MAX_TRAIN_INTERACTIONS} training interactions; "
    "cold_* metrics average over the users whose test item is cold; cold_median_rank is "
    "the median 1-based full-ranking position of their test items (lower is better). "
    "coverage@10 = distinct "
    "items in all users' top-10 / catalog size. Two-stage rows: the ranker reorders the "
    "retrieval top-N and the other items follow in retrieval order."
)


@dataclass(frozen=True, slots=True)
class UserSplit:
    user_id: str
    items: tuple[int, ...]
    """Vocabulary indices of all the user's interactions, in protocol order."""
    timestamps: tuple[float, ...]

    @property
    def train(self) -> tuple[int, ...]:
        return self.items[:-2]

    @property
    def valid(self) -> int:
        return self.items[-2]

    @property
    def test(self) -> int:
        return self.items[-1]

    def history(self, stage: str) -> tuple[int, ...]:
        """Items before the ``stage`` ("valid" or "test") target."""
        return self.items[:-2] if stage == "valid" else self.items[:-1]

    def target(self, stage: str) -> int:
        return self.valid if stage == "valid" else self.test


@dataclass(frozen=True, slots=True)
class LeaveOneOut:
    vocab: ItemVocab
    users: tuple[UserSplit, ...]
    """Users with at least three interactions: they are evaluated."""
    train_only: tuple[UserSplit, ...]
    """Users too short to evaluate: all their interactions are training data."""

    def train_sequences(self) -> list[tuple[tuple[int, ...], tuple[float, ...]]]:
        """Every user's training items with their timestamps."""
        return [(u.train, u.timestamps[:-2]) for u in self.users] + [
            (u.items, u.timestamps) for u in self.train_only
        ]

    def train_counts(self) -> NDArray[Any]:
        """int64 [vocab.size]: interactions per item in the training data."""
        counts = np.zeros(self.vocab.size, dtype=np.int64)
        for sequence, _ in self.train_sequences():
            np.add.at(counts, np.asarray(sequence, dtype=np.int64), 1)
        return counts

    def cold_mask(self, stage: str) -> NDArray[Any]:
        """bool [len(users)]: whether each user's ``stage`` target is a cold item."""
        targets = np.array([u.target(stage) for u in self.users], dtype=np.int64)
        return self.train_counts()[targets] <= COLD_MAX_TRAIN_INTERACTIONS


def leave_one_out(dataset: Dataset, vocab: ItemVocab) -> LeaveOneOut:
    by_user: dict[str, list[Interaction]] = defaultdict(list)
    for interaction in dataset.interactions:
        by_user[interaction.user_id].append(interaction)
    users: list[UserSplit] = []
    short: list[UserSplit] = []
    for user_id, events in by_user.items():
        ordered: Sequence[Interaction] = sorted(events, key=lambda e: e.timestamp)  # stable
        split = UserSplit(
            user_id,
            tuple(vocab.index(e.item_id) for e in ordered),
            tuple(e.timestamp for e in ordered),
        )
        (users if len(ordered) >= 3 else short).append(split)
    return LeaveOneOut(vocab=vocab, users=tuple(users), train_only=tuple(short))


@dataclass(frozen=True, slots=True)
class StageInputs:
    """What a model sees when ranking the ``stage`` target of every evaluated user."""

    histories: list[tuple[int, ...]]
    history_ids: NDArray[Any]
    """int64 [users, max_len], left-padded."""
    contexts: NDArray[Any]
    """float32 [users, CONTEXT_DIM]: the request happens at the target's timestamp."""
    targets: NDArray[Any]


def stage_inputs(split: LeaveOneOut, stage: str, max_len: int) -> StageInputs:
    histories = [u.history(stage) for u in split.users]
    offset = 2 if stage == "valid" else 1
    contexts = np.stack(
        [context_vector(u.timestamps[-offset], u.timestamps[-offset - 1]) for u in split.users]
    )
    return StageInputs(
        histories=histories,
        history_ids=pad_left(histories, max_len),
        contexts=contexts,
        targets=np.array([u.target(stage) for u in split.users], dtype=np.int64),
    )


def mask_seen(scores: NDArray[Any], histories: Sequence[Sequence[int]]) -> NDArray[Any]:
    """A copy of ``scores`` with reserved indices and each user's history at -inf."""
    masked = scores.astype(np.float64)
    masked[:, :FIRST_ITEM_INDEX] = -np.inf
    for row, history in enumerate(histories):
        masked[row, list(history)] = -np.inf
    return masked


def two_stage(
    first_stage: NDArray[Any], rerank: Callable[[NDArray[Any]], NDArray[Any]], n: int
) -> NDArray[Any]:
    """Full-ranking scores: ``rerank`` orders the masked first stage's top ``n``.

    ``rerank`` takes candidate indices [users, n] and returns their scores [users, n];
    the other items follow in first-stage order. Ties keep first-stage order.
    """
    candidates = top_k(first_stage, n)
    order = np.argsort(-rerank(candidates), axis=1, kind="stable")
    finite = np.where(np.isfinite(first_stage), first_stage, -np.inf).max(axis=1, keepdims=True)
    combined = first_stage.copy()
    ranked = np.take_along_axis(candidates, order, axis=1)
    bonus = finite + 1.0 + np.arange(n, 0, -1, dtype=np.float64)[None, :]
    bonus = np.where(np.isfinite(np.take_along_axis(first_stage, ranked, axis=1)), bonus, -np.inf)
    np.put_along_axis(combined, ranked, bonus, axis=1)
    return combined
