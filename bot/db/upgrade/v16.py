"""Schema step 16: Personal calendar feeds: one secret link per person, stored as a hash."""

from __future__ import annotations

from bot.db.database import Transaction
from bot.db.upgrade.table import run_script, upgrades


@upgrades.register(16, "Personal calendar feeds: one secret link per person, stored as a hash")
async def upgrade_v16(tx: Transaction) -> None:
    await run_script(
        tx,
        """
    -- `!mon-agenda`: the address <web.public_url>/moi/<token>.ics lists the
    -- sessions its owner asked to be reminded of. Only the token's SHA-256
    -- (hex) is kept: the database alone opens no one's calendar.
    CREATE TABLE personal_feeds (
        user_id    TEXT PRIMARY KEY,
        token_hash TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL
    );
    """,
    )
