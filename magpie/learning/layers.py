"""Building blocks shared by the retrieval and ranking models (torch only).

Attention is written with plain matrix products so that ONNX export yields simple
MatMul/Softmax graphs that quantize and convert to FP16 without surprises.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["MASKED", "ItemEncoder", "SequenceEncoder"]

MASKED = -1e4
"""Attention logit bias of hidden positions: finite in FP16, zero weight after softmax."""


class ItemEncoder(nn.Module):
    """Item vector = id embedding + projected text embedding + category embedding.

    The text and category tables are frozen buffers indexed like the vocabulary. During
    training the id part is dropped for a random share of items (``id_dropout``), so the
    text and category parts alone already place an item well: that is the vector a new
    item without interactions gets (see :meth:`content_vectors`).
    """

    item_category: torch.Tensor
    text_table: torch.Tensor

    def __init__(
        self,
        dim: int,
        item_category: torch.Tensor,
        text_table: torch.Tensor | None,
        id_dropout: float,
    ) -> None:
        super().__init__()
        vocab_size = int(item_category.shape[0])
        self.ids = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.category = nn.Embedding(int(item_category.max()) + 1, dim, padding_idx=0)
        self.register_buffer("item_category", item_category.long(), persistent=True)
        self.text: nn.Linear | None = None
        if text_table is not None:
            self.register_buffer("text_table", text_table.float(), persistent=True)
            self.text = nn.Linear(text_table.shape[1], dim)
        self.id_dropout = id_dropout
        nn.init.normal_(self.ids.weight, std=0.02)
        nn.init.normal_(self.category.weight, std=0.02)
        with torch.no_grad():
            self.ids.weight[0].zero_()
            self.category.weight[0].zero_()

    def content_vectors(self, text: torch.Tensor | None, category: torch.Tensor) -> torch.Tensor:
        """Vectors from content alone: how a new item (no id embedding yet) is represented."""
        vectors: torch.Tensor = self.category(category)
        if self.text is not None and text is not None:
            vectors = vectors + self.text(text)
        return vectors

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        text = self.text_table[ids] if self.text is not None else None
        id_part: torch.Tensor = self.ids(ids)
        if self.training and self.id_dropout > 0:
            keep = torch.rand(ids.shape, device=ids.device) >= self.id_dropout
            id_part = id_part * keep.unsqueeze(-1)
        vectors = id_part + self.content_vectors(text, self.item_category[ids])
        return vectors * (ids != 0).unsqueeze(-1)

    def table(self) -> torch.Tensor:
        """float [vocab, dim]: every item's vector (with id dropout while training)."""
        vectors: torch.Tensor = self(
            torch.arange(self.ids.num_embeddings, device=self.ids.weight.device)
        )
        return vectors


class _Block(nn.Module):
    """Pre-norm transformer block: multi-head self-attention and a GELU feed-forward."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(
            nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * dim, dim)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """``bias`` [batch, 1, L, L] is added to the attention logits (0 or -inf-like)."""
        b, length, dim = x.shape
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(b, length, self.heads, dim // self.heads).transpose(1, 2)

        logits = split(q) @ split(k).transpose(-1, -2) / math.sqrt(dim // self.heads) + bias
        attended = (torch.softmax(logits, dim=-1) @ split(v)).transpose(1, 2)
        x = x + self.dropout(self.out(attended.reshape(b, length, dim)))
        out: torch.Tensor = x + self.dropout(self.ff(self.norm2(x)))
        return out


class SequenceEncoder(nn.Module):
    """Causal transformer over left-padded item sequences (SASRec-style).

    Positions are counted from the right, so the most recent item always has the same
    position embedding whatever the sequence's length.
    """

    def __init__(self, dim: int, layers: int, heads: int, max_len: int, dropout: float) -> None:
        super().__init__()
        self.max_len = max_len
        self.positions = nn.Embedding(max_len, dim)
        self.blocks = nn.ModuleList(_Block(dim, heads, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        nn.init.normal_(self.positions.weight, std=0.02)

    def forward(self, items: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """``items`` [B, L, dim] item vectors, ``pad`` [B, L] bool -> hidden [B, L, dim]."""
        length = items.shape[1]
        x = items * math.sqrt(items.shape[-1]) + self.positions.weight[self.max_len - length :]
        x = self.dropout(x) * (~pad).unsqueeze(-1)
        causal = torch.ones(length, length, dtype=torch.bool, device=items.device).tril()
        allowed = causal.unsqueeze(0) & ~pad.unsqueeze(1)
        # A padded query row sees itself so its softmax stays finite; its output is unused.
        allowed = allowed | torch.eye(length, dtype=torch.bool, device=items.device)
        bias = torch.zeros(allowed.shape, device=x.device, dtype=x.dtype).masked_fill(
            ~allowed, MASKED
        )
        for block in self.blocks:
            x = block(x, bias.unsqueeze(1))
        out: torch.Tensor = self.norm(x)
        return out
