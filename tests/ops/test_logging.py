"""Logging for journald and log shippers (issue #16, item 5): the installed `edge-agent`, its stderr
a real file whose device:inode is put in JOURNAL_STREAM, as systemd does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

EDGE_AGENT = str(Path(sys.executable).with_name("edge-agent"))
MIRROR = Path(
    os.environ.get("EDGE_AGENT_MIRROR", Path(__file__).resolve().parents[2].parent / "shared" / "assets")
)


def _run_agent(tmp_path: Path, extra: str = "", journal: bool = True) -> list[str]:
    cfg = tmp_path / "agent.toml"
    cfg.write_text(
        f'[device]\nid = "unit-1"\nsite = "site-a"\n\n[storage]\npath = "{tmp_path}/db.sqlite"\n\n'
        f'[api]\nenabled = false\n\n[logging]\nlevel = "info"\n{extra}'
    )
    err_path = tmp_path / "stderr.log"
    with open(err_path, "w") as err:
        st = os.fstat(err.fileno())
        env = {k: v for k, v in os.environ.items() if k not in ("JOURNAL_STREAM", "EDGE_AGENT_CONFIG")}
        if journal:
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"  # what systemd sets for StandardError=journal
        r = subprocess.run(
            [EDGE_AGENT, "run", "--config", str(cfg), "--duration", "1"],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            timeout=90,
            env=env,
        )
    lines = err_path.read_text().splitlines()
    assert r.returncode == 0, lines
    return [ln for ln in lines if ln.strip()]


def test_journald_lines_carry_a_priority_prefix_and_no_timestamp(tmp_path):
    # no camera and no sensor: a warning (the "nothing to do" line) and info lines
    lines = _run_agent(tmp_path, journal=True)
    logged = [ln for ln in lines if not ln.startswith(("config:", "warning:", "  fix:"))]
    assert logged, lines
    for ln in logged:
        assert ln[:3] in ("<3>", "<4>", "<6>", "<7>"), ln
        assert not ln[3:].startswith("20"), f"journald stamps lines itself: {ln}"
    assert any(ln.startswith("<6>agent.pipeline: edge-agent") for ln in logged), logged


def test_without_journal_stream_lines_keep_their_timestamp(tmp_path):
    lines = _run_agent(tmp_path, journal=False)
    logged = [ln for ln in lines if " INFO " in ln]
    assert logged and all(ln[:2] == "20" for ln in logged), lines


def test_json_format_is_one_object_per_line(tmp_path):
    lines = _run_agent(tmp_path, extra="json_format = true\n", journal=False)
    docs = [json.loads(ln) for ln in lines if ln.startswith("{")]
    assert docs, lines
    assert all({"ts", "level", "logger", "msg"} <= d.keys() for d in docs)
    assert any(d["logger"] == "agent.pipeline" and d["level"] == "info" for d in docs)
    # everything else on stderr is the console's own lines (config used, nothing to do)
    assert all(ln.startswith(("{", "config:", "warning:", "  fix:")) for ln in lines), lines


def test_litert_xnnpack_banner_is_routed_into_the_log(tmp_path):
    model = MIRROR / "models" / "mobilenet_v1_0.5_160_quant.tflite"
    code = (
        "import logging, sys\n"
        "from agent.service.logsetup import setup_logging\n"
        "setup_logging(logging.DEBUG)\n"
        "from agent.inference.runtime import make_interpreter\n"
        f"make_interpreter({str(model)!r}, accelerator='cpu', num_threads=1)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    raw = [ln for ln in r.stderr.splitlines() if ln.startswith("INFO: Created TensorFlow Lite XNNPACK")]
    assert not raw, r.stderr  # no bare C++ line on stderr
    assert "DEBUG agent.inference.litert: Created TensorFlow Lite XNNPACK delegate" in r.stderr, r.stderr
