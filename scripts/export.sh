#!/usr/bin/env bash
# The main job in one command: install what the export needs, then build the TensorRT INT8 engine.
#   bash scripts/export.sh [python -m export.tensorrt options]
# Default model: EmoNeXt-Tiny with seeded random weights (pass --checkpoint runs/emonext.pt for
# yours); outputs under exports/. Without TensorRT and a GPU the CPU-verified ONNX steps run and
# the command ends with exit 3 and the command to run on the target. TensorRT itself is installed
# only on a machine with an NVIDIA driver and no JetPack (JetPack ships its own TensorRT).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh export,openvino
if command -v nvidia-smi >/dev/null 2>&1 && [[ ! -f /etc/nv_tegra_release ]]; then
    bash scripts/install.sh tensorrt \
        || echo "[install] tensorrt/pycuda could not be installed: the export stops after the ONNX steps" >&2
fi
exec "${PYTHON:-python}" -m export.tensorrt --int8 "$@"
