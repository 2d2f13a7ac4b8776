"""Schema step 18: The editorial gazette: drafts, items, approvals, copies, audit log."""

from __future__ import annotations

from bot.db.database import Transaction
from bot.db.upgrade.table import run_script, upgrades


@upgrades.register(18, "The editorial gazette: drafts, items, approvals, copies, audit log")
async def upgrade_v18(tx: Transaction) -> None:
    await run_script(
        tx,
        """
    -- An issue: one open draft at most, then published (its number fixed,
    -- its text frozen in `body`/`html`, corrected in place), maybe retracted.
    -- `content` (JSON) is what the bot gathered when the draft was built
    -- (sessions, feed entries, mentor topics), so that what moderators
    -- approve is what goes out. `revision` grows at every change; approvals
    -- are for one revision.
    CREATE TABLE gazette_issues (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        number       INTEGER NOT NULL,
        status       TEXT NOT NULL CHECK (status IN ('draft', 'published', 'retracted')),
        fire_at      INTEGER,
        since        INTEGER NOT NULL,
        content      TEXT NOT NULL,
        revision     INTEGER NOT NULL DEFAULT 1,
        changed_by   TEXT NOT NULL,
        changed_at   INTEGER NOT NULL,
        created_at   INTEGER NOT NULL,
        published_at INTEGER,
        body         TEXT,
        html         TEXT
    );
    CREATE UNIQUE INDEX gazette_one_draft ON gazette_issues (status) WHERE status = 'draft';
    CREATE UNIQUE INDEX gazette_numbers ON gazette_issues (number) WHERE status != 'draft';
    -- What moderators write, numbered per issue (numbers are never reused).
    CREATE TABLE gazette_items (
        issue_id INTEGER NOT NULL REFERENCES gazette_issues (id) ON DELETE CASCADE,
        n        INTEGER NOT NULL,
        section  TEXT NOT NULL,
        text     TEXT NOT NULL,
        author   TEXT NOT NULL,
        added_at INTEGER NOT NULL,
        PRIMARY KEY (issue_id, n)
    );
    -- A correction or a retraction of a published issue, waiting for approval.
    CREATE TABLE gazette_requests (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        issue_id     INTEGER NOT NULL REFERENCES gazette_issues (id) ON DELETE CASCADE,
        kind         TEXT NOT NULL CHECK (kind IN ('correct', 'retract')),
        n            INTEGER,
        text         TEXT,
        requested_by TEXT NOT NULL,
        requested_at INTEGER NOT NULL,
        status       TEXT NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'applied', 'replaced'))
    );
    -- Approvals of one target: "draft:<issue id>:<revision>" or "request:<id>".
    CREATE TABLE gazette_approvals (
        target  TEXT NOT NULL,
        user_id TEXT NOT NULL,
        at      INTEGER NOT NULL,
        PRIMARY KEY (target, user_id)
    );
    -- The bot's previews in the editors' room: a ✅ on one approves its target.
    CREATE TABLE gazette_previews (
        event_id TEXT NOT NULL,
        room_id  TEXT NOT NULL,
        target   TEXT NOT NULL,
        at       INTEGER NOT NULL,
        PRIMARY KEY (event_id, room_id)
    );
    -- Each room's copy of a published issue (corrections edit it, a
    -- retraction redacts it): kept as long as the issue, unlike the outbox.
    CREATE TABLE gazette_copies (
        number   INTEGER NOT NULL,
        room_id  TEXT NOT NULL,
        event_id TEXT NOT NULL,
        sent_at  INTEGER NOT NULL,
        PRIMARY KEY (number, room_id)
    );
    -- Scheduled publication times already decided (published, or missed).
    CREATE TABLE gazette_fires (
        fire_at INTEGER PRIMARY KEY,
        outcome TEXT NOT NULL,
        number  INTEGER NOT NULL,
        at      INTEGER NOT NULL
    );
    -- Who did what, when: shown by `!gazette journal`.
    CREATE TABLE gazette_log (
        id     INTEGER PRIMARY KEY AUTOINCREMENT,
        at     INTEGER NOT NULL,
        actor  TEXT NOT NULL,
        action TEXT NOT NULL,
        number INTEGER NOT NULL,
        detail TEXT NOT NULL DEFAULT ''
    );
    -- Feed entries: whether the relay posts it (`wanted`), and the issue that
    -- listed it (then it is not relayed again, and not listed twice).
    ALTER TABLE feed_entries ADD COLUMN wanted INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE feed_entries ADD COLUMN gazette INTEGER;
    """,
    )
