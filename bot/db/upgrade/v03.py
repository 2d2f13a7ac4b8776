"""Schema step 3: The mentor directory: mentors, their topics, requests, the audit log."""

from __future__ import annotations

from bot.db.database import Transaction
from bot.db.upgrade.table import run_script, upgrades


@upgrades.register(3, "The mentor directory: mentors, their topics, requests, the audit log")
async def upgrade_v3(tx: Transaction) -> None:
    await run_script(
        tx,
        """
    -- Mentor directory: the minimum (Matrix ID, display name cache, topics,
    -- who added them and when). Topics: normalised key + label as shown.
    CREATE TABLE mentors (
        user_id      TEXT PRIMARY KEY,
        display_name TEXT
    );
    CREATE TABLE mentor_topics (
        user_id   TEXT NOT NULL REFERENCES mentors (user_id) ON DELETE CASCADE,
        topic_key TEXT NOT NULL,
        label     TEXT NOT NULL,
        added_by  TEXT NOT NULL,
        added_at  INTEGER NOT NULL,
        PRIMARY KEY (user_id, topic_key)
    );
    CREATE INDEX mentor_topics_key ON mentor_topics (topic_key);
    CREATE TABLE mentor_requests (
        user_id      TEXT NOT NULL,
        topic_key    TEXT NOT NULL,
        label        TEXT NOT NULL,
        requested_at INTEGER NOT NULL,
        PRIMARY KEY (user_id, topic_key)
    );
    -- Who did what to the directory, and when; readable by moderators.
    CREATE TABLE mentor_audit (
        id     INTEGER PRIMARY KEY AUTOINCREMENT,
        actor  TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '',
        at     INTEGER NOT NULL
    );
    """,
    )
