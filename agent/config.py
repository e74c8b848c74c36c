"""The agent's configuration: one TOML file, validated at start against a typed schema.

Sections live next to the code they configure (``agent.sync.config``, ``agent.analytics.config``,
``firmware_bridge.config``, ``agent.api.config``); this module assembles them into
:class:`AgentConfig`, loads and validates files, and renders the commented example
(``edge-agent config example``), which is generated from this schema and shown in the README.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from agent.analytics.config import CameraAnalytics
from agent.api.config import ApiConfig
from agent.configbase import Section, check_name, example_toml, format_validation_error
from agent.errors import ConfigError
from agent.inference.tiles_config import TILES_FIELD, TilesSetting
from agent.ngsi_ld.config import NgsiLdConfig
from agent.plugins import load_plugins
from agent.privacy.config import PrivacyConfig, PrivacyMask
from agent.sync.config import MqttConfig, SinkConfig, SummaryConfig
from firmware_bridge.config import EXAMPLE_SENSORS, SensorConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class DeviceConfig(Section):
    id: str = Field(
        default_factory=lambda: re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:64] or "unit",
        description="This unit's id: MQTT client id and topic level. Defaults to the hostname.",
    )
    site: str = Field(
        "default", description="The site (intersection, corridor) this unit belongs to; a topic level."
    )

    latitude: float | None = Field(
        None,
        ge=-90,
        le=90,
        description="Where the unit stands (WGS84 degrees); NGSI-LD entities carry it as location.",
    )
    longitude: float | None = Field(
        None, ge=-180, le=180, description="WGS84 longitude in degrees (with latitude)."
    )

    _id = field_validator("id")(lambda v: check_name(v, "device.id"))
    _site = field_validator("site")(lambda v: check_name(v, "device.site"))


class StorageConfig(Section):
    path: Path = Field(
        Path("var/edge-agent.sqlite"),
        description="The SQLite database file (created with its directory). Relative paths are relative to the working directory.",
    )
    max_db_mb: float = Field(
        1024,
        gt=0,
        description="Size budget of the database; over it the oldest raw data is pruned (see docs).",
    )
    integrity_check: Literal["quick", "full", "off"] = Field(
        "quick", description="Check run on the database at start."
    )
    writer_queue: int = Field(
        5000,
        ge=10,
        description="Most pending writes held in memory; beyond it writes are dropped and counted.",
    )
    commit_interval_s: float = Field(
        0.25, gt=0, le=10, description="Longest a write waits before its batch is committed."
    )
    stats_interval_s: float = Field(
        10.0, gt=0, description="Window of the per-camera inference statistics rows."
    )
    store_detections: bool = Field(
        True, description="Keep every raw detection (boxes) in the local database."
    )


class ModelsConfig(Section):
    dir: Path = Field(
        Path("var/models"), description="Where model files are installed (`edge-agent models pull`)."
    )
    mirror: str | None = Field(
        None,
        description="A local mirror directory to copy model files from instead of the upstream URL. The EDGE_AGENT_MIRROR environment variable sets it too.",
        examples=["/media/usb/edge-agent-mirror"],
    )
    catalog: Path | None = Field(
        None, description="A catalog file replacing the built-in one (models/catalog.toml)."
    )
    auto_pull: bool = Field(
        True, description="Fetch a catalog model at start when it is missing (from the mirror or upstream)."
    )


def _one_of(v: str, names: list[str]) -> str:
    """``v`` when it is one of ``names`` (known only at run time), else the error a Literal gives."""
    if v not in names:
        expected = ", ".join(repr(n) for n in names[:-1]) + f" or {names[-1]!r}"
        raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": expected})
    return v


class InferenceConfig(Section):
    runtime: Literal["auto", "litert", "tflite-runtime"] = Field(
        "auto",
        description="Inference runtime: ai-edge-litert (default), tflite-runtime, or auto (LiteRT if installed).",
    )
    accelerator: str = Field(
        "auto",
        description="auto tries edgetpu, then gpu, then cpu, and logs why each was skipped; "
        "or cpu, edgetpu, gpu, or a registered accelerator.",
        examples=["auto", "cpu", "edgetpu", "gpu"],
    )

    @field_validator("accelerator")
    @classmethod
    def _accelerator(cls, v: str) -> str:
        from agent.inference.delegates import accelerator_names

        return _one_of(v, accelerator_names())

    @field_validator("family")
    @classmethod
    def _family(cls, v: str) -> str:
        from agent.inference.adapters import family_names

        return _one_of(v, family_names())

    model: str = Field(
        "ssd_mobilenet_v1_coco", description="Default model: a catalog name or a .tflite path."
    )
    family: str = Field(
        "auto",
        description="Model family (ssd, yolo, classifier, recurrent, blazeface or a registered one); "
        "auto reads it from the model's tensors.",
    )
    labels: Path | None = Field(
        None, description="Labels file for a model given by path (one label per line)."
    )
    num_threads: int = Field(2, ge=1, le=64, description="CPU threads for XNNPACK.")
    threshold: float = Field(0.5, ge=0, le=1, description="Minimum score kept.")
    iou_threshold: float = Field(
        0.45, gt=0, le=1, description="Non-maximum suppression overlap for raw-output (YOLO) detectors."
    )
    max_detections: int = Field(100, ge=1, description="Most detections kept per frame.")
    top_k: int = Field(5, ge=1, description="Classes reported per frame by a classifier.")
    resize: Literal["stretch", "letterbox"] = Field(
        "stretch", description="How frames are fitted to the model's input."
    )
    edgetpu_device: str | None = Field(
        None,
        description="Edge TPU to use: usb, usb:0, pci:0, ... (default: the first found).",
        examples=["usb:0"],
    )
    gpu_delegate_path: str | None = Field(
        None,
        description="Path of the TFLite GPU delegate library (libtensorflowlite_gpu_delegate.so).",
        examples=["/usr/lib/libtensorflowlite_gpu_delegate.so"],
    )
    delegate_path: str | None = Field(
        None,
        description="Any external delegate library; used instead of the built-in choices.",
        examples=["/opt/vendor/libvendor_delegate.so"],
    )
    delegate_options: dict[str, str] = Field(
        default_factory=dict, description="Options passed to delegate_path."
    )
    labels_keep: list[str] = Field(
        default_factory=list, description="Only keep these labels (empty: keep all)."
    )


class CameraConfig(Section):
    name: str = Field(..., description="Camera name (a topic and table key).")
    source: str = Field(
        ...,
        description="/dev/videoN or an index, rtsp:// or http(s):// URL, a GStreamer pipeline ('gst: ... ! appsink'), a video file, or a folder of images.",
    )
    kind: Literal["auto", "v4l2", "url", "gstreamer", "file", "images"] = Field(
        "auto", description="Source kind; auto guesses from `source`."
    )
    enabled: bool = Field(True, description="A disabled camera is not opened.")
    detect_fps: float | None = Field(
        None,
        gt=0,
        le=120,
        description="Frames per second sent to inference (latest frame wins). Default: 5 for live sources and files played in real time; every frame of a file read with realtime = false (a recorded survey: at 5 of a 25 fps file the tracker loses fast vehicles, docs/validation.md).",
        examples=[5.0],
    )
    loop: bool = Field(False, description="Files and folders: start again at the end.")
    realtime: bool = Field(
        True,
        description="Files and folders: pace frames at the file's frame rate (false: as fast as inference takes them).",
    )
    start_time: datetime | None = Field(
        None,
        description="Files and folders: when the recording started (ISO 8601, e.g. 2026-05-04T07:30:00+02:00; without an offset it is UTC). Detections, crossings and bins are then stamped start_time + position in the file, so a recorded survey lands in the right bins. Default: the wall-clock time at which each frame is read; a file read once with realtime = false is stamped the time it was opened + the position in it, so tracking does not depend on decoding speed.",
        examples=["2026-05-04T07:30:00Z"],
    )
    width: int | None = Field(None, gt=0, description="V4L2: requested capture width.", examples=[1280])
    height: int | None = Field(None, gt=0, description="V4L2: requested capture height.", examples=[720])
    fourcc: str | None = Field(
        None,
        min_length=4,
        max_length=4,
        description="V4L2: requested pixel format, e.g. MJPG.",
        examples=["MJPG"],
    )
    model: str | None = Field(
        None,
        description="Model for this camera (default: inference.model).",
        examples=["traffic_lstm_vehicles"],
    )
    threshold: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Score threshold for this camera (default: inference.threshold).",
        examples=[0.4],
    )
    reconnect_initial_s: float = Field(1.0, gt=0, description="First wait before reopening a failed camera.")
    reconnect_max_s: float = Field(
        60.0, gt=0, description="Longest wait between reopen attempts (exponential backoff with jitter)."
    )
    read_timeout_s: float = Field(
        10.0, gt=0, description="A live camera that yields no frame for this long is reopened."
    )
    tiles: TilesSetting = TILES_FIELD
    analytics: CameraAnalytics = Field(
        default_factory=CameraAnalytics, description="Counting lines, zones and speed calibration."
    )
    masks: list[PrivacyMask] = Field(
        default_factory=list,
        description="Static privacy masks, applied to every frame before anything sees it.",
    )

    _name = field_validator("name")(lambda v: check_name(v, "camera name"))

    @model_validator(mode="after")
    def _backoff(self) -> CameraConfig:
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError("reconnect_max_s must be >= reconnect_initial_s")
        return self


class LoggingConfig(Section):
    level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level.")
    json_format: bool = Field(False, description="One JSON object per log line (for journald/log shippers).")


# the sample clip: traffic moves right to left across the frame
_DEMO_LINE = {"name": "main", "points": [[0.5, 0.0], [0.5, 1.0]], "directions": ["leftward", "rightward"]}
_DEMO_CAMERAS = [
    {
        "name": "demo",
        "source": "var/models/media/traffic_frames.mp4",
        "loop": True,
        "analytics": {"lines": [_DEMO_LINE]},
    }
]


class AgentConfig(Section):
    """The whole configuration file."""

    device: DeviceConfig = Field(default_factory=DeviceConfig, description="Who this unit is.")
    storage: StorageConfig = Field(default_factory=StorageConfig, description="The local SQLite store.")
    models: ModelsConfig = Field(default_factory=ModelsConfig, description="Model files and the catalog.")
    inference: InferenceConfig = Field(
        default_factory=InferenceConfig, description="Inference runtime, accelerator and model."
    )
    cameras: list[CameraConfig] = Field(
        default_factory=list, description="Cameras (any number).", examples=[_DEMO_CAMERAS]
    )
    mqtt: MqttConfig = Field(
        default_factory=MqttConfig,
        description="The city's MQTT broker (store-and-forward; buffers while unreachable).",
    )
    summary: SummaryConfig = Field(
        default_factory=SummaryConfig, description="Periodic summaries sent to the hub."
    )
    sensors: list[SensorConfig] = Field(
        default_factory=list, description="Serial sensors (firmware_bridge).", examples=[EXAMPLE_SENSORS]
    )
    api: ApiConfig = Field(default_factory=ApiConfig, description="The local HTTP API for technicians.")
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig, description="What images may show.")
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="Logging.")
    ngsi_ld: NgsiLdConfig = Field(default_factory=NgsiLdConfig, description="NGSI-LD context broker sink.")
    sinks: list[SinkConfig] = Field(
        default_factory=list,
        description="Outbox sinks besides MQTT, each with its own delivery state (types come from plugins).",
    )
    plugins: list[str] = Field(
        default_factory=list,
        description=(
            "Python files imported before the rest of this file is read (relative paths: from this "
            "file's folder). Each registers a sensor driver, model family, accelerator or sink; see "
            "CONTRIBUTING.md."
        ),
    )

    @model_validator(mode="after")
    def _unique_names(self) -> AgentConfig:
        for what, items in (("cameras", self.cameras), ("sensors", self.sensors)):
            seen: set[str] = set()
            for i, c in enumerate(items):
                name = str(getattr(c, "name", None) or getattr(c, "id", None))
                if name in seen:
                    raise ValueError(f"{what}[{i}]: duplicate name {name!r}")
                seen.add(name)
        return self

    def config_hash(self) -> str:
        """A short, stable hash of the effective config (for birth messages and doctor)."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def redacted(self) -> dict[str, Any]:
        """The config as a dict with every secret replaced by '***'."""
        data = self.model_dump(mode="json")
        return _redact(data)


_SECRET_KEYS = ("password", "token", "secret", "key_password")


def _redact(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {
            k: (
                "***"
                if any(s in k for s in _SECRET_KEYS) and not k.endswith(("_file", "_env")) and v
                else _redact(v)
            )
            for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [_redact(x) for x in obj]
    return obj


def parse_config(data: dict[str, Any], source: str = "config") -> AgentConfig:
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            format_validation_error(exc, source),
            "fix the keys above; `edge-agent config example` prints every key with its meaning",
        ) from None


def load_config(path: str | Path | None) -> AgentConfig:
    """Load and validate a TOML config file (``None``: the built-in defaults)."""
    if path is None:
        return parse_config({})
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")  # a BOM (Windows editors write one) is not TOML: dropped
    except FileNotFoundError:
        raise ConfigError(
            f"config file {p} does not exist",
            "create one with `edge-agent config example > config.toml` or `edge-agent provision`",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read config file {p}: {exc}", "check its permissions and that it is UTF-8 text"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{p}: not valid TOML: {exc}", "fix the syntax at the line and column named"
        ) from None
    if "plugins" in data:  # first: what they register makes the rest of the file valid
        load_plugins(data["plugins"], base=p.parent.resolve(), source=str(p))
    return parse_config(data, str(p))


def example_config() -> str:
    header = (
        "# edge-agent configuration (generated from the schema by `edge-agent config example`).\n"
        "# Every key is shown with its default. Unknown keys are errors.\n"
        "# Secrets (passwords, keys) can come from a file (*_file) or an environment variable (*_env).\n"
    )
    return header + "\n" + example_toml(AgentConfig) + "\n"
