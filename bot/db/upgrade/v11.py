"""Schema step 11: A command asked for by a reaction (🔔) is stored as its name and arguments."""

from __future__ import annotations

from bot.db.database import Transaction
from bot.db.upgrade.table import run_script, upgrades


@upgrades.register(11, "A command asked for by a reaction (🔔) is stored as its name and arguments")
async def upgrade_v11(tx: Transaction) -> None:
    await run_script(
        tx,
        """
    -- The registered name of the command to run, for a command no one typed
    -- (a 🔔 reaction): `body` then holds its arguments, not text to parse.
    ALTER TABLE inbox ADD COLUMN command TEXT;
    """,
    )
