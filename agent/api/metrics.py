"""``/metrics`` in the Prometheus text format.

Two kinds of series, in a registry of their own (so several agents in one process never clash):

- gauges and counters read from ``Pipeline.status()`` at scrape time by :class:`StatusCollector`
  (camera fps/state/drops/reconnects, inference errors, writer drops, database and disk size,
  MQTT connection, outbox backlog and reconnects, per-sensor frames / bad frames / reconnects,
  clock, API auth failures): nothing is computed between scrapes;
- histograms of per-frame inference latency, observed as results pass the results stage
  (:meth:`Metrics.observe`, a few hundred nanoseconds per frame).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0)
_CAM_STATES = ("starting", "up", "stalled", "reconnecting", "down", "ended", "stopped")


def _num(v: Any) -> float | None:
    return (
        float(v)
        if isinstance(v, (int, float)) and not isinstance(v, bool)
        else (1.0 if v is True else 0.0 if v is False else None)
    )


class StatusCollector:
    """Reads the status document when Prometheus scrapes."""

    def __init__(
        self, status: Callable[[], dict[str, Any]], extra: Callable[[], dict[str, float]] | None = None
    ) -> None:
        self.status = status
        self.extra = extra

    def describe(self) -> list:  # no describe-time scrape (status() is live)
        return []

    def collect(self):  # noqa: C901 - one flat mapping, easier to read as one function
        try:
            st = self.status()
        except Exception as exc:  # noqa: BLE001 - a scrape must not 500 because one part failed
            log.warning("metrics: status failed: %s", exc)
            up = GaugeMetricFamily("edge_agent_status_ok", "1 when the status could be read")
            up.add_metric([], 0)
            yield up
            return
        ok = GaugeMetricFamily("edge_agent_status_ok", "1 when the status could be read")
        ok.add_metric([], 1)
        yield ok
        info = InfoMetricFamily("edge_agent_build", "Agent version, device and config hash")
        info.add_metric(
            [],
            {
                "version": str(st.get("version")),
                "config_hash": str(st.get("config_hash")),
                "device": str((st.get("device") or {}).get("id")),
                "site": str((st.get("device") or {}).get("site")),
            },
        )
        yield info
        g = GaugeMetricFamily("edge_agent_uptime_seconds", "Seconds since the agent started")
        g.add_metric([], float(st.get("uptime_s") or 0))
        yield g
        yield from self._cameras(st.get("cameras") or {})
        yield from self._inference(st.get("inference") or {}, st.get("models") or {})
        yield from self._store(st)
        yield from self._sync(st.get("sync"))
        yield from self._sensors(st.get("sensors"))
        lights = st.get("lights") or {}
        lg = GaugeMetricFamily(
            "edge_agent_health", "Health light per concern: 0 off, 1 ok, 2 warn, 3 bad", labels=["concern"]
        )
        for k, v in lights.items():
            lg.add_metric([k], {"off": 0, "ok": 1, "warn": 2, "bad": 3}.get(v.get("state"), 0))
        yield lg
        clock = st.get("clock") or {}
        if clock.get("synced") is not None:
            c = GaugeMetricFamily(
                "edge_agent_clock_synced", "1 when the kernel reports the clock synchronised"
            )
            c.add_metric([], 1 if clock["synced"] else 0)
            yield c
        if self.extra:
            for name, (kind, help_, value) in self.extra().items():
                fam = (
                    CounterMetricFamily(name, help_) if kind == "counter" else GaugeMetricFamily(name, help_)
                )
                fam.add_metric([], value)
                yield fam

    def _cameras(self, cams: dict[str, Any]):
        fps = GaugeMetricFamily(
            "edge_agent_camera_fps", "Frames inferred per second (last stats window)", labels=["camera"]
        )
        state = GaugeMetricFamily(
            "edge_agent_camera_state", "1 for the camera's current state", labels=["camera", "state"]
        )
        frames = CounterMetricFamily(
            "edge_agent_camera_frames_inferred", "Frames inferred", labels=["camera"]
        )
        read = CounterMetricFamily(
            "edge_agent_camera_frames_read", "Frames decoded from the source", labels=["camera"]
        )
        dropped = CounterMetricFamily(
            "edge_agent_camera_frames_dropped",
            "Frames replaced before inference took them (latest frame wins)",
            labels=["camera"],
        )
        rec = CounterMetricFamily("edge_agent_camera_reconnects", "Source reopen attempts", labels=["camera"])
        age = GaugeMetricFamily(
            "edge_agent_camera_last_frame_age_seconds",
            "Seconds since the last decoded frame",
            labels=["camera"],
        )
        for name, c in cams.items():
            if _num(c.get("fps")) is not None:
                fps.add_metric([name], float(c["fps"]))
            for s in _CAM_STATES:
                state.add_metric([name, s], 1 if c.get("state") == s else 0)
            for fam, key in (
                (frames, "frames_inferred"),
                (read, "frames_read"),
                (dropped, "frames_replaced"),
                (rec, "reconnects"),
            ):
                if _num(c.get(key)) is not None:
                    fam.add_metric([name], float(c[key]))
            if _num(c.get("last_frame_age_s")) is not None:
                age.add_metric([name], float(c["last_frame_age_s"]))
        yield from (fps, state, frames, read, dropped, rec, age)

    def _inference(self, inf: dict[str, Any], models: dict[str, Any]):
        err = CounterMetricFamily(
            "edge_agent_inference_errors", "Frames whose inference failed", labels=["model"]
        )
        drop = CounterMetricFamily(
            "edge_agent_inference_dropped_results",
            "Results dropped because the results stage was full",
            labels=["model"],
        )
        for name, w in inf.items():
            err.add_metric([name], float(w.get("errors") or 0))
            drop.add_metric([name], float(w.get("dropped_results") or 0))
        acc = GaugeMetricFamily(
            "edge_agent_model_accelerator",
            "1 for the accelerator each model runs on",
            labels=["model", "accelerator"],
        )
        for name, m in models.items():
            acc.add_metric([name, str(m.get("accelerator"))], 1)
        yield from (err, drop, acc)

    def _store(self, st: dict[str, Any]):
        w = st.get("writer") or {}
        wd = CounterMetricFamily(
            "edge_agent_writer_dropped_rows",
            "Rows dropped because the writer queue was full",
            labels=["table"],
        )
        for t, n in (w.get("dropped") or {}).items():
            wd.add_metric([t], float(n))
        yield wd
        if _num(w.get("pending")) is not None:
            g = GaugeMetricFamily("edge_agent_writer_pending", "Writes waiting for the database")
            g.add_metric([], float(w["pending"]))
            yield g
        db = _num((st.get("database") or {}).get("size_bytes"))
        if db is not None:
            g = GaugeMetricFamily("edge_agent_database_bytes", "Database file size (with WAL)")
            g.add_metric([], db)
            yield g
        d = st.get("disk") or {}
        if _num(d.get("free_bytes")) is not None:
            g = GaugeMetricFamily("edge_agent_disk_free_bytes", "Free space on the database's file system")
            g.add_metric([], float(d["free_bytes"]))
            yield g

    def _sync(self, sync: dict[str, Any] | None):
        if not isinstance(sync, dict) or "backlog" not in sync:
            return
        for name, help_, key, kind in (
            ("edge_agent_mqtt_connected", "1 when connected to the broker", "connected", "g"),
            ("edge_agent_outbox_backlog", "Messages waiting in the outbox", "backlog", "g"),
            ("edge_agent_mqtt_reconnects", "Broker reconnects", "reconnects", "c"),
            ("edge_agent_mqtt_published", "Messages published", "published", "c"),
            ("edge_agent_mqtt_acked", "Messages acknowledged by the broker", "acked", "c"),
        ):
            v = _num(sync.get(key))
            if v is None:
                continue
            fam = GaugeMetricFamily(name, help_) if kind == "g" else CounterMetricFamily(name, help_)
            fam.add_metric([], v)
            yield fam

    def _sensors(self, sensors: Any):
        if not isinstance(sensors, dict):
            return
        con = GaugeMetricFamily(
            "edge_agent_sensor_connected", "1 when the sensor's port is open", labels=["sensor"]
        )
        ok = CounterMetricFamily("edge_agent_sensor_frames", "Frames decoded", labels=["sensor"])
        bad = CounterMetricFamily(
            "edge_agent_sensor_bad_frames",
            "Frames rejected (checksum, truncation, garbage)",
            labels=["sensor"],
        )
        rec = CounterMetricFamily("edge_agent_sensor_reconnects", "Port reopens", labels=["sensor"])
        for name, h in sensors.items():
            if not isinstance(h, dict):
                continue
            con.add_metric([name], 1 if h.get("connected") else 0)
            for fam, key in ((ok, "frames_ok"), (bad, "frames_bad"), (rec, "reconnects")):
                if _num(h.get(key)) is not None:
                    fam.add_metric([name], float(h[key]))
        yield from (con, ok, bad, rec)


class Metrics:
    """The registry behind ``/metrics``."""

    def __init__(
        self, status: Callable[[], dict[str, Any]], extra: Callable[[], dict[str, Any]] | None = None
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.latency = Histogram(
            "edge_agent_inference_latency_seconds",
            "invoke() time per frame",
            ["camera", "model"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.frame_time = Histogram(
            "edge_agent_frame_processing_seconds",
            "Preprocess + invoke + postprocess per frame",
            ["camera", "model"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(StatusCollector(status, extra))

    def observe(self, result: Any) -> None:
        """Record one inference result (called on the results stage's thread; must never raise)."""
        try:
            cam, model = result.frame.camera, result.model
            self.latency.labels(cam, model).observe(result.latency_ms / 1000.0)
            self.frame_time.labels(cam, model).observe(result.total_ms / 1000.0)
        except Exception:  # noqa: BLE001
            pass

    def render(self) -> bytes:
        return generate_latest(self.registry)


def attach_observer(results_worker: Any, observe: Callable[[Any], None]) -> Callable[[], None]:
    """Have the results stage call ``observe(result)`` for each result; returns a detach function."""
    if results_worker is None:
        return lambda: None
    results_worker.observers.append(observe)

    def detach() -> None:
        try:
            results_worker.observers.remove(observe)
        except ValueError:
            pass

    return detach
