"""When the gazette's drafts are built and its issues go out (`gazette.schedule`).

At each round of the broadcaster (`tick`): a publication time that has come
is decided once (`gazette_fires`): the approved draft is published, else the
editors' room is told what is missing and nothing is sent. Within
`gazette.draft_ahead` of the next publication the draft is built if there is
none, and the editors' room is told once. Everything it decides is in the
database: a restart neither repeats nor forgets it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from bot.gazette.cron import Cron
from bot.gazette.desk import Desk
from bot.gazette.posts import DeskKey, Posts

log = logging.getLogger(__name__)

# A publication time this long past when the bot first sees it is still decided.
LOOKBACK = timedelta(days=1)
# Who builds and publishes on schedule, in the audit log.
BOT = ""


class GazetteSchedule:
    """The gazette's publication times, and what is done at each: the one answer to
    "when is the next issue" (`next_publication`), which the broadcaster,
    `!gazette` and `!abonnements` ask."""

    def __init__(self, desk: Desk, editors_room: str) -> None:
        self.desk = desk
        self.editors_room = editors_room
        self.posts = Posts(desk)
        schedule = desk.config.schedule
        self._cron = Cron(schedule, desk.renderer.tz) if schedule else None
        # The last publication time decided, as last read (None: not read yet).
        self._decided: int | None = None

    def next_fire(self, after: datetime) -> datetime | None:
        """The first publication time at or after `after`."""
        return None if self._cron is None else self._cron.next(after)

    def _undecided(self, now: datetime, last: int | None) -> datetime | None:
        """The first publication time from `now` on not decided yet (`last`: the
        latest decided). One published ahead of its time (`!gazette publier`) is
        decided: its draft's successor is for the next."""
        after = now
        if last is not None:
            after = max(after, datetime.fromtimestamp(last + 1, now.tzinfo))
        return self.next_fire(after)

    async def next_publication(self, now: datetime | None = None) -> datetime | None:
        """When the next issue goes out (None: nothing scheduled)."""
        if self._cron is None:
            return None
        self._decided = await self.desk.store.last_fire()
        return self._undecided(now or self.desk.now(), self._decided)

    def next_moment(self, now: datetime) -> datetime | None:
        """When `tick` may next have something to do (None: nothing scheduled)."""
        fire = self._undecided(now, self._decided)
        if fire is None:
            return None
        build = fire - self.desk.config.draft_ahead
        return build if build > now else fire

    async def tick(self) -> bool:
        """Decide what is due; True when posts were queued."""
        if self._cron is None:
            return False
        now = self.desk.now()
        store = self.desk.store
        last = await store.last_fire()
        after = now - LOOKBACK
        if last is not None:
            after = max(after, datetime.fromtimestamp(last + 1, now.tzinfo))
        queued = False
        for _ in range(4):  # a long stop may have passed several; older ones are dropped
            fire = self.next_fire(after)
            if fire is None or fire > now:
                break
            queued |= await self._fire(fire)
            after = fire + timedelta(seconds=1)
        # Every time up to now is decided: the next is one to prepare.
        upcoming = await self.next_publication(now)
        if upcoming is not None and now >= upcoming - self.desk.config.draft_ahead:
            queued |= await self._prepare(upcoming)
        return queued

    async def _fire(self, fire: datetime) -> bool:
        desk, store = self.desk, self.desk.store
        at = int(fire.timestamp())
        draft = await store.draft()
        # `publish` checks the approval of the draft as it reads now.
        if draft is not None and await desk.publish(draft, BOT, fire_at=at) is not None:
            return True
        number = draft.number if draft else await store.next_number(desk.config.number)
        if not await store.decide_fire(at, "missed", number):
            return False
        log.warning("gazette: issue %d not published at %s: not approved", number, fire)
        await desk.storage.outbox.queue(DeskKey("missed", str(at)), self.editors_room)
        return True

    async def _prepare(self, fire: datetime) -> bool:
        """The draft for the publication at `fire`, and the editors told once."""
        desk, store = self.desk, self.desk.store
        at = int(fire.timestamp())
        draft = await store.draft()
        if draft is None:
            draft, _ = await desk.build(BOT, fire_at=fire)
        elif draft.fire_at != at:
            await store.plan(draft, at)
        return bool(
            await desk.storage.outbox.queue(DeskKey("draft", str(draft.id)), self.editors_room)
        )
