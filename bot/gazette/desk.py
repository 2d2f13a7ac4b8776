"""The editors' desk: the draft, its items, approvals, publication, corrections, retraction.

Everything is in the database (`bot.db.gazette`); a `Desk` is cheap and
stateless, built by each command and by the broadcaster.

Four eyes: an issue goes out once approved by `gazette.approvals`
moderators who had no part in its text: none wrote one of its items, none
changed the draft (built it on request, gathered its content again, added
or removed an item). A correction or a retraction, by moderators other than
the person who asked for it (who also wrote the correction's text). An
approval is for one revision of the draft: any change withdraws it, and so
does the approver redacting the ✅ that gave it (until what it approved is
published or applied).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from bot.agenda.sources import AgendaService
from bot.config import GazetteConfig
from bot.db import gazette as store
from bot.db.gazette import Issue, Item, Request
from bot.db.storage import Storage
from bot.gazette import content
from bot.gazette.posts import IssueEditKey, IssueKey, IssueRedactKey
from bot.render import Message, Renderer
from bot.textnorm import fold

log = logging.getLogger(__name__)

# The first issue lists the feed entries and mentor topics of this period.
FIRST_ISSUE_LOOKBACK = timedelta(days=61)
# The longest text of an item (the gazette is posted whole in each room).
MAX_ITEM_CHARS = 1500


# Why someone may not approve (`Desk.refusal`): they wrote an item of the
# issue, changed the draft otherwise, or asked for the correction or retraction.
WROTE, CHANGED, ASKED = "wrote", "changed", "asked"


@dataclass(frozen=True, slots=True)
class Approval:
    """Who approved the current version of something, and how many are needed."""

    target: str
    by: tuple[str, ...]
    needed: int
    excluded: tuple[str, ...]  # who cannot approve it ('' is the bot)

    @property
    def done(self) -> bool:
        return len(self.by) >= self.needed

    @property
    def missing(self) -> int:
        return max(0, self.needed - len(self.by))


class Desk:
    def __init__(
        self,
        storage: Storage,
        renderer: Renderer,
        agenda: AgendaService,
        config: GazetteConfig,
        *,
        prefix: str,
        now: Callable[[], datetime],
    ) -> None:
        self.storage = storage
        self.store = storage.gazette
        self.renderer = renderer
        self.agenda = agenda
        self.config = config
        self.prefix = prefix
        self.now = now

    def _ts(self) -> int:
        return int(self.now().timestamp())

    # -- the draft --------------------------------------------------------------

    async def build(self, by: str, fire_at: datetime | None = None) -> tuple[Issue, str]:
        """The draft, built or its gathered parts refreshed: (draft, "created" |
        "refreshed" | "unchanged")."""
        draft = await self.store.draft()
        if draft is not None:
            start = _start(draft.fire_at, self.now())
            gathered = await self._gather(start, draft.since)
            if await self.store.refresh(draft, gathered, by, self._ts()):
                refreshed = await self.store.draft()
                assert refreshed is not None
                return refreshed, "refreshed"
            return draft, "unchanged"
        fire = None if fire_at is None else int(fire_at.timestamp())
        since = await self._since()
        gathered = await self._gather(_start(fire, self.now()), since)
        number = await self.store.next_number(self.config.number)
        created = await self.store.create_draft(
            number=number, fire_at=fire, since=since, content=gathered, by=by, now=self._ts()
        )
        if created is None:  # built meanwhile (the schedule, another command)
            current = await self.store.draft()
            assert current is not None
            return current, "unchanged"
        log.info("gazette: draft of issue %d built", number)
        return created, "created"

    async def _since(self) -> int:
        latest = await self.store.latest()
        if latest is not None and latest.published_at is not None:
            return latest.published_at
        return int((self.now() - FIRST_ISSUE_LOOKBACK).timestamp())

    async def _gather(self, start: datetime, since: int) -> dict[str, object]:
        return content.gather(
            self.agenda.agenda,
            await self.storage.feeds.for_gazette(since),
            await self.storage.mentors.topics(),
            start=start,
            days=self.config.agenda_days,
            since=since,
        )

    async def items(self, issue: Issue) -> list[Item]:
        return await self.store.items(issue.id)

    def section(self, name: str) -> str | None:
        """The configured section `name` designates (accents and case aside)."""
        wanted = fold(name.rstrip(" :"))
        return next((s for s in self.config.sections if fold(s) == wanted), None)

    # -- messages -------------------------------------------------------------

    async def render(self, issue: Issue, items: list[Item] | None = None) -> Message:
        """The issue as members read it (or will: a draft)."""
        if items is None:
            items = await self.store.items(issue.id)
        return content.render(self.renderer, issue, items, self.config.sections, prefix=self.prefix)

    def notice(self, what: str, **values: object) -> Message:
        """An answer or notice in the editors' room (`gazette_desk`, `what` says which)."""
        return self.renderer.render(
            "gazette_desk",
            what=what,
            sections=self.config.sections,
            prefix=self.prefix,
            **values,
        )

    async def corrected(self, issue: Issue, request: Request) -> Message:
        """The issue as a correction would make it read."""
        items = [
            replace(i, text=request.text) if i.n == request.n and request.text else i
            for i in await self.store.items(issue.id)
        ]
        return await self.render(issue, items)

    # -- approvals ------------------------------------------------------------

    async def approval(self, target: str, excluded: set[str]) -> Approval:
        """The approvals of `target` that count: none by the people `excluded`."""
        by = tuple(u for u in await self.store.approvals(target) if u not in excluded)
        names = tuple(sorted(u for u in excluded if u))  # not '', the bot
        return Approval(target, by, self.config.approvals, names)

    async def draft_approval(self, issue: Issue) -> Approval:
        return await self.approval(issue.target, await self.excluded(issue))

    async def request_approval(self, request: Request) -> Approval:
        return await self.approval(request.target, {request.requested_by})

    async def excluded(self, issue: Issue) -> set[str]:
        """Who may not approve the draft: its items' authors and everyone who changed it."""
        authors = {i.author for i in await self.store.items(issue.id)}
        return authors | await self.store.changers(issue.id) | {issue.changed_by}

    async def refusal(self, issue: Issue, user_id: str) -> str | None:
        """Why `user_id` may not approve the draft (WROTE, CHANGED), or None."""
        if user_id in {i.author for i in await self.store.items(issue.id)}:
            return WROTE
        if user_id in await self.excluded(issue):
            return CHANGED
        return None

    async def withdrawn(self, before: Issue) -> tuple[str, ...]:
        """Who had approved `before`, a version now changed (their approval is void)."""
        return tuple(await self.store.approvals(before.target))

    # -- publication ----------------------------------------------------------

    async def publish(self, issue: Issue, by: str, fire_at: int | None = None) -> int | None:
        """Publish the draft as read at `issue.revision`, if approved: rows queued.

        None when it is not approved or changed meanwhile. The text is frozen
        now: every room gets the same, also when sent after a restart.
        """
        approval = await self.draft_approval(issue)
        if not approval.done:
            return None
        message = await self.render(issue)
        queued = await self.store.publish(
            issue,
            body=message.body,
            html=message.html,
            broadcast=IssueKey(issue.number),
            feed_entries=content.entry_keys(issue.content),
            by=by,
            now=self._ts(),
            approved_by=approval.by,
            fire_at=fire_at,
        )
        if queued is not None:
            log.info("gazette: issue %d published, %d room(s) to post to", issue.number, queued)
        return queued

    async def apply(self, issue: Issue, request: Request, by: str) -> int | None:
        """Carry out an approved correction or retraction: rows queued (None: done
        already, or not approved any more)."""
        approval = await self.request_approval(request)
        if not approval.done:
            return None
        publication = str(IssueKey(issue.number))
        if request.kind == store.CORRECT:
            message = await self.corrected(issue, request)
            queued = await self.store.correct(
                issue,
                request,
                body=message.body,
                html=message.html,
                broadcast=IssueEditKey(issue.number, issue.revision + 1),
                publication=publication,
                by=by,
                now=self._ts(),
                approved_by=approval.by,
            )
        else:
            queued = await self.store.retract(
                issue,
                request,
                broadcast=IssueRedactKey(issue.number),
                publication=publication,
                by=by,
                now=self._ts(),
                approved_by=approval.by,
            )
        if queued is not None:
            log.info(
                "gazette: %s of issue %d approved, %d post(s) queued",
                request.kind,
                issue.number,
                queued,
            )
        return queued


def _start(fire_at: int | None, now: datetime) -> datetime:
    """Where an issue's agenda starts: its publication, or now without one planned."""
    if fire_at is None:
        return now
    return datetime.fromtimestamp(fire_at, now.tzinfo)
