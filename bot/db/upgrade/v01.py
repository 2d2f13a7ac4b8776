"""Schema step 1: Key/value pairs (sync token), inbox of commands, agenda sources' copies."""

from __future__ import annotations

from bot.db.database import Transaction
from bot.db.upgrade.table import run_script, upgrades


@upgrades.register(1, "Key/value pairs (sync token), inbox of commands, agenda sources' copies")
async def upgrade_v1(tx: Transaction) -> None:
    await run_script(
        tx,
        """
    CREATE TABLE kv (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    -- One row per command received. `body` is kept only until it is answered
    -- (personal data: the minimum, for the shortest time).
    CREATE TABLE inbox (
        event_id    TEXT PRIMARY KEY,
        room_id     TEXT NOT NULL,
        sender      TEXT NOT NULL,
        body        TEXT,
        thread_root TEXT,
        received_at INTEGER NOT NULL,
        status      TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'done', 'failed')),
        attempts    INTEGER NOT NULL DEFAULT 0,
        finished_at INTEGER
    );
    CREATE INDEX inbox_pending ON inbox (received_at) WHERE status = 'pending';
    CREATE TABLE source_cache (
        source        TEXT PRIMARY KEY,
        body          BLOB NOT NULL,
        etag          TEXT,
        last_modified TEXT,
        fetched_at    INTEGER NOT NULL
    );
    """,
    )
