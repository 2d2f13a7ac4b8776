"""Moderators' edits applied on top of the sources, and changes as stored records.

Pure functions: the event loop (edits) and the parser process (refresh
diffs) both rebuild an agenda with them, so both must give the same result.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from bot.agenda.changes import Change
from bot.agenda.model import Session
from bot.db.agenda import ChangeRecord, Edit

# The agenda's logger, as before these functions left sources.py (log filters keep working).
log = logging.getLogger("bot.agenda.sources")

MODERATOR_SOURCE = "modérateurs"
EDITABLE = ("title", "start", "end", "all_day", "location", "url", "speakers", "description")


def fields_to_session_kwargs(fields: dict[str, Any]) -> dict[str, Any]:
    """Stored edit fields (JSON) → Session keyword arguments."""
    out: dict[str, Any] = {}
    for key in EDITABLE:
        if key not in fields:
            continue
        value = fields[key]
        if key in ("start", "end"):
            value = datetime.fromisoformat(value).astimezone(UTC)
        elif key == "speakers":
            value = tuple(value)
        out[key] = value
    return out


def session_to_fields(session: Session) -> dict[str, Any]:
    """A session's editable fields as JSON-ready values (edits, change records)."""
    return {
        "title": session.title,
        "start": session.start.isoformat(),
        "end": session.end.isoformat(),
        "all_day": session.all_day,
        "location": session.location,
        "url": session.url,
        "speakers": list(session.speakers),
        "description": session.description,
    }


def apply_edits(sessions: Iterable[Session], edits: Sequence[Edit]) -> list[Session]:
    """Sessions after moderators' edits, in order. Modified sessions keep their id."""
    by_sid: dict[str, Session] = {}
    for s in sessions:
        known = by_sid.get(s.sid)
        # The same session from several sources: first wins, active over cancelled.
        if known is None or (known.cancelled and not s.cancelled):
            by_sid[s.sid] = s
    for edit in edits:
        if edit.action == "add":
            kwargs = fields_to_session_kwargs(edit.fields)
            by_sid[edit.target] = Session(
                **kwargs, source=MODERATOR_SOURCE, uid=f"edit:{edit.target}", sid=edit.target
            )
            continue
        current = by_sid.get(edit.target)
        if current is None:
            # Its source moved or removed it since: the edit no longer applies.
            log.debug("agenda: edit %d targets %s, no longer in the agenda", edit.id, edit.target)
            continue
        if edit.action == "modify":
            kwargs = fields_to_session_kwargs(edit.fields)
            by_sid[edit.target] = replace(current, **kwargs, sid=edit.target, search_key="")
        elif edit.action == "cancel":
            by_sid[edit.target] = replace(current, cancelled=True)
    return list(by_sid.values())


def change_record(change: Change) -> ChangeRecord:
    after = change.after
    return ChangeRecord(
        key=change.key,
        kind=change.kind.value,
        sid=change.before.sid,
        payload={
            "before": session_to_fields(change.before),
            "after": None if after is None else session_to_fields(after),
        },
        created_at=0,
    )
