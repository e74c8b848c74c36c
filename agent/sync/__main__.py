"""``python -m agent.sync --config FILE``: a sync-only agent (the store, the writer and the
SyncService, no cameras), run by the sync tests as a child process they can kill."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

import agent.parts  # noqa: F401 - every part's tables and sections
from agent.config import load_config
from agent.service.logsetup import setup_logging
from agent.store.db import Database
from agent.store.writer import Writer
from agent.sync.service import SyncService


def main(argv: list[str] | None = None) -> int:
    """A sync-only agent: open the store, start the writer and the SyncService, run until SIGTERM/SIGINT."""
    ap = argparse.ArgumentParser(prog="python -m agent.sync", description=main.__doc__)
    ap.add_argument("--config", required=True)
    ap.add_argument("--db", help="database file (default: storage.path)")
    ap.add_argument("--retention-interval", type=float, default=0.25)
    ns = ap.parse_args(argv)
    cfg = load_config(ns.config)
    setup_logging(cfg.logging.level, json_format=cfg.logging.json_format)
    db_path = Path(ns.db) if ns.db else cfg.storage.path
    database = Database(db_path, check=cfg.storage.integrity_check, max_db_mb=cfg.storage.max_db_mb)
    writer = Writer(
        database, max_queue=cfg.storage.writer_queue, max_delay_s=cfg.storage.commit_interval_s
    ).start()
    svc = SyncService(cfg, db_path, writer, retention_interval_s=ns.retention_interval).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"sync service running: device {cfg.device.site}/{cfg.device.id}, db {db_path}", flush=True)
    stop.wait()
    svc.stop(5.0)
    writer.stop()
    database.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
