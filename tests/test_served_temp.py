"""``benchmarks/served.py`` (and ``latency.py --served``, which runs it) leaves no ``served-bench-*``
folder in the temp dir, whether the server ran or could not start."""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _served_module():
    spec = importlib.util.spec_from_file_location("served_bench", REPO / "benchmarks" / "served.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_repository_folder_is_removed_when_the_server_cannot_start(tmp_path, monkeypatch):
    triton = pytest.importorskip("export.triton")
    from export.triton.server import ServerError

    written = []

    def write_repository(artifacts, repo, options):
        (Path(repo) / "emonext" / "1").mkdir(parents=True)
        (Path(repo) / "emonext" / "1" / "model.onnx").write_bytes(b"x" * 1024)
        written.append(Path(repo))

    class NoServer:
        def __init__(self, repo):
            pass

        def start(self):
            raise ServerError("no Triton server here (simulated)")

    monkeypatch.setattr(triton, "write_repository", write_repository)
    monkeypatch.setattr(triton, "TritonServer", NoServer)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert _served_module().main(["--artifact", "m.onnx", "--requests", "1", "--warmup", "0"]) == 3
    assert written and written[0].is_relative_to(tmp_path)  # the repository was made in the temp dir ...
    assert list(tmp_path.glob("served-bench-*")) == []  # ... and removed
