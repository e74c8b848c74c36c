"""Plugins a unit's config names: Python files imported before the rest of the config is read.

A plugin is one file that registers what it adds when it is imported: a sensor driver
(``register_driver``), a model family (``register_adapter``), an accelerator
(``register_accelerator``) or an outbox sink (``register_sink``); CONTRIBUTING.md has the recipes.
The config's top-level ``plugins`` lists their paths (relative ones are taken from the config file's
folder)::

    plugins = ["plugins/pose_family.py"]

They are imported in that order, each once per process (a reload with the same file does not run
it again), before the config is validated, so a ``driver``, ``family``, ``accelerator`` or sink
``type`` they add is a valid setting. Only files are taken, never a module name: what runs is what
the installer put on the unit. A plugin that is missing or fails to import is a config error naming
the file and the line, and the agent does not start.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import traceback
from pathlib import Path
from types import ModuleType

from agent.errors import ConfigError

_LOADED: dict[Path, ModuleType] = {}


def load_plugins(entries: object, *, base: Path, source: str = "config") -> list[ModuleType]:
    """Import the plugin files ``entries`` names (the raw ``plugins`` value of a config).

    Args:
        entries: a list of paths (``str``), as read from the TOML file.
        base: the folder relative paths are taken from (the config file's).
        source: the config's name, for messages.

    Returns:
        The plugin modules, in order.

    Raises:
        ConfigError: not a list of ``.py`` paths, a file missing, or one that fails to import.
    """
    if entries is None:
        return []
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        raise ConfigError(
            f"{source}: plugins: must be a list of paths of Python files, got {entries!r}",
            'write plugins = ["/etc/edge-agent/plugins/my_plugin.py"]',
        )
    return [_load_one(i, e, base, source) for i, e in enumerate(entries)]


def _load_one(i: int, entry: str, base: Path, source: str) -> ModuleType:
    path = Path(entry).expanduser()
    path = (path if path.is_absolute() else base / path).resolve()
    where = f"{source}: plugins[{i}] ({entry})"
    if path.suffix != ".py":
        raise ConfigError(f"{where}: not a Python file", "name the plugin's .py file")
    if not path.is_file():
        raise ConfigError(
            f"{where}: {path} does not exist", "copy the plugin file there, or remove it from plugins"
        )
    if path in _LOADED:
        return _LOADED[path]
    # a name of its own per file: two plugins called plugin.py in two folders do not collide
    name = f"edge_agent_plugin_{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{where}: cannot be imported", "name a Python source file")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    except Exception as exc:
        sys.modules.pop(name, None)
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename) == path]
        lineno = exc.lineno if isinstance(exc, SyntaxError) else frames[-1].lineno if frames else None
        line = f" at line {lineno}" if lineno else ""
        raise ConfigError(
            f"{where}: importing it failed{line}: {type(exc).__name__}: {exc}",
            "fix the plugin (run `python3 <file>` to see the whole error), or remove it from plugins",
        ) from None
    _LOADED[path] = mod
    return mod


def loaded() -> list[str]:
    """The plugin files imported in this process, in order (for the status and ``doctor``)."""
    return [str(p) for p in _LOADED]
