"""The device half on aarch64 (scripts/aarch64-check.sh under qemu-user), and the comparison it gates on.

The emulated run (slow, about 4 min) runs where a cached arm64 root exists
(``~/.cache/emonext-edge/aarch64-root``, made by ``bash scripts/aarch64-check.sh --root-only``) or when
``EMONEXT_AARCH64=1`` asks for one to be built (about 11 min more); ``EMONEXT_AARCH64=0`` turns it off.
docs/aarch64.md says when it runs and what it last measured.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "aarch64-check.sh"
CACHE = Path(os.environ.get("EMONEXT_AARCH64_CACHE", Path.home() / ".cache" / "emonext-edge"))

sys.path.insert(0, str(REPO / "scripts"))
import aarch64_check

sys.path.pop(0)


def _record() -> dict:
    """A reference/device pair as the helper writes them: 3 faces, 2 artifacts, 2 boxes, 2 stream frames."""
    logits = [[0.1, 2.0, -1.0, 0.5, 0.0, 0.3, -0.2], [1.5, 0.2, 0.1, 0.0, -0.4, 0.9, 0.3], [0.0, 0.1, 0.2, 3.0, 0.4, 0.5, 0.6]]
    probs = {"Happy": 0.7, "Sad": 0.3}
    face = {"track": 1, "box": [10, 10, 50, 50], "label": "Happy", "probs": probs}
    return {
        "artifacts": {kind: {"logits": copy.deepcopy(logits)} for kind in aarch64_check.ARTIFACTS},
        "boxes": [[10, 10, 50, 50], [100, 20, 40, 40]],
        "stream": [{"frame": 0, "faces": [dict(face)]}, {"frame": 1, "faces": [dict(face)]}],
    }


def test_identical_outputs_pass():
    checks = aarch64_check._compare(_record(), _record())
    assert all(c["ok"] for c in checks.values()), checks
    assert checks["onnx"]["max_abs_dlogit"] == 0.0 and checks["onnx"]["top1_agreement"] == 1.0


def test_planted_differences_fail_the_right_check():
    atol = aarch64_check.LOGIT_ATOL
    ref = _record()
    # float32 rounding well inside the tolerance passes
    dev = _record()
    dev["artifacts"]["onnx"]["logits"][0][0] += atol / 10
    assert aarch64_check._compare(ref, dev)["onnx"]["ok"]
    # beyond the tolerance without a label change: fails on |Δlogit|
    dev["artifacts"]["onnx"]["logits"][0][0] += 2 * atol
    onnx = aarch64_check._compare(ref, dev)["onnx"]
    assert not onnx["ok"] and onnx["top1_agreement"] == 1.0
    # a swapped top-1 on the IR only: the IR check fails, the ONNX one is unaffected
    dev = _record()
    row = dev["artifacts"]["openvino_ir"]["logits"][2]
    row[3], row[0] = row[0], row[3]
    checks = aarch64_check._compare(ref, dev)
    assert checks["onnx"]["ok"] and not checks["openvino_ir"]["ok"]
    assert checks["openvino_ir"]["top1_agreement"] == pytest.approx(2 / 3)
    # a face not detected on aarch64, or a box moved
    dev = _record()
    dev["boxes"] = dev["boxes"][:1]
    assert not aarch64_check._compare(ref, dev)["detection"]["ok"]
    dev = _record()
    dev["boxes"][1] = [110, 30, 40, 40]
    assert not aarch64_check._compare(ref, dev)["detection"]["ok"]
    # a stream that lost a face on one frame, or changed a label
    dev = _record()
    dev["stream"][1]["faces"] = []
    assert not aarch64_check._compare(ref, dev)["stream"]["ok"]
    dev = _record()
    dev["stream"][0]["faces"][0] = {**dev["stream"][0]["faces"][0], "label": "Sad"}
    assert not aarch64_check._compare(ref, dev)["stream"]["ok"]
    dev = _record()
    dev["stream"][1]["faces"][0] = {**dev["stream"][1]["faces"][0], "box": [11, 10, 50, 50]}
    assert not aarch64_check._compare(ref, dev)["stream"]["boxes_equal"]
    # the video decoded to other pixels on one side (a lossy codec's SIMD IDCT): not comparable, fails
    dev = _record()
    dev["stream"][0]["pixels"] = "0123456789abcdef"
    stream = aarch64_check._compare(ref, dev)["stream"]
    assert not stream["ok"] and not stream["decoded_frames_equal"] and stream["labels_equal"]


def test_script_refuses_bad_options_before_doing_anything():
    if shutil.which("bash") is None:
        pytest.skip("bash is absent")
    proc = subprocess.run(["bash", str(SCRIPT), "--faces", "many"], check=False, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "--faces must be a positive integer, got 'many'" in proc.stderr
    proc = subprocess.run(["bash", str(SCRIPT), "--nope"], check=False, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "unknown option --nope" in proc.stderr


@pytest.mark.slow
def test_device_half_on_aarch64_matches_x86(reference_checkpoint, shared_dir):
    wanted = os.environ.get("EMONEXT_AARCH64")
    cached = (CACHE / "aarch64-root" / ".emonext-root-ok").is_file()
    if wanted == "0" or (wanted != "1" and not cached):
        pytest.skip(f"the emulated aarch64 run needs a cached arm64 root ({CACHE}/aarch64-root, none here) or "
                    "EMONEXT_AARCH64=1 to build one (about 11 min + 100 MB of wheels); EMONEXT_AARCH64=0 turns it "
                    "off; see docs/aarch64.md")
    missing = [tool for tool in ("qemu-aarch64-static", "debootstrap", "chroot") if shutil.which(tool) is None]
    if missing and shutil.which("apt-get") is None:
        pytest.skip(f"{', '.join(missing)} missing and no apt-get to install them (Debian: qemu-user-static "
                    "binfmt-support debootstrap)")
    if os.geteuid() != 0:
        pytest.skip("the aarch64 check needs root (debootstrap, chroot, mount)")
    env = {**os.environ, "EMONEXT_SHARED": str(shared_dir), "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(SCRIPT), "--faces", "8"], check=False, capture_output=True, text=True,
                          timeout=3600, env=env)
    if proc.returncode == 3:
        pytest.skip(f"no aarch64 emulation here: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    record = json.loads((CACHE / "aarch64-last.json").read_text())
    assert record["ok"] and record["env"]["machine"] == "aarch64"
    for kind in aarch64_check.ARTIFACTS:
        check = record["checks"][kind]
        assert check["faces"] == 8 and check["top1_agreement"] == 1.0
        assert check["max_abs_dlogit"] <= aarch64_check.LOGIT_ATOL
    assert record["checks"]["predict_cli"]["ok"] and record["checks"]["stream"]["faces"] > 0
