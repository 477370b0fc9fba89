#!/usr/bin/env bash
# Tests in one command: install the test dependencies, then run the suite (CI runs exactly this).
#   bash scripts/test.sh [pytest options]     e.g. -m "not slow" for a quicker run
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh export,openvino,dev,triton
exec "${PYTHON:-python}" -m pytest "$@"
