"""Generated Triton model configurations for the ranker: one exported model, two targets.

``config.pbtxt`` is written from a typed ``ModelConfig`` (``text_format``), never by hand;
tests parse it back. Tensors follow :mod:`magpie.contract.signature`, batch dimension
first, the candidate dimension dynamic (-1).

**cpu** (``magpie up``, tests, the committed ``model_repository/``): the Python backend
(the only backend in the ``nvidia-pytriton`` wheel) whose ``model.py`` runs the version's
``model.onnx`` (the INT8 ranker) with ONNX Runtime on ``intra_op_threads`` threads.
The model directory holds ``config.pbtxt`` and ``model.py``; :mod:`.publish` copies
``model.py`` into each version directory next to its ``model.onnx``.

**gpu** (the NGC Triton image, Helm chart): ``platform: "onnxruntime_onnx"`` on the FP32
export (``ranker.onnx``; each target names its bundle file in ``TARGETS``) with the
TensorRT execution accelerator in FP16 (ONNX Runtime falls back to CUDA
for anything TensorRT cannot build), ``KIND_GPU`` instances. Generated with
``magpie model triton-config --target gpu --out DIR``; it is never written under
``model_repository/``, which the CPU server scans, and nothing renders it into git.

Batching and shapes. One request is one user: ``history_ids`` [1, HISTORY_LEN],
``candidate_ids`` [1, C], ``context`` [1, CONTEXT_DIM], ``candidate_features``
[1, C, CANDIDATE_FEATURE_DIM]; the client pads C to a multiple of ``CANDIDATE_BUCKET``
(:func:`magpie.modelstore.client.pad_candidates`: PAD ids, zero features; padding
scores are dropped), so requests come in a few shapes. The gpu config sets no TensorRT
profile shapes for any input: ONNX Runtime's TensorRT provider sizes its engine's
profile from the shapes it meets (rebuilding when one falls outside), and the buckets
keep those few.

* cpu: ``max_batch_size: 0`` (dims carry their own batch dimension, -1), so the dynamic
  batcher merges nothing (it is there for its queue policy, below). The INT8 ranker is
  *dynamically* quantized: activation scales are computed per tensor at run time, so
  concatenating users would make each user's scores depend on who else is in the batch
  (measured on the test model: 5e-3 absolute, enough to swap near-ties; padding, all-zero
  rows, changes nothing) — a ranking must be a function of its own request. Batching
  would also gain little on CPU: 8 users x 500 candidates cost about 8 single requests; it
  saves only the ~1 ms Python-backend hop per call. Each request is one ONNX Runtime run,
  bit-for-bit what the in-process ``OnnxRanker`` computes on the same tensors.
* gpu: ``max_batch_size: 64`` with dynamic batching (preferred 16/32/64, at most 500 us
  of queueing, well below the 200 ms ranking deadline ``triton_timeout_seconds``). FP16
  math has no data-dependent scales, and on a GPU batching is where throughput comes
  from. The dynamic batcher only merges requests of equal shape, which the candidate
  buckets provide; other shapes are still answered, batched apart.

Queue policy (both targets): ``default_queue_policy`` rejects (``timeout_action:
REJECT``, the default, so ``config.pbtxt`` does not spell it) a request still waiting
after its timeout, and at once one that finds ``max_queue_size`` requests waiting.
``allow_timeout_override`` lets each request shorten its timeout: the ranking service's
:class:`magpie.modelstore.client.RankerClient` sends its own budget (at most
``triton_timeout_seconds``, 200 ms), so Triton turns away exactly the requests whose
caller already gave up instead of scoring them, and never one it still waits for (a
100 ms default failed requests during version swaps on a busy 2-core machine).
``queue_timeout_us`` (1 s) bounds requests that carry none (tools, tests). Triton checks
the timeout when an instance frees up and drops the request then, unscored. Each queue
holds a bit less than its instances clear in 100 ms (half the ranking's budget: deeper,
a request would expire in it anyway), so an overloaded server answers
UNAVAILABLE at once and the ranking service degrades to retrieval order while its
breaker backs off: cpu 128 (2 instances at the measured ~1 ms per request: ~200), gpu
2048 (2 instances, 64 per batch; the FP16 ranker scored 18.8M candidates/s directly:
~3,600 requests of 512). ``tests/integration/triton/test_queue_policy.py`` checks it in
a real tritonserver.

Versions: ``version_policy: all``: every version directory present is served, and
:mod:`.publish` keeps exactly the versions the registry's aliases name (champion,
previous, staged). Explicit model control (``load_model``) after a new version directory
lands loads it while the others keep answering; the ranking service names the version
it built its inputs for (item indices differ between versions), so the champion and the
one before it stay loaded through a rollout and a rollback.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from magpie.contract.signature import (
    CANDIDATE_FEATURE_DIM,
    CANDIDATE_FEATURES,
    CANDIDATE_IDS,
    CONTEXT,
    CONTEXT_DIM,
    HISTORY_IDS,
    HISTORY_LEN,
    SCORES,
)
from magpie.modelstore import bundle

__all__ = [
    "CANDIDATE_BUCKET",
    "CONFIG_FILE",
    "MODEL_FILE",
    "MODEL_PY",
    "MODEL_PY_SOURCE",
    "TARGETS",
    "Target",
    "TritonTarget",
    "model_config",
    "read_config",
    "target_of",
    "write_model_dir",
]

Target = Literal["cpu", "gpu"]

CONFIG_FILE = "config.pbtxt"
MODEL_FILE = "model.onnx"
"""File name of the ranker inside a Triton version directory."""
MODEL_PY = "model.py"
MODEL_PY_SOURCE = Path(__file__).with_name("triton_model.py")
"""The Python-backend model (CPU target), copied as ``<model>/model.py``."""
CANDIDATE_BUCKET = 64
"""Clients pad the candidate count to a multiple of this, so requests share shapes."""


@dataclass(frozen=True, slots=True)
class TritonTarget:
    """Knobs of one deployment target; ``max_batch_size`` 0 means no batching."""

    bundle_file: str
    """The bundle's ranker export this target serves (published as ``MODEL_FILE``)."""
    max_batch_size: int
    instances: int
    max_queue_size: int
    """Requests waiting beyond this are rejected at once (the queue policy, above)."""
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_us: int = 0
    queue_timeout_us: int = 1_000_000
    """A request still queued after this is rejected (each request may shorten it)."""
    intra_op_threads: int = 2


TARGETS: dict[Target, TritonTarget] = {
    "cpu": TritonTarget(
        bundle_file=bundle.RANKER_INT8,
        max_batch_size=0,
        instances=2,
        max_queue_size=128,
        intra_op_threads=1,
    ),
    "gpu": TritonTarget(
        bundle_file=bundle.RANKER_FP32,
        max_batch_size=64,
        instances=2,
        max_queue_size=2048,
        preferred_batch_sizes=(16, 32, 64),
        max_queue_delay_us=500,
    ),
}


_INPUTS = (
    (HISTORY_IDS, mc.TYPE_INT64, [HISTORY_LEN]),
    (CANDIDATE_IDS, mc.TYPE_INT64, [-1]),
    (CONTEXT, mc.TYPE_FP32, [CONTEXT_DIM]),
    (CANDIDATE_FEATURES, mc.TYPE_FP32, [-1, CANDIDATE_FEATURE_DIM]),
)
_OUTPUTS = ((SCORES, mc.TYPE_FP32, [-1]),)


def model_config(name: str, target: Target, knobs: TritonTarget | None = None) -> mc.ModelConfig:
    """The typed Triton configuration of the ranker ``name`` for ``target``."""
    knobs = knobs or TARGETS[target]
    config = mc.ModelConfig(name=name, max_batch_size=knobs.max_batch_size)
    config.version_policy.all.SetInParent()
    batch = [] if knobs.max_batch_size else [-1]
    for tensor_name, dtype, dims in _INPUTS:
        config.input.add(name=tensor_name, data_type=dtype, dims=batch + dims)
    for tensor_name, dtype, dims in _OUTPUTS:
        config.output.add(name=tensor_name, data_type=dtype, dims=batch + dims)
    batching = config.dynamic_batching
    batching.preferred_batch_size.extend(knobs.preferred_batch_sizes)
    batching.max_queue_delay_microseconds = knobs.max_queue_delay_us
    queue = batching.default_queue_policy
    queue.timeout_action = mc.ModelQueuePolicy.REJECT
    queue.default_timeout_microseconds = knobs.queue_timeout_us
    queue.allow_timeout_override = True
    queue.max_queue_size = knobs.max_queue_size
    if target == "cpu":
        config.backend = "python"
        config.instance_group.add(count=knobs.instances, kind=mc.ModelInstanceGroup.KIND_CPU)
        config.parameters["intra_op_threads"].string_value = str(knobs.intra_op_threads)
    else:
        config.platform = "onnxruntime_onnx"
        config.default_model_filename = MODEL_FILE
        config.instance_group.add(count=knobs.instances, kind=mc.ModelInstanceGroup.KIND_GPU)
        tensorrt = config.optimization.execution_accelerators.gpu_execution_accelerator.add(
            name="tensorrt"
        )
        tensorrt.parameters["precision_mode"] = "FP16"
        tensorrt.parameters["max_workspace_size_bytes"] = str(1 << 30)
        tensorrt.parameters["trt_engine_cache_enable"] = "true"
        tensorrt.parameters["trt_engine_cache_path"] = "/tmp/trt-cache"
    return config


def write_model_dir(repository: Path, name: str, target: Target) -> Path:
    """Write ``<repository>/<name>/config.pbtxt`` (and ``model.py`` for cpu); returns the dir."""
    directory = repository / name
    directory.mkdir(parents=True, exist_ok=True)
    text = text_format.MessageToString(model_config(name, target))
    (directory / CONFIG_FILE).write_text(text)
    if target == "cpu":
        shutil.copyfile(MODEL_PY_SOURCE, directory / MODEL_PY)
    return directory


def read_config(path: Path) -> mc.ModelConfig:
    """Parse a ``config.pbtxt`` back into a ``ModelConfig``."""
    return text_format.Parse(path.read_text(), mc.ModelConfig())


def target_of(config: mc.ModelConfig) -> Target:
    """The target a configuration was generated for (what :func:`model_config` wrote)."""
    if config.backend == "python":
        return "cpu"
    if config.platform == "onnxruntime_onnx":
        return "gpu"
    raise ValueError(f"{config.name}: neither the cpu nor the gpu ranker configuration")
