"""What an issue holds and how it reads.

When a draft is built the bot gathers, once, the sessions of the
`gazette.agenda_days` from the publication on, the feed entries relayed
since the last issue and the mentor topics added since: a snapshot (JSON)
stored with the draft, so that what moderators approve is what goes out.
`render` turns the snapshot and the moderators' items into the message,
the same for a preview and for the rooms.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.agenda.model import Agenda
from bot.db.feeds import Listed
from bot.db.gazette import Issue, Item
from bot.db.mentors import MentorTopic
from bot.gazette.markup import to_html
from bot.render import Message, Renderer, safe_url
from bot.textnorm import fold

# An issue lists at most this many sessions, entries and topics (the rest is counted).
MAX_SESSIONS = 40
MAX_ENTRIES = 20
MAX_TOPICS = 20


def gather(
    agenda: Agenda,
    entries: list[Listed],
    topics: list[MentorTopic],
    *,
    start: datetime,
    days: int,
    since: int,
) -> dict[str, Any]:
    """The snapshot of an issue published at `start` (sessions of `days` days from then)."""
    end = start + timedelta(days=days)
    sessions = [s for s in agenda.between(start, end) if s.start >= start and not s.cancelled]
    new_topics: dict[str, str] = {}
    for topic in sorted(topics, key=lambda t: t.added_at):
        if topic.added_at > since:
            new_topics.setdefault(topic.topic_key, topic.label)
    return {
        "window": [int(start.timestamp()), int(end.timestamp())],
        "sessions": [
            {
                "sid": s.sid,
                "title": s.title,
                "start": int(s.start.timestamp()),
                "all_day": s.all_day,
                "url": s.url,
            }
            for s in sessions[:MAX_SESSIONS]
        ],
        "more_sessions": max(0, len(sessions) - MAX_SESSIONS),
        "entries": [
            {"key": e.broadcast, "title": e.title, "link": e.link} for e in entries[:MAX_ENTRIES]
        ],
        "topics": sorted(new_topics.values(), key=fold)[:MAX_TOPICS],
    }


def entry_keys(content: dict[str, Any]) -> list[str]:
    """The feed entries an issue lists (their relay posts' keys)."""
    return [str(e["key"]) for e in content.get("entries", [])]


@dataclass(frozen=True, slots=True)
class ItemView:
    n: int
    text: str  # as typed: the plain body
    html: str  # the safe Markdown subset
    author: str


@dataclass(frozen=True, slots=True)
class SessionLine:
    sid: str
    title: str
    start: datetime
    all_day: bool
    url: str


def sections(configured: list[str], items: list[Item]) -> list[tuple[str, list[ItemView]]]:
    """Non-empty sections, in the configured order (then any no longer configured)."""
    by_section: dict[str, list[ItemView]] = defaultdict(list)
    for item in items:
        by_section[item.section].append(
            ItemView(item.n, item.text, to_html(item.text), item.author)
        )
    order = configured + [s for s in by_section if s not in configured]
    return [(name, by_section[name]) for name in order if by_section.get(name)]


def render(
    renderer: Renderer,
    issue: Issue,
    items: list[Item],
    configured: list[str],
    *,
    prefix: str,
) -> Message:
    """The issue as members read it (a preview reads exactly the same)."""
    content = issue.content
    start, end = (datetime.fromtimestamp(t, UTC) for t in content["window"])
    lines = [
        SessionLine(
            s["sid"],
            s["title"],
            datetime.fromtimestamp(s["start"], UTC),
            bool(s["all_day"]),
            safe_url(s["url"]),
        )
        for s in content["sessions"]
    ]
    days: dict[Any, list[SessionLine]] = defaultdict(list)
    for line in lines:
        days[renderer.local(line.start).date()].append(line)
    return renderer.render(
        "gazette",
        number=issue.number,
        first_day=renderer.local(start).date(),
        last_day=renderer.local(end - timedelta(seconds=1)).date(),
        sections=sections(configured, items),
        days=sorted(days.items()),
        more_sessions=int(content.get("more_sessions", 0)),
        entries=[(e["title"], safe_url(e["link"])) for e in content["entries"]],
        topics=content["topics"],
        prefix=prefix,
    )
