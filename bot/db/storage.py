"""`Storage`: the database opened and upgraded, one repository per group of tables.

storage.kv             key/value pairs (sync token, feeds' HTTP validators)
storage.inbox          commands received, answered exactly once
storage.undecrypted    encrypted events waiting for their room key
storage.agenda         sources' last good copies, moderators' edits, programme changes
storage.mentors        the mentor directory and its audit log
storage.subscriptions  which rooms receive which posts
storage.outbox         broadcasts per room, with their transaction ids
storage.feeds          feed entries already seen
storage.gazette        the editorial gazette: issues, items, approvals, copies, log (gazette*.py)
storage.personal       personal reminders and direct rooms
storage.posts          what reactions to the bot's posts mean (their marks)
storage.published      what the public calendars have published of each session
storage.rooms          rooms the bot is alone in, room upgrades, leaving and following rooms
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from pathlib import Path
from typing import Self

from bot.db import agenda, outbox, posts, undecrypted
from bot.db.agenda import AgendaStore
from bot.db.backup import copy_database
from bot.db.database import Database, StorageError, is_damaged
from bot.db.feeds import FeedEntries
from bot.db.gazette import GazetteStore
from bot.db.inbox import INBOX_RETENTION_S, Inbox
from bot.db.kv import KeyValues
from bot.db.mentors import MentorDirectory
from bot.db.outbox import POST_RETENTION_S, Outbox
from bot.db.personal import PersonalReminders
from bot.db.posts import PostMarks
from bot.db.published import PublishedSessions
from bot.db.rooms import RoomRecords
from bot.db.subscriptions import Subscriptions
from bot.db.undecrypted import UndecryptedEvents
from bot.db.upgrade import UpgradeTable, schema_version, upgrades

log = logging.getLogger(__name__)

DB_FILE = "bluehats.db"  # in storage.path
BEFORE = ".before-v"  # bluehats.db.before-v22: the copy taken before migration 22


class Storage:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.kv = KeyValues(db)
        self.inbox = Inbox(db)
        self.undecrypted = UndecryptedEvents(db)
        self.agenda = AgendaStore(db)
        self.mentors = MentorDirectory(db)
        self.subscriptions = Subscriptions(db)
        self.outbox = Outbox(db)
        self.feeds = FeedEntries(db)
        self.gazette = GazetteStore(db)
        self.personal = PersonalReminders(db)
        self.posts = PostMarks(db)
        self.published = PublishedSessions(db)
        self.rooms = RoomRecords(db)

    @classmethod
    async def open(cls, path: Path, migrations: UpgradeTable = upgrades) -> Self:
        """The database at `path`, checked, then created or upgraded (after a copy of it);
        `StorageError` if too new or damaged."""
        try:
            db = await Database.open(path)
        except sqlite3.DatabaseError as exc:
            if is_damaged(exc):
                raise _damaged(path, exc) from None
            raise
        try:
            # Before anything reads the data: a damaged file stops the start here,
            # not hours later in a job ("database disk image is malformed").
            found = [row[0] for row in await db.fetch("PRAGMA quick_check(5)")]
            if found != ["ok"]:
                raise StorageError(damaged_message(path, "; ".join(found)))
            current = await schema_version(db)
            if 0 < current < migrations.latest:
                await _copy_before_upgrade(path, current)
            await migrations.upgrade(db)
        except sqlite3.DatabaseError as exc:
            await db.close()
            if is_damaged(exc):
                raise _damaged(path, exc) from None
            raise
        except BaseException:
            await db.close()
            raise
        return cls(db)

    async def close(self) -> None:
        await self.db.close()

    async def schema_version(self) -> int:
        return await schema_version(self.db)

    async def prune(self, now: float | None = None) -> dict[str, int]:
        """Forget what no longer serves: rows deleted per table.

        Only finished rows go: a pending outbox row or command stays whatever
        its age. Past the retention, a sent post cannot be due again (its
        session started, its gazette date or grace passed), so deleting its
        row cannot resend it. (Past personal reminders are dropped by the
        broadcaster, which knows the sessions' current times.)
        """
        at = int(now or time.time())
        sent_before = at - POST_RETENTION_S
        async with self.db.transaction() as tx:
            result = {
                "outbox": await outbox.prune(tx, sent_before),
                "agenda_changes": await agenda.prune(tx, sent_before),
                "post_marks": await posts.prune(tx, sent_before),
                "undecrypted": await undecrypted.prune(tx, at - INBOX_RETENTION_S),
            }
        result["inbox"] = await self.inbox.prune(at)
        return {table: n for table, n in result.items() if n}


def damaged_message(path: Path, detail: str) -> str:
    """One line for the operator (quick_check's findings may span several)."""
    detail = " ".join(detail.replace("*** in database main ***", "").split())
    return (
        f"the database {path} is damaged: {detail}; restore it from a backup "
        "(README « Sauvegardes »)"
    )


def _damaged(path: Path, exc: sqlite3.DatabaseError) -> StorageError:
    return StorageError(damaged_message(path, str(exc)))


async def _copy_before_upgrade(path: Path, version: int) -> None:
    """`bluehats.db.before-vNN` beside the database: the database as it was before
    migration NN (the first about to run) changed it; older such copies are deleted."""
    copy = path.with_name(f"{path.name}{BEFORE}{version + 1:02d}")
    partial = copy.with_name(copy.name + ".partial")
    partial.unlink(missing_ok=True)  # left by a start killed while copying
    await asyncio.to_thread(copy_database, path, partial)
    partial.replace(copy)
    for older in path.parent.glob(f"{path.name}{BEFORE}*"):
        if older != copy:
            older.unlink(missing_ok=True)
    log.info("storage: copied the database (schema %d) to %s before upgrading it", version, copy)
