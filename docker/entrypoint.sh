#!/usr/bin/env bash
# Entrypoint of the emonext-edge images (docker/Dockerfile.jetson, docker/Dockerfile.x86).
#
#   docker run [...] IMAGE COMMAND [ARGS...]
#
# Commands:
#   check            what this container can run: Python, numpy, OpenCV (and whether it has GStreamer),
#                    TensorRT, pycuda, camera devices. Exit 0 when TensorRT and pycuda import, 3 otherwise.
#   engine ARGS      python -m export.tensorrt ARGS      e.g. engine --int8 --onnx /models/emonext_int8_qdq.onnx
#   latency ARGS     python benchmarks/latency.py ARGS   e.g. latency --artifacts /models/emonext_int8.engine
#   video ARGS       python -m emonext_edge video ARGS   e.g. video /models/emonext_int8.engine 0 --out /out/a.mp4
#   predict ARGS     python -m emonext_edge predict ARGS
#   help             this text (also: -h, --help)
#   anything else    run as given (bash, python3, ...)
# No command: this text on stderr and exit 2.
#
# Environment: EMONEXT_PYTHON (default: python3), EMONEXT_HOME (default: the folder above this script, where
# benchmarks/ lives; /opt/emonext-edge in the images).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
home="${EMONEXT_HOME:-$(dirname "$here")}"
py="${EMONEXT_PYTHON:-python3}"

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; }

check() {
    "$py" - <<'PY'
import glob, importlib, sys
print(f"python      {sys.version.split()[0]}")
ok = True
for name in ("numpy", "cv2", "onnx", "onnxruntime", "tensorrt", "pycuda.driver"):
    try:
        mod = importlib.import_module(name)
    except Exception as exc:  # any import failure is a fact to report, not a crash
        print(f"{name:<11} missing ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})")
        ok = ok and name not in ("tensorrt", "pycuda.driver")
        continue
    version = getattr(mod, "__version__", getattr(mod, "VERSION_TEXT", "?"))
    extra = ""
    if name == "cv2":
        info = mod.getBuildInformation()
        line = next((ln for ln in info.splitlines() if "GStreamer" in ln), "GStreamer: not listed")
        extra = "  [" + " ".join(line.split()) + "]"
    print(f"{name:<11} {version}{extra}")
print("cameras     " + (" ".join(sorted(glob.glob("/dev/video*"))) or "none (pass --device /dev/videoN)"))
print("csi         " + ("argus socket present" if glob.glob("/tmp/argus_socket") else
                        "no /tmp/argus_socket (CSI: -v /tmp/argus_socket:/tmp/argus_socket)"))
sys.exit(0 if ok else 3)
PY
}

if [[ $# -eq 0 ]]; then
    usage >&2
    exit 2
fi
cmd="$1"
shift
case "$cmd" in
    help|-h|--help) usage ;;
    check) check ;;
    engine) exec "$py" -m export.tensorrt "$@" ;;
    latency) exec "$py" "$home/benchmarks/latency.py" "$@" ;;
    video) exec "$py" -m emonext_edge video "$@" ;;
    predict) exec "$py" -m emonext_edge predict "$@" ;;
    *) exec "$cmd" "$@" ;;
esac
