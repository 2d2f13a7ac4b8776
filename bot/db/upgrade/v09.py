"""Schema step 9: Personal reminders remember the 🔔 reaction that asked for them."""

from __future__ import annotations

from bot.db.database import Transaction
from bot.db.upgrade.table import run_script, upgrades


@upgrades.register(9, "Personal reminders remember the 🔔 reaction that asked for them")
async def upgrade_v9(tx: Transaction) -> None:
    await run_script(
        tx,
        """
    -- The 🔔 reaction that asked for a personal reminder: removing the
    -- reaction cancels it.
    ALTER TABLE personal_reminders ADD COLUMN via TEXT;
    """,
    )
