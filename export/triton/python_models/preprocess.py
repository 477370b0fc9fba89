"""Triton python-backend model ``emonext_preprocess``: UINT8 image -> float32 ``spec.input_shape``.

The image is ``[H, W, C]`` per request element (C = 1 gray, 3 BGR, 4 BGRA), any size; the
preprocessing is ``emonext_edge.preprocess.preprocess_one``, the project's one implementation
(PIL-exact grayscale, resize, center crop), following the spec the repository writer put in the
``emonext_preprocessing`` parameter (the classifier artifact's recorded spec; the trained one when absent).
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
        from emonext_edge.preprocess import SPEC, PreprocessSpec, preprocess_one

        config = json.loads(args["model_config"])
        record = config.get("parameters", {}).get("emonext_preprocessing", {}).get("string_value", "")
        self.spec = PreprocessSpec.from_dict(json.loads(record)) if record else SPEC
        self.preprocess_one = preprocess_one

    def _one(self, image):
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[:, :, 0]
        return self.preprocess_one(np.ascontiguousarray(image), spec=self.spec)

    def execute(self, requests):
        responses = []
        for request in requests:
            images = pb_utils.get_input_tensor_by_name(request, "image").as_numpy()
            try:
                out = np.stack([self._one(image) for image in images]).astype(np.float32)
            except (ValueError, TypeError) as exc:  # the client's image (ImageError is a ValueError): HTTP 400
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=_client_error(exc)))
                continue
            except Exception as exc:  # noqa: BLE001  answered as this request's error (HTTP 500)
                error = pb_utils.TritonError(f"emonext_preprocess: {exc}")
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
                continue
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("input", out)]))
        return responses


def _client_error(exc):
    """An INVALID_ARG error (HTTP 400, gRPC INVALID_ARGUMENT); python backends without error codes
    (before Triton 23.xx) only have the plain error, which Triton answers with 500."""
    message = f"emonext_preprocess: {exc}"
    code = getattr(pb_utils.TritonError, "INVALID_ARG", None)
    return pb_utils.TritonError(message, code) if code is not None else pb_utils.TritonError(message)
