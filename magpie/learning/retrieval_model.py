"""Retrieval: a SASRec-like causal transformer whose user vectors meet item vectors in a
dot product (the FAISS inner-product index holds :meth:`RetrievalModel.item_matrix`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from magpie.contract.signature import FIRST_ITEM_INDEX, USER_TOWER_HISTORY_LEN
from magpie.learning.layers import ItemEncoder, SequenceEncoder

__all__ = ["RetrievalConfig", "RetrievalModel"]


@dataclass(frozen=True, slots=True)
class RetrievalConfig:
    dim: int = 64
    layers: int = 2
    heads: int = 2
    max_len: int = USER_TOWER_HISTORY_LEN
    dropout: float = 0.3
    id_dropout: float = 0.1
    use_text: bool = True
    epochs: int = 30
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.0
    eval_every: int = 3
    """Epochs between validation runs (model selection and early stopping)."""
    patience: int = 3
    """Validation runs without improvement before stopping."""
    max_seconds: float = 900.0
    """Safety limit on wall-clock training time; the best model so far is kept."""
    average_tail: float = 0.6
    """The model is the mean of the weights at every validation in this final share of
    the epochs (``train._fit``); 0 keeps the best validated checkpoint and stops early."""


class RetrievalModel(nn.Module):
    def __init__(
        self, config: RetrievalConfig, item_category: torch.Tensor, text_table: torch.Tensor | None
    ) -> None:
        super().__init__()
        self.config = config
        self.items = ItemEncoder(
            config.dim, item_category, text_table if config.use_text else None, config.id_dropout
        )
        self.encoder = SequenceEncoder(
            config.dim, config.layers, config.heads, config.max_len, config.dropout
        )

    def hidden(self, history_ids: torch.Tensor) -> torch.Tensor:
        """[B, L, dim]: position t is the user vector after the first t+1 items."""
        hidden: torch.Tensor = self.encoder(self.items(history_ids), history_ids == 0)
        return hidden

    def user_vectors(self, history_ids: torch.Tensor) -> torch.Tensor:
        """[B, dim] from left-padded histories [B, L]."""
        return self.hidden(history_ids)[:, -1]

    def forward(self, history_ids: torch.Tensor) -> torch.Tensor:
        return self.user_vectors(history_ids)

    def item_matrix(self) -> torch.Tensor:
        """[vocab, dim]; reserved rows (PAD, OOV) are not retrievable items."""
        return self.items.table()

    def loss(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Full-softmax cross-entropy at every non-padded position in one pass."""
        hidden = self.hidden(inputs)
        mask = targets != 0
        logits = hidden[mask] @ self.item_matrix().T
        logits[:, :FIRST_ITEM_INDEX] = -1e9
        return nn.functional.cross_entropy(logits, targets[mask])

    @torch.no_grad()
    def score_all(self, history_ids: NDArray[Any], batch_size: int = 256) -> NDArray[Any]:
        """float32 [users, vocab]: dot products of user vectors with every item."""
        self.eval()
        items = self.item_matrix()
        out = np.empty((len(history_ids), items.shape[0]), dtype=np.float32)
        lengths = (history_ids != 0).sum(axis=1)
        order = np.argsort(lengths, kind="stable")
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            width = max(int(lengths[rows].max()), 1)
            users = self.user_vectors(torch.from_numpy(history_ids[rows, -width:]))
            out[rows] = (users @ items.T).numpy()
        return out
