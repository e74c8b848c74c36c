"""The outbox's tables and their migrations (the ``sync`` component's schema, ``TABLES``).

``outbox`` holds each message's delivery state and ``outbox_payload`` its text (v2: a delivery mark
rewrites the small state row only); ``sync_state`` the counters (``last_seq``, ``session``, the
pruned counts); ``summary_windows`` which window each summary covers; ``outbox_gaps`` what was
deleted before delivery and why; ``sink_queue`` / ``sink_cursor`` (v3) the other sinks' state.
The functions that use them are in :mod:`agent.sync.outbox` (writes) and
:mod:`agent.sync.outbox_read` (queries).
"""

from __future__ import annotations

from agent.store.db import Migration

#: (component, migrations): the tables this module defines, declared by its part (``agent.parts``)
TABLES: tuple[str, list[Migration]] = (
    "sync",
    [
        Migration(
            1,
            "outbox, sync_state, summary_windows, outbox_gaps",
            """
            CREATE TABLE outbox (
                seq INTEGER PRIMARY KEY,         -- per-device message sequence, +1 each, never reused
                topic TEXT NOT NULL,
                kind TEXT NOT NULL,              -- summary | health | event
                payload TEXT NOT NULL,           -- JSON; the session id is added when published
                qos INTEGER NOT NULL DEFAULT 1,
                retain INTEGER NOT NULL DEFAULT 0,
                priority INTEGER NOT NULL DEFAULT 1,
                created TEXT NOT NULL,
                state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'rejected')),
                delivered TEXT
            );
            CREATE INDEX outbox_state ON outbox (state, priority, seq);
            CREATE TABLE sync_state (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
            INSERT INTO sync_state (key, value) VALUES ('last_seq', 0), ('session', 0),
                ('pruned_detections', 0), ('pruned_delivered', 0), ('pruned_undelivered', 0), ('pruned_other', 0);
            CREATE TABLE summary_windows (
                start TEXT PRIMARY KEY,          -- window start, UTC ISO-8601
                end TEXT NOT NULL,
                seq INTEGER NOT NULL,            -- the outbox row of its summary
                written TEXT NOT NULL
            );
            CREATE TABLE outbox_gaps (
                id INTEGER PRIMARY KEY,
                from_seq INTEGER NOT NULL,
                to_seq INTEGER NOT NULL,
                count INTEGER NOT NULL,
                kind TEXT NOT NULL,
                reason TEXT NOT NULL,
                ts TEXT NOT NULL
            );
            CREATE INDEX outbox_gaps_range ON outbox_gaps (from_seq, to_seq);
            """,
        ),
        Migration(
            2,
            "message text in outbox_payload: a delivery mark rewrites the small state row only",
            """
            CREATE TABLE outbox_payload (
                seq INTEGER PRIMARY KEY,         -- the outbox row's seq
                payload TEXT NOT NULL            -- JSON; the session id is added when published
            );
            INSERT INTO outbox_payload (seq, payload) SELECT seq, payload FROM outbox;
            CREATE TABLE outbox_v2 (
                seq INTEGER PRIMARY KEY,         -- per-device message sequence, +1 each, never reused
                topic TEXT NOT NULL,
                kind TEXT NOT NULL,              -- summary | health | event
                qos INTEGER NOT NULL DEFAULT 1,
                retain INTEGER NOT NULL DEFAULT 0,
                priority INTEGER NOT NULL DEFAULT 1,
                created TEXT NOT NULL,
                state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'rejected')),
                delivered TEXT
            );
            INSERT INTO outbox_v2 (seq, topic, kind, qos, retain, priority, created, state, delivered)
                SELECT seq, topic, kind, qos, retain, priority, created, state, delivered FROM outbox;
            DROP TABLE outbox;
            ALTER TABLE outbox_v2 RENAME TO outbox;
            CREATE INDEX outbox_state ON outbox (state, priority, seq);
            CREATE TRIGGER outbox_payload_gc AFTER DELETE ON outbox BEGIN
                DELETE FROM outbox_payload WHERE seq = old.seq;
            END;
            """,
        ),
        Migration(
            3,
            "sink_queue: messages for other sinks (NGSI-LD) with their own delivery state; MQTT rows untouched",
            """
            CREATE TABLE sink_queue (
                id INTEGER PRIMARY KEY,
                sink TEXT NOT NULL,              -- the sink's name, e.g. ngsi-ld
                kind TEXT NOT NULL,              -- what it holds (the NGSI-LD entity type)
                key TEXT NOT NULL,               -- idempotency key (the entity id)
                created TEXT NOT NULL,
                state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'rejected')),
                attempts INTEGER NOT NULL DEFAULT 0,
                last_error TEXT,
                delivered TEXT,
                payload TEXT NOT NULL            -- JSON, exactly as sent
            );
            CREATE INDEX sink_queue_state ON sink_queue (sink, state, id);
            CREATE TABLE sink_cursor (
                sink TEXT NOT NULL,
                what TEXT NOT NULL,              -- e.g. TrafficFlowObserved: produced up to this time
                value TEXT NOT NULL,
                PRIMARY KEY (sink, what)
            );
            """,
        ),
    ],
)
