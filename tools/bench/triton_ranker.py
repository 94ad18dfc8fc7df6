"""Ranker latency on a real tritonserver: INT8 vs FP32, 500 candidates per request.

One server serves both exports as two models (``ranker_int8``, ``ranker_fp32``) with the
shipped CPU config (Python backend + ONNX Runtime); requests alternate between them so
both see the same machine load. In-process ONNX Runtime on the same tensors shows what
the Triton hop (gRPC + Python backend) costs.

The ranker has the real pipeline's dimensions (RankerConfig defaults, HISTORY_LEN)
over the synthetic ``small`` catalog (5,000 items). By default its weights are untrained:
latency does not depend on weight values (same graph, same shapes), and the candidate
features are synthetic (log1p of co-visitation-like scores for 40% of the candidates).
``--bundle DIR`` measures a trained bundle's rankers instead, with candidate features
from its ``covisitation.npz`` as the ranking service computes them.

    python -m tools.bench.triton_ranker [--requests 300] [--bundle .magpie/artifacts/3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import tempfile
import time
from pathlib import Path

import numpy as np

from magpie.contract.signature import CANDIDATE_FEATURE_DIM, CONTEXT_DIM, HISTORY_LEN, SCORES
from magpie.modelstore.bundle import COVISITATION, RANKER_FP32, RANKER_INT8
from tools.bench._report import percentiles, write_report

CANDIDATES = 500


def _export_untrained(directory: Path) -> int:
    """Real-size untrained ranker on the synthetic small catalog; returns the vocab size."""
    import torch

    from magpie.datasets.synthetic import iter_items, preset
    from magpie.learning.export import export_ranker, quantize_int8
    from magpie.learning.ranker_model import Ranker, RankerConfig
    from magpie.learning.sequences import build_vocab

    items = [item for batch in iter_items(preset("small")) for item in batch]
    vocab = build_vocab(items)
    torch.manual_seed(0)
    ranker = Ranker(RankerConfig(), torch.from_numpy(vocab.item_category), None)
    export_ranker(ranker, directory / RANKER_FP32)
    quantize_int8(directory / RANKER_FP32, directory / RANKER_INT8)
    return vocab.size


def _repository(models: dict[str, Path], root: Path) -> Path:
    from magpie.modelstore.triton_repo import MODEL_FILE, MODEL_PY, write_model_dir

    repository = root / "repository"
    for name, onnx_file in models.items():
        model_dir = write_model_dir(repository, name, "cpu")
        (model_dir / "1").mkdir()
        shutil.copyfile(onnx_file, model_dir / "1" / MODEL_FILE)
        shutil.copyfile(model_dir / MODEL_PY, model_dir / "1" / MODEL_PY)
    return repository


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _p50_p99_ms(samples: list[float]) -> tuple[float, float]:
    """p50 and p99 in ms of latencies in seconds, unrounded."""
    cuts = percentiles(np.array(samples) * 1000.0, (50, 99))
    return cuts["p50"], cuts["p99"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="timed requests per model")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--bundle", type=Path, default=None, help="a trained model bundle")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()

    import tritonclient.grpc as grpcclient

    from magpie.contract.covisitation import Covisitation
    from magpie.learning.export import OnnxRanker
    from magpie.modelstore.client import infer_inputs, pad_candidates
    from magpie.modelstore.triton_repo import TARGETS
    from magpie.modelstore.tritonserver import TritonPorts, TritonServer

    work = Path(tempfile.mkdtemp(prefix="bench-triton-"))
    try:
        if args.bundle is not None:
            source = args.bundle
            vocab_size = len(json.loads((source / "vocab.json").read_text())["item_ids"]) + 2
        else:
            source = work
            vocab_size = _export_untrained(work)
        files = {"ranker_int8": source / RANKER_INT8, "ranker_fp32": source / RANKER_FP32}
        repository = _repository(files, work)

        rng = np.random.default_rng(0)
        history = np.zeros((1, HISTORY_LEN), dtype=np.int64)
        history[0, -50:] = rng.integers(2, vocab_size, 50)
        candidates = rng.integers(2, vocab_size, (1, CANDIDATES)).astype(np.int64)
        context = rng.normal(size=(1, CONTEXT_DIM)).astype(np.float32)
        if args.bundle is not None:
            with np.load(source / COVISITATION) as arrays:
                features = Covisitation.from_arrays(arrays).features(history, candidates)
        else:
            features = np.log1p(rng.exponential(3.0, (1, CANDIDATES, CANDIDATE_FEATURE_DIM)))
            features *= rng.random((1, CANDIDATES, 1)) < 0.4
        padded, padded_features = pad_candidates(candidates, features)
        inputs = infer_inputs(history, padded, context, padded_features)

        ports = TritonPorts(free_port(), free_port(), free_port())
        latencies: dict[str, list[float]] = {name: [] for name in files}
        with TritonServer.start(repository, work, ports, load=list(files)) as server:
            client = grpcclient.InferenceServerClient(server.grpc_addr)
            for step in range(args.warmup + args.requests):
                for name in files:
                    start = time.perf_counter()
                    scores = client.infer(name, inputs).as_numpy(SCORES)
                    elapsed = time.perf_counter() - start
                    if step >= args.warmup:
                        latencies[name].append(elapsed)
            assert scores.shape == padded.shape
            client.close()

        threads = TARGETS["cpu"].intra_op_threads
        direct = OnnxRanker(files["ranker_int8"], threads=threads)
        in_process: list[float] = []
        for step in range(args.warmup + args.requests):
            start = time.perf_counter()
            direct.scores((history, padded, context, padded_features))
            if step >= args.warmup:
                in_process.append(time.perf_counter() - start)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    int8_p50, int8_p99 = _p50_p99_ms(latencies["ranker_int8"])
    fp32_p50, fp32_p99 = _p50_p99_ms(latencies["ranker_fp32"])
    ort_p50, ort_p99 = _p50_p99_ms(in_process)
    results = {
        "int8_p50_ms": round(int8_p50, 3),
        "int8_p99_ms": round(int8_p99, 3),
        "fp32_p50_ms": round(fp32_p50, 3),
        "fp32_p99_ms": round(fp32_p99, 3),
        "speedup_p50": round(fp32_p50 / int8_p50, 3),
        "onnxruntime_int8_p50_ms": round(ort_p50, 3),
        "onnxruntime_int8_p99_ms": round(ort_p99, 3),
        "triton_hop_p50_ms": round(int8_p50 - ort_p50, 3),
        "candidates": CANDIDATES,
        "padded_to": int(padded.shape[1]),
        "requests": args.requests,
        "intra_op_threads": threads,
        "model": str(args.bundle) if args.bundle else "untrained, RankerConfig defaults, small",
        "candidate_features": "bundle covisitation.npz" if args.bundle else "synthetic",
    }
    print(f"{'path':<28} {'p50 ms':>8} {'p99 ms':>8}")
    print(f"{'triton int8':<28} {int8_p50:>8.2f} {int8_p99:>8.2f}")
    print(f"{'triton fp32':<28} {fp32_p50:>8.2f} {fp32_p99:>8.2f}")
    print(f"{'onnxruntime int8 in-process':<28} {ort_p50:>8.2f} {ort_p99:>8.2f}")
    print(
        f"int8 speedup (p50): {fp32_p50 / int8_p50:.2f}x; Triton hop: {int8_p50 - ort_p50:.2f} ms"
    )
    path = write_report("triton_ranker", results, args.output)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
