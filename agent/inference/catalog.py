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

This module is the catalog's public face: reading and checking the catalog file is
:mod:`agent.inference.catalog_file`, installing and verifying its files
:mod:`agent.inference.catalog_fetch`.
"""

from agent.inference.catalog_fetch import (
    ensure_media,
    install_dir,
    installed_path,
    mirror_from,
    pull,
    pull_entry,
    resolve,
    sha256_file,
    verify,
)
from agent.inference.catalog_file import Catalog, CatalogEntry, catalog_path, labels_dir, load_catalog

__all__ = [
    "Catalog",
    "CatalogEntry",
    "catalog_path",
    "ensure_media",
    "install_dir",
    "installed_path",
    "labels_dir",
    "load_catalog",
    "mirror_from",
    "pull",
    "pull_entry",
    "resolve",
    "sha256_file",
    "verify",
]
