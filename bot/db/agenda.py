"""The agenda's memory: sources' last good copies and their sessions, moderators' edits,
programme changes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Self

from bot.db.database import Database, Queries, Row


@dataclass(frozen=True, slots=True)
class CachedSource:
    source: str
    body: bytes
    etag: str | None
    last_modified: str | None
    fetched_at: int

    @classmethod
    def from_row(cls, row: Row) -> Self:
        return cls(
            row["source"],
            bytes(row["body"]),
            row["etag"],
            row["last_modified"],
            int(row["fetched_at"]),
        )


@dataclass(frozen=True, slots=True)
class SourceBody:
    """A freshly fetched source to save as its new last good copy."""

    source: str
    body: bytes
    etag: str | None
    last_modified: str | None


@dataclass(frozen=True, slots=True)
class StoredSessions:
    """One source's sessions as the last good refresh left them (before edits)."""

    source: str
    # What they were computed with (layout, time zone, horizon, bot version):
    # sessions stored under other settings are not served.
    params: str
    parsed_at: int  # when its content was parsed (recurring events expand from then)
    packed: bytes  # bot.agenda.packed

    @classmethod
    def from_row(cls, row: Row) -> Self:
        return cls(row["source"], row["params"], int(row["parsed_at"]), bytes(row["sessions"]))


@dataclass(frozen=True, slots=True)
class Edit:
    id: int
    action: str
    target: str
    fields: dict[str, object]
    author: str
    created_at: int

    @classmethod
    def from_row(cls, row: Row) -> Self:
        return cls(
            row["id"],
            row["action"],
            row["target"],
            json.loads(row["fields"]),
            row["author"],
            int(row["created_at"]),
        )


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """A moderator's change of the agenda: who, what, when, from which room."""

    actor: str
    room_id: str
    action: str  # add, modify, cancel, restore
    target: str  # the session's id
    detail: str  # the fields changed (JSON), or ""
    at: int = 0

    @classmethod
    def from_row(cls, row: Row) -> Self:
        return cls(
            row["actor"],
            row["room_id"],
            row["action"],
            row["target"],
            row["detail"],
            int(row["at"]),
        )


@dataclass(frozen=True, slots=True)
class ChangeRecord:
    key: str
    kind: str
    sid: str
    payload: dict[str, object]
    created_at: int

    @classmethod
    def from_row(cls, row: Row) -> Self:
        return cls(
            row["key"],
            row["kind"],
            row["sid"],
            json.loads(row["payload"]),
            int(row["created_at"]),
        )


class AgendaStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def source(self, source: str) -> CachedSource | None:
        """The last good copy of a source."""
        row = await self._db.fetchrow(
            "SELECT source, body, etag, last_modified, fetched_at FROM source_cache "
            "WHERE source = $1",
            source,
        )
        return None if row is None else CachedSource.from_row(row)

    async def stored_sessions(self) -> dict[str, StoredSessions]:
        """Every source's sessions saved by the last good refresh: one query, no parsing."""
        rows = await self._db.fetch(
            "SELECT source, params, parsed_at, sessions FROM agenda_sessions"
        )
        return {r["source"]: StoredSessions.from_row(r) for r in rows}

    async def edits(self) -> list[Edit]:
        rows = await self._db.fetch(
            "SELECT id, action, target, fields, author, created_at FROM agenda_edits ORDER BY id"
        )
        return [Edit.from_row(r) for r in rows]

    async def audit(self, limit: int = 20) -> list[AuditEntry]:
        """Moderators' changes of the agenda, the most recent first."""
        rows = await self._db.fetch(
            "SELECT actor, room_id, action, target, detail, at FROM agenda_audit "
            "ORDER BY id DESC LIMIT $1",
            limit,
        )
        return [AuditEntry.from_row(r) for r in rows]

    async def change(self, key: str) -> ChangeRecord | None:
        row = await self._db.fetchrow(
            "SELECT key, kind, sid, payload, created_at FROM agenda_changes WHERE key = $1", key
        )
        return None if row is None else ChangeRecord.from_row(row)

    async def changes_since(self, since: int) -> list[ChangeRecord]:
        rows = await self._db.fetch(
            "SELECT key, kind, sid, payload, created_at FROM agenda_changes "
            "WHERE created_at >= $1 ORDER BY created_at, rowid",
            since,
        )
        return [ChangeRecord.from_row(r) for r in rows]

    async def commit(
        self,
        bodies: Iterable[SourceBody],
        changes: Iterable[ChangeRecord],
        edit: tuple[str, str, dict[str, object], str] | None = None,
        drop_edits: Iterable[int] = (),
        sessions: Iterable[StoredSessions] = (),
        audit: AuditEntry | None = None,
    ) -> int | None:
        """Save new source copies and their sessions, an edit and the changes they make,
        in one transaction.

        Returns the new edit's id. A crash leaves either the old copies and no
        change, or the new copies and their changes: a restart recomputes the
        same changes (same keys) at most, never loses or doubles one.
        """
        now = int(time.time())
        edit_id: int | None = None
        async with self._db.transaction() as tx:
            for b in bodies:
                await tx.execute(
                    "INSERT INTO source_cache (source, body, etag, last_modified, fetched_at) "
                    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (source) DO UPDATE SET "
                    "body = excluded.body, etag = excluded.etag, "
                    "last_modified = excluded.last_modified, fetched_at = excluded.fetched_at",
                    b.source,
                    b.body,
                    b.etag,
                    b.last_modified,
                    now,
                )
            for st in sessions:
                await tx.execute(
                    "INSERT INTO agenda_sessions (source, params, parsed_at, sessions) "
                    "VALUES ($1, $2, $3, $4) ON CONFLICT (source) DO UPDATE SET "
                    "params = excluded.params, parsed_at = excluded.parsed_at, "
                    "sessions = excluded.sessions",
                    st.source,
                    st.params,
                    st.parsed_at,
                    st.packed,
                )
            if edit is not None:
                action, target, fields, author = edit
                result = await tx.execute(
                    "INSERT INTO agenda_edits (action, target, fields, author, created_at) "
                    "VALUES ($1, $2, $3, $4, $5)",
                    action,
                    target,
                    json.dumps(fields, ensure_ascii=False),
                    author,
                    now,
                )
                edit_id = result.lastrowid
            for edit_id_to_drop in drop_edits:
                await tx.execute("DELETE FROM agenda_edits WHERE id = $1", edit_id_to_drop)
            if audit is not None:
                await tx.execute(
                    "INSERT INTO agenda_audit (at, actor, room_id, action, target, detail) "
                    "VALUES ($1, $2, $3, $4, $5, $6)",
                    now,
                    audit.actor,
                    audit.room_id,
                    audit.action,
                    audit.target,
                    audit.detail,
                )
            for c in changes:
                await tx.execute(
                    "INSERT OR IGNORE INTO agenda_changes (key, kind, sid, payload, created_at) "
                    "VALUES ($1, $2, $3, $4, $5)",
                    c.key,
                    c.kind,
                    c.sid,
                    json.dumps(c.payload, ensure_ascii=False),
                    now,
                )
        return edit_id


async def changes_to_fan_out(q: Queries) -> list[str]:
    """Keys of the changes not queued for the rooms yet, oldest first."""
    rows = await q.fetch(
        "SELECT key FROM agenda_changes WHERE fanned_out = 0 ORDER BY created_at, rowid"
    )
    return [str(r["key"]) for r in rows]


async def mark_fanned_out(q: Queries) -> None:
    await q.execute("UPDATE agenda_changes SET fanned_out = 1 WHERE fanned_out = 0")


async def prune(q: Queries, before: int) -> int:
    """Changes queued for the rooms, older than `before`."""
    result = await q.execute(
        "DELETE FROM agenda_changes WHERE fanned_out = 1 AND created_at < $1", before
    )
    return result.rowcount
