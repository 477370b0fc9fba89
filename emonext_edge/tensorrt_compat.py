"""THE one place that knows which TensorRT calls each generation takes (8.5/8.6, 10.x, 11.x).

The engine builder (``export/tensorrt.py``), the legacy INT8 calibrator
(``calibration/trt_calibrator.py``) and the Runtime backend (``backends/tensorrt_backend.py``)
make every TensorRT call through the functions here, steered by an :class:`ApiPlan` from
:func:`plan_for`. The plan answers two questions per version:

* **which calls** — :data:`API_USES` declares every TensorRT class, method (with the number
  of positional arguments and the keywords we pass), property (settable where we set it),
  enum member and subclass override this code touches, each with the :class:`ApiPlan` field
  that makes it reachable; :meth:`ApiPlan.api_uses` is one version's list. The test suite
  imports each version's real Python bindings (against stub libraries, see
  ``tests/trt_stubs/``) and checks every entry of that list against them, and checks that the
  table covers exactly what the code calls (source scan + a recording run per version);
* **which build** — :meth:`ApiPlan.path` turns ``--fp16/--int8/--int8-mode`` into a
  :class:`PrecisionPath`: which ONNX the engine is built from, which builder flags, strongly
  typed or not, how the STN is kept FP32, calibrator or Q/DQ, and what the engine's
  precision really is (written to its manifest).

Generations:

* 8.5/8.6 — named I/O tensors and ``execute_async_v3`` (we never use ``execute_async_v2``);
  weakly typed networks need ``NetworkDefinitionCreationFlag.EXPLICIT_BATCH``; FP16/INT8
  builder flags; the STN is pinned to FP32 with layer precisions +
  ``OBEY_PRECISION_CONSTRAINTS``; ``IInt8EntropyCalibrator2``; no ``IProgressMonitor``;
  ``LayerNormalization`` parses from 8.6 (8.5 gets opset 16).
* 8.5 (JetPack 5.1.x: 8.5.2) — the same calls as 8.6 (the named-tensor API, ``set_input_shape``,
  ``set_tensor_address``, ``execute_async_v3``, ``get_tensor_profile_shape`` all appeared in
  8.5; ``set_memory_pool_limit`` in 8.4); its ONNX parser imports ``GridSample`` natively but
  has no ``LayerNormalization`` importer (onnx-tensorrt ``release/8.5-GA`` ``docs/operators.md``:
  "GridSample | Y | FP32, FP16", "LayerNormalization | N", opsets up to 17), so the plan exports
  opset 16, where ``torch.onnx`` decomposes LayerNorm into ReduceMean/Sub/Pow/Sqrt/Div. No
  ``IProgressMonitor``, no ``STRONGLY_TYPED`` (10.x). No 8.5 binding module can be obtained from
  a package index (PyPI's ``tensorrt``/``tensorrt-bindings`` start at 8.6.1), so the audit
  checks 8.5 against the 8.6.1 bindings minus the names 8.6 added (:data:`ADDED_IN_8_6`).
* 10.x — explicit batch is implicit (the flag is deprecated and not set); weakly typed builds
  as on 8.x (``STRONGLY_TYPED`` exists but is not used: the FP16 flag path keeps one ONNX);
  ``IProgressMonitor``; calibrators deprecated from 10.1 (reachable only below 10.1 here).
* 11.x — strongly typed only: no FP16/INT8 builder flags, no calibrators, no layer
  precisions. The ONNX's own types decide: FP16 from the mixed FP16 ONNX, INT8 from the
  Q/DQ ONNX, FP16+INT8 from the Q/DQ ONNX converted to FP16 with FP16 scales (opset 19).

CUDA contexts: see :class:`CudaContext` (one policy for builder, calibrator and backend).

Why hand-written calls and not Polygraphy's loaders: Polygraphy (0.53.6 looked at) covers the
same builder calls (``NetworkFromOnnxPath(strongly_typed=)``, ``CreateConfig(fp16=, int8=,
calibrator=, precision_constraints=, profiles=, memory_pool_limits=, progress_monitor=)``,
``EngineBytesFromNetwork``) and NVIDIA keeps them current per release (it has 11.x branches).
But it finds a missing attribute only at build time on the device (``fail_unavailable``), its
per-version branches are outside :data:`API_USES`, so neither the binding audit nor the
``--check-only`` plan could cover them, and it brings a second CUDA layer (cudart through
ctypes) beside pycuda. The calls here are about sixty lines; they stay, audited per version.
On the device, ``polygraphy run model.onnx --trt --onnxrt`` remains a good independent cross-check.

Importing this module never imports TensorRT or pycuda.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional, cast

from .preprocess import INPUT_SHAPE

if TYPE_CHECKING:  # mypy sees TensorRT's classes through tensorrt-stubs (tests/typing/trt_mypy.py); never at run time
    import tensorrt as tr

log = logging.getLogger(__name__)

MIN_VERSION = (8, 5)
#: TensorRT versions whose real bindings the test suite audits, one per generation/JetPack line
KNOWN_VERSIONS = ("8.6.1", "10.3.0", "10.13.3", "11.4.0")
#: every version ``--trt-version`` names in its help and the tests plan for: the audited ones and
#: 8.5.2 (JetPack 5.1.x, DeepStream 6.2/6.3), audited by proxy (the 8.6.1 bindings minus ADDED_IN_8_6)
TARGET_VERSIONS = ("8.5.2", *KNOWN_VERSIONS)
#: Python-API names of 8.6 that 8.5 lacks (TensorRT 8.6.0 EA/8.6.1 release notes: version-compatible
#: and hardware-compatible engines, builder optimization level, INormalizationLayer). None of them is
#: in API_USES; the 8.5 proxy audit removes them from the 8.6.1 dump so a future use of one fails there.
ADDED_IN_8_6: tuple[tuple[str, str], ...] = (
    ("tensorrt", "INormalizationLayer"),
    ("INetworkDefinition", "add_normalization"),
    ("tensorrt", "HardwareCompatibilityLevel"),
    ("IBuilderConfig", "hardware_compatibility_level"),
    ("IBuilderConfig", "builder_optimization_level"),
    ("BuilderFlag", "VERSION_COMPATIBLE"),
    ("BuilderFlag", "EXCLUDE_LEAN_RUNTIME"),
    ("IBuilderConfig", "plugins_to_serialize"),
    ("IBuilderConfig", "max_aux_streams"),
    ("Runtime", "engine_host_code_allowed"),
    ("Runtime", "load_runtime"),
)
PRECISIONS = ("fp32", "fp16", "int8", "fp16+int8")
INT8_MODES = ("explicit", "calibrator")

#: the ONNX files a build may start from: kind -> (file suffix, what it is)
ONNX_KINDS: dict[str, tuple[str, str]] = {
    "fp32": (".fp32.onnx", "FP32 ONNX"),
    "fp16": (".fp16.onnx", "mixed FP16 ONNX (STN, LayerNorm statistics and head FP32)"),
    "int8-qdq": (".int8.qdq.onnx", "INT8 Q/DQ ONNX (STN unquantized, FP32)"),
    "int8-qdq-fp16": (".int8.qdq.fp16.onnx",
                      "INT8 Q/DQ ONNX with FP16 elsewhere (FP16 scales, opset 19; STN, LayerNorm statistics, head FP32)"),
}


def parse_version(version: str) -> tuple[int, int, int]:
    """``"10.13.3.9"`` -> ``(10, 13, 3)``; ``"8.6"`` -> ``(8, 6, 0)``."""
    parts = str(version).strip().split(".")[:3]
    nums = []
    for p in parts:
        digits = "".join(ch for ch in p if ch.isdigit())
        if not digits:
            raise ValueError(f"not a TensorRT version: {version!r} (expected MAJOR.MINOR[.PATCH])")
        nums.append(int(digits))
    while len(nums) < 3:
        nums.append(0)
    return nums[0], nums[1], nums[2]


# --------------------------------------------------------------------------- plans


@dataclass(frozen=True)
class PrecisionPath:
    """How one precision request is built on one TensorRT version."""

    precision: str  # what was asked: fp32 | fp16 | int8 | fp16+int8
    int8_mode: Optional[str]  # explicit | calibrator | None (no INT8)
    onnx: str  # key of ONNX_KINDS: the ONNX the engine is built from
    builder_flags: tuple[str, ...]  # BuilderFlag members set
    strongly_typed: bool
    calibrator: bool  # IInt8EntropyCalibrator2 feeds implicit INT8
    pin_stn_fp32: bool  # STN layers get precision FP32 + OBEY_PRECISION_CONSTRAINTS
    engine_precision: str  # what the engine computes in (the manifest says this)
    onnx_opset: int

    @property
    def stn(self) -> str:
        if self.pin_stn_fp32:
            return "FP32: STN layers pinned (layer precision + OBEY_PRECISION_CONSTRAINTS)"
        if self.onnx in ("fp16", "int8-qdq-fp16"):
            return "FP32: kept FP32 in the ONNX (strongly typed build follows the ONNX types)"
        if self.onnx == "int8-qdq":
            return "FP32: not quantized in the Q/DQ ONNX"
        return "FP32 (whole network FP32; TF32 on Ampere+)"


@dataclass(frozen=True)
class ApiPlan:
    """Which calls one TensorRT version gets. Every version branch in the TensorRT code reads one of these fields."""

    version: tuple[int, int, int]
    explicit_batch_flag: bool  # 8.x: networks need NetworkDefinitionCreationFlag.EXPLICIT_BATCH
    strongly_typed: bool  # 11.x: every network is strongly typed (8.x/10.x: weakly typed + flags)
    precision_flags: bool  # BuilderFlag.FP16 / INT8 exist (not on 11.x)
    layer_precision: bool  # ILayer.precision + OBEY_PRECISION_CONSTRAINTS exist (to pin the STN to FP32)
    calibrator: bool  # IInt8EntropyCalibrator2 path offered (< 10.1; deprecated from 10.1, gone in 11)
    progress_monitor: bool  # IProgressMonitor (10.x+)
    stn_mode: str  # "native" (GridSample, 8.5+) or "decomposed"
    onnx_opset: int  # opset of the FP32 export: LayerNormalization (17) parses from 8.6, GridSample (16) from 8.5

    @property
    def label(self) -> str:
        return ".".join(str(v) for v in self.version)

    @property
    def layernorm_op(self) -> bool:
        """Whether the FP32 export may hold ``LayerNormalization`` nodes (opset 17, parsed from 8.6)."""
        return self.onnx_opset >= 17

    def path(self, precision: str, int8_mode: str = "explicit") -> PrecisionPath:
        """The build for ``precision``; :class:`UsageError` naming the option where this version cannot."""
        from .errors import UsageError

        if precision not in PRECISIONS:
            raise UsageError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
        fp16, int8 = "fp16" in precision, "int8" in precision
        mode = int8_mode if int8 else None
        if mode is not None and mode not in INT8_MODES:
            raise UsageError(f"--int8-mode {mode}: expected one of {', '.join(INT8_MODES)}")
        if mode == "calibrator" and not self.calibrator:
            raise UsageError(
                f"--int8-mode calibrator: TensorRT {self.label} has no usable INT8 calibrator "
                "(deprecated from 10.1, removed in 11); use --int8-mode explicit (Q/DQ ONNX)"
            )
        rest = "fp16" if fp16 else "fp32"
        if self.strongly_typed:  # 11.x: the ONNX's types are the engine's types
            onnx = {(False, False): "fp32", (True, False): "fp16", (False, True): "int8-qdq",
                    (True, True): "int8-qdq-fp16"}[(fp16, int8)]
            return PrecisionPath(precision, mode, onnx, (), True, False, False,
                                 f"int8+{rest}" if int8 else rest, 19 if onnx == "int8-qdq-fp16" else self.onnx_opset)
        flags = tuple(f for f, on in (("FP16", fp16), ("INT8", int8)) if on)
        calibrated = mode == "calibrator"
        onnx = "int8-qdq" if mode == "explicit" else "fp32"
        # explicit INT8 alone leaves the STN unquantized FP32; FP16 or implicit INT8 would touch it
        pin = self.layer_precision and (fp16 or calibrated)
        engine = (f"int8+{rest}" + (" (calibrated)" if calibrated else "")) if int8 else rest
        return PrecisionPath(precision, mode, onnx, flags, False, calibrated, pin, engine, self.onnx_opset)

    def precision_paths(self) -> list[PrecisionPath]:
        """Every build this version offers."""
        out = [self.path(p) for p in PRECISIONS]
        if self.calibrator:
            out += [self.path(p, "calibrator") for p in PRECISIONS if "int8" in p]
        return out

    def api_uses(self) -> list[ApiUse]:
        """The entries of :data:`API_USES` reachable on this version."""
        return [u for u in API_USES if u.reachable(self)]


def plan_for(version: str) -> ApiPlan:
    v = parse_version(version)
    mm = v[:2]
    gen11 = v[0] >= 11
    return ApiPlan(
        version=v,
        explicit_batch_flag=v[0] < 10,
        strongly_typed=gen11,
        precision_flags=not gen11,
        layer_precision=not gen11,
        calibrator=MIN_VERSION <= mm < (10, 1),
        progress_monitor=v[0] >= 10,
        stn_mode="native" if mm >= (8, 5) else "decomposed",
        onnx_opset=17 if mm >= (8, 6) else (16 if mm >= (8, 5) else 13),
    )


def describe(plan: ApiPlan, precision: str, int8_mode: str = "explicit") -> list[str]:
    """Human-readable lines of what a build of ``precision`` does on ``plan``'s version."""
    p = plan.path(precision, int8_mode)
    int8 = {"explicit": "Q/DQ ONNX (explicit INT8)", "calibrator": "IInt8EntropyCalibrator2 (implicit INT8)",
            None: "none"}[p.int8_mode]
    return [
        f"TensorRT {plan.label}: {precision}" + (f" ({p.int8_mode} INT8)" if p.int8_mode else ""),
        (f"  builds from:    {ONNX_KINDS[p.onnx][1]} (<stem>{ONNX_KINDS[p.onnx][0]}), opset {p.onnx_opset}, "
         f"STN {plan.stn_mode}, LayerNorm " + ("LayerNormalization op" if p.onnx_opset >= 17 else
                                              "decomposed (no LayerNormalization importer before 8.6)")),
        f"  network:        {'strongly typed' if p.strongly_typed else 'weakly typed'}"
        + (", EXPLICIT_BATCH flag" if plan.explicit_batch_flag else ""),
        f"  builder flags:  {', '.join(p.builder_flags) or 'none'}"
        + (" + OBEY_PRECISION_CONSTRAINTS" if p.pin_stn_fp32 else ""),
        f"  STN:            {p.stn}",
        f"  INT8:           {int8}",
        f"  engine:         {p.engine_precision}",
    ]


# --------------------------------------------------------------------------- the API table


@dataclass(frozen=True)
class ApiUse:
    """One TensorRT name our code touches, as the audit checks it against a version's real bindings.

    ``owner`` is ``"tensorrt"`` (the module) or a TensorRT class/enum name. ``kind``:
    ``class`` (module attribute that is a class; ``args``/``keywords`` describe the
    constructor call, ``None`` when only subclassed), ``function``, ``value`` (module or
    class attribute of type ``returns``), ``member`` (enum member inside ``owner``),
    ``method`` (called with ``args`` positional arguments and ``keywords``), ``property``
    (read), ``settable`` (property we assign), ``override`` (a method our Python subclass
    defines, with parameter names ``keywords``). ``returns``: the class the signature must
    return (what the next call relies on). ``when``: the :class:`ApiPlan` field that makes the
    use reachable (``""``: every version). ``types``: the types of the arguments we pass, positional
    ones first, then the keywords in ``keywords`` order (for ``settable``: the assigned value) —
    ``str``, ``int``, ``bool``, ``bytes`` (a buffer), ``Dims`` (a shape tuple), ``None`` or a
    TensorRT class/enum name; the audit matches them against the pybind11 signatures in order.
    """

    owner: str
    name: str
    kind: str
    args: Optional[int] = None
    keywords: tuple[str, ...] = ()
    returns: Optional[str] = None
    when: str = ""
    types: tuple[str, ...] = ()

    def reachable(self, plan: ApiPlan) -> bool:
        return not self.when or bool(getattr(plan, self.when))

    def __str__(self) -> str:
        where = self.name if self.owner == "tensorrt" else f"{self.owner}.{self.name}"
        call = ""
        if self.args is not None:
            types = list(self.types) + ["_"] * (self.args + len(self.keywords) - len(self.types))
            call = "(" + ", ".join(types[:self.args] + [f"{k}={t if t != '_' else ''}" for k, t in
                                                        zip(self.keywords, types[self.args:])]) + ")"
        if self.kind == "override":
            call = "(" + ", ".join(self.keywords) + ")"
        if self.kind == "settable" and self.types:
            call = f" = {self.types[0]}"
        return f"{self.kind} {where}{call}"


def _m(owner: str, name: str, args: int = 0, returns: Optional[str] = None, when: str = "",
       keywords: tuple[str, ...] = (), types: tuple[str, ...] = ()) -> ApiUse:
    return ApiUse(owner, name, "method", args, keywords, returns, when, types)


#: every TensorRT name this code touches (see :class:`ApiUse`); tests keep it equal to the code.
#: The source scan (tests/test_tensorrt_audit.py) knows TensorRT objects by their names: ``trt``,
#: ``builder``, ``network``, ``parser``, ``config``, ``layer``, ``profile``, ``cache``, ``runtime``,
#: ``engine``, ``context`` and the backend's ``self._engine/_context/_runtime/_logger`` — keep
#: those names for TensorRT objects (and only for them) in the four TensorRT modules.
API_USES: tuple[ApiUse, ...] = (
    ApiUse("tensorrt", "__version__", "value", returns="str"),
    # logger, builder, network, parser
    ApiUse("tensorrt", "Logger", "class", 1, returns="Logger", types=("Severity",)),
    ApiUse("Logger", "WARNING", "value", returns="Severity"),
    ApiUse("tensorrt", "Builder", "class", 1, returns="Builder", types=("Logger",)),
    _m("Builder", "create_network", 1, "INetworkDefinition", types=("int",)),
    ApiUse("NetworkDefinitionCreationFlag", "EXPLICIT_BATCH", "member", when="explicit_batch_flag"),
    ApiUse("NetworkDefinitionCreationFlag", "STRONGLY_TYPED", "member", when="strongly_typed"),
    ApiUse("tensorrt", "OnnxParser", "class", 2, returns="OnnxParser", types=("INetworkDefinition", "Logger")),
    _m("OnnxParser", "parse_from_file", 1, "bool", types=("str",)),
    ApiUse("OnnxParser", "num_errors", "property", returns="int"),
    _m("OnnxParser", "get_error", 1, types=("int",)),
    # builder config
    _m("Builder", "create_builder_config", 0, "IBuilderConfig"),
    _m("IBuilderConfig", "set_memory_pool_limit", 2, "None", types=("MemoryPoolType", "int")),
    ApiUse("MemoryPoolType", "WORKSPACE", "member"),
    _m("IBuilderConfig", "set_flag", 1, "None", types=("BuilderFlag",)),
    ApiUse("BuilderFlag", "FP16", "member", when="precision_flags"),
    ApiUse("BuilderFlag", "INT8", "member", when="precision_flags"),
    # STN pinned to FP32 on weakly typed builds
    ApiUse("INetworkDefinition", "num_layers", "property", returns="int", when="layer_precision"),
    _m("INetworkDefinition", "get_layer", 1, "ILayer", when="layer_precision", types=("int",)),
    ApiUse("ILayer", "name", "property", returns="str", when="layer_precision"),
    ApiUse("ILayer", "precision", "settable", when="layer_precision", types=("DataType",)),
    ApiUse("ILayer", "num_outputs", "property", returns="int", when="layer_precision"),
    _m("ILayer", "set_output_type", 2, "None", when="layer_precision", types=("int", "DataType")),
    ApiUse("tensorrt", "float32", "value", returns="DataType", when="layer_precision"),
    ApiUse("BuilderFlag", "OBEY_PRECISION_CONSTRAINTS", "member", when="layer_precision"),
    # implicit INT8 (legacy calibrator)
    ApiUse("IBuilderConfig", "int8_calibrator", "settable", when="calibrator",
           types=("IInt8EntropyCalibrator2",)),
    _m("IBuilderConfig", "set_calibration_profile", 1, "bool", when="calibrator", types=("IOptimizationProfile",)),
    ApiUse("tensorrt", "IInt8EntropyCalibrator2", "class", when="calibrator"),
    ApiUse("IInt8EntropyCalibrator2", "__init__", "override", 0, when="calibrator"),
    ApiUse("IInt8EntropyCalibrator2", "get_batch_size", "override", 0, when="calibrator"),
    ApiUse("IInt8EntropyCalibrator2", "get_batch", "override", 1, ("names",), when="calibrator"),
    ApiUse("IInt8EntropyCalibrator2", "read_calibration_cache", "override", 0, when="calibrator"),
    ApiUse("IInt8EntropyCalibrator2", "write_calibration_cache", "override", 1, ("cache",), when="calibrator"),
    # optimization profile
    _m("Builder", "create_optimization_profile", 0, "IOptimizationProfile"),
    _m("IOptimizationProfile", "set_shape", 4, "None", types=("str", "Dims", "Dims", "Dims")),
    _m("IBuilderConfig", "add_optimization_profile", 1, "int", types=("IOptimizationProfile",)),
    # DLA (Jetson), every version
    ApiUse("IBuilderConfig", "default_device_type", "settable", types=("DeviceType",)),
    ApiUse("DeviceType", "DLA", "member"),
    ApiUse("IBuilderConfig", "DLA_core", "settable", types=("int",)),
    ApiUse("BuilderFlag", "GPU_FALLBACK", "member"),
    # timing cache
    _m("IBuilderConfig", "create_timing_cache", 1, "ITimingCache", types=("bytes",)),
    _m("IBuilderConfig", "set_timing_cache", 2, "bool", types=("ITimingCache", "bool")),
    _m("IBuilderConfig", "get_timing_cache", 0, "ITimingCache"),
    _m("ITimingCache", "serialize", 0, "IHostMemory"),
    # progress (10.x+)
    ApiUse("tensorrt", "IProgressMonitor", "class", when="progress_monitor"),
    ApiUse("IProgressMonitor", "__init__", "override", 0, when="progress_monitor"),
    ApiUse("IProgressMonitor", "phase_start", "override", 3, ("phase_name", "parent_phase", "num_steps"),
           when="progress_monitor"),
    ApiUse("IProgressMonitor", "step_complete", "override", 2, ("phase_name", "step"), when="progress_monitor"),
    ApiUse("IProgressMonitor", "phase_finish", "override", 1, ("phase_name",), when="progress_monitor"),
    ApiUse("IBuilderConfig", "progress_monitor", "settable", when="progress_monitor", types=("IProgressMonitor",)),
    _m("Builder", "build_serialized_network", 2, "IHostMemory", types=("INetworkDefinition", "IBuilderConfig")),
    # runtime
    ApiUse("tensorrt", "Runtime", "class", 1, returns="Runtime", types=("Logger",)),
    _m("Runtime", "deserialize_cuda_engine", 1, "ICudaEngine", types=("bytes",)),
    ApiUse("ICudaEngine", "num_io_tensors", "property", returns="int"),
    _m("ICudaEngine", "get_tensor_name", 1, "str", types=("int",)),
    _m("ICudaEngine", "get_tensor_mode", 1, "TensorIOMode", types=("str",)),
    ApiUse("TensorIOMode", "INPUT", "member"),
    _m("ICudaEngine", "get_tensor_dtype", 1, "DataType", types=("str",)),
    ApiUse("tensorrt", "nptype", "function", 1, types=("DataType",)),
    _m("ICudaEngine", "get_tensor_shape", 1, "Dims", types=("str",)),
    _m("ICudaEngine", "get_tensor_profile_shape", 2, "list[Dims]", types=("str", "int")),
    _m("ICudaEngine", "create_execution_context", 0, "IExecutionContext"),
    _m("IExecutionContext", "set_input_shape", 2, "bool", types=("str", "Dims")),
    _m("IExecutionContext", "set_tensor_address", 2, "bool", types=("str", "int")),
    _m("IExecutionContext", "execute_async_v3", 1, "bool", types=("int",)),
)


# --------------------------------------------------------------------------- import, CUDA


def import_tensorrt() -> Any:
    """``import tensorrt`` or a :class:`BackendUnavailableError` saying what to install."""
    from .errors import BackendUnavailableError

    hint = "on Jetson use JetPack's python3-libnvinfer, on x86 `pip install tensorrt` with an NVIDIA driver"
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailableError(f"TensorRT is not installed ({exc}); {hint}") from None
    if getattr(trt, "__version__", None) is None:  # e.g. a stray tensorrt-stubs (a bare namespace package)
        raise BackendUnavailableError(
            f"TensorRT is not installed (an empty 'tensorrt' package without its libraries was found); {hint}"
        )
    return trt


def installed_version() -> Optional[str]:
    """The installed TensorRT's version, or ``None`` where it cannot be imported."""
    from .errors import BackendUnavailableError

    try:
        return str(import_tensorrt().__version__)
    except BackendUnavailableError:
        return None


def installed_plan() -> ApiPlan:
    from .errors import BackendUnavailableError

    trt = import_tensorrt()
    plan = plan_for(trt.__version__)
    if plan.version[:2] < MIN_VERSION:
        raise BackendUnavailableError(
            f"TensorRT {trt.__version__} is too old: the named-tensor API (set_input_shape, "
            "execute_async_v3) needs TensorRT >= 8.5"
        )
    return plan


def jetpack_release(path: str = "/etc/nv_tegra_release") -> Optional[str]:
    """The L4T release line of a Jetson (e.g. ``R36 (release), REVISION: 4.0``) or ``None``."""
    try:
        with open(path) as f:
            first = f.readline().strip()
    except OSError:
        return None
    return first.lstrip("# ").split(", GCID")[0] or None


class CudaContext:
    """The one CUDA-context policy of the builder, the calibrator and the backend.

    TensorRT runs its work through the CUDA *runtime* API, which always uses the device's
    **primary** context. ``pycuda.autoinit`` instead creates a second, private context at
    import time and leaves it current on the importing thread: buffers pycuda allocates there
    (calibration batches, engine I/O) live in another context than TensorRT's kernels, and an
    exporter that builds under ``autoinit`` and then loads the engine through the Runtime
    holds two contexts on one GPU. So nothing here imports ``pycuda.autoinit``: every user
    retains the primary context once and pushes it around each block of CUDA work
    (``with ctx:``) — pycuda contexts are current per thread, so a push per call also makes
    calls from other threads safe. :meth:`close` releases the retain.
    """

    def __init__(self, device_index: int = 0) -> None:
        from .errors import BackendUnavailableError

        try:
            import pycuda.driver as cuda

            cuda.init()
            device = cuda.Device(device_index)
            self._primary = device.retain_primary_context()
        except Exception as exc:  # noqa: BLE001 - ImportError, or pycuda.driver.Error without a driver/GPU
            raise BackendUnavailableError(f"no usable CUDA GPU {device_index} via pycuda ({exc})") from None
        self.cuda = cuda
        major, minor = device.compute_capability()
        self.gpu = str(device.name())
        self.compute_capability = f"{major}.{minor}"

    def __enter__(self) -> Any:
        self._primary.push()
        return self.cuda

    def __exit__(self, *exc: object) -> None:
        self.cuda.Context.pop()

    def close(self) -> None:
        if self._primary is not None:
            self._primary.detach()
            self._primary = None


# --------------------------------------------------------------------------- builder


def make_logger(trt: Any) -> tr.Logger:
    return trt.Logger(trt.Logger.WARNING)


def make_progress_monitor(plan: ApiPlan, trt: Any, report: Callable[[str], None]) -> Optional[tr.IProgressMonitor]:
    """An ``IProgressMonitor`` that forwards phase starts to ``report`` (10.x+), else ``None``."""
    if not plan.progress_monitor:
        return None

    class _Progress(trt.IProgressMonitor):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)

        def phase_start(self, phase_name: str, parent_phase: Optional[str], num_steps: int) -> None:
            report(f"{'  ' if parent_phase else ''}{phase_name} ({num_steps} steps)")

        def step_complete(self, phase_name: str, step: int) -> bool:
            return True

        def phase_finish(self, phase_name: str) -> None:
            pass

    return _Progress()


def create_network(plan: ApiPlan, trt: Any, builder: tr.Builder) -> tr.INetworkDefinition:
    flags = 0
    if plan.explicit_batch_flag:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if plan.strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return builder.create_network(flags)


def parse_onnx(trt: Any, network: tr.INetworkDefinition, logger: tr.ILogger, onnx_path: str) -> None:
    from .errors import ExportError

    parser: tr.OnnxParser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(onnx_path):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ExportError(f"{onnx_path}: TensorRT's ONNX parser failed: " + "; ".join(errors[:5]))


def pin_layers_fp32(trt: Any, network: tr.INetworkDefinition, names: Sequence[str]) -> int:
    """Pin layers whose name contains one of ``names`` to FP32 (weakly typed builds only)."""
    count = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if any(n in layer.name for n in names):
            layer.precision = trt.float32
            for j in range(layer.num_outputs):
                layer.set_output_type(j, trt.float32)
            count += 1
    return count


@dataclass
class BuildOptions:
    path: PrecisionPath
    workspace_bytes: int = 1 << 30
    profile: tuple[int, int, int] = (1, 1, 8)  # min/opt/max batch
    input_name: str = "input"
    input_chw: tuple[int, int, int] = INPUT_SHAPE  # the spec's; export.tensorrt passes the ONNX's recorded one
    dla_core: Optional[int] = None
    calibrator: Any = None  # from calibration.trt_calibrator.make_entropy_calibrator, when path.calibrator
    fp32_layer_names: tuple[str, ...] = ()  # ONNX node names (STN) pinned to FP32 where path.pin_stn_fp32
    timing_cache: Optional[bytes] = None
    progress: Optional[Callable[[str], None]] = field(default=None, repr=False)


def build_serialized(plan: ApiPlan, trt: Any, onnx_path: str, opts: BuildOptions) -> tuple[bytes, Optional[bytes]]:
    """Build a plan from ``onnx_path`` as ``opts.path`` says: (engine bytes, timing cache bytes or None).

    Call it with the CUDA context current (``with CudaContext(...):``).
    """
    from .errors import ExportError

    path = opts.path
    if path.calibrator and opts.calibrator is None:
        raise ExportError(f"{path.precision} with the calibrator needs a calibrator object")
    logger = make_logger(trt)
    builder: tr.Builder = trt.Builder(logger)
    network = create_network(plan, trt, builder)
    parse_onnx(trt, network, logger, onnx_path)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, opts.workspace_bytes)
    if "FP16" in path.builder_flags:
        config.set_flag(trt.BuilderFlag.FP16)
    if "INT8" in path.builder_flags:
        config.set_flag(trt.BuilderFlag.INT8)
    if path.calibrator:
        config.int8_calibrator = opts.calibrator
    if path.pin_stn_fp32 and opts.fp32_layer_names:
        pinned = pin_layers_fp32(trt, network, opts.fp32_layer_names)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        log.info("pinned %d STN layers to FP32", pinned)
    lo, mid, hi = opts.profile
    profile = builder.create_optimization_profile()
    profile.set_shape(opts.input_name, _dims((lo, *opts.input_chw)), _dims((mid, *opts.input_chw)),
                      _dims((hi, *opts.input_chw)))
    config.add_optimization_profile(profile)
    if path.calibrator:
        config.set_calibration_profile(profile)
    if opts.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = opts.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    cache = config.create_timing_cache(opts.timing_cache or b"")
    config.set_timing_cache(cache, False)
    monitor = make_progress_monitor(plan, trt, opts.progress) if opts.progress else None
    if monitor is not None:
        config.progress_monitor = monitor
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"{onnx_path}: TensorRT failed to build the engine (see the TensorRT log above)")
    cache = config.get_timing_cache()
    cache_bytes = bytes(cache.serialize()) if cache is not None else None
    return bytes(serialized), cache_bytes


# --------------------------------------------------------------------------- runtime


@dataclass
class TensorSpec:
    name: str
    is_input: bool
    dtype: Any  # numpy dtype
    shape: tuple[int, ...]
    profile: Optional[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = None


def _dims(shape: Sequence[int]) -> tr.Dims:
    """A shape where the bindings take ``Dims``: they convert tuples implicitly; the stubs declare only ``Dims``."""
    return cast("tr.Dims", tuple(shape))


def _ints(dims: tr.Dims) -> tuple[int, ...]:
    """A ``Dims`` as a tuple (it behaves like one; the stubs declare only ``__len__``/``__getitem__``)."""
    return tuple(int(dims[i]) for i in range(len(dims)))


def deserialize(trt: Any, data: bytes) -> tuple[tr.Runtime, Optional[tr.ICudaEngine], tr.Logger]:
    """(runtime, engine or None, logger) — the runtime must outlive the engine."""
    logger = make_logger(trt)
    runtime: tr.Runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(data)
    return runtime, engine, logger


def io_tensors(trt: Any, engine: tr.ICudaEngine) -> list[TensorSpec]:
    specs = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        dtype = trt.nptype(engine.get_tensor_dtype(name))
        shape = _ints(engine.get_tensor_shape(name))
        profile = None
        if is_input:
            lo, opt, hi = engine.get_tensor_profile_shape(name, 0)
            profile = (_ints(lo), _ints(opt), _ints(hi))
        specs.append(TensorSpec(str(name), bool(is_input), dtype, shape, profile))
    return specs


def create_context(engine: tr.ICudaEngine) -> tr.IExecutionContext:
    return engine.create_execution_context()


def execute(context: tr.IExecutionContext, shapes: dict[str, tuple[int, ...]], addresses: dict[str, int],
            stream_handle: int) -> None:
    """Set input shapes and tensor addresses, enqueue with ``execute_async_v3`` (8.5+)."""
    from .errors import EmoNeXtError

    for name, shape in shapes.items():
        if not context.set_input_shape(name, shape):
            raise EmoNeXtError(f"TensorRT rejected input shape {list(shape)} for {name!r}")
    for name, address in addresses.items():
        context.set_tensor_address(name, address)
    if not context.execute_async_v3(stream_handle):
        raise EmoNeXtError("TensorRT execute_async_v3 failed")
