"""Storage: migrations, WAL, refusal of a newer database."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from bot.storage import SCHEMA_VERSION, Storage, StorageError


async def test_fresh_database_is_migrated_in_wal_mode(tmp_path: Path) -> None:
    storage = await Storage.open(tmp_path / "db.sqlite")
    assert await storage.schema_version() == SCHEMA_VERSION
    await storage.put("k", "v1")
    await storage.put("k", "v2")
    assert await storage.get("k") == "v2"
    await storage.close()
    with sqlite3.connect(tmp_path / "db.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    # Reopening applies nothing and keeps the data.
    storage = await Storage.open(tmp_path / "db.sqlite")
    assert await storage.get("k") == "v2"
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


async def test_failed_migration_rolls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import bot.storage as storage_module

    monkeypatch.setattr(
        storage_module,
        "MIGRATIONS",
        (*storage_module.MIGRATIONS, "CREATE TABLE t (x); SELECT nonsense("),
    )
    monkeypatch.setattr(storage_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(sqlite3.OperationalError):
        await Storage.open(tmp_path / "db.sqlite")
    with sqlite3.connect(tmp_path / "db.sqlite") as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
        assert "t" not in tables


async def test_inbox_prune_keeps_pending_and_recent(tmp_path: Path) -> None:
    storage = await Storage.open(tmp_path / "db.sqlite")
    await storage.inbox_add("$old", "!r", "@a:x", "!aide", None, now=1000)
    await storage.inbox_finish("$old")
    await storage.inbox_add("$pending", "!r", "@a:x", "!aide", None, now=1000)
    assert await storage.inbox_prune(now=10**10) == 1
    assert await storage.inbox_status("$old") is None
    assert await storage.inbox_status("$pending") == "pending"
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
        await storage.subscribe(room, "gazette", "@mod:x")
    await storage.queue_broadcast("gazette:old", "gazette", "t-")
    sent, pending = await storage.outbox_pending()
    await storage.outbox_finish(sent.id, "sent")
    await storage.post_record("$post", "!a:x", ["abc123"])
    assert await storage.prune() == {}  # nothing is old yet

    month_later = time.time() + 31 * 24 * 3600
    assert await storage.prune(now=month_later) == {"outbox": 1, "posted_sessions": 1}
    # The unsent post is still to be sent, whatever its age.
    assert [item.id for item in await storage.outbox_pending()] == [pending.id]
    assert await storage.post_sessions("$post", "!a:x") == []
    await storage.close()


async def test_old_feed_entries_are_kept_while_still_in_the_feed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bot.storage as storage_module

    storage = await Storage.open(tmp_path / "db.sqlite")
    await storage.subscribe("!a:x", "gazette", "@mod:x")
    feed = "https://example.org/feed"
    entries = [(key, key, f"https://example.org/{key}", True) for key in ("n1", "n2", "n3")]
    assert await storage.feed_record(feed, entries, "t-") == 3
    for item in await storage.outbox_pending():
        await storage.outbox_finish(item.id, "sent")

    # A year later, n1 has left the feed; n2 and n3 are still in it.
    year_later = time.time() + 365 * 24 * 3600
    monkeypatch.setattr(storage_module.time, "time", lambda: year_later)
    assert await storage.feed_record(feed, entries[1:], "t-") == 0  # not posted again
    assert await storage.feed_record(feed, entries[1:], "t-") == 0
    with sqlite3.connect(tmp_path / "db.sqlite") as db:
        keys = [r[0] for r in db.execute("SELECT key FROM feed_entries ORDER BY key")]
    assert keys == ["n2", "n3"]
    await storage.close()
