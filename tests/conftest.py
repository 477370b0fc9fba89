"""Shared fixtures. Data in ../shared is used where present; tests that need it skip otherwise."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CACHE = REPO / "tests" / "fixtures" / "cache"
OFFICIAL = SHARED / "fixtures" / "official_emonext"
MODELS = SHARED / "models"
FER_TARBALL = SHARED / "datasets" / "fer2013" / "fer2013_train_val.tar.gz"

# progress lines (emonext_edge.progress) would make the stderr of timed steps depend on the machine's
# speed; tests that check progress turn it on themselves
os.environ.setdefault("EMONEXT_PROGRESS", "0")


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        pytest.skip(f"{what} not available: {path} is absent (../shared is not beside the repo)")
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _need(SHARED, "shared data")


@pytest.fixture(scope="session")
def official_checkpoint() -> Path:
    return _need(OFFICIAL / "emonext_small_official.pt", "official EmoNeXt fixture checkpoint")


@pytest.fixture(scope="session")
def official_io() -> dict:
    with np.load(_need(OFFICIAL / "emonext_small_official_io.npz", "official EmoNeXt golden outputs")) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="session")
def reference_checkpoint() -> Path:
    return _need(MODELS / "emonext_atto_fer2013.pt", "reference FER2013 model")


@pytest.fixture(scope="session")
def reference_info() -> dict:
    return json.loads(_need(MODELS / "emonext_atto_fer2013.json", "reference model card").read_text())


@pytest.fixture(scope="session")
def fer2013_root() -> Path:
    """The extracted ``FER2013`` folder (train/val), cached under tests/fixtures/cache."""
    root = CACHE / "FER2013"
    marker = CACHE / ".fer2013.extracted"
    if not marker.exists():
        _need(FER_TARBALL, "FER2013 dataset tarball")
        CACHE.mkdir(parents=True, exist_ok=True)
        with tarfile.open(FER_TARBALL) as tar:
            tar.extractall(CACHE, filter="data")
        marker.write_text(str(FER_TARBALL))
    return root


@pytest.fixture(scope="session")
def official_model(official_checkpoint):
    from emonext_edge import load_model

    return load_model(official_checkpoint)


@pytest.fixture(scope="session")
def reference_model(reference_checkpoint):
    from emonext_edge import load_model

    return load_model(reference_checkpoint)


def fer_val_sample(root: Path, per_class: int) -> list[tuple[Path, int]]:
    """Deterministic sample of val faces: the first ``per_class`` files (sorted) of each class."""
    from emonext_edge.labels import IMAGEFOLDER_LABELS

    items = []
    for index, label in enumerate(IMAGEFOLDER_LABELS):
        files = sorted((root / "val" / label).glob("*.jpg"))[:per_class]
        items += [(f, index) for f in files]
    return items


@pytest.fixture(scope="session")
def fer_val_faces(fer2013_root) -> tuple[list[Path], np.ndarray]:
    """A small, fixed, class-covering set of real FER2013 val faces (5 per class)."""
    items = fer_val_sample(fer2013_root, 5)
    return [p for p, _ in items], np.array([y for _, y in items])


@pytest.fixture(scope="session")
def onnx_path(official_model, tmp_path_factory) -> Path:
    """The official fixture model exported by export.onnx (dynamic batch), shared by runtime tests."""
    from _runtime_artifacts import onnx_artifact

    d = tmp_path_factory.getbasetemp() / "runtime_artifacts"
    d.mkdir(exist_ok=True)
    return onnx_artifact(official_model, d)


@pytest.fixture(scope="session")
def ir_path(official_model, onnx_path) -> Path:
    """The same model as OpenVINO IR (f32 weights, metadata in rt_info and sidecar)."""
    pytest.importorskip("openvino")
    from _runtime_artifacts import ir_artifact

    return ir_artifact(official_model, onnx_path.parent)
