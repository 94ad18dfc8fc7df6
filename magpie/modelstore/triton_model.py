"""Triton Python-backend model: the Magpie ranker (``model.onnx`` beside this file's copy)
run with ONNX Runtime on the CPU.

The CPU config has no batching (see :mod:`magpie.modelstore.triton_repo`): each request
is scored by one ONNX Runtime run on exactly its own tensors, so its scores equal the
in-process ranker's. A failing request gets an error response; the others are answered.
Inputs and outputs: :mod:`magpie.contract.signature`. This file is copied into the
model repository, so it imports only numpy, onnxruntime and Triton's
``triton_python_backend_utils``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import onnxruntime as ort
import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]

_INPUTS = ("history_ids", "candidate_ids", "context", "candidate_features")
_OUTPUT = "scores"


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        parameters = config.get("parameters", {})
        threads = int(parameters.get("intra_op_threads", {}).get("string_value", "1"))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Spinning pool threads burnt ~15 ms of CPU per request on 2 cores; one thread
        # per instance and no spinning leave the cores to the other processes.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def _score(self, request: Any) -> Any:
        feeds = {n: pb_utils.get_input_tensor_by_name(request, n).as_numpy() for n in _INPUTS}
        scores = self.session.run([_OUTPUT], feeds)[0]
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(_OUTPUT, scores)])

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            try:
                responses.append(self._score(request))
            except Exception as error:  # noqa: BLE001 - answered as this request's error
                error_response = pb_utils.TritonError(f"{type(error).__name__}: {error}")
                responses.append(pb_utils.InferenceResponse(error=error_response))
        return responses

    def finalize(self) -> None:
        del self.session
