"""``Runtime``: one inference API over ONNX Runtime, OpenVINO, TensorRT and PyTorch.

    with Runtime("emonext.onnx") as rt:
        print(rt.predict("face.jpg").label)

The artifact decides the backend (see :mod:`emonext_edge.backends`); labels come from the
artifact's metadata; preprocessing is :mod:`emonext_edge.preprocess` (the only copy).

Thread safety: ``run`` / ``predict`` / ``predict_batch`` may be called from several
threads at once; each backend documents how it makes that safe (ONNX Runtime sessions
are thread-safe, OpenVINO uses one infer request per call from a pool, TensorRT one
execution context per call under a lock). ``close`` must not race with running calls.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from .argtypes import THREADS_PER_CPU, max_threads
from .backends import is_model_url, open_backend
from .backends.base import Backend, IODescription
from .errors import EmoNeXtError, ImageError, ModelFileError, ModelPathTypeError, UsageError
from .faces import Box, DetectorSpec, crop_face, detect_faces
from .formats import format_for
from .metadata import ArtifactMetadata, labels_for, warn_deprecated
from .preprocess import (
    INPUT_SHAPE,
    ImageInput,
    PreprocessSpec,
    as_image_list,
    load_image,
    preprocess,
    preprocess_one,
    spec_of,
)
from .scores import softmax as _softmax
from .stream import VideoStream

log = logging.getLogger(__name__)

#: images with a shorter side of at least this many px are searched for faces by ``predict``
SCENE_CHECK_SIDE = 128

#: Images preprocessed and run at a time by ``predict_batch`` / ``run`` (a dynamic-batch model
#: never gets more): bounds peak memory to one chunk of float32 input (32 x 602 KB = 19 MB) plus
#: the backend's activations for a batch of 32, whatever the length of the list.
CHUNK_SIZE = 32
VerifyMode = Union[bool, str]




def check_threads(threads: Any, name: str = "threads") -> Optional[int]:
    """``None`` or an int in 1..:func:`max_threads`, else ``UsageError`` naming ``name`` (e.g. ``--threads``)."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)):
        raise UsageError(f"{name}={threads!r}: expected a whole number of threads, got {type(threads).__name__}")
    limit = max_threads()
    if not 1 <= int(threads) <= limit:
        raise UsageError(f"{name}={threads}: expected 1 to {limit} threads "
                         f"({THREADS_PER_CPU} x the {os.cpu_count() or 1} CPUs of this machine, at least 4, at most 256)")
    return int(threads)


def _verify_mode(verify: Any) -> VerifyMode:
    if verify is True or verify is False or (isinstance(verify, str) and verify == "strict"):
        return verify
    raise UsageError(f"verify={verify!r}: expected True (check what is recorded, warn when nothing is), "
                     "'strict' (refuse unverifiable artifacts) or False")


@dataclass(frozen=True)
class Prediction:
    """The top label, its softmax probability, all probabilities by label, and the raw logits."""

    label: str
    score: float
    probs: dict[str, float] = field(compare=False)
    logits: np.ndarray = field(compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "score": self.score, "probs": dict(self.probs), "logits": self.logits.tolist()}


@dataclass(frozen=True)
class FacePrediction:
    """One detected face: its ``(x, y, w, h)`` box in the frame and the prediction for its crop."""

    box: Box
    prediction: Prediction

    def to_dict(self) -> dict[str, Any]:
        return {"box": list(self.box), **self.prediction.to_dict()}


def __getattr__(name: str) -> Any:
    if name == "softmax":  # 0.3 home of softmax; removal: 0.5
        warn_deprecated("emonext_edge.runtime.softmax", "emonext_edge.scores.softmax", "0.5")
        return _softmax
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def check_batch(batch: Any, where: str = "batch", input_shape: tuple[int, ...] = INPUT_SHAPE) -> np.ndarray:
    """A float32 ``[N, *input_shape]`` array of finite values, or ``ImageError`` naming the first bad element."""
    if not isinstance(batch, np.ndarray):
        raise ImageError(f"{where}: expected a numpy array, got {type(batch).__name__}")
    if batch.ndim != 4 or tuple(batch.shape[1:]) != tuple(input_shape) or batch.shape[0] == 0:
        raise ImageError(f"{where}: expected float32 [N>=1, {', '.join(map(str, input_shape))}] (preprocessed images), "
                         f"got shape {batch.shape}")
    if batch.dtype != np.float32:
        raise ImageError(f"{where}: expected dtype float32, got {batch.dtype}; use emonext_edge.preprocess(images)")
    finite = np.isfinite(batch).reshape(batch.shape[0], -1).all(axis=1)
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        raise ImageError(f"{where}: element {bad} contains NaN or inf values")
    return np.ascontiguousarray(batch)


def _element_error(exc: ImageError, start: int, size: int) -> tuple[int, str]:
    """Index in the whole list and message of an error ``preprocess`` raised for a chunk that
    starts at ``start`` ("batch element i: ..." for chunks of several, the bare message for one)."""
    import re

    text = str(exc)
    match = re.match(r"batch element (\d+): (.*)$", text, re.DOTALL) if size > 1 else None
    if match:
        return start + int(match.group(1)), match.group(2)
    return start, text


class Runtime:
    """Load an EmoNeXt artifact and classify faces with it.

    ``model_path``: ``.onnx`` (ONNX Runtime), ``.xml`` + ``.bin`` (OpenVINO), ``.engine`` /
    ``.plan`` (TensorRT) or ``.pt`` / ``.pth`` / ``.safetensors`` (PyTorch reference), or a model served
    by Triton: ``"grpc://host:8001/emonext"`` / ``"http://host:8000/emonext"`` (option ``timeout=``).
    ``backend``: "auto" (by suffix) or a backend name. ``device``, ``precision``, ``threads``
    and ``**backend_options`` (e.g. ``providers=`` for ONNX Runtime, ``hint=`` /
    ``num_requests=`` for OpenVINO) go to the backend; ``None`` leaves its default.
    ``threads``: 1 to :func:`max_threads` (4 x the CPUs), checked before anything is loaded.
    ``verify``: ``True`` (default) checks the SHA-256 of every file the sidecar/manifest lists
    under ``artifact_sha256``, the hash of the record's labels and preprocessing
    (``record_sha256``) and the sidecar's labels against the copy embedded in the model; an
    artifact with nothing recorded loads with a one-line warning that it is unverified.
    ``"strict"`` refuses such artifacts; ``False`` skips every check (docs/limits.md).
    """

    def __init__(
        self,
        model_path: Union[str, os.PathLike],
        backend: str = "auto",
        device: Optional[str] = None,
        precision: Optional[str] = None,
        threads: Optional[int] = None,
        verify: VerifyMode = True,
        **backend_options: Any,
    ) -> None:
        if isinstance(model_path, (str, os.PathLike)) and not is_model_url(model_path):
            from .commit_marker import refuse_interrupted  # a commit killed between its renames: say so

            refuse_interrupted(Path(model_path))
        if not isinstance(model_path, (str, os.PathLike)):
            raise ModelPathTypeError(
                f"Runtime: model_path must be a str or os.PathLike path to an artifact (.onnx, .xml, .engine, .pt, ...) "
                f"or a model URL, got {type(model_path).__name__} ({model_path!r:.60})"
            )
        threads = check_threads(threads)
        verify = _verify_mode(verify)
        # a served model ("grpc://host:8001/emonext", "http://...") keeps its URL; files become Paths
        self.path: Any = model_path if is_model_url(model_path) else Path(model_path)
        if isinstance(self.path, Path):
            from .fileio import special_file_kind

            kind = special_file_kind(self.path, missing="")
            if kind and kind != "a directory":  # missing files and directories: open_backend says which
                raise ModelFileError(f"{self.path}: is {kind}, not a model file" if kind.startswith("a ")
                                     else f"{self.path}: {kind}")
        notes: list[tuple[int, str]] = []  # "unverified" warnings, logged once the artifact has loaded
        record: Any = None  # the sidecar, parsed once here for the integrity check and the backend
        if isinstance(self.path, Path) and self.path.is_file():
            from .integrity import read_record, verify_artifact

            record_file, raw = read_record(self.path)
            if verify:
                verify_artifact(self.path, strict=verify == "strict", notes=notes, record=(record_file, raw))
            fmt = format_for(self.path)
            if record_file is not None and fmt is not None and fmt.record is not None:
                record = ArtifactMetadata.from_dict(raw, str(record_file))
        options = dict(backend_options)
        for key, value in (("device", device), ("precision", precision), ("threads", threads)):
            if value is not None:
                options[key] = value
        self.backend: Optional[Backend] = open_backend(self.path, backend, record=record, **options)
        try:
            if self.backend.metadata is None:
                sidecar = self.path.with_suffix(".json").name if isinstance(self.path, Path) else "-"
                if self.backend.num_classes == 7:
                    assumed = "assuming the FER2013 ImageFolder label order (Angry, Disgust, Fear, Happy, Neutral, Sad, Surprise)"
                else:
                    assumed = (f"the model has {self.backend.num_classes} outputs, not the 7 FER2013 emotions: "
                               f"labels are class_0..class_{self.backend.num_classes - 1}")
                log.warning("%s: no metadata (no sidecar %s, nothing embedded); %s", self.path, sidecar, assumed)
            where = str(self.path)  # the sidecar, when the labels come from it
            if isinstance(self.path, Path) and self.path.suffix != ".json" and self.path.with_suffix(".json").is_file():
                where = str(self.path.with_suffix(".json"))
            self.labels: tuple[str, ...] = labels_for(self.backend.metadata, self.backend.num_classes, where)
            #: the preprocessing the artifact records (the trained spec when it records none); used by predict*
            self.spec: PreprocessSpec = spec_of(self.backend.metadata, where)
            if verify and isinstance(self.path, Path):
                from .integrity import check_embedded_labels

                check_embedded_labels(self.path, self.backend, self.labels)
        except BaseException:
            self.backend.close()
            raise
        for level, message in notes:
            log.log(level, "%s", message)
        #: the artifact's record (format, precision, labels, gate result, hashes...); ``None``: it carries none
        self.metadata: Optional[ArtifactMetadata] = self.backend.metadata

    # -- life cycle -----------------------------------------------------------------
    @property
    def artifact_metadata(self) -> Optional[ArtifactMetadata]:
        """Deprecated alias of :attr:`metadata` (the typed record since 0.4); removal: 0.5."""
        warn_deprecated("Runtime.artifact_metadata", "Runtime.metadata (the typed record)", "0.5")
        return self.metadata

    @property
    def metadata_dict(self) -> dict[str, Any]:
        """Deprecated (removal: 0.5): the record as the 0.3 dict (``{}`` without one); use :attr:`metadata`."""
        warn_deprecated("Runtime.metadata_dict (the 0.3 dict view)", "Runtime.metadata (typed) or .metadata.to_dict()",
                        "0.5")
        return self.metadata.to_dict() if self.metadata is not None else {}

    @property
    def io(self) -> IODescription:
        """The backend's one I/O description (:class:`emonext_edge.backends.IODescription`)."""
        return self._open().io

    @property
    def info(self) -> dict[str, Any]:
        """What actually runs: backend, device, precision, provider, threads, batch limits."""
        backend = self._open()
        return {**backend.info, "model": str(self.path), "min_batch": backend.min_batch, "max_batch": backend.max_batch}

    def _open(self) -> Backend:
        if self.backend is None:
            raise EmoNeXtError(f"{self.path}: this Runtime is closed")
        return self.backend

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()
            self.backend = None

    def __enter__(self) -> Runtime:  # noqa: PYI034 - typing.Self needs 3.11 (the library supports 3.8)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.backend is None else self.backend.name
        return f"Runtime({str(self.path)!r}, {state})"

    # -- inference --------------------------------------------------------------------
    def run(self, batch: np.ndarray) -> np.ndarray:
        """float32 ``[N, *self.spec.input_shape]`` -> float32 logits ``[N, C]``.

        Run in chunks of at most :data:`CHUNK_SIZE` (or the artifact's maximum batch, if
        smaller), so the backend's memory does not grow with ``N``; a fixed-batch artifact
        larger than the remainder gets zero padding, trimmed from the result; nothing else is padded.
        """
        backend = self._open()
        batch = check_batch(batch, input_shape=self.spec.input_shape)
        n = batch.shape[0]
        step = min(backend.max_batch or CHUNK_SIZE, CHUNK_SIZE) if backend.min_batch <= CHUNK_SIZE else backend.min_batch
        outputs = []
        for start in range(0, n, step):
            chunk = batch[start : start + step]
            size = chunk.shape[0]
            if size < backend.min_batch:
                pad = np.zeros((backend.min_batch - size, *self.spec.input_shape), dtype=np.float32)
                chunk = np.concatenate([chunk, pad])
            out = backend.run(chunk)
            if out.ndim != 2 or out.shape[0] != chunk.shape[0]:
                raise EmoNeXtError(f"{self.path}: backend returned shape {out.shape} for a batch of {chunk.shape[0]}")
            outputs.append(out[:size])
        return np.concatenate(outputs) if len(outputs) > 1 else outputs[0]

    def _predictions(self, logits: np.ndarray) -> list[Prediction]:
        probs = _softmax(logits)
        out = []
        for row, p in zip(logits, probs):
            top = int(np.argmax(p))
            out.append(
                Prediction(
                    label=self.labels[top],
                    score=float(p[top]),
                    probs={label: float(v) for label, v in zip(self.labels, p)},
                    logits=row.astype(np.float32),
                )
            )
        return out

    def predict(
        self,
        image: ImageInput,
        rgb: bool = False,
        detector: DetectorSpec = None,
        margin: float = 0.1,
        whole_image: bool = False,
        **removed: Any,
    ) -> Prediction:
        """Classify one face image (path or uint8 array; BGR unless ``rgb``; gray and BGRA accepted).

        ``predict`` never treats a scene as one face. An image of at least
        :data:`SCENE_CHECK_SIDE` px on its shorter side is first searched for faces
        (:func:`emonext_edge.faces.detect_faces`, ``detector``; default: the bundled YuNet):

        - no face found, or one face filling at least half of the image's width and height:
          the image is classified as given (a face crop; tight crops often have too little
          context for the detector); when no face is found, with a logged warning;
        - one smaller face: that face is cropped (with ``margin``) and classified (a portrait);
        - several faces: ``ImageError`` saying how many, with the advice to use
          :meth:`predict_faces` (CLI: ``predict --faces``).

        ``whole_image=True`` skips the search and classifies the image as given. Smaller
        images are always classified as given. Returns one :class:`Prediction`.
        ``detect_faces=True`` (0.3, which returned a list) is refused: use :meth:`predict_faces`.
        """
        if removed:
            advice = " (predict returns one Prediction; use predict_faces(frame) for every face)" \
                if "detect_faces" in removed else ""
            raise TypeError(f"predict() got unexpected keyword argument(s) {', '.join(sorted(removed))}{advice}")
        tensor = preprocess_one(image, rgb=rgb, spec=self.spec)  # validates the image, with the usual messages
        if not whole_image:
            crop = self._face_crop(image, rgb, detector, margin)
            if crop is not None:
                tensor = preprocess_one(crop, spec=self.spec)
        return self._predictions(self.run(tensor[None]))[0]

    def _face_crop(self, image: ImageInput, rgb: bool, detector: DetectorSpec, margin: float) -> Optional[np.ndarray]:
        """The BGR crop of the one face of a larger image, ``None`` for a face crop; ``ImageError`` for several faces."""
        name = str(image) if isinstance(image, (str, os.PathLike)) else "image"
        frame = load_image(image) if isinstance(image, (str, os.PathLike)) else image
        if not isinstance(frame, np.ndarray) or frame.ndim not in (2, 3):
            return None  # preprocess_one accepted it; nothing a detector could search
        if rgb and not isinstance(image, (str, os.PathLike)) and frame.ndim == 3 and frame.shape[2] in (3, 4):
            frame = np.ascontiguousarray(frame[:, :, [2, 1, 0] + ([3] if frame.shape[2] == 4 else [])])
        h, w = frame.shape[:2]
        if min(h, w) < SCENE_CHECK_SIDE:
            return None
        boxes = detect_faces(frame, detector=detector, min_size=max(24, min(h, w) // 40))
        if len(boxes) > 1:
            raise ImageError(
                f"{name}: {len(boxes)} faces found in this {w}x{h} image; predict classifies one face: use "
                "predict_faces (CLI: predict --faces) to classify each face, or whole_image=True "
                "(CLI: --whole-image) to classify the image as it is"
            )
        if not boxes:  # a tight face crop can escape the detector: classified as given, but not silently
            log.warning("%s: no face found in this %dx%d image; classified as a whole (predict --faces to search "
                        "for faces only, --whole-image to silence this)", name, w, h)
            return None
        if boxes[0][2] >= w / 2 and boxes[0][3] >= h / 2:
            return None
        log.info("%s: classifying the face at %s of this %dx%d image", name, boxes[0], w, h)
        return crop_face(frame, boxes[0], margin=margin)

    def predict_faces(
        self, frame: ImageInput, rgb: bool = False, detector: DetectorSpec = None, margin: float = 0.1
    ) -> list[FacePrediction]:
        """Detect faces in ``frame`` and classify each crop (grown by ``margin``); one
        :class:`FacePrediction` per face, left to right; an empty list when there is none.
        ``detector``: see :func:`emonext_edge.faces.detect_faces` (default: the bundled YuNet)."""
        if isinstance(frame, (str, os.PathLike)):
            frame, rgb = load_image(frame), False
        if isinstance(frame, np.ndarray) and rgb and frame.ndim == 3 and frame.shape[2] in (3, 4):
            frame = np.ascontiguousarray(frame[:, :, [2, 1, 0] + ([3] if frame.shape[2] == 4 else [])])
        boxes = detect_faces(frame, detector=detector)  # validates the frame
        if not boxes:
            return []
        crops = [crop_face(frame, box, margin=margin) for box in boxes]
        predictions = self._predictions(self.run(preprocess(crops, spec=self.spec)))
        return [FacePrediction(box, pred) for box, pred in zip(boxes, predictions)]

    def predict_batch(self, images: Sequence[ImageInput], rgb: bool = False) -> list[Prediction]:
        """Classify several images (paths or arrays); a bad element raises ``ImageError`` naming its index.

        Same rule as :func:`emonext_edge.preprocess`: a list, or an ``[N, H, W]`` / ``[N, H, W, C]``
        array stack, gives one prediction per image; a single path or image gives a list of one.
        Images are read, preprocessed and run :data:`CHUNK_SIZE` at a time, so peak memory is
        one chunk's, not the list's (docs/limits.md); the results are those of one big batch.
        """
        items = as_image_list(images, where="predict_batch")
        if len(items) == 0:
            raise ImageError("predict_batch: got an empty list of images")
        self._open()
        out: list[Prediction] = []
        for start in range(0, len(items), CHUNK_SIZE):
            chunk = items[start : start + CHUNK_SIZE]
            try:
                batch = preprocess(chunk, rgb=rgb, spec=self.spec)
            except ImageError as exc:
                if len(items) == 1:
                    raise
                index, message = _element_error(exc, start, len(chunk))
                raise type(exc)(f"batch element {index}: {message}") from None
            out += self._predictions(self.run(batch))
            del batch
        return out

    # -- video (issue 18; implementation in emonext_edge/stream.py) ----------------------
    def stream(self, source: Any, detect_every: int = 1, smoothing: Any = None, **options: Any) -> VideoStream:
        """Faces in a video, frame by frame: ``for result in rt.stream("clip.mp4", detect_every=3, smoothing=0.5)``.

        ``source``: video file, camera index, stream URL (rtsp/http) or an iterable of BGR
        frames; ``smoothing``: half-life in seconds (``None``/0 = off) or a smoother object.
        Yields :class:`emonext_edge.stream.FrameResult` (frame index, time, per face: track
        id, box, raw and smoothed probabilities, label); other options: see
        :class:`emonext_edge.stream.VideoStream`.
        """
        return VideoStream(self, source, detect_every=detect_every, smoothing=smoothing, **options)
