"""Schema step 5: Feed entries already seen."""

from __future__ import annotations

from bot.db.database import Transaction
from bot.db.upgrade.table import run_script, upgrades


@upgrades.register(5, "Feed entries already seen")
async def upgrade_v5(tx: Transaction) -> None:
    await run_script(
        tx,
        """
    -- Feed entries already seen (posted or not), by feed and entry key.
    CREATE TABLE feed_entries (
        feed      TEXT NOT NULL,
        key       TEXT NOT NULL,
        broadcast TEXT NOT NULL UNIQUE,
        title     TEXT NOT NULL,
        link      TEXT NOT NULL,
        seen_at   INTEGER NOT NULL,
        PRIMARY KEY (feed, key)
    );
    """,
    )
