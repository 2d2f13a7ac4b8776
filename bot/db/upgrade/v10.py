"""Schema step 10: An erased person in the mentor audit log is '' (templates show a label)."""

from __future__ import annotations

from bot.db.database import Transaction
from bot.db.upgrade.table import run_script, upgrades


@upgrades.register(10, "An erased person in the mentor audit log is '' (templates show a label)")
async def upgrade_v10(tx: Transaction) -> None:
    # Until now the French label itself was stored; the templates now render
    # the empty marker in the reader's language.
    await run_script(
        tx,
        """
    UPDATE mentor_audit SET actor = '' WHERE actor = '(personne retirée)';
    UPDATE mentor_audit SET target = '' WHERE target = '(personne retirée)';
    """,
    )
