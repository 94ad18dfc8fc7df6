"""Triton Python-backend model for tools/bench/gpu_triton.py: the ranker on a GPU.

Engine ``torch`` loads the benchmark's ranker module and runs it on ``device`` in
``dtype``; engine ``onnxruntime`` runs ``ranker.fp16.onnx`` with the CUDA execution
provider (when onnxruntime-gpu is installed). Requests of equal shape handed over by the
dynamic batcher are concatenated into one call (FP16 has no data-dependent scales, so
batching does not change a request's scores beyond rounding).
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]

_INPUTS = ("history_ids", "candidate_ids", "context", "candidate_features")


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        parameters = json.loads(args["model_config"]).get("parameters", {})
        p = {key: value["string_value"] for key, value in parameters.items()}
        self.engine = p["engine"]
        if self.engine == "onnxruntime":
            import onnxruntime as ort

            self.session = ort.InferenceSession(
                p["onnx"], providers=["CUDAExecutionProvider", "CPUExecutionProvider"]
            )
        else:
            import torch

            self.torch = torch
            self.device = torch.device(p["device"])
            self.dtype = getattr(torch, p["dtype"])
            # a benchmark-only module file written by gpu_triton.py, never a model artifact
            ranker = torch.load(p["module"], weights_only=False)
            self.ranker = ranker.eval().to(device=self.device, dtype=self.dtype)
            self.ranker.items.item_category = self.ranker.items.item_category.long()

    def _run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        if self.engine == "onnxruntime":
            return np.asarray(self.session.run(["scores"], feeds)[0])
        torch = self.torch
        with torch.inference_mode():
            history = torch.from_numpy(feeds["history_ids"]).to(self.device)
            items = torch.from_numpy(feeds["candidate_ids"]).to(self.device)
            context = torch.from_numpy(feeds["context"]).to(self.device, self.dtype)
            features = torch.from_numpy(feeds["candidate_features"]).to(self.device, self.dtype)
            return self.ranker(history, items, context, features).float().cpu().numpy()

    def execute(self, requests: list[Any]) -> list[Any]:
        arrays = [
            [pb_utils.get_input_tensor_by_name(r, n).as_numpy() for n in _INPUTS] for r in requests
        ]
        groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for index, inputs in enumerate(arrays):
            groups[tuple(inputs[1].shape[1:])].append(index)
        responses: list[Any] = [None] * len(requests)
        for members in groups.values():
            try:
                feeds = {
                    name: np.concatenate([arrays[i][k] for i in members])
                    for k, name in enumerate(_INPUTS)
                }
                scores = self._run(feeds)
            except Exception as error:  # noqa: BLE001 - answered as a Triton error
                failed = pb_utils.InferenceResponse(error=pb_utils.TritonError(repr(error)))
                for i in members:
                    responses[i] = failed
                continue
            start = 0
            for i in members:
                rows = arrays[i][0].shape[0]
                # An owning, contiguous float32 copy: a view into a torch-backed array
                # came back from the stub with no data on the GPU machine.
                own = np.array(scores[start : start + rows], dtype=np.float32, order="C")
                tensor = pb_utils.Tensor("scores", own)
                responses[i] = pb_utils.InferenceResponse(output_tensors=[tensor])
                start += rows
        return responses
