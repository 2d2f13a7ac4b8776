"""What messages show of sessions and programme changes: shared by commands and posts.

A `SessionView` is a session as listed (its day heading, whether it is on
now, a one-line summary); a `ChangeView` is a stored programme change as
announced. Rendering a change reads only the stored record, so a notice sent
after a restart says exactly what was found.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from bot.agenda.edits import fields_to_session_kwargs
from bot.agenda.model import Session
from bot.db.agenda import ChangeRecord
from bot.render import Message, Renderer


@dataclass(frozen=True, slots=True)
class SessionView:
    session: Session
    day: date  # heading it is listed under
    start_day: date
    end_day: date  # last day it covers (inclusive)
    ongoing: bool
    summary: str

    @property
    def title(self) -> str:
        return self.session.title


def summarise(description: str, limit: int = 160) -> str:
    first = description.split("\n", 1)[0].strip()
    return first if len(first) <= limit else first[: limit - 1].rstrip() + "…"


def views(sessions: list[Session], now: datetime, renderer: Renderer) -> list[SessionView]:
    out = []
    today = renderer.local(now).date()
    for s in sessions:
        start_day = renderer.local(s.start).date()
        # All-day ends are exclusive (next midnight); a timed end at 00:00 too.
        last = s.end - timedelta(microseconds=1) if s.end > s.start else s.end
        end_day = max(renderer.local(last).date(), start_day)
        ongoing = s.start <= now < s.end
        out.append(
            SessionView(
                session=s,
                day=max(start_day, today) if ongoing else start_day,
                start_day=start_day,
                end_day=end_day,
                ongoing=ongoing,
                summary=summarise(s.description),
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class ChangeView:
    kind: str
    sid: str
    title: str
    before: SessionView
    after: SessionView | None


def _session(state: dict[str, Any]) -> Session:
    return Session(**fields_to_session_kwargs(state))


def after_sid(record: ChangeRecord) -> str | None:
    """The id the session has after the change, as its new time and title give it.

    (A moderator's edit keeps the old id instead: callers ask the agenda.)
    """
    after_state = record.payload.get("after")
    return _session(after_state).sid if isinstance(after_state, dict) else None


def change_view(
    record: ChangeRecord, now: datetime, renderer: Renderer, sid: str | None = None
) -> ChangeView:
    payload = record.payload
    before_state = payload["before"]
    after_state = payload.get("after")
    if not isinstance(before_state, dict):
        raise ValueError(f"change {record.key}: no 'before' state")
    sessions = [_session(before_state)]
    if isinstance(after_state, dict):
        sessions.append(_session(after_state))
    shown = views(sessions, now, renderer)
    return ChangeView(
        kind=record.kind,
        sid=sid or record.sid,
        title=sessions[-1].title,
        before=shown[0],
        after=shown[1] if len(shown) > 1 else None,
    )


def render_change(
    record: ChangeRecord,
    *,
    now: datetime,
    renderer: Renderer,
    prefix: str,
    sid: str | None = None,
) -> Message:
    """`sid`: the session's id now, for "Détails : !session <id>" (default: the old one)."""
    view = change_view(record, now, renderer, sid)
    return renderer.render("change", c=view, today=renderer.local(now).date(), prefix=prefix)
