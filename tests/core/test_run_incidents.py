"""`edge-agent run` on a transformed real clip: 10 s of the motorway played backwards raise wrong_way
incidents, stored in the incidents table and queued in the outbox, through the whole pipeline."""

from __future__ import annotations

import json
import signal
import sqlite3
import time

import cv2

from tests.core.test_run import _count, _start, _write_config

TOWARD = [[670, 270], [790, 270], [1280, 600], [1280, 720], [790, 720]]  # traffic moves down the image


def _reversed_segment(src, dst, first: int, last: int) -> int:
    cap = cv2.VideoCapture(str(src))
    frames = []
    i = 0
    while True:
        ok, img = cap.read()
        if not ok or i > last:
            break
        if i >= first:
            frames.append(img)
        i += 1
    cap.release()
    h, w = frames[0].shape[:2]
    out = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (w, h))
    for img in reversed(frames):
        out.write(img)
    out.release()
    return len(frames)


def test_run_raises_wrong_way_on_a_reversed_clip(tmp_path, media_path):
    clip = tmp_path / "reversed.mp4"
    n = _reversed_segment(media_path("4ku_traffic.mp4"), clip, 500, 749)
    zone = json.dumps(TOWARD)
    cfg = _write_config(
        tmp_path,
        f"""
[[cameras]]
name = "road"
source = "{clip}"
loop = false
realtime = false
detect_fps = 25

[[cameras.analytics.zones]]
name = "toward"
points = {zone}
units = "px"

[[cameras.analytics.incidents]]
kind = "wrong_way"
name = "ww"
zone = "toward"
direction = [0, 1]
snapshot = true
""",
    )
    db = tmp_path / "agent.sqlite"
    p = _start(cfg, "--duration", "300")
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and p.poll() is None:
            if db.exists() and _count(db, "SELECT COALESCE(MAX(frame), 0) FROM detections") >= n - 5:
                break
            time.sleep(0.3)
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)  # the clip has been read: stop, which ends open incidents
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = c.execute("SELECT kind, phase, end_ts, snapshot, data FROM incidents").fetchall()
    events = [json.loads(r[0]) for r in c.execute(
        "SELECT p.payload FROM outbox o JOIN outbox_payload p USING (seq) WHERE o.kind = 'event'"
    )]  # fmt: skip
    c.close()
    assert len(rows) >= 8, (rows, err[-2000:])  # about a dozen vehicles drive up the toward side
    assert all(r[0] == "wrong_way" and r[1] == "end" and r[2] for r in rows)
    incidents = [e for e in events if e["type"] == "incident"]
    assert {e["data"]["phase"] for e in incidents} == {"start", "end"}
    assert len(incidents) == 2 * len(rows)  # a start and an end per incident, each through the outbox
    snaps = [r[3] for r in rows if r[3]]
    assert snaps, "snapshot = true keeps a JPEG of the first frame of each incident"
    img = cv2.imread(snaps[0])
    assert img is not None and img.shape == (720, 1280, 3)
