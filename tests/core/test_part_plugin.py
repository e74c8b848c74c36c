"""Issue #13: a part is a plugin. One written into a temporary module (its own table, its own summary
section, its own status keys, a start/stop) runs in a real agent on the real sample clip, and its
section arrives in a real summary over a real mosquitto, with no edit to any other file. And the list
of parts in agent/parts.py is complete: every module that defines tables, prune steps or summary
sections belongs to a part."""

from __future__ import annotations

import json
import sqlite3
import sys
import textwrap
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent import parts as agent_parts
from agent.config import parse_config
from agent.part import Part
from agent.parts import PARTS, install, uninstall
from agent.pipeline import Pipeline
from agent.sections import summary_sections
from agent.store.db import registered_components
from agent.sync.retention import prune_steps
from tests.conftest import ROOT, mirror_dir
from tests.sync.conftest import USERS, agent_config
from tests.sync.mosquitto import Mosquitto

PLUGIN = '''
"""A throwaway part: counts the frames the cameras stored, per summary window, in a table of its own."""
from __future__ import annotations

import sqlite3
from collections.abc import Mapping

from agent.part import BasePart, DoctorCheck, Host, Migration, Part, PruneStep, SummarySection, Tables


def section(conn: sqlite3.Connection, start: str, end: str) -> dict | None:
    n = conn.execute(
        "SELECT COUNT(*) FROM detections WHERE ts >= ? AND ts < ?", (start, end)
    ).fetchone()[0]
    starts = conn.execute("SELECT COUNT(*) FROM plugin_starts").fetchone()[0]
    return {"detections": n, "starts": starts}


def prune(conn: sqlite3.Connection, limit: int) -> int:
    return 0


class FramesPart(BasePart):
    name = "plugin_frames"

    def __init__(self) -> None:
        self.started = 0
        self.stopped = 0

    def migrations(self) -> list[Tables]:
        return [Tables("plugin_frames", [Migration(1, "starts", "CREATE TABLE plugin_starts (ts REAL NOT NULL)")])]

    def prune_steps(self) -> list[PruneStep]:
        return [PruneStep(60, "plugin starts", prune)]

    def sections(self) -> list[SummarySection]:
        return [SummarySection("plugin_frames", section)]

    def checks(self) -> list[DoctorCheck]:
        from agent.service.doctor_checks.base import Check, ok

        def build(cfg, ctx) -> list[Check]:
            return [Check("plugin:frames", "service", lambda: ok("plugin here"), ctx.timeout_s)]

        return [DoctorCheck("service", build)]

    def bind(self, host: Host) -> Part:
        self.host = host
        return self

    def start(self, writer) -> None:
        import time
        writer.submit_rows("plugin_starts", [{"ts": time.time()}])
        self.started += 1

    def stop(self) -> None:
        self.stopped += 1

    def status(self) -> Mapping[str, object]:
        return {"plugin_frames": {"started": self.started, "cameras": len(self.host.cfg.cameras)}}


PART = FramesPart()
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    (tmp_path / "plugin_frames.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    import plugin_frames  # a plain import of the temporary module: no registry, no string

    assert isinstance(plugin_frames.PART, Part)  # the protocol, checked at run time too
    install([plugin_frames.PART])
    yield plugin_frames.PART
    uninstall([plugin_frames.PART])
    sys.modules.pop("plugin_frames", None)


class Summaries:
    """A plain MQTT subscriber keeping every summary the unit sends."""

    def __init__(self, broker: Mosquitto) -> None:
        self.got: list[dict] = []
        self.lock = threading.Lock()
        ready = threading.Event()
        self.c = paho.Client(CallbackAPIVersion.VERSION2, client_id="rec", protocol=paho.MQTTv5)
        self.c.username_pw_set("hub", USERS["hub"])
        self.c.on_connect = lambda c, u, f, rc, p=None: (c.subscribe("city/+/+/summary", qos=1), ready.set())
        self.c.on_message = self._msg
        self.c.connect("127.0.0.1", broker.port)
        self.c.loop_start()
        assert ready.wait(10)

    def _msg(self, c, u, m) -> None:
        with self.lock:
            self.got.append(json.loads(m.payload))

    def wait(self, pred, timeout_s: float) -> list[dict]:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            with self.lock:
                if pred(self.got):
                    return list(self.got)
            time.sleep(0.05)
        raise AssertionError(f"no summary matched in {timeout_s}s; got {self.got[-3:]}")

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def test_a_plugin_part_from_a_temporary_module_runs_in_a_real_agent(tmp_path, plugin, media_path):
    broker = Mosquitto(tmp_path / "broker", users=USERS, hub_users=["hub"]).start()
    sub = Summaries(broker)
    d = agent_config(tmp_path, broker)
    d["models"] = {"dir": str(tmp_path / "models"), "mirror": str(mirror_dir())}
    d["inference"] = {"num_threads": 1, "accelerator": "cpu"}
    d["api"] = {"enabled": False}
    d["cameras"] = [
        {"name": "road", "source": str(media_path("traffic_frames.mp4")), "realtime": True, "detect_fps": 10}
    ]
    cfg = parse_config(d)
    pipe = Pipeline(cfg, parts=PARTS + (plugin,))
    pipe.start()
    try:
        got = sub.wait(
            lambda s: any((x["sections"].get("plugin_frames") or {}).get("detections") for x in s), 90
        )
        st = pipe.status()
        assert st["plugin_frames"] == {"started": 1, "cameras": 1}  # its status, merged into the snapshot
        assert "road" in st["cameras"] and "sync" in st  # beside the built-in parts' keys
    finally:
        pipe.stop(10)
        sub.close()
        broker.close()
    assert plugin.stopped == 1
    mine = [x["sections"]["plugin_frames"] for x in got if "plugin_frames" in x["sections"]]
    assert mine[-1]["starts"] == 1  # its own table, written through the writer
    assert "counts" in got[-1]["sections"]  # the built-in sections are still there
    with sqlite3.connect(cfg.storage.path) as c:
        assert c.execute("SELECT COUNT(*) FROM plugin_starts").fetchone()[0] == 1
        comps = {r[0] for r in c.execute("SELECT component FROM _migrations")}
    assert {"plugin_frames", "core", "sync", "analytics", "sensors"} <= comps


def test_a_plugin_part_adds_its_doctor_check_and_the_built_in_order_holds(plugin, tmp_path):
    from agent.service.doctor import run_all
    from agent.service.doctor_checks import GROUPS, build_checks
    from agent.service.doctor_checks.base import Context

    cfg = parse_config(agent_config(tmp_path, None))
    first, after = build_checks(cfg, Context(timeout_s=5), PARTS + (plugin,))
    groups = [c.group for c in first]
    assert groups == sorted(groups, key=GROUPS.index)  # the report keeps the order of GROUPS
    assert {"disk", "database", "broker", "service"} <= set(groups)
    assert [c.group for c in after] == ["clock"]
    mine = [c for c in first if c.name == "plugin:frames"]
    (outcome,), hung = run_all(mine)
    assert outcome.result.status == "ok" and not hung


def test_uninstalled_the_plugin_is_gone(plugin):
    assert "plugin_frames" in summary_sections() and "plugin_frames" in registered_components()
    uninstall([plugin])
    assert "plugin_frames" not in summary_sections()
    assert "plugin_frames" not in registered_components()
    assert "plugin starts" not in {s.name for s in prune_steps()}


REGISTERS = ("MIGRATIONS", "TABLES", "_section(", "PruneStep(", "SummarySection(", "register_")


def test_the_list_of_parts_is_complete():
    """What the registries hold is exactly what the parts declare; every module defining tables
    (``TABLES``) is declared by a part; no module outside agent/parts.py registers by itself."""
    declared_tables = {t.component for p in PARTS for t in p.migrations()}
    declared_sections = {s.name for p in PARTS for s in p.sections()}
    declared_steps = {s.name for p in PARTS for s in p.prune_steps()}
    assert set(registered_components()) == declared_tables
    assert set(summary_sections()) == declared_sections
    assert {s.name for s in prune_steps()} == declared_steps
    assert len({p.name for p in PARTS}) == len(PARTS)
    tables_modules, self_registering = [], []
    for path in sorted([*(ROOT / "agent").rglob("*.py"), *(ROOT / "firmware_bridge").rglob("*.py")]):
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(ROOT).as_posix()
        if "\nTABLES: tuple[str, list[Migration]]" in text:
            tables_modules.append(rel)
        for fn in ("register_migrations(", "register_prune_step(", "register_summary_section("):
            if fn in text and f"def {fn}" not in text and rel != "agent/parts.py":
                self_registering.append(f"{rel}: {fn}")
    assert not self_registering, "modules must declare through their part, not register themselves"
    # each module with tables is imported by the part that declares them (its package's part.py)
    part_sources = "\n".join(
        (ROOT / Path(*p.__module__.split("."))).with_suffix(".py").read_text() for p in map(type, PARTS)
    )
    for rel in tables_modules:
        mod = Path(rel).with_suffix("").name
        assert f"Tables(*{mod}.TABLES)" in part_sources or f"Tables(*{_alias(rel)}.TABLES)" in part_sources, (
            rel
        )
    assert agent_parts.PARTS is PARTS


def _alias(rel: str) -> str:
    return {"agent/analytics/incidents/store.py": "incidents"}.get(rel, Path(rel).stem)
