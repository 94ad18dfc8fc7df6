"""Classic baselines: popularity, item-to-item co-visitation and BPR matrix factorization."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from magpie.contract.covisitation import covisitation_matrix

__all__ = ["BPR", "BPRConfig", "covisitation_matrix", "covisitation_scores", "popularity_scores"]


def popularity_scores(train_counts: NDArray[Any], users: int) -> NDArray[Any]:
    """float32 [users, vocab]: every user gets the training interaction counts."""
    return np.broadcast_to(train_counts.astype(np.float32), (users, len(train_counts))).copy()


def covisitation_scores(
    matrix: NDArray[Any], histories: Sequence[Sequence[int]], recent: int = 20, decay: float = 0.9
) -> NDArray[Any]:
    """float32 [users, vocab]: co-visitation rows of the ``recent`` last items, newer weigh more."""
    scores = np.zeros((len(histories), matrix.shape[0]), dtype=np.float32)
    for row, history in enumerate(histories):
        tail = list(history)[-recent:]
        weights = decay ** np.arange(len(tail) - 1, -1, -1, dtype=np.float32)
        scores[row] = weights @ matrix[tail]
    return scores


@dataclass(frozen=True, slots=True)
class BPRConfig:
    dim: int = 64
    epochs: int = 40
    batch_size: int = 2048
    lr: float = 1e-2
    weight_decay: float = 0.0
    l2: float = 1e-4
    """L2 penalty on the embeddings of each batch's triples."""
    eval_every: int = 4
    patience: int = 3
    max_seconds: float = 300.0
    average_tail: float = 0.0
    """0: the best validated checkpoint (see ``RetrievalConfig.average_tail``)."""


class BPR(nn.Module):
    """Matrix factorization trained on (user, positive, sampled negative) triples."""

    def __init__(self, config: BPRConfig, users: int, vocab_size: int) -> None:
        super().__init__()
        self.config = config
        self.users = nn.Embedding(users, config.dim)
        self.items = nn.Embedding(vocab_size, config.dim)
        nn.init.normal_(self.users.weight, std=0.1)
        nn.init.normal_(self.items.weight, std=0.1)

    def epoch_losses(
        self, pairs: NDArray[Any], rng: np.random.Generator, first_item: int
    ) -> Iterator[torch.Tensor]:
        """Losses over one shuffled pass of ``pairs`` [n, 2] (user row, item index)."""
        order = rng.permutation(len(pairs))
        for start in range(0, len(order), self.config.batch_size):
            batch = torch.from_numpy(pairs[order[start : start + self.config.batch_size]])
            negatives = torch.from_numpy(
                rng.integers(first_item, self.items.num_embeddings, len(batch))
            )
            u, i, j = self.users(batch[:, 0]), self.items(batch[:, 1]), self.items(negatives)
            margin = (u * (i - j)).sum(-1)
            penalty = (u.pow(2) + i.pow(2) + j.pow(2)).sum(-1).mean()
            yield -nn.functional.logsigmoid(margin).mean() + self.config.l2 * penalty

    @torch.no_grad()
    def score_all(self, user_rows: int) -> NDArray[Any]:
        """float32 [user_rows, vocab] for the first ``user_rows`` users."""
        return (self.users.weight[:user_rows] @ self.items.weight.T).numpy()
