"""Incident events end to end against a real mosquitto: stored with their incident row in one write,
published ahead of a backlog of summaries queued earlier, and none lost across a broker outage."""

from __future__ import annotations

import json
import sqlite3
import threading

import numpy as np
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from agent.analytics.config import CameraAnalytics
from agent.analytics.runner import AnalyticsRunner
from agent.sync import outbox
from agent.sync.topics import Topics
from agent.types import Detection, Frame, InferenceResult
from tests.sync.conftest import USERS, agent_config, schema_validator, wait_until

LANE = {"name": "shoulder", "points": [[100, 0], [300, 0], [300, 400], [100, 400]], "units": "px"}
RULE = {"kind": "stopped_vehicle", "name": "stop", "zone": "shoulder", "min_duration_s": 1.0, "clear_s": 0.3}
IMG = np.zeros((400, 400, 3), np.uint8)
TOPICS = Topics("city", "site-a", "unit-1")


class Recorder:
    """A plain MQTT subscriber that keeps (kind, payload) in arrival order."""

    def __init__(self, broker) -> None:
        self.got: list[tuple[str, dict]] = []
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.c = paho.Client(CallbackAPIVersion.VERSION2, client_id="rec", protocol=paho.MQTTv5)
        self.c.username_pw_set("hub", USERS["hub"])
        self.c.on_connect = lambda c, u, f, rc, p=None: (c.subscribe("city/#", qos=1), self.ready.set())
        self.c.on_message = self._msg
        self.c.connect("127.0.0.1", broker.port)
        self.c.loop_start()
        assert self.ready.wait(10)

    def _msg(self, c, u, m) -> None:
        kind = m.topic.split("/")[3]
        try:
            doc = json.loads(m.payload)
        except ValueError:
            return
        with self.lock:
            self.got.append((kind, doc))

    def of(self, kind: str) -> list[dict]:
        with self.lock:
            return [d for k, d in self.got if k == kind]

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


class Camera:
    """Synthetic frames through an analytics runner wired as the pipeline wires it."""

    def __init__(self, agent) -> None:
        cfg = CameraAnalytics.model_validate(
            {"zones": [LANE], "incidents": [RULE], "forecast": {"enabled": False}}
        )
        self.r = AnalyticsRunner("cam", cfg, agent.writer, frame_size=(400, 400))
        self.r.event_writes = agent.svc.event_writes
        self.r.on_event_queued = agent.svc.notify
        self.r.clock = lambda: {"quality": "ntp", "trusted": True, "source": "kernel", "offset_s": None}
        self.t, self.i = 1_700_000_000.0, 0

    def frame(self, y: float | None) -> None:
        dets = [] if y is None else [Detection("car", 3, 0.9, (180, y - 40, 220, y))]
        self.r.process(InferenceResult(Frame("cam", self.i, self.t, 0.0, IMG), "m", dets))
        self.i, self.t = self.i + 1, self.t + 0.1

    def stop_and_go(self) -> None:
        for y in range(0, 200, 20):
            self.frame(y)
        for _ in range(25):  # stands 2.5 s: start after 1 s
            self.frame(200)
        for y in range(200, 420, 20):  # drives off: end
            self.frame(y)
        for _ in range(25):
            self.frame(None)


def _backlog(db_path: str, n: int) -> None:
    c = sqlite3.connect(db_path)
    c.execute("BEGIN")
    for i in range(n):
        outbox.enqueue(c, TOPICS.kind("summary"), "summary", {"window": {"n": i}}, priority=outbox.SUMMARY)
    c.commit()
    c.close()


def test_incident_events_jump_a_backlog_and_are_stored_with_their_row(tmp_path, broker, agents):
    rec = Recorder(broker)
    try:
        cfg = agent_config(tmp_path, broker, mqtt={"backfill_rate_per_s": 20}, summary={"interval_s": 3600})
        a = agents(cfg)
        from agent.store.db import Database

        Database(cfg["storage"]["path"]).close()  # schema first, then a backlog of 300 old summaries
        _backlog(cfg["storage"]["path"], 300)
        a.start()
        assert wait_until(lambda: len(rec.of("summary")) >= 5, 20)  # the backlog is draining, slowly
        cam = Camera(a)
        cam.stop_and_go()
        assert wait_until(lambda: len(rec.of("event")) >= 2, 20), rec.of("event")
        events = [e for e in rec.of("event") if e["type"] == "incident"]
        assert [e["data"]["phase"] for e in events] == ["start", "end"]
        assert events[0]["data"]["id"] == events[1]["data"]["id"]
        # both arrived while most of the earlier backlog was still waiting
        pending = a.svc.health()["backlog_by_kind"].get("summary", 0)
        assert pending > 150, pending
        assert all(e["seq"] > 300 for e in events)
        v = schema_validator("event")
        for e in events:
            v.validate(e)
        conn = sqlite3.connect(cfg["storage"]["path"])
        row = conn.execute("SELECT kind, phase, end_ts FROM incidents").fetchall()
        conn.close()
        assert row and row[0][0] == "stopped_vehicle" and row[0][1] == "end" and row[0][2]
    finally:
        rec.close()


def test_no_incident_event_is_lost_across_a_broker_outage(tmp_path, broker, agents):
    rec = Recorder(broker)
    try:
        cfg = agent_config(tmp_path, broker, summary={"interval_s": 3600})
        a = agents(cfg).start()
        assert wait_until(lambda: a.svc.health()["connected"], 20)
        cam = Camera(a)
        broker.stop()
        assert wait_until(lambda: not a.svc.health()["connected"], 10)
        cam.stop_and_go()  # two incidents while the broker is down
        cam.stop_and_go()
        assert wait_until(lambda: a.svc.health()["backlog_by_kind"].get("event", 0) == 4, 10)
        broker.start()
        rec.close()
        rec = Recorder(broker)
        assert wait_until(lambda: a.svc.health()["connected"] and a.svc.health()["backlog"] == 0, 30)
        conn = sqlite3.connect(cfg["storage"]["path"])
        n_rows = conn.execute("SELECT COUNT(*) FROM incidents WHERE phase = 'end'").fetchone()[0]
        delivered = conn.execute(
            "SELECT COUNT(*) FROM outbox WHERE kind = 'event' AND state = 'delivered'"
        ).fetchone()[0]
        conn.close()
        assert n_rows == 2 and delivered == 4  # PUBACKed by the broker, each exactly once in the outbox
    finally:
        rec.close()
