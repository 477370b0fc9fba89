#!/usr/bin/env bash
# The device half of emonext-edge, executed on aarch64 under qemu-user (issue 24, item 3).
#
#   bash scripts/aarch64-check.sh [--faces N] [--root-only] [--keep-work]
#
# What it does (each step reuses its cache when present):
#   1. root    a Debian bookworm arm64 root (debootstrap --foreign + second stage under qemu-aarch64),
#              cached in $EMONEXT_AARCH64_CACHE/aarch64-root (default ~/.cache/emonext-edge).
#   2. wheels  `pip download --platform manylinux*_aarch64 --only-binary=:all:` of numpy,
#              opencv-python-headless, onnxruntime and openvino for the root's Python, cached.
#   3. venv    a venv inside the root (/opt/emonext/venv) with exactly those wheels installed
#              (by this machine's pip with --target and the aarch64 platform tags: no pip under emulation).
#   4. x86     exports the reference model ../shared/models/emonext_atto_fer2013.pt with
#              `python -m export.onnx` and `python -m export.openvino`, picks N real FER2013 val faces,
#              composes a frame and a short video of faces, and writes the x86 logits/boxes (x86.json).
#   5. aarch64 copies emonext_edge/ (this checkout's, no install) and those files into the root and runs
#              scripts/aarch64_check.py there: Runtime on the ONNX and the IR, logits compared with x86,
#              face detection on the frame, Runtime.stream on the video; then `python -m emonext_edge
#              predict` on two faces, checked against the same x86 labels.
#
# Needs: root (chroot, mount), the Debian packages qemu-user-static binfmt-support debootstrap (installed
# with apt-get when absent and apt-get exists), network to deb.debian.org and PyPI on the first run,
# torch + onnx + openvino in this machine's python (the export extras) and ../shared beside the repo.
# Exit codes: 0 all checks passed; 1 a check failed (aarch64 differs from x86 beyond the tolerance);
# 2 bad input (missing model/dataset); 3 the emulation environment cannot be made here.
# Timings: emulation runs at a few % of native speed; on a busy 2-core machine an image takes tens of
# seconds. These numbers say nothing about the speed of a real ARM board.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${EMONEXT_AARCH64_CACHE:-$HOME/.cache/emonext-edge}"
ROOT="$CACHE/aarch64-root"
WHEELS="$CACHE/aarch64-wheels"
SUITE="${EMONEXT_AARCH64_SUITE:-bookworm}"
MIRROR="${EMONEXT_AARCH64_MIRROR:-http://deb.debian.org/debian}"
PY="${PYTHON:-python}"
SHARED="${EMONEXT_SHARED:-$REPO/../shared}"
FACES=8
ROOT_ONLY=0
KEEP_WORK=0
# wheels: the package's own requirements (pyproject.toml: dependencies + the desktop and onnxruntime extras + openvino
# without nncf, which a device does not need); override with EMONEXT_AARCH64_WHEELS="numpy<2 ..."
WHEEL_SPECS="${EMONEXT_AARCH64_WHEELS:-$("${PYTHON:-python}" - "$REPO/pyproject.toml" <<'PYEOF'
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
extras = project["optional-dependencies"]
specs = project["dependencies"] + extras["desktop"] + extras["onnxruntime"] + [s for s in extras["openvino"] if s.startswith("openvino")]
print(" ".join(s.replace(" ", "") for s in specs))
PYEOF
)}"

while [ $# -gt 0 ]; do
    case "$1" in
        --faces) FACES="$2"; shift 2 ;;
        --root-only) ROOT_ONLY=1; shift ;;
        --keep-work) KEEP_WORK=1; shift ;;
        -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
        *) echo "aarch64-check: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$FACES" in ''|*[!0-9]*|0) echo "aarch64-check: --faces must be a positive integer, got '$FACES'" >&2; exit 2 ;; esac

say() { echo "[aarch64-check $(date -u +%H:%M:%S)] $*" >&2; }
fail_env() { echo "aarch64-check: $*" >&2; exit 3; }
START=$(date +%s)
rm -f "$CACHE/aarch64-last.json"

# -- 0. host tools -----------------------------------------------------------------------------------
[ "$(id -u)" = 0 ] || fail_env "needs root (debootstrap, chroot and mount); run it as root or in a container"
if ! command -v qemu-aarch64-static >/dev/null || ! command -v debootstrap >/dev/null; then
    command -v apt-get >/dev/null || fail_env "qemu-aarch64-static/debootstrap are missing and there is no apt-get to install them"
    say "installing qemu-user-static binfmt-support debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=300 \
        qemu-user-static binfmt-support debootstrap >/dev/null \
        || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
             -o DPkg::Lock::Timeout=300 qemu-user-static binfmt-support debootstrap >/dev/null; } \
        || fail_env "apt-get could not install qemu-user-static binfmt-support debootstrap"
fi
# aarch64 binaries must run through qemu via binfmt_misc: the second stage of debootstrap and every
# subprocess (python -m ...) exec aarch64 programs. The F flag makes it work inside the chroot.
if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null \
        || fail_env "binfmt_misc is not mounted and cannot be mounted here (a container without that right?)"
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
fi
grep -q '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null \
    || fail_env "no enabled binfmt_misc entry for qemu-aarch64 (update-binfmts --enable qemu-aarch64 failed)"

# -- mounts the chroot needs (/proc for os.cpu_count & co., /dev for /dev/null and /dev/urandom) ---------
MOUNTED=()
WORK_IN=""
cleanup() {
    local i
    for ((i=${#MOUNTED[@]}-1; i>=0; i--)); do umount -l "${MOUNTED[$i]}" 2>/dev/null || true; done
    if [ -n "$WORK_IN" ] && [ "$KEEP_WORK" = 0 ]; then rm -rf "$ROOT$WORK_IN"; fi
}
trap cleanup EXIT
# qemu-user passes the host's x86 /proc/cpuinfo and /sys through. ONNX Runtime's cpuinfo segfaults on
# x86 CPU lists read as ARM ones, and OpenVINO's hwloc segfaults without any sysfs CPU topology. So the
# chroot sees a small ARM description instead: $CPUS Cortex-A78AE cores (MIDR 0x410fd421, the cores of a
# Jetson Orin), one package, no SMT, as /proc/cpuinfo and /sys/devices/system/cpu.
CPUS="${EMONEXT_AARCH64_CPUS:-2}"
make_cpu_description() {
    local dir="$1" i t
    rm -rf "$dir"
    mkdir -p "$dir/sys/devices/system/cpu"
    for f in possible present online; do echo "0-$((CPUS - 1))" >"$dir/sys/devices/system/cpu/$f"; done
    : >"$dir/cpuinfo"
    for ((i = 0; i < CPUS; i++)); do
        t="$dir/sys/devices/system/cpu/cpu$i/topology"
        mkdir -p "$t" "$dir/sys/devices/system/cpu/cpu$i/regs/identification"
        echo 0x00000000410fd421 >"$dir/sys/devices/system/cpu/cpu$i/regs/identification/midr_el1"
        echo 0 >"$t/physical_package_id"; echo "$i" >"$t/core_id"
        echo "$i" >"$t/thread_siblings_list"; echo "$i" >"$t/core_cpus_list"
        echo "0-$((CPUS - 1))" >"$t/core_siblings_list"; echo "0-$((CPUS - 1))" >"$t/package_cpus_list"
        printf '%x\n' $((1 << i)) >"$t/thread_siblings"; printf '%x\n' $((1 << i)) >"$t/core_cpus"
        printf '%x\n' $(((1 << CPUS) - 1)) >"$t/core_siblings"; printf '%x\n' $(((1 << CPUS) - 1)) >"$t/package_cpus"
        printf 'processor\t: %d\nBogoMIPS\t: 62.50\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd42\nCPU revision\t: 1\n\n' "$i" >>"$dir/cpuinfo"
    done
}
mount_into_root() {
    make_cpu_description "$CACHE/aarch64-cpu"
    mountpoint -q "$ROOT/proc" || { mount -t proc proc "$ROOT/proc" && MOUNTED+=("$ROOT/proc"); }
    mount --bind "$CACHE/aarch64-cpu/cpuinfo" "$ROOT/proc/cpuinfo" && MOUNTED+=("$ROOT/proc/cpuinfo")
    mountpoint -q "$ROOT/dev" || { mount --bind /dev "$ROOT/dev" && MOUNTED+=("$ROOT/dev"); }
    mountpoint -q "$ROOT/sys" || { mount --bind "$CACHE/aarch64-cpu/sys" "$ROOT/sys" && MOUNTED+=("$ROOT/sys"); }
}
in_root() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root LANG=C.UTF-8 "$@"; }

# -- 1. root ----------------------------------------------------------------------------------------
ROOT_PACKAGES="python3,python3-venv,libgomp1"
if [ ! -f "$ROOT/.emonext-root-ok" ]; then
    say "building the $SUITE arm64 root in $ROOT (first run; several minutes)"
    # never delete through a bind mount a killed earlier run may have left (host /dev, /sys)
    for m in proc/cpuinfo proc dev sys; do if mountpoint -q "$ROOT/$m"; then umount -l "$ROOT/$m"; fi; done
    if grep -q " $ROOT/" /proc/mounts; then fail_env "something is still mounted under $ROOT; unmount it first"; fi
    rm -rf "$ROOT"
    mkdir -p "$ROOT"
    debootstrap --arch=arm64 --variant=minbase --foreign --include="$ROOT_PACKAGES" "$SUITE" "$ROOT" "$MIRROR" \
        >"$CACHE/aarch64-debootstrap.log" 2>&1 \
        || fail_env "debootstrap (first stage) failed; see $CACHE/aarch64-debootstrap.log"
    cp /usr/bin/qemu-aarch64-static "$ROOT/usr/bin/"
    chroot "$ROOT" /debootstrap/debootstrap --second-stage >>"$CACHE/aarch64-debootstrap.log" 2>&1 \
        || fail_env "debootstrap (second stage, under qemu) failed; see $CACHE/aarch64-debootstrap.log"
    date -u +%FT%TZ >"$ROOT/.emonext-root-ok"
fi
mount_into_root
ROOT_PY=$(in_root python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])') \
    || fail_env "the arm64 root's python3 does not run under qemu"
ROOT_ARCH=$(in_root python3 -c 'import platform; print(platform.machine())')
[ "$ROOT_ARCH" = aarch64 ] || fail_env "the root's python3 reports machine $ROOT_ARCH, expected aarch64"
say "root ok: $SUITE arm64, Python $ROOT_PY, platform.machine() = $ROOT_ARCH"
[ "$ROOT_ONLY" = 1 ] && { say "root only: done in $(( $(date +%s) - START )) s"; exit 0; }

# -- 2. wheels --------------------------------------------------------------------------------------
PYTAG="cp${ROOT_PY/./}"
PLATFORMS=(--platform manylinux2014_aarch64 --platform manylinux_2_17_aarch64 --platform manylinux_2_28_aarch64
           --platform manylinux_2_31_aarch64 --platform manylinux_2_35_aarch64)
# numpy<2: the bound a Jetson install keeps (JetPack's OpenCV/TensorRT bindings are built against numpy 1.x)
if [ ! -f "$WHEELS/$PYTAG/.ok" ] || [ "$(cat "$WHEELS/$PYTAG/.ok")" != "$WHEEL_SPECS" ]; then
    say "downloading aarch64 wheels for $PYTAG: $WHEEL_SPECS"
    rm -rf "${WHEELS:?}/${PYTAG:?}"
    mkdir -p "$WHEELS/$PYTAG"
    # shellcheck disable=SC2086
    "$PY" -m pip download -q --dest "$WHEELS/$PYTAG" --only-binary=:all: "${PLATFORMS[@]}" \
        --python-version "$ROOT_PY" --implementation cp --abi "$PYTAG" --abi abi3 --abi none $WHEEL_SPECS \
        || fail_env "pip could not download aarch64 wheels of $WHEEL_SPECS for Python $ROOT_PY"
    echo "$WHEEL_SPECS" >"$WHEELS/$PYTAG/.ok"
fi

# -- 3. venv inside the root ------------------------------------------------------------------------
VENV=/opt/emonext/venv
SITE="$ROOT$VENV/lib/python$ROOT_PY/site-packages"
WHEEL_LIST=$(cd "$WHEELS/$PYTAG" && ls ./*.whl | sort | sha256sum | cut -c1-16)
if [ ! -f "$ROOT$VENV/.ok" ] || [ "$(cat "$ROOT$VENV/.ok")" != "$WHEEL_LIST" ]; then
    say "making the venv $VENV in the root"
    rm -rf "${ROOT:?}$VENV"
    in_root python3 -m venv --without-pip "$VENV" || fail_env "python3 -m venv failed inside the root"
    # shellcheck disable=SC2086
    "$PY" -m pip install -q --no-index --find-links "$WHEELS/$PYTAG" --target "$SITE" --only-binary=:all: \
        "${PLATFORMS[@]}" --python-version "$ROOT_PY" --implementation cp --abi "$PYTAG" --abi abi3 --abi none \
        $WHEEL_SPECS || fail_env "installing the aarch64 wheels into $VENV failed"
    echo "$WHEEL_LIST" >"$ROOT$VENV/.ok"
fi
VERSIONS=$(in_root "$VENV/bin/python" -c '
import numpy, cv2, onnxruntime, openvino
print(f"numpy {numpy.__version__}, opencv {cv2.__version__}, onnxruntime {onnxruntime.__version__}, openvino {openvino.__version__}")
') || { echo "aarch64-check: the aarch64 wheels installed but do not import in the root (a missing or broken wheel)" >&2; exit 1; }
say "aarch64 venv: $VERSIONS"

# -- 4. x86 side: artifacts, faces, reference outputs ------------------------------------------------
CKPT="$SHARED/models/emonext_atto_fer2013.pt"
TARBALL="$SHARED/datasets/fer2013/fer2013_train_val.tar.gz"
[ -f "$CKPT" ] || { echo "aarch64-check: $CKPT: no such reference model (../shared beside the repo?)" >&2; exit 2; }
[ -f "$TARBALL" ] || { echo "aarch64-check: $TARBALL: no such FER2013 tarball" >&2; exit 2; }
ART="$CACHE/aarch64-artifacts"
# re-exported when the checkpoint or the code that exports/reads it changes
CKPT_SHA=$( (sha256sum "$CKPT" | cut -c1-64; cd "$REPO" && find export emonext_edge -name '*.py' | sort | xargs cat) \
    | sha256sum | cut -c1-16)
if [ ! -f "$ART/.ok" ] || [ "$(cat "$ART/.ok")" != "$CKPT_SHA" ]; then
    say "exporting $CKPT on x86 (ONNX, then OpenVINO IR)"
    rm -rf "$ART"
    mkdir -p "$ART"
    (cd "$REPO" && "$PY" -m export.onnx --checkpoint "$CKPT" --output "$ART/emonext.onnx" >"$ART/export.log" 2>&1 \
        && "$PY" -m export.openvino --onnx "$ART/emonext.onnx" --output "$ART/ir" >>"$ART/export.log" 2>&1) \
        || { echo "aarch64-check: the x86 export failed; see $ART/export.log" >&2; exit 1; }
    echo "$CKPT_SHA" >"$ART/.ok"
fi
WORK_IN=/opt/emonext/run.$$
WORK="$ROOT$WORK_IN"
mkdir -p "$WORK/data"
cp -r "$REPO/emonext_edge" "$WORK/src_emonext_edge"
mkdir -p "$WORK/src" && mv "$WORK/src_emonext_edge" "$WORK/src/emonext_edge"
find "$WORK/src" -name __pycache__ -prune -exec rm -rf {} +
cp "$REPO/scripts/aarch64_check.py" "$WORK/"
cp "$ART"/emonext.onnx "$ART"/emonext.json "$WORK/data/"
cp -r "$ART/ir" "$WORK/data/ir"
say "x86 reference on $FACES FER2013 val faces"
(cd "$REPO" && PYTHONPATH="$REPO" "$PY" scripts/aarch64_check.py reference --tarball "$TARBALL" --faces "$FACES" \
    --data "$WORK/data") || { echo "aarch64-check: the x86 reference run failed" >&2; exit 1; }

# -- 5. aarch64 side -----------------------------------------------------------------------------------
say "on aarch64 (emulated): Runtime on ONNX and IR, detection, stream, predict CLI"
T0=$(date +%s)
set +e
in_root env PYTHONPATH="$WORK_IN/src" "$VENV/bin/python" "$WORK_IN/aarch64_check.py" device --data "$WORK_IN/data" \
    --predict-cli
RC=$?
set -e
T1=$(date +%s)
cp "$WORK/data/device.json" "$CACHE/aarch64-last.json" 2>/dev/null || true
say "aarch64 part: $((T1 - T0)) s; total $((T1 - START)) s; exit $RC (result in $CACHE/aarch64-last.json)"
exit $RC
