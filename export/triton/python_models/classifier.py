"""Triton python-backend model ``emonext``: our Runtime backends (ONNX Runtime / OpenVINO) inside Triton.

Written by ``python -m export.triton --python-backend``. The artifact sits beside this file
(``model.onnx`` or ``model.xml`` + ``model.bin``, with its ``model.json`` sidecar); the config's
parameters name it (``emonext_artifact``) and carry backend options (``emonext_backend_options``,
JSON). Every request of a dynamic batch is stacked into one array and run in one call.
"""

import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils  # only inside Triton's python-backend stub

# The local bundled server (export.triton.server) names its copy of emonext_edge here; in NVIDIA's
# container emonext_edge is pip-installed instead.
if os.environ.get("EMONEXT_TRITON_SRC") and os.environ["EMONEXT_TRITON_SRC"] not in sys.path:
    sys.path.insert(0, os.environ["EMONEXT_TRITON_SRC"])


class TritonPythonModel:
    def initialize(self, args):
        from emonext_edge.backends import open_backend

        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        artifact = os.path.join(version_dir, params["emonext_artifact"])
        options = json.loads(params.get("emonext_backend_options") or "{}")
        from emonext_edge.integrity import verify_artifact

        verify_artifact(artifact)  # the SHA-256 of every file the model.json sidecar lists, as Runtime does
        self.backend = open_backend(artifact, **options)
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]
        self.step = self.backend.max_batch or None
        import emonext_edge

        pb_utils.Logger.log_info(
            f"emonext: {artifact} on {self.backend.info} (numpy {np.__version__}, emonext_edge {emonext_edge.__file__})"
        )

    def _run(self, batch):
        if self.step is None or batch.shape[0] <= self.step:
            return self.backend.run(batch)
        return np.concatenate([self.backend.run(batch[i : i + self.step]) for i in range(0, batch.shape[0], self.step)])

    def execute(self, requests):
        arrays = [pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests]
        sizes = [a.shape[0] for a in arrays]
        try:
            batch = np.ascontiguousarray(np.concatenate(arrays).astype(np.float32, copy=False))
            logits = self._run(batch)
        except Exception as exc:  # noqa: BLE001  one failing batch answers every request with the error
            error = pb_utils.TritonError(f"emonext: inference failed: {exc}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        responses, start = [], 0
        for n in sizes:
            out = pb_utils.Tensor(self.output_name, np.ascontiguousarray(logits[start : start + n], dtype=np.float32))
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
            start += n
        return responses

    def finalize(self):
        self.backend.close()
