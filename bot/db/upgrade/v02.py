"""Schema step 2: Moderators' agenda edits and the programme changes found."""

from __future__ import annotations

from bot.db.database import Transaction
from bot.db.upgrade.table import run_script, upgrades


@upgrades.register(2, "Moderators' agenda edits and the programme changes found")
async def upgrade_v2(tx: Transaction) -> None:
    await run_script(
        tx,
        """
    -- Moderators' edits, applied in order on top of the sources at every
    -- rebuild. `target` is the id of the session changed (for 'add': the id
    -- of the session created). `fields` is JSON.
    CREATE TABLE agenda_edits (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        action     TEXT NOT NULL CHECK (action IN ('add', 'modify', 'cancel')),
        target     TEXT NOT NULL,
        fields     TEXT NOT NULL DEFAULT '{}',
        author     TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX agenda_edits_target ON agenda_edits (target);
    -- Programme changes found by a refresh or an edit, written in the same
    -- transaction as what they were computed from: none lost, none twice.
    CREATE TABLE agenda_changes (
        key        TEXT PRIMARY KEY,
        kind       TEXT NOT NULL,
        sid        TEXT NOT NULL,
        payload    TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX agenda_changes_created ON agenda_changes (created_at);
    """,
    )
