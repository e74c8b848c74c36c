"""Reading and checking the model catalog file (``models/catalog.toml``) and its label folder.

Where the catalog is looked up, in order (see :mod:`agent.inference.catalog`):

1. ``models.catalog`` in the config (a replacement catalog; its labels are next to it in ``labels/``);
2. ``models/`` next to the ``agent`` package (a source checkout or an editable install);
3. ``<sys.prefix>/share/edge-agent/models`` (a wheel install), then the same under the user base.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.errors import ModelError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_REQUIRED = ("file", "sha256", "url", "license")
_CALIBRATION_KEYS = {"high_threshold", "low_threshold", "new_track_threshold", "max_overlap"}


@dataclass(frozen=True)
class CatalogEntry:
    """One catalog entry (a model or a media file)."""

    name: str
    kind: str  # "model" or "media"
    file: str
    sha256: str
    url: str
    license: str
    member: str | None = None
    task: str | None = None
    family: str | None = None
    labels: str | None = None
    label_offset: int = 0
    edgetpu_variant: str | None = None
    description: str = ""
    tracker: dict[str, float] | None = None  # score calibration of a detector (see catalog.toml)

    @property
    def subdir(self) -> str:
        """Folder of this kind in a mirror and under ``models.dir`` (``models`` or ``media``)."""
        return "models" if self.kind == "model" else "media"


@dataclass(frozen=True)
class Catalog:
    """A loaded catalog: its entries and where its label files are."""

    path: Path
    entries: dict[str, CatalogEntry]
    labels_dir: Path

    def get(self, name: str) -> CatalogEntry:
        """The entry ``name`` (``ModelError`` naming the known ones when absent)."""
        try:
            return self.entries[name]
        except KeyError:
            models = ", ".join(sorted(e.name for e in self.entries.values() if e.kind == "model"))
            media = ", ".join(sorted(e.name for e in self.entries.values() if e.kind == "media"))
            raise ModelError(
                f"{name!r} is not in the model catalog ({self.path})",
                f"models: {models}; media: {media}; or give the path of a .tflite file",
            ) from None

    def models(self) -> list[CatalogEntry]:
        return [e for e in self.entries.values() if e.kind == "model"]


def _builtin_dirs() -> list[Path]:
    import site

    pkg_root = Path(__file__).resolve().parent.parent.parent  # the folder holding agent/
    dirs = [pkg_root / "models", Path(sys.prefix) / "share" / "edge-agent" / "models"]
    user = getattr(site, "USER_BASE", None)
    if user:  # pip install --user
        dirs.append(Path(user) / "share" / "edge-agent" / "models")
    return dirs


def catalog_path(models_cfg: Any = None) -> Path:
    """The catalog file in use (see the module docstring for the search order)."""
    custom = getattr(models_cfg, "catalog", None)
    if custom:
        p = Path(custom)
        if not p.is_file():
            raise ModelError(
                f"models.catalog {p} does not exist",
                "fix the path or remove the key to use the built-in catalog",
            )
        return p
    for d in _builtin_dirs():
        if (d / "catalog.toml").is_file():
            return d / "catalog.toml"
    raise ModelError(
        "the built-in model catalog (models/catalog.toml) was not found in "
        + " or ".join(str(d) for d in _builtin_dirs()),
        "reinstall edge-agent, or set models.catalog to a catalog file",
    )


def labels_dir(models_cfg: Any = None) -> Path:
    """Folder of the catalog's label files (``labels/`` next to the catalog)."""
    return catalog_path(models_cfg).parent / "labels"


def load_catalog(models_cfg: Any = None) -> Catalog:
    """Read and check the catalog.

    Args:
        models_cfg: a ``ModelsConfig`` (for ``catalog``), or ``None`` for the built-in one.

    Returns:
        :class:`Catalog`.

    Raises:
        ModelError: unreadable or invalid catalog.
    """
    path = catalog_path(models_cfg)
    data = _read_toml(path)
    entries: dict[str, CatalogEntry] = {}
    for section, kind in (("models", "model"), ("media", "media")):
        for name, e in (data.get(section) or {}).items():
            entries[name] = _entry(path, section, kind, name, e)
    _check_variants(path, entries)
    return Catalog(path, entries, path.parent / "labels")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"cannot read the model catalog {path}: {exc}", "check the file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ModelError(
            f"{path}: not valid TOML: {exc}", "fix the syntax at the line and column named"
        ) from None


def _entry(path: Path, section: str, kind: str, name: str, e: dict[str, Any]) -> CatalogEntry:
    """The checked entry ``[section.name]`` (required keys, no unknown ones, calibration, sha256)."""
    fields = set(CatalogEntry.__dataclass_fields__) - {"name", "kind"}
    missing = [k for k in _REQUIRED if not e.get(k)]
    unknown = sorted(set(e) - fields)
    if missing or unknown:
        raise ModelError(
            f"{path}: [{section}.{name}] "
            + (f"lacks {', '.join(missing)}" if missing else f"has unknown keys {', '.join(unknown)}"),
            "fix the catalog entry (see the comments at the top of the catalog)",
        )
    cal = e.get("tracker")
    if cal is not None and (
        not isinstance(cal, dict)
        or set(cal) - _CALIBRATION_KEYS
        or not all(isinstance(v, (int, float)) and 0 <= v <= 1 for v in cal.values())
    ):
        raise ModelError(
            f"{path}: [{section}.{name}.tracker] must hold only "
            + ", ".join(sorted(_CALIBRATION_KEYS))
            + " with values 0..1",
            "fix the catalog entry",
        )
    if len(e["sha256"]) != 64:
        raise ModelError(f"{path}: [{section}.{name}] sha256 is not 64 hex digits", "fix the catalog entry")
    return CatalogEntry(name=name, kind=kind, **e)


def _check_variants(path: Path, entries: dict[str, CatalogEntry]) -> None:
    """Every ``edgetpu_variant`` names an entry of the catalog."""
    for e in entries.values():
        if e.edgetpu_variant and e.edgetpu_variant not in entries:
            raise ModelError(
                f"{path}: {e.name}.edgetpu_variant {e.edgetpu_variant!r} is not an entry",
                "fix the catalog entry",
            )
