"""Training speed of the retrieval model and FP16 ranker throughput on a GPU (CPU fallback).

Self-contained: needs torch and numpy only; run it from the repository root (it imports
``magpie.learning`` modules and ``tools.bench._report``, which load nothing else at import
time). Data is synthetic at MovieLens-100k size (943 users, 1682 items, ~100k
interactions).

* retrieval training: sequences/s and seconds per epoch (full-softmax loss at every
  position), FP32 (TF32 allowed) and bf16 autocast;
* ranker: scoring ``--candidates`` candidates per request in FP16 (FP32 on CPU): p50/p99
  latency at batch 1 and candidates/s at ``--batch`` requests per call (untrained weights,
  random ids and synthetic candidate features: speed does not depend on their values).

    python -m tools.bench.gpu_models                   # -> $OUT/gpu-models.json
    python -m tools.bench.gpu_models --tiny --output /tmp/g.json   # smoke test
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from magpie.contract.signature import (
    CANDIDATE_FEATURE_DIM,
    CONTEXT_DIM,
    HISTORY_LEN,
    USER_TOWER_HISTORY_LEN,
)
from magpie.datasets.schema import Dataset, EventKind, Interaction, Item, User
from magpie.learning.protocol import leave_one_out
from magpie.learning.ranker_model import Ranker, RankerConfig
from magpie.learning.retrieval_model import RetrievalConfig, RetrievalModel
from magpie.learning.sequences import build_vocab
from magpie.learning.train import training_sequences
from tools.bench._report import percentiles, write_report


def synthetic_dataset(users: int, items: int, mean_length: int, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    catalog = [Item(f"i{n}", f"item {n}", "", ("c", f"g{n % 19}")) for n in range(items)]
    popularity = 1.0 / np.arange(1, items + 1) ** 0.8
    popularity /= popularity.sum()
    interactions = []
    for u in range(users):
        length = int(np.clip(rng.exponential(mean_length), 20, 700))
        chosen = rng.choice(items, size=min(length, items), replace=False, p=popularity)
        interactions += [
            Interaction(f"u{u}", f"i{i}", EventKind.RATING, float(t)) for t, i in enumerate(chosen)
        ]
    return Dataset("synthetic", catalog, [User(f"u{u}") for u in range(users)], interactions)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def retrieval_speed(
    dataset: Dataset, device: torch.device, epochs: int, batch_size: int, bf16: bool
) -> dict[str, float]:
    split = leave_one_out(dataset, build_vocab(dataset.items))
    data = training_sequences(split, USER_TOWER_HISTORY_LEN)
    vocab = split.vocab
    text = torch.randn(vocab.size, 384)
    model = RetrievalModel(RetrievalConfig(), torch.from_numpy(vocab.item_category), text).to(
        device
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    seconds = []
    for _ in range(epochs + 1):  # the first epoch warms up kernels and allocator
        sync(device)
        start = time.perf_counter()
        for rows in data.batches(batch_size, rng):
            inputs, targets, _ = (t.to(device) for t in data.take(rows))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = model.loss(inputs, targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        sync(device)
        seconds.append(time.perf_counter() - start)
    per_epoch = float(np.median(seconds[1:]))
    return {
        "epoch_seconds": round(per_epoch, 4),
        "sequences_per_second": round(len(data.lengths) / per_epoch, 1),
        "positions_per_second": round(float(data.lengths.sum()) / per_epoch, 1),
        "batch_size": batch_size,
        "epochs_timed": epochs,
    }


def synthetic_features(
    requests: int, candidates: int, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """[requests, candidates, CANDIDATE_FEATURE_DIM] like the co-visitation features (log1p
    of scores, zero for most candidates), for benchmarks without a trained bundle."""
    shape = (requests, candidates, CANDIDATE_FEATURE_DIM)
    scores = torch.empty(shape, device=device).exponential_(1 / 3.0)
    covisited = torch.rand(requests, candidates, 1, device=device) < 0.4
    return (torch.log1p(scores) * covisited).to(dtype)


def ranker_speed(
    vocab_size: int, device: torch.device, candidates: int, batch: int, repeats: int
) -> dict[str, float]:
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    ranker = Ranker(RankerConfig(), torch.arange(vocab_size) % 19, torch.randn(vocab_size, 384))
    ranker = ranker.eval().to(device=device, dtype=dtype)
    ranker.items.item_category = ranker.items.item_category.long()

    def inputs(requests: int) -> tuple[torch.Tensor, ...]:
        history = torch.randint(2, vocab_size, (requests, HISTORY_LEN), device=device)
        items = torch.randint(2, vocab_size, (requests, candidates), device=device)
        context = torch.randn(requests, CONTEXT_DIM, device=device, dtype=dtype)
        return history, items, context, synthetic_features(requests, candidates, device, dtype)

    def timed(args: tuple[torch.Tensor, ...], runs: int) -> list[float]:
        out = []
        with torch.inference_mode():
            for _ in range(10):
                ranker(*args)
            for _ in range(runs):
                sync(device)
                start = time.perf_counter()
                ranker(*args)
                sync(device)
                out.append((time.perf_counter() - start) * 1000)
        return out

    single = timed(inputs(1), repeats)
    batched = timed(inputs(batch), max(repeats // 10, 5))
    single_ms, batched_ms = percentiles(single, (50, 99)), percentiles(batched, (50,))
    return {
        "dtype": str(dtype).removeprefix("torch."),
        "candidates": candidates,
        "p50_ms_batch1": round(single_ms["p50"], 3),
        "p99_ms_batch1": round(single_ms["p99"], 3),
        "candidates_per_second_batch1": round(candidates / (np.median(single) / 1000), 1),
        "batch": batch,
        "p50_ms_batched": round(batched_ms["p50"], 3),
        "candidates_per_second_batched": round(batch * candidates / (np.median(batched) / 1000), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_out = Path(os.environ.get("OUT", "bench-results")) / "gpu-models.json"
    parser.add_argument("--output", type=Path, default=default_out)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128, help="retrieval training")
    parser.add_argument("--candidates", type=int, default=500)
    parser.add_argument("--batch", type=int, default=64, help="requests per ranker call")
    parser.add_argument("--repeats", type=int, default=500)
    parser.add_argument("--tiny", action="store_true", help="small sizes for a smoke test")
    args = parser.parse_args()

    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = True
    users, items, mean_length = (60, 200, 30) if args.tiny else (943, 1682, 106)
    epochs, repeats = (1, 20) if args.tiny else (args.epochs, args.repeats)
    dataset = synthetic_dataset(users, items, mean_length)
    results: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "data": {"users": users, "items": items, "interactions": len(dataset.interactions)},
        "retrieval_fp32": retrieval_speed(dataset, device, epochs, args.batch_size, bf16=False),
        "retrieval_bf16": retrieval_speed(dataset, device, epochs, args.batch_size, bf16=True),
        "ranker": ranker_speed(items + 2, device, args.candidates, args.batch, repeats),
    }
    print(write_report("gpu-models", results, args.output).read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
