#!/usr/bin/env bash
# Tests in one command: install the test dependencies, then run the suite (CI runs exactly this).
#   bash scripts/test.sh [--quick] [pytest options]
#   --quick: only the tests not marked slow (-m "not slow"), for a first check; see the README for durations.
# The 15 slowest tests are listed at the end of every run.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=()
if [[ "${1:-}" == "--quick" ]]; then
    shift
    quick=(-m "not slow")
fi
bash scripts/install.sh export,openvino,dev,triton
set -- --durations=15 ${quick[@]+"${quick[@]}"} "$@"
exec "${PYTHON:-python}" -m pytest "$@"
