"""Schema step 17: What the public calendars have published of each session."""

from __future__ import annotations

from bot.db.database import Transaction
from bot.db.upgrade.table import run_script, upgrades


@upgrades.register(17, "What the public calendars have published of each session")
async def upgrade_v17(tx: Transaction) -> None:
    await run_script(
        tx,
        """
    -- One row per session the calendars (/agenda.ics) list or listed lately.
    -- Subscribed apps know an event by its UID: a session moved by its source
    -- gets a new id but keeps its UID, with SEQUENCE + 1 and a new DTSTAMP.
    -- `stamp` (DTSTAMP, LAST-MODIFIED) changes only when what a calendar app
    -- shows changes (`fingerprint`), so identical feeds are identical bytes.
    -- A cancelled or vanished session keeps its row, `gone_at` set and its
    -- last state in `payload` (JSON), and is served STATUS:CANCELLED until
    -- `web.cancelled_kept` has passed.
    CREATE TABLE published_sessions (
        sid         TEXT PRIMARY KEY,
        uid         TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        sequence    INTEGER NOT NULL DEFAULT 0,
        stamp       INTEGER NOT NULL,
        gone_at     INTEGER,
        payload     TEXT
    );
    """,
    )
