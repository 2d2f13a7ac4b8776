"""Schema step 22: Exactly once after a long outage: the device of each attempt, a 🔔 taken back."""

from __future__ import annotations

from bot.db.database import Transaction
from bot.db.upgrade.table import run_script, upgrades


@upgrades.register(
    22, "Exactly once after a long outage: the device of each attempt, a 🔔 taken back"
)
async def upgrade_v22(tx: Transaction) -> None:
    await run_script(
        tx,
        """
    -- The bot's device when the row's last attempt was made: the homeserver
    -- deduplicates a transaction id for that device only, so a row attempted
    -- under another device is checked against the room before it is sent
    -- again (bot.delivery). NULL for rows of earlier versions: not known.
    ALTER TABLE outbox ADD COLUMN device_id TEXT;
    ALTER TABLE inbox ADD COLUMN device_id TEXT;
    -- Set on a 🔔 taken back before its answer: the 🔔's row, answered first
    -- (the reminders it asked for are then known, and forgotten).
    ALTER TABLE inbox ADD COLUMN follows TEXT;
    """,
    )
