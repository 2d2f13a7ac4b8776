"""SQLite storage (aiosqlite): the only module that writes SQL.

The database is the bot's memory across restarts: the sync token, the inbox of
commands being answered (so that each is answered exactly once), the last
good copy of every agenda source, moderators' edits of the agenda and the
programme changes found (the queue of change notices).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import aiosqlite

log = logging.getLogger(__name__)

# Ordered migrations; migration N brings the schema from version N-1 to N.
# Never edit a released one: append a new one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE kv (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    -- One row per command received. `body` is kept only until it is answered
    -- (personal data: the minimum, for the shortest time).
    CREATE TABLE inbox (
        event_id    TEXT PRIMARY KEY,
        room_id     TEXT NOT NULL,
        sender      TEXT NOT NULL,
        body        TEXT,
        thread_root TEXT,
        received_at INTEGER NOT NULL,
        status      TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'done', 'failed')),
        attempts    INTEGER NOT NULL DEFAULT 0,
        finished_at INTEGER
    );
    CREATE INDEX inbox_pending ON inbox (received_at) WHERE status = 'pending';
    CREATE TABLE source_cache (
        source        TEXT PRIMARY KEY,
        body          BLOB NOT NULL,
        etag          TEXT,
        last_modified TEXT,
        fetched_at    INTEGER NOT NULL
    );
    """,
    """
    -- Moderators' edits, applied in order on top of the sources at every
    -- rebuild. `target` is the id of the session changed (for 'add': the id
    -- of the session created). `fields` is JSON.
    CREATE TABLE agenda_edits (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        action     TEXT NOT NULL CHECK (action IN ('add', 'modify', 'cancel')),
        target     TEXT NOT NULL,
        fields     TEXT NOT NULL DEFAULT '{}',
        author     TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX agenda_edits_target ON agenda_edits (target);
    -- Programme changes found by a refresh or an edit, written in the same
    -- transaction as what they were computed from: none lost, none twice.
    CREATE TABLE agenda_changes (
        key        TEXT PRIMARY KEY,
        kind       TEXT NOT NULL,
        sid        TEXT NOT NULL,
        payload    TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX agenda_changes_created ON agenda_changes (created_at);
    """,
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
    """
    -- Rooms that receive scheduled posts, by kind.
    CREATE TABLE subscriptions (
        room_id  TEXT NOT NULL,
        kind     TEXT NOT NULL,
        added_by TEXT NOT NULL,
        added_at INTEGER NOT NULL,
        PRIMARY KEY (room_id, kind)
    );
    -- One row per (broadcast, room), with its transaction id, written before
    -- sending and marked after: a crash resends with the same id, which the
    -- homeserver deduplicates.
    CREATE TABLE outbox (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        broadcast  TEXT NOT NULL,
        room_id    TEXT NOT NULL,
        txn_id     TEXT NOT NULL,
        status     TEXT NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'sent', 'failed', 'skipped')),
        attempts   INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        sent_at    INTEGER,
        UNIQUE (broadcast, room_id)
    );
    CREATE INDEX outbox_pending ON outbox (id) WHERE status = 'pending';
    ALTER TABLE agenda_changes ADD COLUMN fanned_out INTEGER NOT NULL DEFAULT 0;
    """,
    """
    -- Feed entries already seen (posted or not), by feed and entry key.
    CREATE TABLE feed_entries (
        feed      TEXT NOT NULL,
        key       TEXT NOT NULL,
        broadcast TEXT NOT NULL UNIQUE,
        title     TEXT NOT NULL,
        link      TEXT NOT NULL,
        seen_at   INTEGER NOT NULL,
        PRIMARY KEY (feed, key)
    );
    """,
    """
    -- Personal reminders: who asked for which session (id, title, start as
    -- asked), and the direct room the bot opened with them.
    CREATE TABLE personal_reminders (
        user_id    TEXT NOT NULL,
        sid        TEXT NOT NULL,
        title      TEXT NOT NULL,
        start      INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (user_id, sid)
    );
    CREATE TABLE direct_rooms (
        user_id TEXT PRIMARY KEY,
        room_id TEXT NOT NULL
    );
    """,
    """
    -- The bot's posts that present sessions (answers, reminders): a 🔔
    -- reaction to one asks for personal reminders of these sessions.
    CREATE TABLE posted_sessions (
        event_id  TEXT PRIMARY KEY,
        room_id   TEXT NOT NULL,
        sids      TEXT NOT NULL,
        posted_at INTEGER NOT NULL
    );
    -- A command to answer in the sender's direct room (a 🔔 reaction).
    ALTER TABLE inbox ADD COLUMN direct INTEGER NOT NULL DEFAULT 0;
    """,
    """
    -- Encrypted events the bot could not decrypt yet (ciphertext as received):
    -- retried when their room key arrives, told once after a delay if never.
    CREATE TABLE undecrypted (
        event_id    TEXT PRIMARY KEY,
        room_id     TEXT NOT NULL,
        sender      TEXT NOT NULL,
        session_id  TEXT NOT NULL,
        event       TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        status      TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'decrypted', 'told', 'dropped')),
        finished_at INTEGER
    );
    CREATE INDEX undecrypted_pending ON undecrypted (session_id) WHERE status = 'pending';
    """,
    """
    -- The 🔔 reaction that asked for a personal reminder: removing the
    -- reaction cancels it.
    ALTER TABLE personal_reminders ADD COLUMN via TEXT;
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)
# Sent posts, distributed programme changes and the sessions of posts (for 🔔)
# are kept this long.
POST_RETENTION_S = 30 * 24 * 3600
# Feed entries no longer in the feed are forgotten after this long.
FEED_RETENTION_S = 180 * 24 * 3600
# Answered commands are kept (without their text) this long to drop redeliveries.
INBOX_RETENTION_S = 7 * 24 * 3600


class StorageError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class InboxItem:
    event_id: str
    room_id: str
    sender: str
    body: str
    thread_root: str | None
    received_at: int
    attempts: int
    direct: bool = False


@dataclass(frozen=True, slots=True)
class Undecrypted:
    event_id: str
    room_id: str
    sender: str
    session_id: str
    event: dict[str, object]
    received_at: int


@dataclass(frozen=True, slots=True)
class CachedSource:
    source: str
    body: bytes
    etag: str | None
    last_modified: str | None
    fetched_at: int


@dataclass(frozen=True, slots=True)
class SourceBody:
    """A freshly fetched source to save as its new last good copy."""

    source: str
    body: bytes
    etag: str | None
    last_modified: str | None


@dataclass(frozen=True, slots=True)
class Edit:
    id: int
    action: str
    target: str
    fields: dict[str, object]
    author: str
    created_at: int


@dataclass(frozen=True, slots=True)
class ChangeRecord:
    key: str
    kind: str
    sid: str
    payload: dict[str, object]
    created_at: int


@dataclass(frozen=True, slots=True)
class MentorTopic:
    user_id: str
    display_name: str | None
    topic_key: str
    label: str
    added_by: str
    added_at: int


@dataclass(frozen=True, slots=True)
class MentorRequest:
    user_id: str
    topic_key: str
    label: str
    requested_at: int


@dataclass(frozen=True, slots=True)
class AuditEntry:
    actor: str
    action: str
    target: str
    detail: str
    at: int


# Subscription kinds (what a room receives).
REMINDERS = "rappels"
GAZETTE = "gazette"

# Who a self-removed mentor becomes in the audit log (their ID is erased).
ERASED = "(personne retirée)"


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: int
    broadcast: str
    room_id: str
    txn_id: str
    attempts: int


@dataclass(frozen=True, slots=True)
class PersonalReminder:
    user_id: str
    sid: str
    title: str
    start: int


class Storage:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        # One connection: a statement issued while a transaction is open
        # would join it (and be rolled back with it). Every write takes this.
        self._write = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> Self:
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so that a
        # migration and its version bump share one transaction.
        db = await aiosqlite.connect(path, isolation_level=None)
        try:
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA foreign_keys=ON")
            await db.execute("PRAGMA busy_timeout=5000")
            await db.execute("PRAGMA synchronous=NORMAL")
            storage = cls(db)
            await storage._migrate()
        except BaseException:
            await db.close()
            raise
        return storage

    async def close(self) -> None:
        await self._db.close()

    async def _migrate(self) -> None:
        async with self._db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        current = int(row[0]) if row else 0
        if current > SCHEMA_VERSION:
            raise StorageError(
                f"the database was written by a newer version of the bot (schema {current}, "
                f"this version knows up to {SCHEMA_VERSION}); upgrade the bot or restore a "
                "backup, the database was left untouched"
            )
        for version in range(current + 1, SCHEMA_VERSION + 1):
            log.info("storage: applying migration %d", version)
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                for statement in _split_sql(MIGRATIONS[version - 1]):
                    await self._db.execute(statement)
                await self._db.execute(f"PRAGMA user_version = {version}")
                await self._db.execute("COMMIT")
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise

    async def schema_version(self) -> int:
        async with self._db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    # -- key/value -----------------------------------------------------------

    async def get(self, key: str) -> str | None:
        async with self._db.execute("SELECT value FROM kv WHERE key = ?", (key,)) as cur:
            row = await cur.fetchone()
        return str(row[0]) if row else None

    async def put(self, key: str, value: str) -> None:
        async with self._write:
            await self._db.execute(
                "INSERT INTO kv (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    # -- inbox ---------------------------------------------------------------

    async def inbox_add(
        self,
        event_id: str,
        room_id: str,
        sender: str,
        body: str,
        thread_root: str | None,
        now: float | None = None,
        *,
        direct: bool = False,
    ) -> bool:
        """Record a command; False when this event was already recorded (redelivery).

        The row counts one attempt already: the caller answers at once, and a
        crash during that first send must count like any other.
        """
        async with self._write:
            cur = await self._db.execute(
                "INSERT OR IGNORE INTO inbox (event_id, room_id, sender, body, thread_root, "
                "received_at, attempts, direct) VALUES (?, ?, ?, ?, ?, ?, 1, ?)",
                (event_id, room_id, sender, body, thread_root, int(now or time.time()), direct),
            )
        return cur.rowcount == 1

    async def inbox_pending(self) -> list[InboxItem]:
        async with self._db.execute(
            "SELECT event_id, room_id, sender, body, thread_root, received_at, attempts, direct "
            "FROM inbox WHERE status = 'pending' ORDER BY received_at"
        ) as cur:
            rows = await cur.fetchall()
        return [
            InboxItem(r[0], r[1], r[2], r[3] or "", r[4], int(r[5]), int(r[6]), bool(r[7]))
            for r in rows
        ]

    async def inbox_attempt(self, event_id: str) -> None:
        async with self._write:
            await self._db.execute(
                "UPDATE inbox SET attempts = attempts + 1 WHERE event_id = ?", (event_id,)
            )

    async def inbox_finish(self, event_id: str, *, failed: bool = False) -> None:
        async with self._write:
            await self._db.execute(
                "UPDATE inbox SET status = ?, body = NULL, finished_at = ? WHERE event_id = ?",
                ("failed" if failed else "done", int(time.time()), event_id),
            )

    async def inbox_status(self, event_id: str) -> str | None:
        async with self._db.execute(
            "SELECT status FROM inbox WHERE event_id = ?", (event_id,)
        ) as cur:
            row = await cur.fetchone()
        return str(row[0]) if row else None

    async def prune(self, now: float | None = None) -> dict[str, int]:
        """Forget what no longer serves: rows deleted per table.

        Only finished rows go: a pending outbox row or command stays whatever
        its age. Past the retention, a sent post cannot be due again (its
        session started, its gazette date or grace passed), so deleting its
        row cannot resend it. (Past personal reminders are dropped by the
        broadcaster, which knows the sessions' current times.)
        """
        at = int(now or time.time())
        posts = at - POST_RETENTION_S
        counts = await self._tx(
            [
                ("DELETE FROM outbox WHERE status != 'pending' AND created_at < ?", (posts,)),
                (
                    "DELETE FROM agenda_changes WHERE fanned_out = 1 AND created_at < ?",
                    (posts,),
                ),
                ("DELETE FROM posted_sessions WHERE posted_at < ?", (posts,)),
                (
                    "DELETE FROM undecrypted WHERE status != 'pending' AND finished_at < ?",
                    (at - INBOX_RETENTION_S,),
                ),
            ]
        )
        result = dict(
            zip(("outbox", "agenda_changes", "posted_sessions", "undecrypted"), counts, strict=True)
        )
        result["inbox"] = await self.inbox_prune(at)
        return {table: n for table, n in result.items() if n}

    # -- encrypted events not decrypted yet ---------------------------------------

    async def undecrypted_add(
        self, event_id: str, room_id: str, sender: str, session_id: str, event: dict[str, object]
    ) -> bool:
        (count,) = await self._tx(
            [
                (
                    "INSERT OR IGNORE INTO undecrypted (event_id, room_id, sender, session_id, "
                    "event, received_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (event_id, room_id, sender, session_id, json.dumps(event), int(time.time())),
                )
            ]
        )
        return count == 1

    async def undecrypted_pending(self, session_id: str | None = None) -> list[Undecrypted]:
        sql = (
            "SELECT event_id, room_id, sender, session_id, event, received_at FROM undecrypted "
            "WHERE status = 'pending'"
        )
        params: tuple[str, ...] = ()
        if session_id is not None:
            sql += " AND session_id = ?"
            params = (session_id,)
        async with self._db.execute(sql + " ORDER BY received_at", params) as cur:
            rows = await cur.fetchall()
        return [Undecrypted(r[0], r[1], r[2], r[3], json.loads(r[4]), int(r[5])) for r in rows]

    async def undecrypted_finish(self, event_id: str, status: str) -> None:
        """decrypted, told (the sender was answered) or dropped; the ciphertext goes."""
        await self._tx(
            [
                (
                    "UPDATE undecrypted SET status = ?, event = '', finished_at = ? "
                    "WHERE event_id = ?",
                    (status, int(time.time()), event_id),
                )
            ]
        )

    async def undecrypted_told(self, room_id: str, sender: str, session_id: str) -> bool:
        """Whether this sender was already told, in this room, for this room key."""
        async with self._db.execute(
            "SELECT 1 FROM undecrypted WHERE room_id = ? AND sender = ? AND session_id = ? "
            "AND status = 'told' LIMIT 1",
            (room_id, sender, session_id),
        ) as cur:
            return await cur.fetchone() is not None

    async def inbox_prune(self, now: float | None = None) -> int:
        cutoff = int((now or time.time()) - INBOX_RETENTION_S)
        async with self._write:
            cur = await self._db.execute(
                "DELETE FROM inbox WHERE status != 'pending' AND finished_at < ?", (cutoff,)
            )
        return cur.rowcount

    # -- agenda sources -------------------------------------------------------

    async def source_get(self, source: str) -> CachedSource | None:
        async with self._db.execute(
            "SELECT source, body, etag, last_modified, fetched_at FROM source_cache "
            "WHERE source = ?",
            (source,),
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        return CachedSource(row[0], bytes(row[1]), row[2], row[3], int(row[4]))

    # -- agenda edits and changes ------------------------------------------------

    async def commit_agenda(
        self,
        bodies: Iterable[SourceBody],
        changes: Iterable[ChangeRecord],
        edit: tuple[str, str, dict[str, object], str] | None = None,
        drop_edits: Iterable[int] = (),
    ) -> int | None:
        """Save new source copies, an edit and the changes they make, in one transaction.

        Returns the new edit's id. A crash leaves either the old copies and no
        change, or the new copies and their changes: a restart recomputes the
        same changes (same keys) at most, never loses or doubles one.
        """
        now = int(time.time())
        edit_id: int | None = None
        async with self._transaction():
            for b in bodies:
                await self._db.execute(
                    "INSERT INTO source_cache (source, body, etag, last_modified, fetched_at) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (source) DO UPDATE SET "
                    "body = excluded.body, etag = excluded.etag, "
                    "last_modified = excluded.last_modified, fetched_at = excluded.fetched_at",
                    (b.source, b.body, b.etag, b.last_modified, now),
                )
            if edit is not None:
                action, target, fields, author = edit
                cur = await self._db.execute(
                    "INSERT INTO agenda_edits (action, target, fields, author, created_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (action, target, json.dumps(fields, ensure_ascii=False), author, now),
                )
                edit_id = cur.lastrowid
            for edit_id_to_drop in drop_edits:
                await self._db.execute("DELETE FROM agenda_edits WHERE id = ?", (edit_id_to_drop,))
            for c in changes:
                await self._db.execute(
                    "INSERT OR IGNORE INTO agenda_changes (key, kind, sid, payload, created_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (c.key, c.kind, c.sid, json.dumps(c.payload, ensure_ascii=False), now),
                )
        return edit_id

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[None]:
        """One write transaction (under the write lock): all or nothing."""
        async with self._write:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
                await self._db.execute("COMMIT")
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise

    # -- mentor directory -------------------------------------------------------

    async def _tx(self, statements: list[tuple[str, tuple[object, ...]]]) -> list[int]:
        """Run statements in one transaction; the row count of each."""
        async with self._transaction():
            counts = []
            for sql, params in statements:
                cur = await self._db.execute(sql, params)
                counts.append(cur.rowcount)
        return counts

    @staticmethod
    def _audit(actor: str, action: str, target: str, detail: str) -> tuple[str, tuple[object, ...]]:
        return (
            "INSERT INTO mentor_audit (actor, action, target, detail, at) VALUES (?, ?, ?, ?, ?)",
            (actor, action, target, detail, int(time.time())),
        )

    async def mentor_add(
        self,
        user_id: str,
        display_name: str | None,
        topics: list[tuple[str, str]],
        actor: str,
        action: str = "add",
    ) -> int:
        """Give a mentor topics (key, label); returns how many were new. Audited."""
        now = int(time.time())
        statements: list[tuple[str, tuple[object, ...]]] = [
            (
                "INSERT INTO mentors (user_id, display_name) VALUES (?, ?) ON CONFLICT (user_id) "
                "DO UPDATE SET display_name = COALESCE(excluded.display_name, display_name)",
                (user_id, display_name),
            )
        ]
        for key, label in topics:
            statements.append(
                (
                    "INSERT OR IGNORE INTO mentor_topics "
                    "(user_id, topic_key, label, added_by, added_at) VALUES (?, ?, ?, ?, ?)",
                    (user_id, key, label, actor, now),
                )
            )
            statements.append(
                (
                    "DELETE FROM mentor_requests WHERE user_id = ? AND topic_key = ?",
                    (user_id, key),
                )
            )
        labels = ", ".join(label for _, label in topics)
        statements.append(self._audit(actor, action, user_id, labels))
        counts = await self._tx(statements)
        return sum(counts[1 : 1 + 2 * len(topics) : 2])

    async def mentor_remove(self, user_id: str, topic_key: str | None, actor: str) -> int:
        """Remove a mentor's topic (or all); returns topics removed. Audited."""
        params: tuple[str, ...]
        if topic_key is None:
            where, params = "user_id = ?", (user_id,)
        else:
            where, params = "user_id = ? AND topic_key = ?", (user_id, topic_key)
        counts = await self._tx(
            [
                (f"DELETE FROM mentor_topics WHERE {where}", params),  # noqa: S608 - fixed text
                (
                    "DELETE FROM mentors WHERE user_id = ? AND NOT EXISTS "
                    "(SELECT 1 FROM mentor_topics WHERE mentor_topics.user_id = mentors.user_id)",
                    (user_id,),
                ),
                self._audit(actor, "remove", user_id, topic_key or "*"),
            ]
        )
        return counts[0]

    async def mentor_erase_self(self, user_id: str) -> int:
        """Everything about this person goes; the audit keeps the facts, not the ID."""
        counts = await self._tx(
            [
                ("DELETE FROM mentor_topics WHERE user_id = ?", (user_id,)),
                ("DELETE FROM mentor_requests WHERE user_id = ?", (user_id,)),
                ("DELETE FROM mentors WHERE user_id = ?", (user_id,)),
                ("UPDATE mentor_audit SET target = ? WHERE target = ?", (ERASED, user_id)),
                ("UPDATE mentor_audit SET actor = ? WHERE actor = ?", (ERASED, user_id)),
                self._audit(ERASED, "erase-self", ERASED, ""),
            ]
        )
        return counts[0] + counts[1]

    async def mentor_request(self, user_id: str, topics: list[tuple[str, str]]) -> int:
        now = int(time.time())
        counts = await self._tx(
            [
                (
                    "INSERT OR IGNORE INTO mentor_requests (user_id, topic_key, label, "
                    "requested_at) SELECT ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM "
                    "mentor_topics WHERE user_id = ? AND topic_key = ?)",
                    (user_id, key, label, now, user_id, key),
                )
                for key, label in topics
            ]
        )
        return sum(counts)

    async def mentor_requests(self, user_id: str | None = None) -> list[MentorRequest]:
        sql = "SELECT user_id, topic_key, label, requested_at FROM mentor_requests"
        params: tuple[object, ...] = ()
        if user_id is not None:
            sql += " WHERE user_id = ?"
            params = (user_id,)
        async with self._db.execute(sql + " ORDER BY requested_at, user_id, rowid", params) as cur:
            rows = await cur.fetchall()
        return [MentorRequest(r[0], r[1], r[2], int(r[3])) for r in rows]

    async def mentor_topics(
        self, *, user_id: str | None = None, topic_key: str | None = None
    ) -> list[MentorTopic]:
        sql = (
            "SELECT t.user_id, m.display_name, t.topic_key, t.label, t.added_by, t.added_at "
            "FROM mentor_topics t JOIN mentors m ON m.user_id = t.user_id"
        )
        clauses, params = [], []
        if user_id is not None:
            clauses.append("t.user_id = ?")
            params.append(user_id)
        if topic_key is not None:
            clauses.append("t.topic_key = ?")
            params.append(topic_key)
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY t.topic_key, COALESCE(m.display_name, t.user_id)"
        async with self._db.execute(sql, params) as cur:
            rows = await cur.fetchall()
        return [MentorTopic(r[0], r[1], r[2], r[3], r[4], int(r[5])) for r in rows]

    async def mentor_audit(self, limit: int = 20) -> list[AuditEntry]:
        async with self._db.execute(
            "SELECT actor, action, target, detail, at FROM mentor_audit ORDER BY id DESC LIMIT ?",
            (limit,),
        ) as cur:
            rows = await cur.fetchall()
        return [AuditEntry(r[0], r[1], r[2], r[3], int(r[4])) for r in rows]

    # -- subscriptions and the outbox -------------------------------------------

    async def subscribe(self, room_id: str, kind: str, actor: str) -> bool:
        """False when the room was already subscribed."""
        (count,) = await self._tx(
            [
                (
                    "INSERT OR IGNORE INTO subscriptions (room_id, kind, added_by, added_at) "
                    "VALUES (?, ?, ?, ?)",
                    (room_id, kind, actor, int(time.time())),
                )
            ]
        )
        return count == 1

    async def unsubscribe(self, room_id: str, kind: str) -> bool:
        (count,) = await self._tx(
            [("DELETE FROM subscriptions WHERE room_id = ? AND kind = ?", (room_id, kind))]
        )
        return count == 1

    async def subscriptions(self, room_id: str) -> list[str]:
        async with self._db.execute(
            "SELECT kind FROM subscriptions WHERE room_id = ? ORDER BY kind", (room_id,)
        ) as cur:
            rows = await cur.fetchall()
        return [str(r[0]) for r in rows]

    async def fan_out_changes(self, kind: str, txn_prefix: str) -> int:
        """Queue every new programme change for the rooms subscribed to `kind`.

        One transaction: the outbox rows and the change marked as fanned out,
        so a crash queues a change for its rooms once, never twice.
        """
        async with self._transaction():
            cur = await self._db.execute(
                "INSERT OR IGNORE INTO outbox (broadcast, room_id, txn_id, created_at) "
                "SELECT 'change:' || c.key, s.room_id, "
                "? || substr(c.key, 1, 24) || '-' || s.rowid, ? "
                "FROM agenda_changes c JOIN subscriptions s ON s.kind = ? "
                "WHERE c.fanned_out = 0 ORDER BY c.created_at, c.rowid",
                (txn_prefix, int(time.time()), kind),
            )
            queued = cur.rowcount
            await self._db.execute("UPDATE agenda_changes SET fanned_out = 1 WHERE fanned_out = 0")
        return queued

    async def queue_broadcast(
        self, broadcast: str, kind: str, txn_prefix: str, *, status: str = "pending"
    ) -> int:
        """An outbox row for every room subscribed to `kind` (once per room); rows added.

        `status='skipped'` records a broadcast that will not be sent (too late),
        so that it is decided, and logged, once.
        """
        digest = hashlib.sha256(broadcast.encode()).hexdigest()[:24]
        (count,) = await self._tx(
            [
                (
                    "INSERT OR IGNORE INTO outbox (broadcast, room_id, txn_id, status, "
                    "created_at) SELECT ?, room_id, ? || ? || '-' || rowid, ?, ? "
                    "FROM subscriptions WHERE kind = ?",
                    (broadcast, txn_prefix, digest, status, int(time.time()), kind),
                )
            ]
        )
        return count

    async def feed_record(
        self,
        feed: str,
        entries: list[tuple[str, str, str, bool]],
        txn_prefix: str,
    ) -> int:
        """Mark entries (key, title, link, post?) seen; queue the new ones to post.

        One transaction: an entry is seen and queued together, so a crash
        neither loses nor doubles a post. Returns outbox rows added.
        """
        now = int(time.time())
        queued = 0
        async with self._transaction():
            for key, title, link, post in entries:
                digest = hashlib.sha256(f"{feed}|{key}".encode()).hexdigest()[:24]
                broadcast = f"feed:{digest}"
                cur = await self._db.execute(
                    "INSERT OR IGNORE INTO feed_entries (feed, key, broadcast, title, link, "
                    "seen_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (feed, key, broadcast, title, link, now),
                )
                if cur.rowcount == 1 and post:
                    cur = await self._db.execute(
                        "INSERT OR IGNORE INTO outbox (broadcast, room_id, txn_id, created_at) "
                        "SELECT ?, room_id, ? || ? || '-' || rowid, ? FROM subscriptions "
                        "WHERE kind = ?",
                        (broadcast, txn_prefix, digest, now, GAZETTE),
                    )
                    queued += cur.rowcount
            # Entries gone from the feed long ago will not come back: forget them.
            # (Those still in it are kept whatever their age, or they would be new again.)
            current = json.dumps([key for key, *_ in entries])
            await self._db.execute(
                "DELETE FROM feed_entries WHERE feed = ? AND seen_at < ? "
                "AND key NOT IN (SELECT value FROM json_each(?))",
                (feed, now - FEED_RETENTION_S, current),
            )
        return queued

    async def feed_entry(self, broadcast: str) -> tuple[str, str] | None:
        """(title, link) of a queued feed entry."""
        async with self._db.execute(
            "SELECT title, link FROM feed_entries WHERE broadcast = ?", (broadcast,)
        ) as cur:
            row = await cur.fetchone()
        return (str(row[0]), str(row[1])) if row else None

    async def personal_add(
        self, user_id: str, sid: str, title: str, start: int, *, via: str | None = None
    ) -> bool:
        """`via`: the 🔔 reaction that asked for it, if any."""
        (count,) = await self._tx(
            [
                (
                    "INSERT OR IGNORE INTO personal_reminders (user_id, sid, title, start, "
                    "created_at, via) VALUES (?, ?, ?, ?, ?, ?)",
                    (user_id, sid, title, start, int(time.time()), via),
                )
            ]
        )
        return count == 1

    async def personal_via(self, user_id: str, via: str) -> list[str]:
        """Session ids of this person's reminders asked for by the reaction `via`."""
        async with self._db.execute(
            "SELECT sid FROM personal_reminders WHERE user_id = ? AND via = ? ORDER BY start",
            (user_id, via),
        ) as cur:
            return [str(r[0]) for r in await cur.fetchall()]

    async def personal_remove(self, user_id: str, sid: str) -> bool:
        (count,) = await self._tx(
            [("DELETE FROM personal_reminders WHERE user_id = ? AND sid = ?", (user_id, sid))]
        )
        return count == 1

    async def personal_list(self, user_id: str | None = None) -> list[PersonalReminder]:
        sql = "SELECT user_id, sid, title, start FROM personal_reminders"
        params: tuple[str, ...] = ()
        if user_id is not None:
            sql += " WHERE user_id = ?"
            params = (user_id,)
        async with self._db.execute(sql + " ORDER BY start", params) as cur:
            rows = await cur.fetchall()
        return [PersonalReminder(r[0], r[1], r[2], int(r[3])) for r in rows]

    async def direct_room(self, user_id: str) -> str | None:
        async with self._db.execute(
            "SELECT room_id FROM direct_rooms WHERE user_id = ?", (user_id,)
        ) as cur:
            row = await cur.fetchone()
        return str(row[0]) if row else None

    async def set_direct_room(self, user_id: str, room_id: str) -> None:
        await self._tx(
            [
                (
                    "INSERT INTO direct_rooms (user_id, room_id) VALUES (?, ?) "
                    "ON CONFLICT (user_id) DO UPDATE SET room_id = excluded.room_id",
                    (user_id, room_id),
                )
            ]
        )

    async def queue_direct(
        self, broadcast: str, room_id: str, txn_prefix: str, *, status: str = "pending"
    ) -> int:
        """One outbox row for a direct message (once); rows added."""
        digest = hashlib.sha256(broadcast.encode()).hexdigest()[:24]
        (count,) = await self._tx(
            [
                (
                    "INSERT OR IGNORE INTO outbox (broadcast, room_id, txn_id, status, "
                    "created_at) VALUES (?, ?, ?, ?, ?)",
                    (broadcast, room_id, txn_prefix + digest, status, int(time.time())),
                )
            ]
        )
        return count

    async def post_record(self, event_id: str, room_id: str, sids: Iterable[str]) -> None:
        """Remember that this post presents these sessions (for 🔔 reactions)."""
        listed = " ".join(dict.fromkeys(sids))
        if not listed:
            return
        await self._tx(
            [
                (
                    "INSERT OR IGNORE INTO posted_sessions (event_id, room_id, sids, posted_at) "
                    "VALUES (?, ?, ?, ?)",
                    (event_id, room_id, listed, int(time.time())),
                )
            ]
        )

    async def post_sessions(self, event_id: str, room_id: str) -> list[str]:
        """The session ids a post of the bot presents ([] for any other event)."""
        async with self._db.execute(
            "SELECT sids FROM posted_sessions WHERE event_id = ? AND room_id = ?",
            (event_id, room_id),
        ) as cur:
            row = await cur.fetchone()
        return str(row[0]).split() if row else []

    async def outbox_count(self, status: str) -> int:
        async with self._db.execute(
            "SELECT count(*) FROM outbox WHERE status = ?", (status,)
        ) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def outbox_pending(self) -> list[OutboxItem]:
        async with self._db.execute(
            "SELECT id, broadcast, room_id, txn_id, attempts FROM outbox "
            "WHERE status = 'pending' ORDER BY id"
        ) as cur:
            rows = await cur.fetchall()
        return [OutboxItem(int(r[0]), r[1], r[2], r[3], int(r[4])) for r in rows]

    async def outbox_attempt(self, item_id: int) -> None:
        async with self._write:
            await self._db.execute(
                "UPDATE outbox SET attempts = attempts + 1 WHERE id = ?", (item_id,)
            )

    async def outbox_finish(self, item_id: int, status: str) -> None:
        async with self._write:
            await self._db.execute(
                "UPDATE outbox SET status = ?, sent_at = ? WHERE id = ?",
                (status, int(time.time()), item_id),
            )

    async def outbox_status(self, broadcast: str) -> dict[str, str]:
        async with self._db.execute(
            "SELECT room_id, status FROM outbox WHERE broadcast = ?", (broadcast,)
        ) as cur:
            rows = await cur.fetchall()
        return {str(r[0]): str(r[1]) for r in rows}

    async def change(self, key: str) -> ChangeRecord | None:
        async with self._db.execute(
            "SELECT key, kind, sid, payload, created_at FROM agenda_changes WHERE key = ?", (key,)
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        return ChangeRecord(row[0], row[1], row[2], json.loads(row[3]), int(row[4]))

    async def edits(self) -> list[Edit]:
        async with self._db.execute(
            "SELECT id, action, target, fields, author, created_at FROM agenda_edits ORDER BY id"
        ) as cur:
            rows = await cur.fetchall()
        return [Edit(r[0], r[1], r[2], json.loads(r[3]), r[4], int(r[5])) for r in rows]

    async def changes_since(self, since: int) -> list[ChangeRecord]:
        async with self._db.execute(
            "SELECT key, kind, sid, payload, created_at FROM agenda_changes "
            "WHERE created_at >= ? ORDER BY created_at, rowid",
            (since,),
        ) as cur:
            rows = await cur.fetchall()
        return [ChangeRecord(r[0], r[1], r[2], json.loads(r[3]), int(r[4])) for r in rows]


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements (ours hold no ';' inside literals)."""
    lines = [ln for ln in script.splitlines() if not ln.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
