"""The tracking benchmark's side-by-side mode measures the checkout it is given (#15)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import analytics_bench  # noqa: E402


def test_scene_times_every_frame() -> None:
    times = analytics_bench.run(10, 40)
    assert len(times) == 40 and all(t > 0 for t in times)


def test_against_imports_the_other_checkout(tmp_path: Path) -> None:
    # a real copy of the package, run from the repository's root: the subprocess must import the
    # copy (its guard asserts which ``agent`` it got), not this checkout
    other = tmp_path / "other"
    other.mkdir()
    tar = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "HEAD", "agent"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(other)], input=tar.stdout, check=True)
    assert analytics_bench._p50_in(str(other), 10, 80, "cpu") > 0
    # and a folder without the package is refused instead of silently measuring this checkout
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(subprocess.CalledProcessError):
        analytics_bench._p50_in(str(empty), 10, 20, "cpu")
