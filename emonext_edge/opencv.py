"""OpenCV (``cv2``), imported only where it is needed, with one line that names the fix when it is missing.

The library does not depend on an OpenCV wheel: a desktop installs ``emonext-edge[desktop]``
(``opencv-python-headless``); a Jetson keeps JetPack's own ``cv2`` (built with GStreamer and
CUDA; ``sudo apt install python3-opencv`` / ``nvidia-jetpack``), which a wheel would shadow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import OpenCVMissingError

#: present on every Jetson (L4T) root file system
TEGRA_RELEASE = Path("/etc/nv_tegra_release")


def cv2_missing_message(jetson: bool) -> str:
    if jetson:
        return ("OpenCV (cv2) is not importable: on a Jetson use JetPack's OpenCV (sudo apt install python3-opencv), "
                "not a pip wheel")
    return 'OpenCV (cv2) is not installed: pip install "emonext-edge[desktop]" (on a Jetson: JetPack\'s python3-opencv)'


def import_cv2() -> Any:
    """``cv2``, or :class:`OpenCVMissingError` with the one-line fix for this machine."""
    try:
        import cv2
    except ImportError as exc:
        raise OpenCVMissingError(f"{cv2_missing_message(TEGRA_RELEASE.exists())} ({exc})") from None
    return cv2
