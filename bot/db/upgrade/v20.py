"""Schema step 20: Gazette four eyes: who changed each draft, the ✅ that gave each approval."""

from __future__ import annotations

from bot.db.database import Transaction
from bot.db.upgrade.table import run_script, upgrades


@upgrades.register(20, "Gazette four eyes: who changed each draft, the ✅ that gave each approval")
async def upgrade_v20(tx: Transaction) -> None:
    await run_script(
        tx,
        """
    -- Everyone who changed a draft: built it on request, gathered its content
    -- again, added or removed an item ('' is the bot, on schedule). None of
    -- them approves it: an approval counts from a moderator who had no part
    -- in the text. Drafts of earlier versions: their last changer, their
    -- items' authors and the changes the log holds since they were built.
    CREATE TABLE gazette_changers (
        issue_id INTEGER NOT NULL REFERENCES gazette_issues (id) ON DELETE CASCADE,
        user_id  TEXT NOT NULL,
        PRIMARY KEY (issue_id, user_id)
    );
    INSERT OR IGNORE INTO gazette_changers (issue_id, user_id)
        SELECT id, changed_by FROM gazette_issues WHERE status = 'draft';
    INSERT OR IGNORE INTO gazette_changers (issue_id, user_id)
        SELECT i.issue_id, i.author FROM gazette_items i
        JOIN gazette_issues g ON g.id = i.issue_id WHERE g.status = 'draft';
    INSERT OR IGNORE INTO gazette_changers (issue_id, user_id)
        SELECT g.id, l.actor FROM gazette_log l
        JOIN gazette_issues g ON g.number = l.number AND g.status = 'draft'
        WHERE l.action IN ('draft', 'refresh', 'add', 'remove') AND l.at >= g.created_at;
    -- The ✅ reactions that approved (or approved again) a target: their
    -- sender redacting one withdraws that approval.
    CREATE TABLE gazette_approval_reactions (
        event_id TEXT PRIMARY KEY,
        room_id  TEXT NOT NULL,
        target   TEXT NOT NULL,
        user_id  TEXT NOT NULL,
        at       INTEGER NOT NULL
    );
    CREATE INDEX gazette_approval_reactions_by ON gazette_approval_reactions (target, user_id);
    """,
    )
