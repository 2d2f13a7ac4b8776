"""Each migration step upgrades a database of the previous version, rows and all.

Parametrized over the registered steps: a new step is covered without editing
this file (add its rows to `ROWS` when it transforms data).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bot.db.database import Database
from bot.db.storage import Storage
from bot.db.upgrade import Step, UpgradeTable, schema_version, upgrades

STEPS = list(upgrades)
MOD = "@mod:x"


@dataclass(frozen=True)
class Rows:
    """Rows written at the version before a step, and what that step leaves of them."""

    before: list[str]
    checks: list[tuple[str, list[tuple[object, ...]]]] = field(default_factory=list)


ROWS = {
    # Columns added with a default: rows already there get it.
    4: Rows(
        ["INSERT INTO agenda_changes VALUES ('k1', 'moved', 's1', '{}', 10)"],
        [("SELECT key, fanned_out FROM agenda_changes", [("k1", 0)])],
    ),
    18: Rows(
        ["INSERT INTO feed_entries VALUES ('f', 'e1', 'feed:e1', 'T', 'https://x/1', 10)"],
        [("SELECT key, wanted, gazette FROM feed_entries", [("e1", 0, None)])],
    ),
    # The French label of an erased person becomes the '' marker, nothing else.
    10: Rows(
        [
            "INSERT INTO mentor_audit (actor, action, target, detail, at) VALUES "
            "('(personne retirée)', 'remove', '@a:x', '', 1), ('@mod:x', 'remove', "
            "'(personne retirée)', '', 2), ('@mod:x', 'add', '@b:x', 'grist', 3)"
        ],
        [
            (
                "SELECT actor, target, detail FROM mentor_audit ORDER BY id",
                [("", "@a:x", ""), (MOD, "", ""), (MOD, "@b:x", "grist")],
            )
        ],
    ),
    # Topic keys refolded (œ → oe…); a key colliding with the person's other
    # spelling of the same topic goes, labels as written.
    13: Rows(
        [
            "INSERT INTO mentors VALUES ('@a:x', NULL)",
            "INSERT INTO mentor_topics VALUES "
            "('@a:x', 'œuvre', 'Œuvre', '@mod:x', 1), ('@a:x', 'oeuvre', 'Oeuvre', '@mod:x', 2), "
            "('@a:x', 'cœur', 'Cœur', '@mod:x', 3), ('@a:x', 'grist', 'Grist', '@mod:x', 4)",
            "INSERT INTO mentor_requests VALUES ('@b:x', 'æther', 'Æther', 5)",
        ],
        [
            (
                "SELECT topic_key, label FROM mentor_topics ORDER BY topic_key",
                [("coeur", "Cœur"), ("grist", "Grist"), ("oeuvre", "Oeuvre")],
            ),
            ("SELECT topic_key, label FROM mentor_requests", [("aether", "Æther")]),
        ],
    ),
    # The outbox rebuilt (a new status allowed): rows and ids kept, ids go on.
    14: Rows(
        [
            "INSERT INTO outbox VALUES (3, 'change:a', '!r:x', 't3', 'sent', 1, 10, 11), "
            "(7, 'change:b', '!r:x', 't7', 'pending', 0, 12, NULL)"
        ],
        [
            (
                "SELECT id, broadcast, txn_id, status, attempts, sent_at FROM outbox ORDER BY id",
                [(3, "change:a", "t3", "sent", 1, 11), (7, "change:b", "t7", "pending", 0, None)],
            ),
            ("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'", [(7,)]),
        ],
    ),
    # Edits made before the agenda's audit trail are its first entries.
    19: Rows(
        [
            "INSERT INTO agenda_edits (action, target, fields, author, created_at) VALUES "
            "('cancel', 's1', '{}', '@mod:x', 100), "
            "('modify', 's2', '{\"title\": \"T\"}', '@other:x', 200)",
            "INSERT INTO mentor_audit (actor, action, target, at) "
            "VALUES ('@mod:x', 'add', '@a:x', 1)",
        ],
        [
            (
                "SELECT at, actor, room_id, action, target, detail FROM agenda_audit ORDER BY id",
                [
                    (100, MOD, "", "cancel", "s1", "{}"),
                    (200, "@other:x", "", "modify", "s2", '{"title": "T"}'),
                ],
            ),
            ("SELECT room_id FROM mentor_audit", [("",)]),
        ],
    ),
    # A draft's changers: its last changer, its items' authors, the log's
    # changes since it was built; not approvals, not other issues.
    20: Rows(
        [
            "INSERT INTO gazette_issues (id, number, status, since, content, revision, "
            "changed_by, changed_at, created_at) VALUES "
            "(1, 3, 'draft', 0, '{}', 2, '@mod:x', 160, 100), "
            "(2, 2, 'published', 0, '{}', 1, '@old:x', 50, 40)",
            "INSERT INTO gazette_items VALUES (1, 1, 'news', 'x', '@alice:x', 110), "
            "(2, 1, 'news', 'y', '@zed:x', 45)",
            "INSERT INTO gazette_log (at, actor, action, number) VALUES "
            "(150, '@camille:x', 'add', 3), (90, '@early:x', 'add', 3), "
            "(155, '@eve:x', 'approve', 3), (45, '@p:x', 'add', 2)",
        ],
        [
            (
                "SELECT issue_id, user_id FROM gazette_changers ORDER BY user_id",
                [(1, "@alice:x"), (1, "@camille:x"), (1, MOD)],
            )
        ],
    ),
    # Room upgrades rebuilt (a new status allowed): rows kept.
    21: Rows(
        [
            "INSERT INTO room_upgrades VALUES ('!a:x', '!b:x', '@s:x', 'pending', 1, NULL), "
            "('!c:x', '!d:x', '@s:x', 'moved', 2, 3)"
        ],
        [
            (
                "SELECT * FROM room_upgrades ORDER BY old_room",
                [
                    ("!a:x", "!b:x", "@s:x", "pending", 1, None),
                    ("!c:x", "!d:x", "@s:x", "moved", 2, 3),
                ],
            )
        ],
    ),
}


async def write(db: Database, statements: list[str]) -> None:
    async with db.transaction() as tx:
        for statement in statements:
            await tx.execute(statement)


async def schema(path: Path) -> list[tuple[object, ...]]:
    db = await Database.open(path)
    try:
        rows = await db.fetch("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name")
    finally:
        await db.close()
    return [tuple(r) for r in rows]


@pytest.mark.parametrize("step", STEPS, ids=lambda s: f"v{s.version:02d}")
async def test_a_step_upgrades_a_database_of_the_previous_version(
    step: Step, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = await Database.open(tmp_path / "bluehats.db")
    try:
        await UpgradeTable(STEPS[: step.version - 1]).upgrade(db)
        assert await schema_version(db) == step.version - 1
        rows = ROWS.get(step.version, Rows([]))
        await write(db, rows.before)
        caplog.clear()
        caplog.set_level(logging.INFO, logger="bot.db.upgrade")
        await UpgradeTable(STEPS[: step.version]).upgrade(db)
        assert [r.getMessage() for r in caplog.records] == [
            f"storage: applying migration {step.version} ({step.description})"
        ]
        assert await schema_version(db) == step.version
        for query, expected in rows.checks:
            assert [tuple(r) for r in await db.fetch(query)] == expected, query
        assert await db.fetch("PRAGMA foreign_key_check") == []
    finally:
        await db.close()


async def test_a_database_upgraded_one_release_at_a_time_has_a_fresh_schema(
    tmp_path: Path,
) -> None:
    """Opened and closed at each version, rows written on the way: the same
    tables, indexes and columns as a database created by today's bot."""
    walked = tmp_path / "walked.db"
    for step in STEPS:
        db = await Database.open(walked)
        try:
            await UpgradeTable(STEPS[: step.version]).upgrade(db)
            await write(db, ROWS.get(step.version + 1, Rows([])).before)
        finally:
            await db.close()
    fresh = await Storage.open(tmp_path / "fresh.db")
    await fresh.close()
    assert await schema(walked) == await schema(tmp_path / "fresh.db")
    assert len(await schema(walked)) > len(STEPS)  # tables and indexes, not nothing
