"""Triton Python-backend model: the Magpie ranker (``model.onnx`` beside this file's copy)
run with ONNX Runtime on the CPU.

Triton's dynamic batcher hands ``execute`` several requests at once; requests with the
same candidate count are concatenated and scored in one ONNX Runtime call, then the
scores are split back per request. A failing group answers its requests with an error
and leaves the others alone. Inputs and outputs: :mod:`services.learning.signature`
(this file is copied into the model repository, so it imports only numpy, onnxruntime
and Triton's ``triton_python_backend_utils``).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]
from numpy.typing import NDArray

_INPUTS = ("history_ids", "candidate_ids", "context")
_OUTPUT = "scores"


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        parameters = config.get("parameters", {})
        threads = int(parameters.get("intra_op_threads", {}).get("string_value", "1"))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def execute(self, requests: list[Any]) -> list[Any]:
        responses: list[Any] = [None] * len(requests)
        groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
        arrays: list[list[NDArray[Any]]] = []
        for index, request in enumerate(requests):
            inputs = [pb_utils.get_input_tensor_by_name(request, n).as_numpy() for n in _INPUTS]
            arrays.append(inputs)
            groups[tuple(inputs[1].shape[1:])].append(index)
        for members in groups.values():
            try:
                feeds = {
                    name: np.concatenate([arrays[i][k] for i in members])
                    for k, name in enumerate(_INPUTS)
                }
                scores = self.session.run([_OUTPUT], feeds)[0]
            except Exception as error:  # noqa: BLE001 - answered as a Triton error per request
                failure = pb_utils.InferenceResponse(error=pb_utils.TritonError(str(error)))
                for i in members:
                    responses[i] = failure
                continue
            start = 0
            for i in members:
                rows = arrays[i][0].shape[0]
                tensor = pb_utils.Tensor(_OUTPUT, scores[start : start + rows])
                responses[i] = pb_utils.InferenceResponse(output_tensors=[tensor])
                start += rows
        return responses

    def finalize(self) -> None:
        del self.session
