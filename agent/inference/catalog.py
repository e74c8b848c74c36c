"""The model catalog: names -> files pinned by sha256, installed from a mirror or upstream.

The built-in catalog is ``models/catalog.toml`` with the project's label files in
``models/labels/``. It is looked up, in order:

1. ``models.catalog`` in the config (a replacement catalog; its labels are next to it in ``labels/``);
2. ``models/`` next to the ``agent`` package (a source checkout or an editable install);
3. ``<sys.prefix>/share/edge-agent/models`` (a wheel install: pyproject ships ``models/`` there as
   data files), then the same under the user base (``pip install --user``).

Installing (``pull``) copies the file from a mirror (``--mirror``, ``models.mirror`` or
``EDGE_AGENT_MIRROR``; layout ``models/<file>`` and ``media/<file>``) or downloads it from the
upstream URL (extracting the zip member when the upstream ships a zip), checks its sha256 and only
then renames it into place, so a tampered or truncated file is never installed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.errors import ModelError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

log = logging.getLogger(__name__)

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
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"cannot read the model catalog {path}: {exc}", "check the file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ModelError(
            f"{path}: not valid TOML: {exc}", "fix the syntax at the line and column named"
        ) from None
    entries: dict[str, CatalogEntry] = {}
    fields = set(CatalogEntry.__dataclass_fields__) - {"name", "kind"}
    for section, kind in (("models", "model"), ("media", "media")):
        for name, e in (data.get(section) or {}).items():
            missing = [k for k in _REQUIRED if not e.get(k)]
            unknown = sorted(set(e) - fields)
            if missing or unknown:
                raise ModelError(
                    f"{path}: [{section}.{name}] "
                    + (
                        f"lacks {', '.join(missing)}" if missing else f"has unknown keys {', '.join(unknown)}"
                    ),
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
                raise ModelError(
                    f"{path}: [{section}.{name}] sha256 is not 64 hex digits", "fix the catalog entry"
                )
            entries[name] = CatalogEntry(name=name, kind=kind, **e)
    for e in entries.values():
        if e.edgetpu_variant and e.edgetpu_variant not in entries:
            raise ModelError(
                f"{path}: {e.name}.edgetpu_variant {e.edgetpu_variant!r} is not an entry",
                "fix the catalog entry",
            )
    return Catalog(path, entries, path.parent / "labels")


def install_dir(models_cfg: Any) -> Path:
    """Where models are installed (``models.dir``)."""
    return Path(getattr(models_cfg, "dir", None) or "var/models")


def installed_path(entry: CatalogEntry, models_cfg: Any) -> Path:
    """Where ``entry`` is installed: ``models.dir/<file>`` (models) or ``models.dir/media/<file>``."""
    d = install_dir(models_cfg)
    return d / entry.file if entry.kind == "model" else d / "media" / entry.file


def mirror_from(mirror: str | Path | None, models_cfg: Any = None) -> Path | None:
    """The mirror to use: the argument, else ``models.mirror``, else ``EDGE_AGENT_MIRROR``."""
    m = mirror or getattr(models_cfg, "mirror", None) or os.environ.get("EDGE_AGENT_MIRROR")
    return Path(m) if m else None


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _copy_from_mirror(entry: CatalogEntry, mirror: Path, tmp: Path) -> str:
    src = mirror / entry.subdir / entry.file
    if not src.is_file():
        raise ModelError(
            f"{entry.name}: {src} is not in the mirror {mirror}",
            f"copy {entry.file} into {mirror / entry.subdir}, or pull without a mirror to download {entry.url}",
        )
    shutil.copyfile(src, tmp)
    return str(src)


def _download(entry: CatalogEntry, tmp: Path, progress: bool) -> str:
    import urllib.request

    import click

    target = tmp.with_suffix(".download") if entry.member else tmp
    try:
        with urllib.request.urlopen(entry.url, timeout=60) as resp, open(target, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or None
            if progress:
                with click.progressbar(length=total, label=f"{entry.name}", file=sys.stderr) as bar:
                    for chunk in iter(lambda: resp.read(1 << 16), b""):
                        out.write(chunk)
                        bar.update(len(chunk))
            else:
                shutil.copyfileobj(resp, out, 1 << 16)
    except OSError as exc:
        target.unlink(missing_ok=True)
        raise ModelError(
            f"{entry.name}: download of {entry.url} failed: {exc}",
            "check the network, or pull from a mirror: `edge-agent models pull --mirror DIR`",
        ) from None
    if entry.member:
        try:
            with zipfile.ZipFile(target) as z, z.open(entry.member) as src, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 16)
        except (zipfile.BadZipFile, KeyError) as exc:
            raise ModelError(
                f"{entry.name}: {entry.url} is not a zip holding {entry.member}: {exc}",
                "the upstream file changed; fix the catalog entry or use a mirror",
            ) from None
        finally:
            target.unlink(missing_ok=True)
    return entry.url


def pull_entry(
    entry: CatalogEntry,
    models_cfg: Any,
    mirror: Path | None = None,
    *,
    progress: bool = False,
    force: bool = False,
) -> Path:
    """Install one entry, verified, atomically.

    Args:
        entry: the catalog entry.
        models_cfg: a ``ModelsConfig`` (``dir``).
        mirror: copy from this mirror folder instead of downloading.
        progress: show a progress bar for downloads.
        force: reinstall even when a verified file is present.

    Returns:
        The installed path.

    Raises:
        ModelError: the file is not in the mirror, the download failed, or its sha256 differs
            (nothing is installed then).
    """
    dest = installed_path(entry, models_cfg)
    if dest.is_file() and not force and sha256_file(dest) == entry.sha256:
        return dest
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelError(
            f"cannot create {dest.parent}: {exc}", "set models.dir to a writable folder"
        ) from None
    fd, name = tempfile.mkstemp(prefix=f".{entry.file}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        source = _copy_from_mirror(entry, mirror, tmp) if mirror else _download(entry, tmp, progress)
        got = sha256_file(tmp)
        if got != entry.sha256:
            raise ModelError(
                f"{entry.name}: sha256 mismatch for {source}: expected {entry.sha256}, got {got}; "
                "the file is tampered, truncated or a different version; not installed",
                "get the file from a trusted source (re-copy the mirror or pull from upstream)",
            )
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
        log.info("installed %s -> %s (from %s)", entry.name, dest, source)
        return dest
    finally:
        tmp.unlink(missing_ok=True)


def pull(
    names: Iterable[str],
    models_cfg: Any,
    mirror: str | Path | None = None,
    *,
    progress: bool = False,
    force: bool = False,
    on_done: Callable[[CatalogEntry, Path], None] | None = None,
) -> list[Path]:
    """Install catalog entries (their Edge TPU variants too) from a mirror or upstream.

    Args:
        names: entry names.
        models_cfg: a ``ModelsConfig``.
        mirror: mirror folder (default: ``models.mirror`` or ``EDGE_AGENT_MIRROR``; none: upstream).
        progress: progress bars for downloads.
        force: reinstall verified files too.
        on_done: called with each installed entry and path.

    Returns:
        The installed paths.
    """
    cat = load_catalog(models_cfg)
    m = mirror_from(mirror, models_cfg)
    if m is not None and not m.is_dir():
        raise ModelError(
            f"mirror {m} is not a folder", "give the mirror folder (it holds models/ and media/)"
        )
    out = []
    for name in names:
        entry = cat.get(name)
        for e in [entry] + ([cat.get(entry.edgetpu_variant)] if entry.edgetpu_variant else []):
            p = pull_entry(e, models_cfg, m, progress=progress, force=force)
            out.append(p)
            if on_done:
                on_done(e, p)
    return out


def verify(models_cfg: Any) -> list[tuple[CatalogEntry, str]]:
    """Check every catalog entry's installed file.

    Returns:
        ``(entry, status)`` with status ``"ok"``, ``"missing"`` or ``"sha256 mismatch (got ...)"``.
    """
    cat = load_catalog(models_cfg)
    out = []
    for e in cat.entries.values():
        p = installed_path(e, models_cfg)
        if not p.is_file():
            out.append((e, "missing"))
            continue
        got = sha256_file(p)
        out.append((e, "ok" if got == e.sha256 else f"sha256 mismatch (got {got[:12]}...)"))
    return out


def resolve(name: str, models_cfg: Any, *, auto_pull: bool | None = None) -> tuple[CatalogEntry, Path]:
    """The installed file of a catalog entry, pulled first when missing and allowed.

    Args:
        name: entry name.
        models_cfg: a ``ModelsConfig`` (``dir``, ``auto_pull``, ``mirror``).
        auto_pull: override ``models.auto_pull``.

    Returns:
        ``(entry, path)``.

    Raises:
        ModelError: unknown name, or missing and not pullable.
    """
    cat = load_catalog(models_cfg)
    entry = cat.get(name)
    path = installed_path(entry, models_cfg)
    if path.is_file():
        return entry, path
    allowed = getattr(models_cfg, "auto_pull", True) if auto_pull is None else auto_pull
    if not allowed:
        raise ModelError(
            f"model {name} is not installed ({path} does not exist)",
            f"run `edge-agent models pull {name}` (add --mirror DIR offline), or set models.auto_pull = true",
        )
    log.info("model %s is missing; pulling it", name)
    pull_entry(entry, models_cfg, mirror_from(None, models_cfg))
    return entry, path


def ensure_media(name: str, models_cfg: Any) -> Path:
    """The installed path of a catalog media file (by entry name or file name), pulled when missing.

    Args:
        name: e.g. ``"traffic_frames"`` or ``"traffic_frames.mp4"``.
        models_cfg: a ``ModelsConfig`` (install dir, mirror).

    Returns:
        The local file.

    Raises:
        ModelError: unknown name, or it cannot be fetched or verified.
    """
    cat = load_catalog(models_cfg)
    entry = cat.entries.get(name) or next(
        (e for e in cat.entries.values() if e.kind == "media" and e.file == name), None
    )
    if entry is None:
        entry = cat.get(name)  # raises with the list of names
    return resolve(entry.name, models_cfg, auto_pull=True)[1]
