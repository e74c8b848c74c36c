"""Radar fusion through a real pty: OPS243 report lines, decoded by the sensor service, time-aligned
with a synthetic track crossing the radar's line at a known speed."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from agent.analytics.config import CameraAnalytics
from agent.analytics.runner import AnalyticsRunner
from agent.types import Detection, Frame, InferenceResult
from firmware_bridge.config import SensorConfig
from firmware_bridge.service import SensorService

IMG = np.zeros((400, 400, 3), np.uint8)
FPS = 10.0


class Rows:
    database = None

    def __init__(self):
        self.rows: dict[str, list] = {}

    def submit_rows(self, table, rows, **_):
        self.rows.setdefault(table, []).extend(rows)
        return True

    def submit_fn(self, fn, **_):
        return True


def wait_for(cond, timeout=10.0):
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("condition not met")
        time.sleep(0.02)


@pytest.fixture
def radar(tmp_path):
    """A pty standing in for the OPS243's USB serial port; yields (write line, sensor service)."""
    master, slave = os.openpty()
    link = tmp_path / "ttyRADAR"
    link.symlink_to(os.ttyname(slave))
    cfg = SensorConfig(
        name="radar", driver="ops243", port=str(link), reconnect_initial_s=0.1, init_commands=[]
    )
    svc = SensorService([cfg], Rows())

    def write(line: str) -> float:
        os.write(master, (line + "\r\n").encode())
        return time.time()

    yield write, svc
    svc.stop(3)
    os.close(master)
    os.close(slave)


def make_runner() -> AnalyticsRunner:
    cfg = CameraAnalytics.model_validate(
        {
            "lines": [
                {
                    "name": "beam",
                    "points": [[0, 200], [400, 200]],
                    "units": "px",
                    "directions": ["inbound", "outbound"],
                    "anchor": "center",
                }
            ],
            # 400 px = 20 m both ways: 0.05 m per pixel
            "calibration": {
                "image_points": [[0, 0], [400, 0], [400, 400], [0, 400]],
                "world_points": [[0, 0], [20, 0], [20, 20], [0, 20]],
                "units": "px",
            },
            "radar": {"sensor": "radar", "line": "beam", "inbound_direction": "inbound", "tolerance_s": 0.5},
            "forecast": {"enabled": False},
        }
    )
    return AnalyticsRunner("cam", cfg, Rows(), frame_size=(400, 400))


def drive(r: AnalyticsRunner, t0: float, ys, x: float = 200.0, i0: int = 0) -> float:
    """Frames at FPS from t0 of one car whose centre is at y (None: no car). Returns the next ts."""
    t = t0
    for k, y in enumerate(ys):
        dets = [] if y is None else [Detection("car", 3, 0.9, (x - 20, y - 20, x + 20, y + 20))]
        r.process(InferenceResult(Frame("cam", i0 + k, t, 0.0, IMG), "m", dets))
        t += 1 / FPS
    return t


def test_radar_speed_lands_on_the_track_that_crosses_and_the_rest_is_counted(radar):
    write, svc = radar
    r = make_runner()
    svc.add_listener("radar", r.radar_feed)
    svc.start()
    wait_for(lambda: svc.health()["radar"]["connected"])
    # 10 px a frame at 10 fps = 100 px/s = 5 m/s = 18 km/h, moving down: inbound
    t_read = write('{"speed": "18.4", "unit": "kmh", "direction": "inbound"}')
    wait_for(lambda: r.fusion.total.readings == 1)
    ys = list(range(100, 320, 10))
    cross_k = ys.index(200)  # the centre reaches the line here (counted a frame or so later)
    t = drive(r, t_read - cross_k / FPS, ys)
    t = drive(r, t, [None] * 10, i0=100)  # time passes: the crossing is matched
    fused = [s for s in r.writer.rows.get("speeds", []) if s["source"] == "radar:radar"]
    assert len(fused) == 1 and fused[0]["speed_kmh"] == pytest.approx(18.4)
    tid = fused[0]["track_id"]
    crossing = r.writer.rows["crossings"][0]
    assert crossing["track_id"] == tid and crossing["direction"] == "inbound"
    st = r.state()["radar"]
    assert st["matched"] == 1 and st["vision_mean_kmh"] == pytest.approx(18.0, abs=1.5)
    assert st["mean_abs_diff_kmh"] < 1.5 and st["crossings_unmatched"] == 0

    # a reading no vehicle explains, and a vehicle the radar did not see (wrong direction sign)
    t_lone = write('{"speed": "40.0", "unit": "kmh", "direction": "outbound"}')
    wait_for(lambda: r.fusion.total.readings == 2)
    t = drive(r, max(t, t_lone + 0.1), list(range(320, 90, -10)), i0=200)  # an outbound car, later
    drive(r, t, [None] * 30, i0=300)
    st = r.state()["radar"]
    assert st["matched"] == 1
    assert st["radar_unmatched"] == 1  # the lone reading: counted, not attached to anything
    assert st["crossings_unmatched"] == 1  # the outbound car: no reading within the tolerance
    assert len([s for s in r.writer.rows["speeds"] if s["source"] == "radar:radar"]) == 1


def test_radar_fusion_config_must_name_a_line_and_its_direction():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="no line named"):
        CameraAnalytics.model_validate({"radar": {"sensor": "r", "line": "x", "inbound_direction": "a"}})
    with pytest.raises(ValidationError, match="inbound_direction"):
        CameraAnalytics.model_validate(
            {
                "lines": [{"name": "x", "points": [[0, 0], [1, 1]]}],
                "radar": {"sensor": "r", "line": "x", "inbound_direction": "north"},
            }
        )
