"""Installing catalog files: copied from a mirror or downloaded upstream, sha256-checked, atomic.

``pull`` copies the file from a mirror (``--mirror``, ``models.mirror`` or ``EDGE_AGENT_MIRROR``;
layout ``models/<file>`` and ``media/<file>``) or downloads it from the upstream URL (extracting the
zip member when the upstream ships a zip), checks its sha256 and only then renames it into place,
so a tampered or truncated file is never installed. ``verify`` checks what is installed;
``resolve`` and ``ensure_media`` give an entry's installed file, pulling it when it is missing.
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
from pathlib import Path
from typing import Any

from agent.errors import ModelError
from agent.inference.catalog_file import CatalogEntry, load_catalog

log = logging.getLogger("agent.inference.catalog")  # the name the log lines have always had


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
    target = tmp.with_suffix(".download") if entry.member else tmp
    _fetch_url(entry, target, progress)
    if entry.member:
        _extract_member(entry, entry.member, target, tmp)
    return entry.url


def _fetch_url(entry: CatalogEntry, target: Path, progress: bool) -> None:
    """Download ``entry.url`` to ``target`` (removed again when the download fails)."""
    import urllib.request

    import click

    try:
        with urllib.request.urlopen(entry.url, timeout=60) as resp, open(target, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or None
            if progress and total:  # a bar needs a length: without one, no bar
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


def _extract_member(entry: CatalogEntry, member: str, archive: Path, tmp: Path) -> None:
    """Write the zip ``member`` of ``archive`` to ``tmp``; ``archive`` is removed."""
    try:
        with zipfile.ZipFile(archive) as z, z.open(member) as src, open(tmp, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 16)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise ModelError(
            f"{entry.name}: {entry.url} is not a zip holding {member}: {exc}",
            "the upstream file changed; fix the catalog entry or use a mirror",
        ) from None
    finally:
        archive.unlink(missing_ok=True)


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
