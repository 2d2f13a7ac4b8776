"""Schema step 19: Audit trails say from which room: the agenda's, the mentor directory's."""

from __future__ import annotations

from bot.db.database import Transaction
from bot.db.upgrade.table import run_script, upgrades


@upgrades.register(19, "Audit trails say from which room: the agenda's, the mentor directory's")
async def upgrade_v19(tx: Transaction) -> None:
    await run_script(
        tx,
        """
    -- Every moderator's change of the agenda (added, modified, cancelled,
    -- restored), kept when the edit itself is undone: who, what, when, from
    -- which room. Readable by community moderators (`!session journal`).
    CREATE TABLE agenda_audit (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        at      INTEGER NOT NULL,
        actor   TEXT NOT NULL,
        room_id TEXT NOT NULL DEFAULT '',
        action  TEXT NOT NULL,
        target  TEXT NOT NULL,
        detail  TEXT NOT NULL DEFAULT ''
    );
    -- The edits made before this step, as the trail's first entries.
    INSERT INTO agenda_audit (at, actor, action, target, detail)
        SELECT created_at, author, action, target, fields FROM agenda_edits ORDER BY id;
    ALTER TABLE mentor_audit ADD COLUMN room_id TEXT NOT NULL DEFAULT '';
    """,
    )
