"""Consistent copies of the database: `bluehats-bot backup`, and the copy before a migration.

Never a file copy: in WAL mode the last transactions may sit in `-wal`, and a
file copied while the bot writes can be torn. SQLite's online backup API
copies every page under one read transaction (`pages=-1`: one step), which in
WAL mode does not block the bot's writes and cannot be restarted by them: the
copy is the database as it was at one commit. The copy is a single file in
rollback-journal mode (no `-wal` beside it), mode 0600, checked
(`PRAGMA quick_check`) before it is called done.

Only the database: nio's crypto store is never backed up nor restored (an
old copy holds Olm and Megolm ratchets that moved on since: members' clients
then reject what the bot sends as replays), nor is the session. A bot
restored from a backup starts on a new storage directory and comes back as a
new device, which the recovery key lets it sign (README « Sauvegardes »).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

# Counted in `backup`'s report: what an operator checks came across.
KEY_TABLES = (
    "subscriptions",
    "mentors",
    "mentor_topics",
    "personal_reminders",
    "agenda_edits",
    "gazette_issues",
    "outbox",
    "inbox",
)


class BackupError(Exception):
    """The backup was not made (or not trusted); the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class BackupReport:
    path: Path
    size: int  # bytes
    schema: int  # PRAGMA user_version of the copy
    rows: dict[str, int]  # KEY_TABLES present in the copy, with their row counts


def _read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)


def copy_database(source: Path, dest: Path) -> None:
    """A consistent copy of the database at `source` written to `dest` (which must not
    exist: created 0600), through SQLite's backup API, in one step."""
    os.close(os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    # Not `mode=ro`: a read-only connection to a WAL database the bot does not hold
    # open leaves -wal and -shm files behind (it cannot remove them).
    src = sqlite3.connect(source)
    try:
        src.execute("PRAGMA query_only=ON")
        dst = sqlite3.connect(dest)
        try:
            src.backup(dst)  # pages=-1: every page under one read transaction
            # One file: the copy carries no -wal to forget.
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
    finally:
        src.close()


def check_copy(path: Path) -> tuple[int, dict[str, int]]:
    """The copy at `path` opened and checked: (schema version, rows per key table);
    `BackupError` when SQLite finds it damaged."""
    db = _read_only(path)
    try:
        found = [row[0] for row in db.execute("PRAGMA quick_check(5)")]
        if found != ["ok"]:
            raise BackupError(f"the copy failed its integrity check: {'; '.join(found)}")
        schema = int(db.execute("PRAGMA user_version").fetchone()[0])
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        # Table names from our own tuple, never from input.
        rows = {
            table: int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608
            for table in KEY_TABLES
            if table in tables
        }
    finally:
        db.close()
    return schema, rows


def backup(source: Path, dest: Path, *, force: bool = False) -> BackupReport:
    """`bluehats-bot backup`: the database at `source` copied to the file `dest` while
    the bot may run, checked, then put in place (a failed copy leaves `dest` as it was)."""
    if not source.is_file():
        raise BackupError(f"no database at {source} (is storage.path right?)")
    if dest.is_dir():
        raise BackupError(f"{dest} is a directory: give the backup's file path in it")
    if not dest.parent.is_dir():
        raise BackupError(f"{dest.parent} does not exist")
    if dest.exists():
        if _same_file(dest, source):
            raise BackupError(f"{dest} is the bot's database itself: give another path")
        if not force:
            raise BackupError(f"{dest} exists: give another path, or --force to replace it")
    partial = dest.with_name(f".{dest.name}.{os.getpid()}.partial")
    try:
        copy_database(source, partial)
        schema, rows = check_copy(partial)
        partial.replace(dest)
    except sqlite3.Error as exc:
        raise BackupError(f"the copy failed: {exc}") from None
    finally:
        for leftover in (partial, partial.with_name(partial.name + "-journal")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
    return BackupReport(dest, dest.stat().st_size, schema, rows)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False
