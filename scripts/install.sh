#!/usr/bin/env bash
# Install emonext-edge with the given extras into the current Python environment (a venv is best).
#   bash scripts/install.sh export,openvino,dev
# PyTorch comes first and pinned, so that pip never resolves `torch` on its own: an unpinned
# torch from PyPI is the CUDA build (several GB). Where the local package index has no CPU build,
# set TORCH_INDEX_URL to PyTorch's CPU wheel index (see the README's Install section).
# Environment: PYTHON (default: python), TORCH_VERSION (default 2.13.0), TORCH_INDEX_URL (optional).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:?usage: bash scripts/install.sh EXTRA[,EXTRA...]}"
py="${PYTHON:-python}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

say() { printf '[install] %s\n' "$*" >&2; }

if [[ ",$extras," == *",export,"* ]]; then
    torch_args=("torch==${TORCH_VERSION:-2.13.0}")
    if [[ -n "${TORCH_INDEX_URL:-}" ]]; then
        torch_args+=(--index-url "$TORCH_INDEX_URL")
    fi
    say "PyTorch: pip install ${torch_args[*]}"
    "$py" -m pip install --quiet "${torch_args[@]}"
fi
say "emonext-edge: pip install -e .[$extras]"
"$py" -m pip install --quiet -e ".[$extras]"
say "done ($("$py" -c 'import sys; print(sys.executable)'))"
