"""The hub's schema, as versioned migrations (the same tables in PostgreSQL and SQLite; see db.py).

Tables:

- ``devices``: one row per unit: status (birth/last will, session), what it runs, seq bookkeeping
  (baseline, highest seq, received, duplicates), last seen, backlog, AQI, clock trust;
- ``messages``: every seq-carrying message once, keyed by (site, device, seq), its JSON whole;
- ``ranges``: the seq ranges held per device (what ``messages`` holds, kept merged);
- ``gaps``: each hole between the ranges, ``open`` -> ``closed`` (filled) or ``lost`` (the unit
  reported it pruned), with its repair requests and the time of the next one;
- ``lost``: ranges the unit reported as no longer stored, with its reason;
- ``volumes``: typed counts per camera/line/direction/class, per summary window (``source`` =
  ``window``) and per bin (``bin``; ``rev``: the bin's revision on the unit, since v2: a bin sent
  again with a higher rev, or, without revs, in a later summary, replaces all its rows);
- ``aqi``: the AQI per sensor per summary; ``events``: every event (incidents, gaps, ...);
- ``replies``: command replies; ``workers``: each hub worker's heartbeat and counters.
"""

from __future__ import annotations

_V1 = [
    """CREATE TABLE devices (
        site TEXT NOT NULL, device TEXT NOT NULL,
        state TEXT, session BIGINT, status {JSON}, status_at {TS}, stale_status BIGINT NOT NULL DEFAULT 0,
        agent_version TEXT, model TEXT, accelerator TEXT, config_hash TEXT, summary_interval_s DOUBLE PRECISION,
        baseline_seq BIGINT, max_seq BIGINT,
        received BIGINT NOT NULL DEFAULT 0, duplicates BIGINT NOT NULL DEFAULT 0,
        first_seen {TS}, last_seen {TS}, last_msg_ts {TS},
        backlog BIGINT, clock_synced BOOLEAN, clock_trusted BOOLEAN,
        aqi INTEGER, aqi_category TEXT, aqi_at {TS},
        PRIMARY KEY (site, device))""",
    """CREATE TABLE messages (
        site TEXT NOT NULL, device TEXT NOT NULL, seq BIGINT NOT NULL, kind TEXT NOT NULL,
        session BIGINT, ts {TS}, received {TS} NOT NULL, replay BOOLEAN NOT NULL DEFAULT FALSE,
        payload {JSON} NOT NULL,
        PRIMARY KEY (site, device, seq))""",
    "CREATE INDEX messages_kind_ts ON messages (kind, ts)",
    """CREATE TABLE ranges (
        site TEXT NOT NULL, device TEXT NOT NULL, lo BIGINT NOT NULL, hi BIGINT NOT NULL,
        PRIMARY KEY (site, device, lo))""",
    """CREATE TABLE lost (
        site TEXT NOT NULL, device TEXT NOT NULL, from_seq BIGINT NOT NULL, to_seq BIGINT NOT NULL,
        reason TEXT NOT NULL, reported {TS} NOT NULL,
        PRIMARY KEY (site, device, from_seq))""",
    """CREATE TABLE gaps (
        id {ID}, site TEXT NOT NULL, device TEXT NOT NULL, from_seq BIGINT NOT NULL, to_seq BIGINT NOT NULL,
        state TEXT NOT NULL, reason TEXT, opened {TS} NOT NULL, closed {TS},
        requests INTEGER NOT NULL DEFAULT 0, last_request {TS}, next_request DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX gaps_device ON gaps (site, device, state)",
    "CREATE INDEX gaps_due ON gaps (state, next_request)",
    """CREATE TABLE volumes (
        site TEXT NOT NULL, device TEXT NOT NULL, seq BIGINT NOT NULL, camera TEXT NOT NULL, line TEXT NOT NULL,
        direction TEXT NOT NULL, class TEXT NOT NULL, source TEXT NOT NULL, bin_start {TS} NOT NULL,
        bin_s INTEGER, count INTEGER NOT NULL, coverage DOUBLE PRECISION,
        PRIMARY KEY (site, device, camera, line, direction, class, source, bin_start))""",
    "CREATE INDEX volumes_time ON volumes (source, bin_start)",
    """CREATE TABLE aqi (
        site TEXT NOT NULL, device TEXT NOT NULL, seq BIGINT NOT NULL, ts {TS}, sensor TEXT NOT NULL,
        aqi INTEGER, category TEXT, dominant TEXT, aqi_table TEXT, pm2_5 DOUBLE PRECISION, pm10 DOUBLE PRECISION,
        PRIMARY KEY (site, device, seq, sensor))""",
    """CREATE TABLE events (
        site TEXT NOT NULL, device TEXT NOT NULL, seq BIGINT NOT NULL, ts {TS}, type TEXT NOT NULL,
        data {JSON},
        PRIMARY KEY (site, device, seq))""",
    "CREATE INDEX events_type_ts ON events (type, ts)",
    """CREATE TABLE replies (
        id {ID}, site TEXT NOT NULL, device TEXT NOT NULL, command TEXT, received {TS} NOT NULL,
        ok BOOLEAN, payload {JSON})""",
    """CREATE TABLE workers (
        name TEXT PRIMARY KEY, started {TS}, heartbeat {TS}, heartbeat_s DOUBLE PRECISION,
        ingested BIGINT NOT NULL DEFAULT 0, duplicates BIGINT NOT NULL DEFAULT 0,
        replays BIGINT NOT NULL DEFAULT 0, connected BOOLEAN, lag_s DOUBLE PRECISION, queued BIGINT)""",
]

# v2 (#14): a bin's revision, and the lookup of a bin's rows when a newer version replaces them
_V2 = [
    "ALTER TABLE volumes ADD COLUMN rev BIGINT",
    "CREATE INDEX volumes_bin ON volumes (site, device, camera, source, bin_start)",
]

#: (version, statements) in order; a released version is never edited, only followed by a new one.
MIGRATIONS: list[tuple[int, list[str]]] = [(1, _V1), (2, _V2)]
