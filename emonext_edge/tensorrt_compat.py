"""THE one place that knows which TensorRT calls each generation takes (8.5/8.6, 10.x, 11.x).

The engine builder (``export/tensorrt.py``) and the Runtime backend
(``backends/tensorrt_backend.py``) make every TensorRT call through the functions here,
steered by an :class:`ApiPlan` from :func:`plan_for`. :func:`api_names_used` runs those very
functions on every reachable path of a version against a recording stand-in for the
``tensorrt`` module and returns the names touched, so a test can compare them with the
names the real bindings of that version expose.

Generations:

* 8.5/8.6 — named I/O tensors and ``execute_async_v3`` exist (we never use ``execute_async_v2``);
  weakly typed networks, ``EXPLICIT_BATCH`` flag, FP16/INT8 builder flags, INT8 calibrators;
  no ``IProgressMonitor``; ``LayerNormalization`` from 8.6.
* 10.x — explicit batch is implicit; ``STRONGLY_TYPED`` exists; ``IProgressMonitor``;
  calibrators deprecated from 10.1 (reachable only below 10.1 here).
* 11.x — strongly typed only: FP16 via a mixed-precision ONNX, INT8 via Q/DQ ONNX; no
  precision flags, no calibrators, no layer precision constraints.

Importing this module never imports TensorRT.
"""

from __future__ import annotations

import logging
import sys
import types
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Optional

log = logging.getLogger(__name__)

MIN_VERSION = (8, 5)
#: TensorRT versions whose Python API this module targets, one per generation/JetPack line
KNOWN_VERSIONS = ("8.6.1", "10.3.0", "10.13.3", "11.4.0")


def parse_version(version: str) -> tuple[int, int, int]:
    parts = [p for p in str(version).split(".")[:3]]
    try:
        nums = [int("".join(ch for ch in p if ch.isdigit()) or 0) for p in parts]
    except ValueError:
        raise ValueError(f"not a TensorRT version: {version!r}") from None
    while len(nums) < 3:
        nums.append(0)
    return nums[0], nums[1], nums[2]


@dataclass(frozen=True)
class ApiPlan:
    """Which calls one TensorRT version gets. Every branch in the TensorRT code reads one of these fields."""

    version: tuple[int, int, int]
    explicit_batch_flag: bool  # 8.x: networks need NetworkDefinitionCreationFlag.EXPLICIT_BATCH
    strongly_typed: bool  # 11.x: always; 10.x: only for explicit Q/DQ / mixed-ONNX builds
    strongly_typed_available: bool
    precision_flags: bool  # BuilderFlag.FP16 / INT8 exist
    layer_precision: bool  # layer.precision + OBEY_PRECISION_CONSTRAINTS (to pin the STN to FP32)
    calibrator: bool  # IInt8EntropyCalibrator2 path reachable (< 10.1)
    progress_monitor: bool
    fp16_via_onnx: bool  # FP16 needs the mixed FP16 ONNX (11.x)
    stn_mode: str  # "native" (GridSample) or "decomposed"
    onnx_opset: int  # opset to export at: LayerNormalization (opset 17) parses from 8.6, GridSample from 8.5

    @property
    def label(self) -> str:
        return ".".join(str(v) for v in self.version)

    def precision_paths(self) -> list[tuple[str, str]]:
        """(precision, int8_mode) pairs this version can build."""
        paths = [("fp32", ""), ("fp16", ""), ("int8", "explicit"), ("fp16+int8", "explicit")]
        if self.calibrator:
            paths += [("int8", "calibrator"), ("fp16+int8", "calibrator")]
        return paths


def plan_for(version: str) -> ApiPlan:
    v = parse_version(version)
    major_minor = v[:2]
    gen11 = v[0] >= 11
    return ApiPlan(
        version=v,
        explicit_batch_flag=v[0] < 10,
        strongly_typed=gen11,
        strongly_typed_available=v[0] >= 10,
        precision_flags=not gen11,
        layer_precision=not gen11,
        calibrator=major_minor < (10, 1) and major_minor >= MIN_VERSION,
        progress_monitor=v[0] >= 10,
        fp16_via_onnx=gen11,
        stn_mode="native" if major_minor >= (8, 5) else "decomposed",
        onnx_opset=17 if major_minor >= (8, 6) else (16 if major_minor >= (8, 5) else 13),
    )


def import_tensorrt() -> Any:
    """``import tensorrt`` or a :class:`BackendUnavailableError` saying what to install."""
    from .errors import BackendUnavailableError

    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailableError(
            f"TensorRT is not installed ({exc}); on Jetson use JetPack's python3-libnvinfer, "
            "on x86 `pip install tensorrt` with an NVIDIA driver"
        ) from None
    if getattr(trt, "__version__", None) is None:  # e.g. only tensorrt-stubs (a bare namespace package)
        raise BackendUnavailableError(
            "TensorRT is not installed (an empty 'tensorrt' package without its libraries was found); "
            "on Jetson use JetPack's python3-libnvinfer, on x86 `pip install tensorrt` with an NVIDIA driver"
        )
    return trt


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


# --------------------------------------------------------------------------- builder


def make_logger(trt: Any) -> Any:
    return trt.Logger(trt.Logger.WARNING)


def make_progress_monitor(plan: ApiPlan, trt: Any, report: Callable[[str], None]) -> Optional[Any]:
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


def create_network(plan: ApiPlan, trt: Any, builder: Any, strongly_typed: bool) -> Any:
    flags = 0
    if plan.explicit_batch_flag:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return builder.create_network(flags)


def parse_onnx(trt: Any, network: Any, logger: Any, onnx_path: str) -> None:
    from .errors import ExportError

    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(onnx_path):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ExportError(f"{onnx_path}: TensorRT's ONNX parser failed: " + "; ".join(errors[:5]))


def pin_layers_fp32(plan: ApiPlan, trt: Any, network: Any, names: Sequence[str]) -> int:
    """Pin layers whose name contains one of ``names`` to FP32 (weakly typed builds only)."""
    if not plan.layer_precision or not names:
        return 0
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
    precision: str = "fp16"  # fp32 | fp16 | int8 | fp16+int8
    int8_mode: str = "explicit"  # explicit (Q/DQ ONNX) | calibrator
    workspace_bytes: int = 1 << 30
    profile: tuple[int, int, int] = (1, 1, 8)  # min/opt/max batch
    input_name: str = "input"
    input_chw: tuple[int, int, int] = (3, 224, 224)
    dla_core: Optional[int] = None
    calibrator: Any = None
    fp32_layer_names: tuple[str, ...] = ()  # ONNX node names (STN) pinned to FP32 on weakly typed builds
    timing_cache: Optional[bytes] = None
    progress: Optional[Callable[[str], None]] = None


def build_serialized(plan: ApiPlan, trt: Any, onnx_path: str, opts: BuildOptions) -> tuple[bytes, Optional[bytes]]:
    """Build a plan from ``onnx_path``: returns (engine bytes, timing cache bytes or None)."""
    from .errors import ExportError

    fp16 = "fp16" in opts.precision
    int8 = "int8" in opts.precision
    if int8 and opts.int8_mode == "calibrator" and not plan.calibrator:
        raise ExportError(
            f"TensorRT {plan.label} has no usable INT8 calibrator (removed in 11, deprecated from 10.1): "
            "use --int8-mode explicit (Q/DQ ONNX)"
        )
    # strongly typed: always on 11; on 10.x for the ONNX-typed paths (explicit Q/DQ without FP16 flag)
    strongly_typed = plan.strongly_typed
    logger = make_logger(trt)
    builder = trt.Builder(logger)
    network = create_network(plan, trt, builder, strongly_typed)
    parse_onnx(trt, network, logger, onnx_path)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, opts.workspace_bytes)
    if not strongly_typed and plan.precision_flags:
        if fp16:
            config.set_flag(trt.BuilderFlag.FP16)
        if int8:
            config.set_flag(trt.BuilderFlag.INT8)
            if opts.int8_mode == "calibrator":
                config.int8_calibrator = opts.calibrator
        if plan.layer_precision and opts.fp32_layer_names and (fp16 or int8):
            pinned = pin_layers_fp32(plan, trt, network, opts.fp32_layer_names)
            config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
            log.info("pinned %d STN layers to FP32", pinned)
    lo, mid, hi = opts.profile
    profile = builder.create_optimization_profile()
    profile.set_shape(opts.input_name, (lo, *opts.input_chw), (mid, *opts.input_chw), (hi, *opts.input_chw))
    config.add_optimization_profile(profile)
    if int8 and opts.int8_mode == "calibrator":
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
    new_cache = config.get_timing_cache()
    cache_bytes = bytes(new_cache.serialize()) if new_cache is not None else None
    return bytes(serialized), cache_bytes


# --------------------------------------------------------------------------- runtime


@dataclass
class TensorSpec:
    name: str
    is_input: bool
    dtype: Any  # numpy dtype
    shape: tuple[int, ...]
    profile: Optional[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = None


def deserialize(trt: Any, data: bytes) -> tuple[Any, Any, Any]:
    """(runtime, engine or None, logger) — the runtime must outlive the engine."""
    logger = make_logger(trt)
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(data)
    return runtime, engine, logger


def io_tensors(trt: Any, engine: Any) -> list[TensorSpec]:
    specs = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        dtype = trt.nptype(engine.get_tensor_dtype(name))
        shape = tuple(engine.get_tensor_shape(name))
        profile = None
        if is_input:
            lo, opt, hi = engine.get_tensor_profile_shape(name, 0)
            profile = (tuple(lo), tuple(opt), tuple(hi))
        specs.append(TensorSpec(str(name), bool(is_input), dtype, shape, profile))
    return specs


def create_context(engine: Any) -> Any:
    return engine.create_execution_context()


def execute(context: Any, shapes: dict[str, tuple[int, ...]], addresses: dict[str, int], stream_handle: int) -> Any:
    """Set input shapes and tensor addresses, enqueue with ``execute_async_v3`` (8.5+)."""
    from .errors import EmoNeXtError

    for name, shape in shapes.items():
        if not context.set_input_shape(name, shape):
            raise EmoNeXtError(f"TensorRT rejected input shape {list(shape)} for {name!r}")
    for name, address in addresses.items():
        context.set_tensor_address(name, address)
    if not context.execute_async_v3(stream_handle):
        raise EmoNeXtError("TensorRT execute_async_v3 failed")
    return context.get_tensor_shape


# --------------------------------------------------------------------------- name recorder


class _Recorder:
    """Stands in for the ``tensorrt`` module and every object it returns; records attribute names."""

    BASES = ("IProgressMonitor", "IInt8EntropyCalibrator2", "ILogger")

    def __init__(self, names: set[str]) -> None:
        object.__setattr__(self, "_names", names)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        self._names.add(name)
        if name in self.BASES:
            return type(name, (), {"__init__": lambda self, *a, **k: None})
        if name == "nptype":
            return lambda *_: "float32"
        if name == "get_tensor_profile_shape":
            return lambda *_: ((1, 3, 224, 224),) * 3
        return _Recorder(self._names)

    def __setattr__(self, name: str, value: Any) -> None:
        self._names.add(name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _Recorder(self._names)

    def __int__(self) -> int:
        return 1

    __index__ = __int__

    def __iter__(self) -> Iterator[Any]:
        return iter([_Recorder(self._names)])

    def __bytes__(self) -> bytes:
        return b""

    def __contains__(self, item: Any) -> bool:
        return True

    def __bool__(self) -> bool:
        return True

    def __str__(self) -> str:
        return "recorded"

    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return id(self)


@contextmanager
def _recording(names: set[str]) -> Iterator[Any]:
    fake = _Recorder(names)
    module = types.ModuleType("tensorrt")
    module.__getattr__ = fake.__getattr__  # type: ignore[method-assign]
    saved = sys.modules.get("tensorrt")
    sys.modules["tensorrt"] = module
    try:
        yield module
    finally:
        if saved is None:
            sys.modules.pop("tensorrt", None)
        else:
            sys.modules["tensorrt"] = saved




def api_names_used(version: str) -> set[str]:
    """Every TensorRT attribute name the builder and runtime touch on ``version``'s reachable paths."""
    plan = plan_for(version)
    names: set[str] = set()
    with _recording(names) as trt:
        for precision, mode in plan.precision_paths():
            calibrator = None
            if mode == "calibrator":
                from calibration.trt_calibrator import make_entropy_calibrator

                calibrator = make_entropy_calibrator(plan, None, cache_path=None, batch_size=1, trt=trt)
            for dla in (None, 0):
                opts = BuildOptions(precision=precision, int8_mode=mode or "explicit", dla_core=dla,
                                    calibrator=calibrator, fp32_layer_names=("/stn",), progress=lambda s: None)
                build_serialized(plan, trt, "model.onnx", opts)
        _, engine, _ = deserialize(trt, b"")
        io_tensors(trt, engine)
        execute(create_context(engine), {"input": (1, 3, 224, 224)}, {"input": 0, "logits": 0}, 0)
    return names
