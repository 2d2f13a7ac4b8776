"""Schema step 13: Mentor topic keys spell œ, æ… as oe, ae… (what `fold` now does)."""

from __future__ import annotations

from bot.db.database import Transaction
from bot.db.upgrade.table import upgrades

# The letters `fold` expands since step 13, as they were then (lower case:
# keys are casefolded). Frozen here: a later change to `fold` needs its own step.
_V13_LIGATURES = (
    ("œ", "oe"),
    ("æ", "ae"),
    ("ø", "o"),
    ("ł", "l"),
    ("đ", "d"),
    ("ð", "d"),
    ("þ", "th"),
    ("ı", "i"),
)


def _v13_refolded(column: str) -> str:
    expr = column
    for letter, ascii_ in _V13_LIGATURES:
        expr = f"replace({expr}, '{letter}', '{ascii_}')"
    return expr


@upgrades.register(13, "Mentor topic keys spell œ, æ… as oe, ae… (what `fold` now does)")
async def upgrade_v13(tx: Transaction) -> None:
    # A key that would collide with one the person already has (both
    # "œuvre" and "oeuvre") is the same topic: the older spelling goes.
    for table in ("mentor_topics", "mentor_requests"):
        refolded = _v13_refolded("topic_key")
        await tx.execute(f"UPDATE OR IGNORE {table} SET topic_key = {refolded}")  # noqa: S608
        await tx.execute(f"DELETE FROM {table} WHERE topic_key <> {refolded}")  # noqa: S608
