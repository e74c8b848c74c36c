"""Which OpenCV the agent runs on: the pip wheel or the system's.

OpenCV is an extra (``edge-agent[opencv]``, the ``opencv-python-headless`` wheel), which every
default install path installs (``scripts/install.sh``, the README's set-up, ``scripts/test.sh``).
``scripts/install.sh --system-opencv`` instead gives the virtual environment the system's
site-packages and leaves the wheel out, so the system build is used: JetPack's OpenCV, built with
GStreamer (CSI cameras through ``nvarguscamerasrc``), or Debian's ``python3-opencv``. A pip wheel in
the environment would hide it, and the pip wheels have no GStreamer.

:func:`info` says which one is imported (``edge-agent doctor`` prints it); a missing ``cv2`` is a
:class:`MissingOpenCV` with the two ways to fix it, never a traceback.
"""

from __future__ import annotations

import importlib.metadata
import re
from dataclasses import dataclass
from pathlib import Path

from agent.errors import AgentError

WHEELS = (
    "opencv-python-headless",
    "opencv-python",
    "opencv-contrib-python-headless",
    "opencv-contrib-python",
)

MISSING_HINT = (
    "install the pip wheel: pip install 'edge-agent[opencv]' (scripts/install.sh does this by default); "
    "or use the system's OpenCV (JetPack's, or apt-get install python3-opencv) with "
    "scripts/install.sh --system-opencv"
)


class MissingOpenCV(AgentError):
    """``import cv2`` failed: neither the pip wheel nor a system OpenCV is visible to this Python."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(
            "OpenCV (the cv2 module) is not installed for this Python" + (f" ({detail})" if detail else ""),
            MISSING_HINT,
        )


def has_gstreamer(build_information: str) -> bool:
    """Whether ``cv2.getBuildInformation()`` lists GStreamer as a video I/O backend."""
    return re.search(r"^\s*GStreamer:\s*YES", build_information, re.MULTILINE) is not None


@dataclass(frozen=True)
class OpenCVInfo:
    version: str
    origin: str  # "pip" (a wheel in this environment) or "system" (anything else: JetPack, apt, source)
    package: str | None  # the wheel's distribution name and version, for "pip"
    path: str  # where cv2 was imported from
    gstreamer: bool

    def describe(self) -> str:
        where = f"pip wheel {self.package}" if self.origin == "pip" else f"system build, {self.path}"
        return f"OpenCV {self.version} ({where}), GStreamer: {'yes' if self.gstreamer else 'no'}"


def _wheel_owning(cv2_file: Path) -> str | None:
    for name in WHEELS:
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        site = Path(str(dist.locate_file(""))).resolve()
        if cv2_file.is_relative_to(site) and any(
            str(f).startswith("cv2") for f in (dist.files or [])
        ):  # this wheel's cv2 is the one imported
            return f"{name} {dist.version}"
    return None


def info() -> OpenCVInfo:
    """The imported OpenCV; raises :class:`MissingOpenCV` when there is none."""
    try:
        import cv2
    except ImportError as exc:  # ModuleNotFoundError, or a system build that fails to load (numpy ABI)
        raise MissingOpenCV("" if isinstance(exc, ModuleNotFoundError) else str(exc)) from None
    path = Path(getattr(cv2, "__file__", None) or "?").resolve()
    package = _wheel_owning(path)
    return OpenCVInfo(
        version=str(cv2.__version__),
        origin="pip" if package else "system",
        package=package,
        path=str(path.parent if path.name == "__init__.py" else path),
        gstreamer=has_gstreamer(cv2.getBuildInformation()),
    )
