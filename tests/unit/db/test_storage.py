"""Storage: migrations, WAL, refusal of a newer database, retention."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from bot.db.agenda import ChangeRecord, SourceBody, StoredSessions
from bot.db.database import Database, StorageError, Transaction
from bot.db.feeds import FeedEntry
from bot.db.storage import Storage
from bot.db.subscriptions import GAZETTE
from bot.db.upgrade import Step, UpgradeTable, run_script, upgrades
from bot.feeds import FeedKey
from bot.gazette.posts import GazetteKey

SCHEMA_VERSION = upgrades.latest


async def test_fresh_database_is_migrated_in_wal_mode(tmp_path: Path) -> None:
    storage = await Storage.open(tmp_path / "db.sqlite")
    assert await storage.schema_version() == SCHEMA_VERSION
    await storage.kv.put("k", "v1")
    await storage.kv.put("k", "v2")
    assert await storage.kv.get("k") == "v2"
    await storage.close()
    with sqlite3.connect(tmp_path / "db.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    # Reopening applies nothing and keeps the data.
    storage = await Storage.open(tmp_path / "db.sqlite")
    assert await storage.kv.get("k") == "v2"
    await storage.close()


async def test_newer_database_refuses_to_start_and_is_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE future (x)")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StorageError, match="newer version"):
        await Storage.open(path)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION + 1,)


async def test_failed_migration_rolls_back(tmp_path: Path) -> None:
    async def broken(tx: Transaction) -> None:
        await run_script(tx, "CREATE TABLE t (x); SELECT nonsense(")

    migrations = UpgradeTable([*upgrades, Step(SCHEMA_VERSION + 1, "broken", broken)])
    with pytest.raises(sqlite3.OperationalError):
        await Storage.open(tmp_path / "db.sqlite", migrations)
    with sqlite3.connect(tmp_path / "db.sqlite") as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
        assert "t" not in tables


async def test_inbox_prune_keeps_pending_and_recent(tmp_path: Path) -> None:
    storage = await Storage.open(tmp_path / "db.sqlite")
    await storage.inbox.add("$old", "!r", "@a:x", "!aide", None, now=1000)
    await storage.inbox.finish("$old")
    await storage.inbox.add("$pending", "!r", "@a:x", "!aide", None, now=1000)
    assert await storage.inbox.prune(now=10**10) == 1
    assert await storage.inbox.status("$old") is None
    assert await storage.inbox.status("$pending") == "pending"
    await storage.close()


def test_run_refuses_a_newer_database_with_a_clear_message(tmp_path: Path) -> None:
    import subprocess
    import sys

    data = tmp_path / "data"
    data.mkdir()
    with sqlite3.connect(data / "bluehats.db") as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    config = tmp_path / "config.yaml"
    # Nothing listens on port 9: reaching the network would fail differently.
    config.write_text(
        "matrix: {homeserver: 'http://127.0.0.1:9', user_id: '@bot:localhost', password: x}\n"
        "storage: {path: data}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "bot", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "written by a newer version of the bot" in result.stderr
    assert "Traceback" not in result.stderr


async def test_prune_forgets_finished_rows_and_keeps_pending_ones(tmp_path: Path) -> None:
    storage = await Storage.open(tmp_path / "db.sqlite")
    for room in ("!a:x", "!b:x"):
        await storage.subscriptions.add(room, "gazette", "@mod:x")
    await storage.outbox.queue_for_subscribers(GazetteKey("old"), "gazette")
    sent, pending = await storage.outbox.pending()
    await storage.outbox.finish(sent.id, "sent")
    await storage.posts.record("$post", "!a:x", [("remind", ("abc123",))])
    assert await storage.prune() == {}  # nothing is old yet

    month_later = time.time() + 31 * 24 * 3600
    assert await storage.prune(now=month_later) == {"outbox": 1, "post_marks": 1}
    # The unsent post is still to be sent, whatever its age.
    assert [item.id for item in await storage.outbox.pending()] == [pending.id]
    assert await storage.posts.mark("$post", "!a:x", "remind") == ()
    await storage.close()


async def test_old_feed_entries_are_kept_while_still_in_the_feed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bot.db.feeds as feeds_module

    storage = await Storage.open(tmp_path / "db.sqlite")
    await storage.subscriptions.add("!a:x", "gazette", "@mod:x")
    feed = "https://example.org/feed"
    entries = [
        FeedEntry(key, key, f"https://example.org/{key}", FeedKey.of(feed, key), True)
        for key in ("n1", "n2", "n3")
    ]
    assert await storage.feeds.record(feed, entries, GAZETTE) == 3
    for item in await storage.outbox.pending():
        await storage.outbox.finish(item.id, "sent")

    # A year later, n1 has left the feed; n2 and n3 are still in it.
    year_later = time.time() + 365 * 24 * 3600
    monkeypatch.setattr(feeds_module.time, "time", lambda: year_later)
    assert await storage.feeds.record(feed, entries[1:], GAZETTE) == 0  # not posted again
    assert await storage.feeds.record(feed, entries[1:], GAZETTE) == 0
    with sqlite3.connect(tmp_path / "db.sqlite") as db:
        keys = [r[0] for r in db.execute("SELECT key FROM feed_entries ORDER BY key")]
    assert keys == ["n2", "n3"]
    await storage.close()


async def test_transactions_are_all_or_nothing_and_parameters_numbered(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "db.sqlite")
    await db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, b TEXT)")
    with pytest.raises(RuntimeError):
        async with db.transaction() as tx:
            added = await tx.execute("INSERT INTO t (a, b) VALUES ($1, $1)", "x")
            assert (added.rowcount, added.lastrowid) == (1, 1)
            raise RuntimeError
    assert await db.fetch("SELECT * FROM t") == []
    await db.execute("INSERT INTO t (a, b) VALUES ($2, $1)", "b", "a")
    row = await db.fetchrow("SELECT a, b FROM t")
    assert row is not None and (row["a"], row[1]) == ("a", "b")
    assert await db.fetchval("SELECT b FROM t WHERE a = $1", "nothing") is None
    assert await db.fetchval("SELECT count(*) FROM t") == 1
    await db.close()


async def test_a_stop_during_a_commit_stays_a_stop(tmp_path: Path) -> None:
    """SIGTERM while a broadcast round commits: the task is cancelled, not handed an
    error it would swallow (the bot then never stopped), and nothing is half done."""
    db = await Database.open(tmp_path / "db.sqlite")
    await db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT)")

    async def write(cancel_at_commit: bool) -> None:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO t (a) VALUES ($1)", "x")
            if cancel_at_commit:  # delivered while the COMMIT is awaited
                asyncio.get_running_loop().call_soon(task.cancel)

    task = asyncio.create_task(write(cancel_at_commit=True))
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await db.fetchval("SELECT count(*) FROM t") == 1  # the commit went through

    async def stopped_inside() -> None:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO t (a) VALUES ($1)", "y")
            await asyncio.sleep(10)

    task = asyncio.create_task(stopped_inside())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await db.fetchval("SELECT count(*) FROM t") == 1  # rolled back
    async with db.transaction() as tx:  # and the writer is free again
        await tx.execute("INSERT INTO t (a) VALUES ($1)", "z")
    assert await db.fetchval("SELECT count(*) FROM t") == 2
    await db.close()


async def test_stored_sessions_are_saved_with_their_copy_and_replaced(tmp_path: Path) -> None:
    storage = await Storage.open(tmp_path / "db.sqlite")
    agenda = storage.agenda
    assert await agenda.stored_sessions() == {}
    first = StoredSessions("a.ics", "1|Europe/Paris", 100, b'["x"]')
    other = StoredSessions("b.yaml", "1|Europe/Paris", 100, b"")
    await agenda.commit([SourceBody("a.ics", b"BEGIN", None, None)], [], sessions=[first, other])
    assert await agenda.stored_sessions() == {"a.ics": first, "b.yaml": other}
    newer = StoredSessions("a.ics", "2|UTC", 200, b'["y"]')
    # The changes found fail to save: nor are the new sessions (one transaction).
    broken = ChangeRecord("k", "moved", "abc123", {"before": object()}, 0)
    with pytest.raises(TypeError):
        await agenda.commit([], [broken], sessions=[newer])
    assert await agenda.stored_sessions() == {"a.ics": first, "b.yaml": other}
    assert await agenda.changes_since(0) == []
    await agenda.commit([], [], sessions=[newer])
    assert await agenda.stored_sessions() == {"a.ics": newer, "b.yaml": other}
    await storage.close()
