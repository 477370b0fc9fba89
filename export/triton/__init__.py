"""Triton Inference Server: model repositories from our artifacts, and a local server for CPU hosts and CI.

    python -m export.triton --artifact emonext.onnx --output exports/triton --python-backend --preprocess
    python -m export.triton serve exports/triton

See :mod:`export.triton.repository` (writer, validation, refusals) and
:mod:`export.triton.server` (the bundled ``tritonserver`` of ``nvidia-pytriton`` in its own environment).
"""

from .repository import (
    CLASSIFIER,
    PIPELINE,
    POSTPROCESS,
    PREPROCESS,
    ArtifactInfo,
    RepositoryOptions,
    inspect_artifact,
    parse_config,
    read_repository_configs,
    tensorrt_releases,
    write_repository,
)
from .server import ServerError, TritonServer, ensure_env, statistics

__all__ = [
    "CLASSIFIER",
    "PIPELINE",
    "POSTPROCESS",
    "PREPROCESS",
    "ArtifactInfo",
    "RepositoryOptions",
    "ServerError",
    "TritonServer",
    "ensure_env",
    "inspect_artifact",
    "parse_config",
    "read_repository_configs",
    "statistics",
    "tensorrt_releases",
    "write_repository",
]
