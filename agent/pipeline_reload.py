"""What a config reload (SIGHUP) changes: the diff of the running config and the new one.

Pure: nothing here touches a running part. :func:`plan_reload` compares the two configs and says,
section by section and camera by camera, what :meth:`agent.pipeline.Pipeline.reload` has to do:
sections that only take effect after a restart (reported, not applied), cameras removed, added,
reopened (a changed source, rate or model) or updated in place (thresholds, counting lines, zones,
calibration), and the config that is then in force.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from agent.config import AgentConfig, CameraConfig

#: config sections that are read once at start: a change is reported, applied at the next restart
RESTART_SECTIONS = (
    "device",
    "storage",
    "models",
    "inference",
    "mqtt",
    "summary",
    "sensors",
    "api",
    "privacy",
)

#: camera keys that need the camera reopened (its capture thread and inference worker)
CAMERA_IO_KEYS = (
    "source",
    "kind",
    "detect_fps",
    "loop",
    "realtime",
    "width",
    "height",
    "fourcc",
    "model",
    "reconnect_initial_s",
    "reconnect_max_s",
    "read_timeout_s",
)

ChangeKind = Literal["added", "restarted", "updated", "same"]


@dataclass(frozen=True)
class CameraChange:
    """One enabled camera of the new config and what changes for it."""

    name: str
    kind: ChangeKind
    new: CameraConfig
    old: CameraConfig | None = None  # None for an added camera


@dataclass
class ReloadPlan:
    """What a reload does, in the order it does it: remove, then each new camera in file order."""

    applied: AgentConfig  # the config in force afterwards
    needs_restart: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changes: list[CameraChange] = field(default_factory=list)

    def report(self) -> dict[str, list[str]]:
        """The reload's report: camera names per change, and the sections that need a restart."""
        report: dict[str, list[str]] = {
            "added": [],
            "removed": list(self.removed),
            "restarted": [],
            "updated": [],
            "needs_restart": self.needs_restart,
        }
        for change in self.changes:
            if change.kind != "same":
                report[change.kind].append(change.name)
        return report


def plan_reload(old: AgentConfig, new: AgentConfig) -> ReloadPlan:
    """Compare the running config ``old`` with ``new`` (see :class:`ReloadPlan`)."""
    plan = ReloadPlan(applied=applied_config(old, new), needs_restart=restart_sections(old, new))
    old_cams = {c.name: c for c in old.cameras if c.enabled}
    new_cams = {c.name: c for c in new.cameras if c.enabled}
    plan.removed = list(old_cams.keys() - new_cams.keys())
    plan.changes = [camera_change(old_cams.get(name), nc) for name, nc in new_cams.items()]
    return plan


def restart_sections(old: AgentConfig, new: AgentConfig) -> list[str]:
    """The sections of ``new`` that differ from ``old`` and only take effect after a restart."""
    return [s for s in RESTART_SECTIONS if getattr(old, s) != getattr(new, s)]


def applied_config(old: AgentConfig, new: AgentConfig) -> AgentConfig:
    """The config in force after the reload: the sections that need a restart stay as they run now;
    the cameras and the logging come from the new file."""
    applied = old.model_copy(deep=True)
    applied.cameras = [c.model_copy(deep=True) for c in new.cameras]
    applied.logging = new.logging
    return applied


def camera_change(old: CameraConfig | None, new: CameraConfig) -> CameraChange:
    """How camera ``new`` differs from its running config ``old`` (None: not running)."""
    if old is None:
        return CameraChange(new.name, "added", new)
    if any(getattr(old, k) != getattr(new, k) for k in CAMERA_IO_KEYS):
        return CameraChange(new.name, "restarted", new, old)
    return CameraChange(new.name, "updated" if old != new else "same", new, old)
