"""The offline Smart Data Models validator (../shared/standards/ngsi-ld/validate.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


def standards_dir() -> Path:
    env = os.environ.get("EDGE_AGENT_STANDARDS")
    return Path(env) if env else ROOT.parent / "shared" / "standards" / "ngsi-ld"


def validate(entities: list[dict], tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    d = standards_dir()
    if not (d / "validate.py").exists():
        pytest.fail(f"validate.py not found in {d}: set EDGE_AGENT_STANDARDS to shared/standards/ngsi-ld")
    f = tmp / f"entities-{len(list(tmp.glob('entities-*')))}.jsonl"
    f.write_text("".join(json.dumps(e) + "\n" for e in entities))
    return subprocess.run(
        [sys.executable, "validate.py", "--check-formats", *extra, str(f)],
        cwd=d,
        capture_output=True,
        text=True,
        timeout=120,
    )
