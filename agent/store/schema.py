"""Tables of the foundation: detections, classifications, the records of other result kinds
(``results``) and per-camera inference statistics."""

from __future__ import annotations

from agent.store.db import Migration

#: (component, migrations): the tables this module defines, declared by its part (``agent.parts``)
TABLES: tuple[str, list[Migration]] = (
    "core",
    [
        Migration(
            1,
            "detections, classifications, inference_stats, drops",
            """
            CREATE TABLE detections (
                id INTEGER PRIMARY KEY,
                ts TEXT NOT NULL,              -- UTC ISO-8601 with milliseconds, 'Z'
                camera TEXT NOT NULL,
                frame INTEGER NOT NULL,
                model TEXT NOT NULL,
                label TEXT NOT NULL,
                class_id INTEGER NOT NULL,
                score REAL NOT NULL,
                x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,
                track_id INTEGER
            );
            CREATE INDEX detections_ts ON detections (ts);
            CREATE INDEX detections_camera_ts ON detections (camera, ts);
            CREATE TABLE classifications (
                id INTEGER PRIMARY KEY,
                ts TEXT NOT NULL,
                camera TEXT NOT NULL,
                frame INTEGER NOT NULL,
                model TEXT NOT NULL,
                label TEXT NOT NULL,
                class_id INTEGER NOT NULL,
                score REAL NOT NULL,
                rank INTEGER NOT NULL
            );
            CREATE INDEX classifications_ts ON classifications (ts);
            -- one row per camera per stats window (default 10 s)
            CREATE TABLE inference_stats (
                id INTEGER PRIMARY KEY,
                ts_start TEXT NOT NULL,
                ts_end TEXT NOT NULL,
                camera TEXT NOT NULL,
                model TEXT NOT NULL,
                accelerator TEXT NOT NULL,
                frames INTEGER NOT NULL,
                fps REAL NOT NULL,
                latency_p50_ms REAL,
                latency_p95_ms REAL,
                total_p50_ms REAL,
                detections INTEGER NOT NULL,
                dropped_frames INTEGER NOT NULL DEFAULT 0,
                dropped_writes INTEGER NOT NULL DEFAULT 0
            );
            CREATE INDEX inference_stats_camera_ts ON inference_stats (camera, ts_end);
            """,
        ),
        Migration(
            2,
            "results: records of the kinds a model-family adapter adds (pose, segmentation, ...)",
            """
            CREATE TABLE results (
                id INTEGER PRIMARY KEY,
                ts TEXT NOT NULL,
                camera TEXT NOT NULL,
                frame INTEGER NOT NULL,
                model TEXT NOT NULL,
                kind TEXT NOT NULL,            -- the adapter's name for it, e.g. 'pose'
                data TEXT NOT NULL             -- JSON object, coordinates in source-frame pixels
            );
            CREATE INDEX results_ts ON results (ts);
            CREATE INDEX results_camera_kind_ts ON results (camera, kind, ts);
            """,
        ),
    ],
)
