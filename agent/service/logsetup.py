"""Where log lines go and how they look: a terminal, journald, or a log shipper.

* Under systemd (``JOURNAL_STREAM`` names the device:inode of our stderr) every line starts with
  an sd-daemon priority prefix (``<3>`` error, ``<4>`` warning, ``<6>`` info, ``<7>`` debug) and has
  no timestamp of its own (journald stamps it), so ``journalctl -u edge-agent -p warning`` works.
* ``logging.json_format = true``: one JSON object per line (``ts``, ``level``, ``logger``, ``msg``,
  ``exc`` when there is one), after the priority prefix under journald.
* Otherwise: ``2026-01-01 12:00:00,000 WARNING agent.x: message``.

See docs/operations.md.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import IO

#: syslog priorities of sd-daemon(3)
_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}


def priority(levelno: int) -> int:
    for level in (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO):
        if levelno >= level:
            return _PRIORITY[level]
    return 7


def stderr_is_journal(stream: IO[str] | None = None) -> bool:
    """True when ``$JOURNAL_STREAM`` (``device:inode``, set by systemd) is the stream's file."""
    js = os.environ.get("JOURNAL_STREAM", "")
    dev, _, ino = js.partition(":")
    if not (dev.isdigit() and ino.isdigit()):
        return False
    try:
        st = os.fstat((stream or sys.stderr).fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return st.st_dev == int(dev) and st.st_ino == int(ino)


class Formatter(logging.Formatter):
    def __init__(self, *, journal: bool, json_format: bool) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.journal = journal
        self.json_format = json_format

    def format(self, record: logging.LogRecord) -> str:
        if self.json_format:
            doc = {
                "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                + f".{int(record.msecs):03d}Z",
                "level": record.levelname.lower(),
                "logger": record.name,
                "msg": record.getMessage(),
            }
            if record.exc_info:
                doc["exc"] = self.formatException(record.exc_info)
            line = json.dumps(doc, ensure_ascii=False)
        elif self.journal:
            line = f"{record.name}: {record.getMessage()}"
            if record.exc_info:  # journald keeps one entry per line: a traceback stays one entry
                line += " | " + self.formatException(record.exc_info).replace("\n", " | ")
        else:
            return super().format(record)
        return f"<{priority(record.levelno)}>{line}" if self.journal else line


def setup_logging(level: int | str = logging.WARNING, *, json_format: bool = False) -> None:
    """(Re)configure the root logger: one stderr handler with the :class:`Formatter` that fits."""
    if isinstance(level, str):
        level = getattr(logging, level.upper())
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_edge_agent", False):
            root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler._edge_agent = True  # type: ignore[attr-defined]
    handler.setFormatter(Formatter(journal=stderr_is_journal(), json_format=json_format))
    root.addHandler(handler)
    root.setLevel(level)
