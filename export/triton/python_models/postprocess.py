"""Triton python-backend model ``emonext_postprocess``: logits -> top label (BYTES) and its softmax score."""

import json

import numpy as np
import triton_python_backend_utils as pb_utils  # only inside Triton's python-backend stub


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        self.labels = json.loads(params["emonext_labels"])

    def execute(self, requests):
        responses = []
        for request in requests:
            logits = pb_utils.get_input_tensor_by_name(request, "logits").as_numpy().astype(np.float64)
            z = np.exp(logits - logits.max(axis=1, keepdims=True))
            probs = z / z.sum(axis=1, keepdims=True)
            top = probs.argmax(axis=1)
            labels = np.array([[self.labels[i].encode()] for i in top], dtype=np.object_)
            scores = probs[np.arange(len(top)), top].astype(np.float32)[:, None]
            responses.append(
                pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("label", labels), pb_utils.Tensor("score", scores)])
            )
        return responses
