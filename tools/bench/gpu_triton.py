"""Ranker throughput and p99 behind a real tritonserver on a GPU, with a direct fallback.

Run through ``tools/bench/gpu_triton.sh`` (it unpacks the nvidia-pytriton wheel, puts it
on PYTHONPATH and runs ``python -m tools.bench.gpu_triton``). Steps, each recorded in the
JSON whatever happens to the others:

1. the ranker at real dimensions (RankerConfig defaults, 384-d text table, synthetic
   vocabulary of ``--vocab`` items; untrained weights: speed does not depend on them) is
   measured directly in torch on the device (FP16 on CUDA, FP32 on CPU), reusing
   ``tools.bench.gpu_models``' ``ranker_speed``;
2. tritonserver from the wheel serves the same module through the Python backend (torch
   on the device, or ``ranker.fp16.onnx`` with onnxruntime-gpu when its CUDA provider
   exists) with dynamic batching; a stdlib HTTP client (binary tensors, no tritonclient
   needed) measures p50/p99 at concurrency 1 and throughput (candidates scored per
   second) and p99 at ``--concurrency`` for ``--seconds``, ``--candidates`` per request.

``path`` in the JSON says what was measured: ``triton-python-<engine>-<device>-<dtype>``
or ``direct-torch-...`` when tritonserver could not serve (``triton_error`` says why).

    python -m tools.bench.gpu_triton --output $OUT/gpu-triton.json
    python -m tools.bench.gpu_triton --smoke --output /tmp/g.json   # CPU check
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import socket
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch

from magpie.contract.signature import CANDIDATE_FEATURE_DIM, CONTEXT_DIM, HISTORY_LEN
from magpie.learning.ranker_model import Ranker, RankerConfig
from tools.bench._report import percentiles, write_report
from tools.bench.gpu_models import ranker_speed

MODEL = "ranker"
_MODEL_PY = Path(__file__).with_name("gpu_triton_model.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(engine: str, device: str, dtype: str, files: dict[str, Path]) -> str:
    """config.pbtxt as text: the GPU machine may lack tritonclient (and its ModelConfig)."""
    parameters = {"engine": engine, "device": device, "dtype": dtype}
    parameters |= {key: str(path) for key, path in files.items()}
    params = "".join(
        f'parameters {{ key: "{k}" value {{ string_value: "{v}" }} }}\n'
        for k, v in parameters.items()
    )
    return (
        f'name: "{MODEL}"\nbackend: "python"\nmax_batch_size: 64\n'
        f'input {{ name: "history_ids" data_type: TYPE_INT64 dims: {HISTORY_LEN} }}\n'
        'input { name: "candidate_ids" data_type: TYPE_INT64 dims: -1 }\n'
        f'input {{ name: "context" data_type: TYPE_FP32 dims: {CONTEXT_DIM} }}\n'
        'input { name: "candidate_features" data_type: TYPE_FP32 '
        f"dims: [-1, {CANDIDATE_FEATURE_DIM}] }}\n"
        'output { name: "scores" data_type: TYPE_FP32 dims: -1 }\n'
        "dynamic_batching { preferred_batch_size: [8, 16, 32, 64] "
        "max_queue_delay_microseconds: 1000 }\n"
        "instance_group { count: 2 kind: KIND_CPU }\n" + params
    )


class HttpRanker:
    """KServe v2 HTTP inference with the binary tensor extension, stdlib only."""

    def __init__(self, port: int, candidates: int, vocab: int, seed: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        rng = np.random.default_rng(seed)
        # like the co-visitation features: log1p of scores, zero for most candidates
        features = np.log1p(rng.exponential(3.0, (1, candidates, CANDIDATE_FEATURE_DIM)))
        features *= rng.random((1, candidates, 1)) < 0.4
        tensors = [
            ("history_ids", "INT64", rng.integers(2, vocab, (1, HISTORY_LEN)).astype(np.int64)),
            ("candidate_ids", "INT64", rng.integers(2, vocab, (1, candidates)).astype(np.int64)),
            ("context", "FP32", rng.normal(size=(1, CONTEXT_DIM)).astype(np.float32)),
            ("candidate_features", "FP32", features.astype(np.float32)),
        ]
        header = {
            "inputs": [
                {
                    "name": name,
                    "shape": list(array.shape),
                    "datatype": dtype,
                    "parameters": {"binary_data_size": array.nbytes},
                }
                for name, dtype, array in tensors
            ],
            "outputs": [{"name": "scores", "parameters": {"binary_data": True}}],
        }
        head = json.dumps(header).encode()
        self.body = head + b"".join(array.tobytes() for _, _, array in tensors)
        self.headers = {
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(len(head)),
        }
        self.candidates = candidates

    def score(self) -> np.ndarray:
        self.connection.request("POST", f"/v2/models/{MODEL}/infer", self.body, self.headers)
        response = self.connection.getresponse()
        payload = response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {payload[:300]!r}")
        length = response.getheader("Inference-Header-Content-Length")
        if length is None:  # some builds omit the header: find the JSON header's end
            header, end = json.JSONDecoder().raw_decode(payload.decode("latin-1"))
            output = header["outputs"][0]
            if "data" in output:
                scores = np.asarray(output["data"], dtype=np.float32)
            else:
                scores = np.frombuffer(payload[end:], dtype=np.float32)
        else:
            scores = np.frombuffer(payload[int(length) :], dtype=np.float32)
        if scores.size != self.candidates or not np.isfinite(scores).all():
            raise RuntimeError(f"bad scores: {scores.size} values; response {payload[:400]!r}")
        return scores


def _p50_p99_ms(samples: list[float]) -> dict[str, float]:
    """``{"p50": ..., "p99": ...}`` in ms, rounded to 3 places, of latencies in seconds; -1.0
    for each when there are none."""
    cuts = percentiles(np.array(samples) * 1000.0, (50, 99))
    return {key: round(value, 3) if samples else -1.0 for key, value in cuts.items()}


def _measure_triton(port: int, args: argparse.Namespace) -> dict[str, Any]:
    single = HttpRanker(port, args.candidates, args.vocab, 0)
    for _ in range(args.warmup):
        single.score()
    latencies = []
    for _ in range(args.requests):
        start = time.perf_counter()
        single.score()
        latencies.append(time.perf_counter() - start)

    stop = threading.Event()
    loaded: list[list[float]] = [[] for _ in range(args.concurrency)]
    errors: list[str] = []

    def worker(slot: int) -> None:
        client = HttpRanker(port, args.candidates, args.vocab, slot + 1)
        while not stop.is_set():
            start = time.perf_counter()
            try:
                client.score()
            except Exception as error:  # noqa: BLE001 - counted and reported
                errors.append(repr(error))
                return
            loaded[slot].append(time.perf_counter() - start)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(args.seconds)
    stop.set()
    for thread in threads:
        thread.join(60)
    elapsed = time.perf_counter() - started
    under_load = [x for samples in loaded for x in samples]
    unloaded_ms, loaded_ms = _p50_p99_ms(latencies), _p50_p99_ms(under_load)
    return {
        "p50_ms_concurrency1": unloaded_ms["p50"],
        "p99_ms_concurrency1": unloaded_ms["p99"],
        "concurrency": args.concurrency,
        "requests_under_load": len(under_load),
        "p50_ms_under_load": loaded_ms["p50"],
        "p99_ms_under_load": loaded_ms["p99"],
        "candidates_per_second": round(len(under_load) * args.candidates / elapsed, 1),
        "failed_requests": len(errors),
        "first_errors": errors[:3],
    }


def _engine(device: torch.device) -> str:
    if device.type != "cuda":
        return "torch"
    try:
        import onnxruntime as ort
    except ImportError:
        return "torch"
    return "onnxruntime" if "CUDAExecutionProvider" in ort.get_available_providers() else "torch"


def _serve_and_measure(
    args: argparse.Namespace, device: torch.device, dtype: torch.dtype, work: Path
) -> dict[str, Any]:
    from magpie.modelstore.tritonserver import TritonPorts, TritonServer

    torch.manual_seed(0)
    vocab = args.vocab
    ranker = Ranker(RankerConfig(), torch.arange(vocab) % 19, torch.randn(vocab, 384)).eval()
    engine = _engine(device)
    files: dict[str, Path] = {"module": work / "ranker.pt"}
    torch.save(ranker, files["module"])  # benchmark-only; the model.py loads it back
    if engine == "onnxruntime":
        from magpie.learning.export import convert_fp16, export_ranker

        export_ranker(ranker, work / "ranker.onnx")
        files["onnx"] = convert_fp16(work / "ranker.onnx", work / "ranker.fp16.onnx")
    version_dir = work / "repository" / MODEL / "1"
    version_dir.mkdir(parents=True)
    shutil.copyfile(_MODEL_PY, version_dir / "model.py")
    dtype_name = str(dtype).removeprefix("torch.")
    text = _config(engine, device.type, dtype_name, files)
    (version_dir.parent / "config.pbtxt").write_text(text)
    ports = TritonPorts(free_port(), free_port(), free_port())
    with TritonServer.start(
        work / "repository", work, ports, load=[MODEL], timeout=args.start_timeout
    ):
        result = _measure_triton(ports.http, args)
    result["engine"] = engine
    result["path"] = f"triton-python-{engine}-{device.type}-{dtype_name}"
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--candidates", type=int, default=500)
    parser.add_argument("--vocab", type=int, default=50_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--batch", type=int, default=64, help="direct torch batched requests")
    parser.add_argument("--start-timeout", type=float, default=180.0)
    parser.add_argument("--skip-triton", action="store_true", help="measure the fallback only")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for a CPU check")
    args = parser.parse_args()
    if args.smoke:
        args.vocab, args.requests, args.warmup = 2_000, 20, 3
        args.concurrency, args.seconds, args.batch = 2, 2.0, 4

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    report: dict[str, Any] = {
        "candidates": args.candidates,
        "vocab": args.vocab,
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "smoke": args.smoke,
    }
    report["direct_torch"] = ranker_speed(
        args.vocab, device, args.candidates, args.batch, args.requests
    )
    report["path"] = f"direct-torch-{device.type}-{str(dtype).removeprefix('torch.')}"
    if not args.skip_triton:
        work = Path(tempfile.mkdtemp(prefix="gpu-triton-"))
        try:
            report["triton"] = _serve_and_measure(args, device, dtype, work)
            report["path"] = report["triton"]["path"]
        except Exception as error:  # noqa: BLE001 - fall back to the direct numbers
            report["triton_error"] = "".join(traceback.format_exception_only(error)).strip()
            log = work / "tritonserver.log"
            if log.exists():
                report["tritonserver_log_tail"] = log.read_text(errors="replace")[-3000:]
        finally:
            shutil.rmtree(work, ignore_errors=True)
    path = write_report("gpu_triton", report, args.output)
    print(json.dumps(report, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
