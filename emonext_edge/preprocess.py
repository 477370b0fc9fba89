"""The one preprocessing implementation: numpy + OpenCV, no torch, no PIL.

The official EmoNeXt evaluation is torchvision on PIL images::

    Grayscale() -> Resize(236) (PIL bilinear) -> CenterCrop(224) | TenCrop(224)
    -> ToTensor() (/255) -> repeat to 3 channels

PIL's bilinear resampling is not OpenCV's ``INTER_LINEAR``: PIL widens the filter when
downscaling (antialiasing), uses 22-bit fixed-point weights and rounds to uint8 between its
horizontal and vertical passes (whose order Pillow 13 picks by size, see
:func:`vertical_pass_first`). This module reproduces that arithmetic exactly (see
``_pil_taps``), and PIL's ``RGB -> L`` conversion, so a frame preprocessed here is
bit-identical to what the training code fed the model.

Bounded work: only the pixels the crop needs are computed. Every output pixel of PIL's
horizontal pass depends on one source row, every output pixel of its vertical pass on
one column of the horizontal result, so the resized image is evaluated only at the
224 (ten-crop: up to 3 x 224) rows and columns the crops keep, from the source rows and
columns their filter taps touch, with PIL's own per-pass rounding. A 16 x 50,000 strip
costs what a face crop costs instead of a 236 x 737,500 intermediate.

Limits (``ImageError`` naming the size and the limit): the shorter side must be at least
:data:`MIN_SIDE` pixels and the image at most :data:`MAX_PIXELS` pixels. Image files are
refused from their header (PNG, JPEG, GIF, BMP, WebP) before anything is decoded.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from .errors import ImageError, ImageTypeError, ModelFileError
from .fileio import special_file_kind
from .opencv import import_cv2


@dataclass(frozen=True)
class PreprocessSpec:
    """What the network is fed, as data: every exporter, DeepStream's scale/offsets and box
    geometry, Triton's preprocessing model and the model's STN geometry derive from it, and its
    :meth:`to_dict` is what every artifact records (``preprocessing``). :data:`SPEC` is the one
    EmoNeXt was trained with (torchvision ``Grayscale() -> Resize(236) -> CenterCrop(224) ->
    ToTensor() -> repeat to 3 channels``).

    ``y = scale * (x - offset)`` per pixel, ``x`` the uint8 gray value (DeepStream's
    ``net-scale-factor * (x - offsets)`` convention).
    """

    #: torchvision ``Resize(resize_shorter)``: the shorter side goes to this many pixels
    resize_shorter: int = 236
    #: ``CenterCrop(crop_size)`` (``TenCrop`` for the official test protocol): the network's H and W
    crop_size: int = 224
    #: PIL's bilinear: antialiased when shrinking, 22-bit fixed-point weights (see :func:`_pil_taps`)
    interpolation: str = "bilinear-pil-antialias"
    #: ``RGB -> L`` weights (R, G, B), ITU-R 601-2 (BT.601) as PIL's ``convert("L")``
    luma_weights: tuple[float, float, float] = (0.299, 0.587, 0.114)
    scale: float = 1.0 / 255.0
    offset: float = 0.0
    #: the gray plane repeated to this many channels
    channels: int = 3

    def __post_init__(self) -> None:
        for name in ("resize_shorter", "crop_size", "channels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"PreprocessSpec.{name} must be a positive integer, got {value!r}")
        if self.crop_size > self.resize_shorter:
            raise ValueError(f"PreprocessSpec: crop_size {self.crop_size} is larger than resize_shorter "
                             f"{self.resize_shorter}; the centre crop must fit in the resized image")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"PreprocessSpec.interpolation must be one of {list(INTERPOLATIONS)}, "
                             f"got {self.interpolation!r}")
        if len(self.luma_weights) != 3 or any(not 0.0 <= w <= 1.0 for w in self.luma_weights) or sum(
                luma_fixed_point(self.luma_weights)) != 1 << 16:
            raise ValueError(f"PreprocessSpec.luma_weights must be 3 weights (R, G, B) in [0, 1] whose 16-bit "
                             f"fixed-point forms sum to 65536, got {list(self.luma_weights)}")
        if not (math.isfinite(self.scale) and self.scale > 0 and math.isfinite(self.offset)):
            raise ValueError(f"PreprocessSpec: scale must be finite and > 0 and offset finite, "
                             f"got scale={self.scale!r} offset={self.offset!r}")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one network input."""
        return self.channels, self.crop_size, self.crop_size

    @property
    def crop_ratio(self) -> float:
        """The fraction of the shorter side the centre crop keeps (DeepStream's box rewrite)."""
        return self.crop_size / self.resize_shorter

    def replace(self, **changes: Any) -> PreprocessSpec:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The record artifacts carry (JSON types only); :meth:`from_dict` reads it back."""
        return {
            "version": SPEC_VERSION,
            "color": {"mode": "gray", "luma_weights_rgb": list(self.luma_weights),
                      "definition": "PIL convert('L'), ITU-R 601-2 luma in 16-bit fixed point"},
            "resize": {"shorter_side": self.resize_shorter, "interpolation": self.interpolation},
            "crop": {"size": self.crop_size, "mode": "center (ten-crop for the official test protocol)"},
            "scale": self.scale,
            "offset": self.offset,
            "normalize": None,
            "channels": self.channels,
            "layout": "NCHW float32",
            "input_shape": list(self.input_shape),
        }

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> PreprocessSpec:
        """The spec an artifact recorded (this version's :meth:`to_dict`, or 0.3's prose dict);
        ``ValueError`` naming what is missing when the record is neither."""
        if "version" not in record:  # 0.3's prose: same numbers in resize/crop/input_shape, scale "x / 255"
            record = {**record, "scale": 1.0 / 255.0, "channels": (record.get("input_shape") or [None])[0], "color": {},
                      "resize": {**(record.get("resize") or {}), "interpolation": "bilinear-pil-antialias"}}
        try:
            return cls(
                resize_shorter=record["resize"]["shorter_side"], crop_size=record["crop"]["size"],
                interpolation=record["resize"]["interpolation"],
                luma_weights=tuple(record.get("color", {}).get("luma_weights_rgb", _BT601)),  # type: ignore[arg-type]
                scale=float(record["scale"]), offset=float(record.get("offset", 0.0)), channels=record["channels"],
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"preprocessing record is not a preprocessing spec: missing or malformed "
                             f"{exc} in {json.dumps(record, default=str)[:200]}") from None


def luma_fixed_point(weights: Sequence[float]) -> tuple[int, ...]:
    """PIL's 16-bit fixed-point ``RGB -> L`` weights: 0.299, 0.587, 0.114 -> 19595, 38470, 7471."""
    return tuple(round(w * 65536) for w in weights)


SPEC_VERSION = 1
INTERPOLATIONS = ("bilinear-pil-antialias",)
_BT601 = (0.299, 0.587, 0.114)

#: The spec EmoNeXt was trained with; everything below and every target derives from it.
SPEC = PreprocessSpec()
RESIZE_SHORTER = SPEC.resize_shorter
CROP_SIZE = SPEC.crop_size
INPUT_SHAPE = SPEC.input_shape

def spec_of(metadata: Any, where: str = "artifact") -> PreprocessSpec:
    """The spec an artifact's metadata records (a dict, or anything with a ``preprocessing`` attribute);
    :data:`SPEC` when it records none (0.1 artifacts, bare ONNX files) or records 0.3 DeepStream's
    description of nvinfer (no ``resize``: written for nvinfer, the trained spec's numbers);
    ``ModelFileError`` naming ``where`` when the record is not a spec."""
    record = metadata.get("preprocessing") if isinstance(metadata, Mapping) else getattr(metadata, "preprocessing", None)
    if not isinstance(record, Mapping) or not record or ("version" not in record and "where" in record):
        return SPEC
    try:
        return PreprocessSpec.from_dict(record)
    except ValueError as exc:
        raise ModelFileError(f"{where}: {exc}") from None


#: Smallest accepted shorter side, in pixels. Below it an image carries too little for a
#: 48-px-trained classifier, and a 1-px-high strip is stretched ~15-fold into noise.
MIN_SIDE = 16
#: Largest accepted image, in pixels (width x height): 50 megapixels (8K UHD is 33 MP).
#: Bounds decoding, the gray conversion and the downscaling filter; crop faces first.
MAX_PIXELS = 50_000_000

#: Travels with every artifact (checkpoint info, ONNX metadata, IR rt_info, engine manifest): ``SPEC.to_dict()``.
PREPROCESSING_SPEC: dict[str, Any] = SPEC.to_dict()

ImageInput = Union[str, os.PathLike, np.ndarray]

_PRECISION_BITS = 32 - 8 - 2  # Pillow's Resample.c
_LUMA = luma_fixed_point(SPEC.luma_weights)  # PIL's own: 19595, 38470, 7471
_GRAY_CHUNK = 1 << 20  # pixels converted to gray at a time (bounds the uint32 temporaries)


# -- limits ---------------------------------------------------------------------------------
def check_size(height: int, width: int, name: str = "image") -> None:
    """Raise ``ImageError`` unless ``MIN_SIDE <= min(h, w)`` and ``h * w <= MAX_PIXELS``."""
    if min(height, width) < MIN_SIDE:
        raise ImageError(
            f"{name}: image is {width}x{height} pixels (width x height); its shorter side must be at least "
            f"{MIN_SIDE} px (emonext_edge.preprocess.MIN_SIDE)"
        )
    if height * width > MAX_PIXELS:
        raise ImageError(
            f"{name}: image is {width}x{height} = {height * width:,} pixels, over the limit of {MAX_PIXELS:,} "
            "(emonext_edge.preprocess.MAX_PIXELS); crop the face or downscale the image first"
        )


#: Largest accepted image file, in bytes (512 MiB): a 50 MP 16-bit RGBA TIFF stored raw is 400 MB.
MAX_FILE_BYTES = 512 * 1024 * 1024
#: Formats whose size is read from the header before decoding; any other file is refused.
HEADER_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WebP", "TIFF", "PNM (PBM/PGM/PPM/PAM)", "Sun raster")
_JPEG_MAX_SEGMENTS = 4096  # real files: < 50 (APPn, DQT, DHT, SOF); the crafted one had 10,000s
_JPEG_MAX_GAP = 1 << 16  # bytes of garbage skipped between two segments
_PNM_HEADER_BYTES = 1 << 16  # PNM/PAM header (with comments) must fit in 64 KiB
_TIFF_MAX_ENTRIES = 4096
_SOF_MARKERS = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF))
#: signatures OpenCV decodes but whose size is not read here (refused by name)
_REFUSED_SIGNATURES = (
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"), (b"\xff\x4f\xff\x51", "JPEG 2000 codestream"),
    (b"\x76\x2f\x31\x01", "OpenEXR (floating point)"), (b"#?RADIANCE", "Radiance HDR (floating point)"),
    (b"#?RGBE", "Radiance HDR (floating point)"), (b"PF\n", "PFM (floating point)"), (b"Pf\n", "PFM (floating point)"),
)


class _HeaderError(Exception):
    """Why a header could not be read (becomes ``ImageError: <path>: not a readable image: ...``)."""


def _jpeg_size(f: Any) -> tuple[int, int]:
    """Follow the JPEG segments (by their lengths, never byte by byte) to the first frame header.

    Bounded: at most :data:`_JPEG_MAX_SEGMENTS` segments and :data:`_JPEG_MAX_GAP` bytes of
    garbage between two of them; a scan that reaches the data (SOS) or the end without a frame
    header raises, so a file whose size cannot be read is never decoded.
    """
    pos = 2
    for _ in range(_JPEG_MAX_SEGMENTS):
        f.seek(pos)
        buf = f.read(16)
        if buf[:1] != b"\xff":  # garbage before the next marker: find it in one bounded read
            buf += f.read(_JPEG_MAX_GAP)
            i = buf.find(b"\xff")
            if i < 0:
                raise _HeaderError(f"JPEG: no marker within {_JPEG_MAX_GAP:,} bytes after offset {pos}")
            pos, buf = pos + i, buf[i:]
        rest = buf.lstrip(b"\xff")
        if not rest:  # a long run of fill bytes
            f.seek(pos)
            run = f.read(_JPEG_MAX_GAP)
            rest = run.lstrip(b"\xff")
            if not rest:
                raise _HeaderError(f"JPEG: more than {_JPEG_MAX_GAP:,} fill bytes at offset {pos}")
            buf = run
        pos += len(buf) - len(rest)  # pos: the marker byte
        marker = rest[0]
        if marker in (0x00, 0x01, 0xD8, *range(0xD0, 0xD8)):  # stuffed zero, TEM, SOI, RSTn: no length
            pos += 1
            continue
        if marker == 0xD9:
            raise _HeaderError("JPEG: image ends (EOI) before a frame header (SOF)")
        if marker == 0xDA:
            raise _HeaderError("JPEG: scan data (SOS) before a frame header (SOF)")
        f.seek(pos + 1)
        seg = f.read(7)
        if len(seg) < 2:
            raise _HeaderError(f"JPEG: file ends inside the segment header at offset {pos}")
        length = struct.unpack(">H", seg[:2])[0]
        if length < 2:
            raise _HeaderError(f"JPEG: segment 0x{marker:02X} at offset {pos} has invalid length {length}")
        if marker in _SOF_MARKERS:
            if len(seg) < 7:
                raise _HeaderError("JPEG: file ends inside the frame header (SOF)")
            height, width = struct.unpack(">HH", seg[3:7])
            return width, height
        pos += 1 + length
    raise _HeaderError(f"JPEG: no frame header (SOF) within the first {_JPEG_MAX_SEGMENTS} segments")


def _tiff_size(f: Any, head: bytes) -> tuple[int, int]:
    """ImageWidth / ImageLength of the first IFD (the page OpenCV decodes); classic and BigTIFF."""
    order = "<" if head[:2] == b"II" else ">"
    big = struct.unpack(order + "H", head[2:4])[0] == 43
    if big:
        offset, count_fmt, count_size, entry_size = struct.unpack(order + "Q", head[8:16])[0], "Q", 8, 20
    else:
        offset, count_fmt, count_size, entry_size = struct.unpack(order + "I", head[4:8])[0], "H", 2, 12
    f.seek(offset)
    raw = f.read(count_size)
    if len(raw) < count_size:
        raise _HeaderError(f"TIFF: first directory offset {offset} is beyond the end of the file")
    count = struct.unpack(order + count_fmt, raw)[0]
    if not 0 < count <= _TIFF_MAX_ENTRIES:
        raise _HeaderError(f"TIFF: first directory has {count} entries (expected 1..{_TIFF_MAX_ENTRIES})")
    table = f.read(count * entry_size)
    if len(table) < count * entry_size:
        raise _HeaderError("TIFF: file ends inside the first directory")
    tags: dict[int, int] = {}
    for i in range(count):
        entry = table[i * entry_size : (i + 1) * entry_size]
        tag, kind = struct.unpack(order + "HH", entry[:4])
        n = struct.unpack(order + ("Q" if big else "I"), entry[4 : 12 if big else 8])[0]
        value = entry[12:] if big else entry[8:]
        if n != 1 or kind not in (3, 4, 16):  # SHORT, LONG, LONG8 single values are stored inline
            continue
        tags[tag] = struct.unpack(order + {3: "H", 4: "I", 16: "Q"}[kind], value[: {3: 2, 4: 4, 16: 8}[kind]])[0]
    if 256 not in tags or 257 not in tags:
        raise _HeaderError("TIFF: first directory has no ImageWidth/ImageLength")
    samples = tags.get(277, 1)
    if samples > 4:
        raise _HeaderError(f"TIFF: {samples} samples per pixel (expected 1 to 4)")
    tile = tags.get(322, 0) * tags.get(323, 0)
    if tile > MAX_PIXELS:
        raise _HeaderError(f"TIFF: tiles of {tags[322]}x{tags[323]} pixels, over the limit of {MAX_PIXELS:,}")
    return tags[256], tags[257]


_PNM_SEP = rb"(?:\s|#[^\n]*\n)+"
_PNM = re.compile(rb"P[1-6]" + _PNM_SEP + rb"(\d{1,10})" + _PNM_SEP + rb"(\d{1,10})")


def _pnm_size(f: Any) -> tuple[int, int]:
    f.seek(0)
    head = f.read(_PNM_HEADER_BYTES)
    if head[:2] == b"P7":
        end = head.find(b"ENDHDR")
        if end < 0:
            raise _HeaderError(f"PAM: no ENDHDR within the first {_PNM_HEADER_BYTES:,} bytes")
        fields = dict(re.findall(rb"^(WIDTH|HEIGHT|DEPTH)[ \t]+(\d{1,10})", head[:end], re.MULTILINE))
        if b"WIDTH" not in fields or b"HEIGHT" not in fields:
            raise _HeaderError("PAM: header has no WIDTH/HEIGHT")
        if int(fields.get(b"DEPTH", b"1")) > 4:
            raise _HeaderError(f"PAM: depth {int(fields[b'DEPTH'])} (expected 1 to 4)")
        return int(fields[b"WIDTH"]), int(fields[b"HEIGHT"])
    match = _PNM.match(head)
    if not match:
        raise _HeaderError(f"PNM: no width and height within the first {_PNM_HEADER_BYTES:,} bytes")
    return int(match.group(1)), int(match.group(2))


def _webp_size(f: Any, head: bytes) -> tuple[int, int]:
    chunk = head[12:16]
    if chunk == b"VP8X":
        f.seek(24)
        b = f.read(6)
        if len(b) == 6:
            return 1 + int.from_bytes(b[0:3], "little"), 1 + int.from_bytes(b[3:6], "little")
    elif chunk == b"VP8L":
        f.seek(21)
        b = f.read(4)
        if len(b) == 4:
            bits = int.from_bytes(b, "little")
            return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    elif chunk == b"VP8 ":
        f.seek(26)
        b = f.read(4)
        if len(b) == 4:
            width, height = struct.unpack("<HH", b)
            return width & 0x3FFF, height & 0x3FFF
    raise _HeaderError(f"WebP: unknown or truncated first chunk {chunk!r}")


def _header(f: Any) -> tuple[str, int, int]:
    """``(format, width, height)`` from the open file's header, or ``_HeaderError``."""
    head = f.read(32)
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        if head[12:16] != b"IHDR" or len(head) < 24:
            raise _HeaderError("PNG: the first chunk is not IHDR")
        return ("PNG", *struct.unpack(">II", head[16:24]))
    if head[:3] == b"\xff\xd8\xff":
        return ("JPEG", *_jpeg_size(f))
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        return ("GIF", *struct.unpack("<HH", head[6:10]))
    if head[:2] == b"BM" and len(head) >= 26:
        if struct.unpack("<I", head[14:18])[0] == 12:
            width, height = struct.unpack("<HH", head[18:22])
        else:
            width, height = struct.unpack("<ii", head[18:26])
        return "BMP", abs(width), abs(height)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ("WebP", *_webp_size(f, head))
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+") and len(head) >= 16:
        return ("TIFF", *_tiff_size(f, head))
    if re.match(rb"P[1-7]\s", head[:3]):
        return ("PNM", *_pnm_size(f))
    if head[:4] == b"\x59\xa6\x6a\x95" and len(head) >= 12:
        return ("Sun raster", *struct.unpack(">II", head[4:12]))
    for signature, name in _REFUSED_SIGNATURES:
        if head.startswith(signature):
            raise _HeaderError(f"{name} files are not accepted (accepted: {', '.join(HEADER_FORMATS)})")
    raise _HeaderError(f"unknown format (first bytes {head[:8].hex(' ')}); accepted: {', '.join(HEADER_FORMATS)}")


def read_image_header(path: Union[str, os.PathLike]) -> tuple[str, int, int]:
    """``(format, width, height)`` read from an image file's header, without decoding anything.

    Every format :func:`load_image` decodes has its size read here (:data:`HEADER_FORMATS`);
    a file whose header cannot be read (unknown format, truncated, a JPEG whose frame header
    is not found within bounded work) raises ``ImageError`` "not a readable image: ...".
    Cost: a few small reads, at most ~4,096 seeks for a JPEG; never a scan of the whole file.
    """
    try:
        with open(path, "rb") as f:
            return _header(f)
    except _HeaderError as exc:
        raise ImageError(f"{path}: not a readable image: {exc}; its size cannot be checked before decoding, "
                         "so it is not decoded") from None
    except struct.error:
        raise ImageError(f"{path}: not a readable image: the header is truncated") from None


def image_file_size(path: Union[str, os.PathLike]) -> Optional[tuple[int, int]]:
    """``(width, height)`` from the header (see :func:`read_image_header`), ``None`` when it cannot be read."""
    try:
        _, width, height = read_image_header(path)
    except (ImageError, OSError):
        return None
    return width, height


# -- reading and checking -------------------------------------------------------------------
def load_image(path: Union[str, os.PathLike]) -> np.ndarray:
    """Read an image file as uint8 (gray HxW, BGR HxWx3 or BGRA HxWx4) or raise ``ImageError``.

    The size is read from the header first (:func:`read_image_header`) and checked
    (:func:`check_size`), so nothing outside the limits is decoded; files whose header cannot
    be read, of more than :data:`MAX_FILE_BYTES`, and special files (FIFOs, devices, symlink
    loops) are refused by name. EXIF orientation is not applied and 16-bit samples keep their
    high byte (docs/limits.md says why).
    """
    cv2 = import_cv2()

    p = Path(path)
    what = special_file_kind(p, missing="no such image file")
    if what == "no such image file":
        raise ImageError(f"{p}: no such image file")
    if what == "a directory":
        raise ImageError(f"{p}: is a directory, not an image file")
    if what is not None:
        raise ImageError(f"{p}: is {what}, not an image file" if what.startswith("a ") else f"{p}: {what}")
    size = p.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ImageError(f"{p}: file is {size:,} bytes, over the limit of {MAX_FILE_BYTES:,} for an image file "
                         "(emonext_edge.preprocess.MAX_FILE_BYTES)")
    _, width, height = read_image_header(p)
    check_size(height, width, str(p))
    data = np.fromfile(str(p), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise ImageError(f"{p}: not a readable image (OpenCV could not decode {data.size} bytes)")
    if image.dtype == np.uint16:
        # 16-bit PNG/TIFF/PNM: keep the high byte (v >> 8). Pillow's 'L' conversion would clip
        # to 255 instead, turning almost every pixel white; see docs/limits.md.
        image = np.right_shift(image, 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ImageError(f"{p}: {image.dtype} pixel data (a floating-point/HDR file); expected an 8- or 16-bit image")
    return image


def _dtype_advice(image: np.ndarray) -> str:
    """How to turn this array into uint8 0..255 pixels, from its dtype and value range."""
    dt = image.dtype
    if dt == np.bool_:
        return "a boolean mask is not an image; if it is one, use x.astype(np.uint8) * 255"
    if not (np.issubdtype(dt, np.integer) or np.issubdtype(dt, np.floating)):
        return "expected pixel values, not this dtype"
    lo, hi = image.min(), image.max()
    span = f"values span [{lo:.6g}, {hi:.6g}]"
    if np.issubdtype(dt, np.floating):
        if lo >= 0 and hi <= 1:
            return f"{span}, i.e. 0..1 intensities: convert with (x * 255).round().astype(np.uint8)"
        if lo >= 0 and hi <= 255:
            return f"{span}, i.e. 0..255 pixel values: convert with x.round().astype(np.uint8)"
        return f"{span}, outside 0..255: map them to 0..255 as your source defines them, then .round().astype(np.uint8)"
    if lo >= 0 and hi <= 255:
        return f"{span}, all within 0..255: convert with x.astype(np.uint8)"
    if dt == np.uint16:
        return f"{span} (16-bit pixels): keep the top 8 bits with (x >> 8).astype(np.uint8), or (x / 257).round().astype(np.uint8)"
    return f"{span}, outside 0..255: map them to 0..255 as your source defines them, then .astype(np.uint8)"


def check_image(image: Any, name: str = "image") -> np.ndarray:
    """Validate one image array (type, dtype, layout, size limits); returns it as 2-D gray or HxWx3/4 uint8."""
    if not isinstance(image, np.ndarray):
        hint = ""
        if isinstance(image, (bytes, bytearray, memoryview)):
            hint = "; encoded file contents? decode them first: cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)"
        raise ImageTypeError(f"{name}: expected a numpy array or a path, got {type(image).__name__}{hint}")
    if image.size == 0:
        raise ImageError(f"{name}: empty array of shape {image.shape}")
    if image.dtype != np.uint8:
        if np.issubdtype(image.dtype, np.inexact) and not np.isfinite(image).all():
            raise ImageError(f"{name}: contains NaN or inf values (dtype {image.dtype})")
        raise ImageError(f"{name}: expected dtype uint8 (0..255 pixel values), got {image.dtype}; {_dtype_advice(image)}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim != 2 and (image.ndim != 3 or image.shape[2] not in (3, 4)):
        hint = ""
        if image.ndim == 4 or (image.ndim == 3 and image.shape[2] > 4):
            hint = f"; a stack of {image.shape[0]} images? pass it to preprocess() / Runtime.predict_batch()"
        raise ImageError(
            f"{name}: expected HxW gray, HxWx3 (BGR/RGB) or HxWx4 (BGRA/RGBA), got shape {image.shape}{hint}"
        )
    check_size(image.shape[0], image.shape[1], name)
    return image


def _gray(image: np.ndarray, rgb: bool, weights: tuple[int, ...] = _LUMA) -> np.ndarray:
    """Checked 2-D or HxWx3/4 uint8 -> HxW gray, PIL's ``convert('L')``, in bounded chunks
    (``weights``: R, G, B in 16-bit fixed point, :func:`luma_fixed_point` of the spec's)."""
    if image.ndim == 2:
        return image
    h, w = image.shape[:2]
    out = np.empty((h, w), dtype=np.uint8)
    step = max(1, _GRAY_CHUNK // max(w, 1))
    r_ch, b_ch = (0, 2) if rgb else (2, 0)
    for y in range(0, h, step):
        c = image[y : y + step]
        acc = c[:, :, r_ch].astype(np.uint32)
        acc *= weights[0]
        for channel, factor in ((1, weights[1]), (b_ch, weights[2])):
            part = c[:, :, channel].astype(np.uint32)
            part *= factor
            acc += part
        acc += 0x8000
        acc >>= 16
        out[y : y + step] = acc
    return out


def to_gray(image: np.ndarray, *, rgb: bool = False, name: str = "image") -> np.ndarray:
    """uint8 gray / BGR / RGB / BGRA / RGBA array -> uint8 HxW gray, exactly as PIL ``convert('L')``.

    Checks the image first (:func:`check_image`, size limits included).
    """
    return _gray(check_image(image, name), rgb)


# -- PIL-exact resampling, evaluated only where needed --------------------------------------
def resized_size(height: int, width: int, size: int = RESIZE_SHORTER) -> tuple[int, int]:
    """torchvision ``Resize(size)``: the shorter side becomes ``size``, the other ``int(size * long / short)``."""
    if height <= width:
        return size, int(size * width / height)
    return int(size * height / width), size


#: Pillow >= 13 runs the vertical pass first when the height shrinks by more than twice
#: what the width loses (python-pillow/Pillow#9549); earlier releases always ran the
#: horizontal pass first. The order changes the intermediate rounding (+-1 grey level
#: on some pixels of tall, strongly downscaled images; upscaled 48x48 FER2013 faces are
#: unaffected). ``True`` follows Pillow >= 13, ``False`` Pillow <= 12.
PILLOW13_PASS_ORDER = True


def vertical_pass_first(height: int, width: int, new_height: int, new_width: int) -> bool:
    """Whether PIL resamples rows (vertical pass) before columns for this resize.

    Rule measured against Pillow 13.0 on 250 random sizes and at the tie (all exact):
    vertical first iff the height shrinks and ``h - h' > 2 * (w - w')``.
    """
    return PILLOW13_PASS_ORDER and new_height < height and (height - new_height) > 2 * (width - new_width)


def _pil_taps(in_size: int, out_size: int, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Source indices and 22-bit weights ``[len(wanted), taps]`` of PIL's bilinear filter for the
    output positions ``wanted``, computed as Pillow's ``precompute_coeffs`` does (same float
    operations in the same order, sequential weight sum, truncating casts)."""
    scale = in_size / out_size  # Pillow: (double)(in1 - in0) / outSize with in0 = 0.0f, in1 = (float)inSize
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale
    ksize = math.ceil(support) * 2 + 1
    ss = 1.0 / filterscale
    center = (wanted.astype(np.float64) + 0.5) * scale
    xmin = np.maximum(np.trunc(center - support + 0.5), 0).astype(np.int64)
    xmax = np.minimum(np.trunc(center + support + 0.5), in_size).astype(np.int64) - xmin
    taps = np.arange(ksize, dtype=np.int64)
    pos = xmin[:, None] + taps[None, :]
    valid = taps[None, :] < xmax[:, None]
    t = np.abs((pos.astype(np.float64) - center[:, None] + 0.5) * ss)
    w = np.where(valid & (t < 1.0), 1.0 - t, 0.0)
    total = np.cumsum(w, axis=1)[:, -1:]  # sequential, like Pillow's loop (np.sum is pairwise)
    w = np.divide(w, total, out=w, where=total != 0.0)
    fixed = (0.5 + w * (1 << _PRECISION_BITS)).astype(np.int64)  # C cast truncates toward zero, as numpy does
    return np.where(valid, pos, xmin[:, None]), fixed


class _Pass:
    """One PIL resampling pass, prepared: along ``axis`` each of the outputs is the dot product
    of ``taps`` consecutive (local) source positions from ``start`` with a row of ``kernel``."""

    def __init__(self, index: np.ndarray, weight: np.ndarray, axis: int, width: int) -> None:
        self.axis = axis
        self.index, self.weight = index, weight
        n_out, taps = index.shape
        self.windowed = width >= taps  # else: gather tap by tap
        if self.windowed:
            self.start = np.minimum(index[:, 0], width - taps)  # windows near the end start earlier
            shift = index[:, 0] - self.start
            kernel = np.zeros((n_out, taps), dtype=np.float64)
            for o in np.flatnonzero(shift):
                kernel[o, shift[o] :] = weight[o, : taps - shift[o]]
            kernel[shift == 0] = weight[shift == 0]
            self.kernel = kernel

    def __call__(self, src: np.ndarray) -> np.ndarray:
        """Apply to a uint8 array; float64 is exact here: every product (< 2**8 * 2**23) and
        every sum (< 2**37) is an integer below 2**53."""
        if self.axis == 0:
            src = src.T
        n_out, taps = self.index.shape
        out = np.empty((src.shape[0], n_out), dtype=np.uint8)
        if not self.windowed:
            acc = np.full(out.shape, 1 << (_PRECISION_BITS - 1), dtype=np.int64)
            for tap in range(taps):
                acc += src[:, self.index[:, tap]].astype(np.int64) * self.weight[:, tap]
            np.clip(acc >> _PRECISION_BITS, 0, 255, out=acc)
            out[:] = acc
        else:
            rows = max(1, (1 << 21) // (n_out * taps))  # ~16 MB of float64 windows at a time
            windows = np.lib.stride_tricks.sliding_window_view(src, taps, axis=1)
            for r0 in range(0, src.shape[0], rows):
                block = windows[r0 : r0 + rows, self.start].astype(np.float64)  # [rows, outputs, taps]
                acc = np.einsum("rok,ok->ro", block, self.kernel).astype(np.int64)
                acc += 1 << (_PRECISION_BITS - 1)
                np.clip(acc >> _PRECISION_BITS, 0, 255, out=acc)
                out[r0 : r0 + rows] = acc
        return out.T if self.axis == 0 else out


def _as_index(idx: np.ndarray) -> Union[slice, np.ndarray]:
    if idx.size and idx[-1] - idx[0] + 1 == idx.size:
        return slice(int(idx[0]), int(idx[-1]) + 1)
    return idx


class _Plan:
    """What to compute for rows ``rows`` x columns ``cols`` (sorted, unique) of an h x w image
    resized as torchvision ``Resize(size)`` does: the source rows/columns their filter taps
    touch, and the passes in Pillow's order, indexed into that source region."""

    def __init__(self, h: int, w: int, rows: np.ndarray, cols: np.ndarray, size: int,
                 luma: tuple[int, ...] = _LUMA) -> None:
        new_h, new_w = resized_size(h, w, size)
        self.luma = luma
        self.rows, self.cols = rows, cols
        h_taps = _pil_taps(w, new_w, cols) if new_w != w else None
        v_taps = _pil_taps(h, new_h, rows) if new_h != h else None
        src_cols = np.unique(h_taps[0]) if h_taps is not None else cols
        src_rows = np.unique(v_taps[0]) if v_taps is not None else rows
        self.src_rows, self.src_cols = _as_index(src_rows), _as_index(src_cols)
        passes = []
        if h_taps is not None:
            passes.append(_Pass(np.searchsorted(src_cols, h_taps[0]), h_taps[1], 1, src_cols.size))
        if v_taps is not None:
            passes.append(_Pass(np.searchsorted(src_rows, v_taps[0]), v_taps[1], 0, src_rows.size))
        if len(passes) == 2 and vertical_pass_first(h, w, new_h, new_w):
            passes.reverse()
        self.passes = passes

    def region(self, image: np.ndarray) -> np.ndarray:
        """The source pixels the passes read (a view when rows and columns are ranges)."""
        r, c = self.src_rows, self.src_cols
        if isinstance(r, slice):
            return image[r][:, c]
        if isinstance(c, slice):
            return image[:, c][r]
        return image[np.ix_(r, c)]

    def __call__(self, image: np.ndarray, rgb: bool) -> np.ndarray:
        out = _gray(self.region(image), rgb, self.luma)
        for step in self.passes:
            out = step(out)
        return out


def _resized_region(
    image: np.ndarray, rgb: bool, rows: np.ndarray, cols: np.ndarray, size: int = RESIZE_SHORTER
) -> np.ndarray:
    """Rows ``rows`` x columns ``cols`` (sorted, unique) of the gray image resized as
    torchvision ``Resize(size)`` does, computed from only the source pixels they need."""
    return _Plan(image.shape[0], image.shape[1], rows, cols, size)(image, rgb)


def resize_shorter_side(gray: np.ndarray, size: int = RESIZE_SHORTER) -> np.ndarray:
    """torchvision ``Resize(size)`` on a PIL 'L' image: shorter side -> ``size``, PIL bilinear.

    Materialises the whole resized image; :func:`preprocess` computes only the crops.
    """
    new_h, new_w = resized_size(gray.shape[0], gray.shape[1], size)
    return _resized_region(gray, False, np.arange(new_h), np.arange(new_w), size)


def _center_offset(length: int, size: int) -> int:
    return round((length - size) / 2.0)  # torchvision center_crop: int(round(...)), half to even


def _crop(gray: np.ndarray, top: int, left: int, size: int) -> np.ndarray:
    return gray[top : top + size, left : left + size]


def center_crop(gray: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    h, w = gray.shape
    return _crop(gray, _center_offset(h, size), _center_offset(w, size), size)


def ten_crops(gray: np.ndarray, size: int = CROP_SIZE) -> list[np.ndarray]:
    """torchvision ``TenCrop``: four corners + center, then the same on the mirrored image."""
    crops: list[np.ndarray] = []
    for img in (gray, gray[:, ::-1]):
        h, w = img.shape
        crops += [
            _crop(img, 0, 0, size),
            _crop(img, 0, w - size, size),
            _crop(img, h - size, 0, size),
            _crop(img, h - size, w - size, size),
            center_crop(img, size),
        ]
    return crops


def _crop_boxes(new_h: int, new_w: int, ten_crop: bool, size: int = CROP_SIZE) -> list[tuple[int, int, bool]]:
    """(top, left, mirrored) of each crop in resized-image coordinates; a mirrored crop at
    ``left`` is the horizontal flip of columns ``left .. left + size`` of the unflipped image."""
    ct, cl = _center_offset(new_h, size), _center_offset(new_w, size)
    if not ten_crop:
        return [(ct, cl, False)]
    b, r = new_h - size, new_w - size
    plain = [(0, 0, False), (0, r, False), (b, 0, False), (b, r, False), (ct, cl, False)]
    # TenCrop's second half crops the flipped image at (0,0), (0,r), (b,0), (b,r) and its center
    flipped = [(0, r, True), (0, 0, True), (b, r, True), (b, 0, True), (ct, r - cl, True)]
    return plain + flipped


def _crops(image: ImageInput, rgb: bool, name: str, ten_crop: bool, spec: PreprocessSpec = SPEC) -> list[np.ndarray]:
    if isinstance(image, (str, os.PathLike)):
        name = str(image)
        image = load_image(image)
        rgb = False  # files are decoded by OpenCV, i.e. BGR
    image = check_image(image, name)
    plan, offsets = _crop_plan(image.shape[0], image.shape[1], ten_crop, PILLOW13_PASS_ORDER, spec)
    region = plan(image, rgb)
    out = []
    size = spec.crop_size
    for r0, c0, mirrored in offsets:
        crop = region[r0 : r0 + size, c0 : c0 + size]
        out.append(crop[:, ::-1] if mirrored else crop)
    return out


@lru_cache(maxsize=128)
def _crop_plan(h: int, w: int, ten_crop: bool, pass_order: bool,
               spec: PreprocessSpec = SPEC) -> tuple[_Plan, list[tuple[int, int, bool]]]:
    """The resize plan for the rows/columns the crops keep, and each crop's offset in its result
    (``pass_order``: the :data:`PILLOW13_PASS_ORDER` the plan was made with, part of the cache key)."""
    new_h, new_w = resized_size(h, w, spec.resize_shorter)
    size = spec.crop_size
    boxes = _crop_boxes(new_h, new_w, ten_crop, size)
    rows = np.unique(np.concatenate([np.arange(t, t + size) for t, _, _ in boxes]))
    cols = np.unique(np.concatenate([np.arange(left, left + size) for _, left, _ in boxes]))
    offsets = [(int(np.searchsorted(rows, t)), int(np.searchsorted(cols, left)), m) for t, left, m in boxes]
    return _Plan(h, w, rows, cols, spec.resize_shorter, luma_fixed_point(spec.luma_weights)), offsets


def _to_tensor(crop: np.ndarray, spec: PreprocessSpec = SPEC) -> np.ndarray:
    """uint8 crop -> float32 ``scale * (x - offset)`` repeated to ``channels``. Divides by ``1 / scale``
    (exactly 255.0 for 1/255) as torchvision's ``ToTensor`` divides, so the result is bit-identical."""
    x = crop.astype(np.float32)
    if spec.offset:
        x -= np.float32(spec.offset)
    x /= np.float32(1.0 / spec.scale)
    return np.repeat(x[None, :, :], spec.channels, axis=0)


def preprocess_one(image: ImageInput, *, rgb: bool = False, name: str = "image", spec: PreprocessSpec = SPEC) -> np.ndarray:
    """One image -> float32 ``spec.input_shape`` (the spec's crop size, single center crop)."""
    return _to_tensor(_crops(image, rgb, name, False, spec)[0], spec)


def preprocess_ten_crop(image: ImageInput, *, rgb: bool = False, name: str = "image",
                        spec: PreprocessSpec = SPEC) -> np.ndarray:
    """One image -> float32 ``[10, *spec.input_shape]`` (the official test protocol)."""
    return np.stack([_to_tensor(c, spec) for c in _crops(image, rgb, name, True, spec)])


def as_image_list(images: Any, where: str = "preprocess") -> list[ImageInput]:
    """One image or several -> a list of images, by the rule ``preprocess`` documents.

    A path or a 2-D / HxWx{1,3,4} array is one image; a 4-D array, or a 3-D one whose last
    axis is longer than 4 (``[N, H, W]`` gray), is a stack; any other iterable is a list.
    """
    if isinstance(images, (str, os.PathLike)):
        return [images]
    if isinstance(images, np.ndarray):
        if images.ndim == 4 or (images.ndim == 3 and images.shape[-1] > 4):
            return list(images)  # a stack of images (N,H,W,C) or of gray images (N,H,W)
        return [images]
    if images is None or isinstance(images, (bytes, bytearray, memoryview, dict)) or not isinstance(images, Iterable):
        raise ImageTypeError(
            f"{where}: expected an image (path or uint8 array), a list of them, or an [N,H,W(,C)] array stack; "
            f"got {type(images).__name__}"
        )
    return list(images)


def preprocess(
    images: Union[ImageInput, Iterable[ImageInput]], *, rgb: bool = False, ten_crop: bool = False,
    spec: PreprocessSpec = SPEC,
) -> np.ndarray:
    """Paths or uint8 arrays -> float32 NCHW batch ``[N, *spec.input_shape]`` (``[N, 10, ...]`` with ``ten_crop``).

    Arrays are BGR (OpenCV's order) unless ``rgb=True``; gray and BGRA are accepted.
    A 2-D or HxWx{1,3,4} array is one image; ``[N, H, W]`` (W > 4) and ``[N, H, W, C]``
    arrays are stacks. A bad element raises ``ImageError`` naming its index; images
    outside :data:`MIN_SIDE` / :data:`MAX_PIXELS` are refused.
    """
    items = as_image_list(images)
    if not items:
        raise ImageError("preprocess: got an empty list of images")
    one = preprocess_ten_crop if ten_crop else preprocess_one
    out = []
    for i, item in enumerate(items):
        label = str(item) if isinstance(item, (str, os.PathLike)) else f"image[{i}]"
        try:
            out.append(one(item, rgb=rgb, name=label, spec=spec))
        except ImageError as exc:
            if len(items) > 1:
                raise type(exc)(f"batch element {i}: {exc}") from None
            raise
    return np.stack(out)
