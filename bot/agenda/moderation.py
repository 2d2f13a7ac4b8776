"""Moderators' edits of the agenda (`!session ajouter/modifier/annuler/rétablir`).

A part of `AgendaService` (a mixin: the same lock, edits and agenda). An
edit never waits on a refresh's diff: the refresh takes the lock only to
switch to its result, and diffs again when an edit came in meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from bot.agenda.changes import diff
from bot.agenda.edits import change_record, session_to_fields
from bot.agenda.model import Agenda, Session
from bot.db.agenda import AuditEntry, ChangeRecord, Edit
from bot.db.storage import Storage

# The agenda's logger, as before these methods left sources.py.
log = logging.getLogger("bot.agenda.sources")


class EditError(Exception):
    """A moderator's edit cannot apply (unknown id…); the message is for logs."""


class ModeratorEdits:
    """Edits as a part of `AgendaService`, which sets these attributes."""

    agenda: Agenda
    _lock: asyncio.Lock  # guards the agenda, the edits and the copies
    _edits: list[Edit]
    _storage: Storage
    _now: Callable[[], datetime]

    def _build_edited(self, edits: Sequence[Edit]) -> Agenda:
        raise NotImplementedError

    def _recorded(self, records: Sequence[ChangeRecord]) -> None:
        raise NotImplementedError

    def _warn_suppressed(self, count: int) -> None:
        raise NotImplementedError

    # Each edit is audited (`agenda_audit`: who, what, when, from which room)
    # in the transaction that saves it; `room` is where the command was typed.

    async def add(self, session: Session, author: str, room: str = "") -> Session:
        """Add a session; it keeps the id computed from its start and title."""
        fields = session_to_fields(session)
        await self._edit("add", session.sid, fields, author, room)
        return self._require(session.sid)

    async def modify(
        self, sid: str, fields: dict[str, Any], author: str, room: str = ""
    ) -> Session:
        """Change some fields of a session; it keeps its id."""
        await self._edit("modify", sid, fields, author, room)
        return self._require(sid)

    async def cancel(self, sid: str, author: str, room: str = "") -> Session:
        await self._edit("cancel", sid, {}, author, room)
        return self._require(sid)

    async def restore(self, sid: str, author: str, room: str = "") -> Session:
        """Undo moderators' cancellations of a session (not a source's)."""
        async with self._lock:
            drop = [e.id for e in self._edits if e.action == "cancel" and e.target == sid]
            if not drop:
                raise EditError(f"no cancellation of {sid} by a moderator")
            await self._commit_edit(
                [e for e in self._edits if e.id not in drop],
                drop_edits=drop,
                audit=AuditEntry(author, room, "restore", sid, ""),
            )
            log.info("agenda: %s restored %s", author, sid)
        return self._require(sid)

    async def _commit_edit(
        self,
        edits: list[Edit],
        *,
        edit: tuple[str, str, dict[str, Any], str] | None = None,
        drop_edits: Sequence[int] = (),
        audit: AuditEntry | None = None,
    ) -> int | None:
        """Diff against the agenda served, save the edit and its changes, then switch.

        Diffed here, not in the parser process: an edit keeps every session's
        id, so the diff pairs them by id at once (a few ms for 10,000
        sessions), where starting a process would make moderators wait.
        """
        new = self._build_edited(edits)
        found = diff(self.agenda, new, now=self._now())
        self._warn_suppressed(len(found.suppressed))
        records = [change_record(c) for c in found.changes]
        edit_id = await self._storage.agenda.commit([], records, edit, drop_edits, audit=audit)
        self._edits = edits
        self.agenda = new
        self._recorded(records)
        return edit_id

    def _require(self, sid: str) -> Session:
        session = self.agenda.get(sid)
        if session is None:  # pragma: no cover - edits always leave their target
            raise EditError(f"session {sid} not found after the edit")
        return session

    async def _edit(
        self, action: str, target: str, fields: dict[str, Any], author: str, room: str
    ) -> None:
        async with self._lock:
            if action != "add" and self.agenda.get(target) is None:
                raise EditError(f"unknown session {target}")
            pending = Edit(-1, action, target, fields, author, 0)
            kept = self._edits
            detail = json.dumps(fields, ensure_ascii=False) if fields else ""
            edit_id = await self._commit_edit(
                [*kept, pending],
                edit=(action, target, fields, author),
                audit=AuditEntry(author, room, action, target, detail),
            )
            self._edits = [*kept, replace(pending, id=edit_id or -1)]
            log.info("agenda: %s: %s %s", author, action, target)
