"""FP32 vs INT8 (dynamic quantization) ranker on this CPU: latency of scoring 500
candidates for one request, single thread, median of many repetitions, same run.

Uses the ranker exported by ``magpie eval`` (``--artifacts``, default artifacts/eval) and
takes the NDCG@10 drift from its results (pipeline-fp32 vs pipeline-int8 rows). A per-op
profile of both models (share of time by ONNX op type) goes into the JSON so the gap to
the ideal speed-up is explained, and so does the same pair of timings for one candidate:
what a request costs whatever the candidate count, leaving the per-candidate part's own
speed-up (``per_candidate_speedup``).

Candidate features come from ``--covisitation`` (a bundle's ``covisitation.npz``; default
``covisitation.npz`` beside the rankers) when that file exists; otherwise they are
synthetic (log1p of co-visitation-like scores for 40% of the candidates, zero for the
rest): latency does not depend on their values, only the FP32-INT8 score difference does.

    python -m tools.bench.quantization
    python -m tools.bench.quantization --repeats 50   # quick look
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from magpie.contract.covisitation import Covisitation
from magpie.contract.signature import CANDIDATE_FEATURE_DIM, CONTEXT_DIM, HISTORY_LEN
from magpie.learning.export import OnnxRanker
from magpie.learning.train import RankerInputs
from tools.bench._report import RESULTS_DIR, write_report


def request(
    vocab: int, candidates: int, rng: np.random.Generator, covisitation: Covisitation | None
) -> RankerInputs:
    """One user with a full history and ``candidates`` distinct candidate items."""
    history = rng.choice(np.arange(2, vocab), HISTORY_LEN, replace=False)[None, :]
    items = rng.choice(np.arange(2, vocab), candidates, replace=False)[None, :]
    context = rng.normal(size=(1, CONTEXT_DIM)).astype(np.float32)
    if covisitation is not None:
        features = covisitation.features(history, items)
    else:
        features = np.log1p(rng.exponential(3.0, (1, candidates, CANDIDATE_FEATURE_DIM)))
        features *= rng.random((1, candidates, 1)) < 0.4
    return history.astype(np.int64), items.astype(np.int64), context, features.astype(np.float32)


def median_ms(model: OnnxRanker, inputs: RankerInputs, repeats: int) -> float:
    for _ in range(10):
        model.scores(inputs)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.scores(inputs)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def interleaved_ms(
    fp32: OnnxRanker, int8: OnnxRanker, inputs: RankerInputs, repeats: int
) -> tuple[float, float, list[tuple[float, float]]]:
    """Median FP32 and INT8 ms over five interleaved rounds (background load on a shared
    2-core machine hits both alike), and the rounds."""
    rounds = [
        (median_ms(fp32, inputs, repeats // 5), median_ms(int8, inputs, repeats // 5))
        for _ in range(5)
    ]
    return (
        statistics.median(r[0] for r in rounds),
        statistics.median(r[1] for r in rounds),
        rounds,
    )


def op_profile(path: Path, inputs: RankerInputs, runs: int = 50) -> dict[str, float]:
    """Share of kernel time per ONNX op type (onnxruntime's profiler, one thread)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as directory:
        options.profile_file_prefix = str(Path(directory) / "profile")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feeds = {i.name: a for i, a in zip(session.get_inputs(), inputs, strict=True)}
        for _ in range(runs):
            session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
    by_op: dict[str, float] = defaultdict(float)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            by_op[event["args"]["op_name"]] += event["dur"]
    total = sum(by_op.values()) or 1.0
    return {op: round(us / total, 3) for op, us in sorted(by_op.items(), key=lambda kv: -kv[1])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts/eval"))
    parser.add_argument("--eval-json", type=Path, default=RESULTS_DIR / "eval-ml100k.json")
    parser.add_argument("--candidates", type=int, default=500)
    parser.add_argument("--vocab-size", type=int, default=1684, help="ML-100k: 1682 + 2 reserved")
    parser.add_argument(
        "--covisitation", type=Path, default=None, help="default: ARTIFACTS/covisitation.npz"
    )
    parser.add_argument("--repeats", type=int, default=1000)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()

    fp32_path, int8_path = args.artifacts / "ranker.onnx", args.artifacts / "ranker.int8.onnx"
    covisitation_path = args.covisitation or args.artifacts / "covisitation.npz"
    covisitation = None
    if covisitation_path.exists():
        with np.load(covisitation_path) as arrays:
            covisitation = Covisitation.from_arrays(arrays)
    inputs = request(args.vocab_size, args.candidates, np.random.default_rng(0), covisitation)
    fp32, int8 = OnnxRanker(fp32_path, threads=1), OnnxRanker(int8_path, threads=1)
    fp32_ms, int8_ms, rounds = interleaved_ms(fp32, int8, inputs, args.repeats)
    # One candidate: the per-request part (history encoder, request projection, per-op
    # dispatch), which scoring more candidates does not repeat.
    one = request(args.vocab_size, 1, np.random.default_rng(0), covisitation)
    fp32_one, int8_one, _ = interleaved_ms(fp32, int8, one, args.repeats)

    results: dict[str, Any] = {
        "fp32_ms_500": round(fp32_ms, 3),
        "int8_ms_500": round(int8_ms, 3),
        "speedup": round(fp32_ms / int8_ms, 2),
        "candidates": args.candidates,
        "history_len": HISTORY_LEN,
        "threads": 1,
        "repeats": args.repeats,
        "round_speedups": [round(a / b, 2) for a, b in rounds],
        "fp32_ms_1": round(fp32_one, 3),
        "int8_ms_1": round(int8_one, 3),
        "per_candidate_speedup": round((fp32_ms - fp32_one) / (int8_ms - int8_one), 2),
        "max_abs_score_diff": float(np.abs(fp32.scores(inputs) - int8.scores(inputs)).max()),
        "candidate_features": str(covisitation_path) if covisitation is not None else "synthetic",
    }
    if args.eval_json.exists():
        models = json.loads(args.eval_json.read_text())["models"]
        before, after = models["pipeline-fp32"]["NDCG@10"], models["pipeline-int8"]["NDCG@10"]
        results["ndcg_rel_delta"] = round((after - before) / before, 4)
        results["ndcg_source"] = f"{args.eval_json.name}: pipeline-int8 vs pipeline-fp32 NDCG@10"
    results["op_profile"] = {
        "fp32": op_profile(fp32_path, inputs),
        "int8": op_profile(int8_path, inputs),
    }

    print(f"{'model':<6}{'ms / 500 candidates':>22}{'ms / 1 candidate':>19}")
    print(f"{'fp32':<6}{fp32_ms:>22.3f}{fp32_one:>19.3f}")
    print(f"{'int8':<6}{int8_ms:>22.3f}{int8_one:>19.3f}")
    print(f"per-candidate part: {results['per_candidate_speedup']}x")
    print(f"speedup {results['speedup']}x, NDCG@10 relative delta {results.get('ndcg_rel_delta')}")
    print(f"wrote {write_report('quantization', results, args.output)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
