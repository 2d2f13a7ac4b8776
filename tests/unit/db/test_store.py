"""The store without a homeserver: private modes, a damaged database, the copy before a
migration, reads isolated from another task's transaction, `backup`'s refusals."""

from __future__ import annotations

import asyncio
import logging
import shutil
import sqlite3
import stat
import sys
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from bot import config as configuration
from bot.app import open_storage
from bot.db.backup import BackupError, backup
from bot.db.database import Database
from bot.db.storage import Storage
from bot.db.upgrade import upgrades

V9 = Path(__file__).resolve().parents[2] / "fixtures" / "schema-v9.sqlite3"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


async def test_files_broader_than_private_are_tightened_at_start_and_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    (data / "crypto").mkdir(parents=True)
    copied = data / "crypto" / "copied.db"  # as `cp` under umask 022 leaves it
    copied.write_bytes(b"")
    copied.chmod(0o644)
    (data / "crypto").chmod(0o755)
    data.chmod(0o700)
    private = data / "session.json"
    private.write_text("{}")
    private.chmod(0o600)
    cfg = configuration.from_dict(
        {
            "matrix": {"homeserver": "http://127.0.0.1:9", "user_id": "@b:x", "password": "p"},
            "storage": {"path": str(data)},
        },
        env={},
    )
    caplog.set_level(logging.WARNING)
    async with AsyncExitStack() as stack:
        storage = await open_storage(stack, cfg)
        await storage.kv.put("k", "v")  # the WAL's files exist now
        assert (mode(copied), mode(data / "crypto"), mode(private)) == (0o600, 0o700, 0o600)
        created = [p for p in data.iterdir() if p.name.startswith("bluehats.")]
        assert {p.name for p in created} >= {"bluehats.db", "bluehats.db-wal", "bluehats.lock"}
        assert all(mode(p) == 0o600 for p in created), {p.name: oct(mode(p)) for p in created}
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 2, warned
    assert any(str(copied) in w and "0644" in w for w in warned)
    assert any(str(data / "crypto") in w and "0755" in w for w in warned)


def overwrite_a_page(db: Path) -> None:
    """A page of the subscriptions table overwritten (a bad disk, a torn copy)."""
    with sqlite3.connect(db) as conn:
        root = conn.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = 'subscriptions'"
        ).fetchone()[0]
    conn.close()
    with db.open("r+b") as f:
        f.seek((root - 1) * 4096)
        f.write(b"\xab" * 4096)


@pytest.mark.parametrize("damage", ["garbage", "page"])
async def test_a_damaged_database_stops_the_start_with_one_clear_line(
    tmp_path: Path, damage: str
) -> None:
    data = tmp_path / "data"
    db = data / "bluehats.db"
    if damage == "garbage":
        data.mkdir()
        db.write_bytes(b"not a database, whatever it was" * 200)
    else:
        storage = await Storage.open(db)
        await storage.close()
        overwrite_a_page(db)
    config = tmp_path / "config.yaml"
    # Nothing listens on port 9: reaching the network would fail differently.
    config.write_text(
        "matrix: {homeserver: 'http://127.0.0.1:9', user_id: '@bot:localhost', password: x}\n"
        "storage: {path: data}\nbot: {moderators: ['@mod:localhost']}\n"
    )
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "bot", "run", "--config", str(config)),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        _, err = await proc.communicate()
    assert proc.returncode == 1
    lines = err.decode().splitlines()
    assert len(lines) == 1, err.decode()
    assert " ERROR " in lines[0]
    assert f"the database {db} is damaged: " in lines[0]
    assert "restore it from a backup (README « Sauvegardes »)" in lines[0]
    assert not (data / "session.json").exists()  # stopped before the homeserver


async def test_a_migration_starts_with_a_copy_of_the_database(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "bluehats.db"
    shutil.copyfile(V9, db)
    older = tmp_path / "bluehats.db.before-v05"  # from an earlier upgrade
    older.write_bytes(b"old copy")
    caplog.set_level(logging.INFO)
    storage = await Storage.open(db)
    version = await storage.schema_version()
    await storage.close()
    assert version == upgrades.latest
    copy = tmp_path / "bluehats.db.before-v10"
    assert [n for n in names(tmp_path) if n.startswith("bluehats.db.before-")] == [copy.name]
    assert mode(copy) == 0o600
    with sqlite3.connect(copy) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (9,)
        assert conn.execute("PRAGMA quick_check").fetchone() == ("ok",)
    conn.close()
    assert f"copied the database (schema 9) to {copy}" in caplog.text
    # Nothing to upgrade: no copy taken.
    copy.unlink()
    storage = await Storage.open(db)
    await storage.close()
    assert not copy.exists()


async def test_a_read_does_not_see_another_tasks_uncommitted_insert(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "db.sqlite")
    try:
        await db.execute("CREATE TABLE t (x TEXT)")
        inserted, release = asyncio.Event(), asyncio.Event()

        async def writer() -> None:
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO t (x) VALUES ($1)", "uncommitted")
                # The transaction reads its own write.
                assert await tx.fetchval("SELECT count(*) FROM t") == 1
                inserted.set()
                await release.wait()

        task = asyncio.create_task(writer())
        await inserted.wait()
        assert await db.fetch("SELECT x FROM t") == []  # not while it may roll back
        release.set()
        await task
        assert await db.fetchval("SELECT x FROM t") == "uncommitted"  # read after commit
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            await db.fetch("INSERT INTO t (x) VALUES ('through the reader')")
    finally:
        await db.close()


async def test_backup_refuses_to_overwrite_or_to_replace_the_database(tmp_path: Path) -> None:
    db = tmp_path / "bluehats.db"
    storage = await Storage.open(db)
    await storage.subscriptions.add("!a:x", "gazette", "@mod:x")
    try:
        with pytest.raises(BackupError, match="bot's database itself"):
            backup(db, db, force=True)
        existing = tmp_path / "existing.db"
        existing.write_bytes(b"an older backup")
        with pytest.raises(BackupError, match="exists: give another path, or --force"):
            backup(db, existing)
        assert existing.read_bytes() == b"an older backup"
        done = backup(db, existing, force=True)
        assert (done.schema, done.rows["subscriptions"]) == (upgrades.latest, 1)
        with pytest.raises(BackupError, match="no database at"):
            backup(tmp_path / "nothing.db", tmp_path / "copy.db")
    finally:
        await storage.close()
    assert names(tmp_path) == ["bluehats.db", "existing.db"]  # nothing partial left
