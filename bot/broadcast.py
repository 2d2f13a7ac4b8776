"""Posts to subscribed rooms, exactly once, through the outbox.

A broadcast becomes one outbox row per room (with its transaction id) in the
same transaction that marks it queued; each row is sent with that id and
marked after. A crash anywhere resends pending rows with the same id, which
the homeserver deduplicates: no duplicate, no loss (past the homeserver's
memory of that id, `bot.delivery` looks for the post in the room first). Sends are paced
(`broadcasts.pace`), and each room has its own task, so a slow or failing
room never holds the others back.

Broadcasts: to rooms subscribed to `rappels`, programme-change notices and
a reminder before each session per `reminders.offsets`; to rooms subscribed
to `gazette`, each issue of the gazette, its corrections (edits) and
retraction (redactions), and new feed entries (queued by `bot.gazette` and
`bot.feeds`); to the editors' room, the gazette's drafts and misses; to a
person's direct room, their `!rappelle-moi` reminders (a new direct room is
opened when they left theirs); to the replacement of
an upgraded room, once, a notice that its posts follow it there (queued by
`bot.rooms`).
What is due is derived at each round from the agenda, the schedule and the
database (nothing lives only in memory), and the loop sleeps until the next
thing is due (`bot.reminders.ReminderRule`, `bot.gazette.schedule`), or until
woken by a programme change or a new feed entry.

What a row posts is its kind's (`bot.broadcasts`): the row's key is read once
into its registered kind, which renders it, says whom it calls, and is told
when a copy went out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from bot.agenda.sources import AgendaService
from bot.broadcasts.kind import Env, Kind, Kinds, Post
from bot.chat import ChatClient
from bot.db.outbox import OutboxItem
from bot.db.storage import Storage
from bot.db.subscriptions import REMINDERS
from bot.delivery import Attempts, Outgoing, Sender
from bot.delivery import Kind as SendKind
from bot.direct_rooms import ensure_direct_room
from bot.ops import Metrics
from bot.reminders import ChangeKey, PersonalKey, ReminderRule
from bot.render import Message, Renderer

if TYPE_CHECKING:
    from bot.gazette.schedule import GazetteSchedule

log = logging.getLogger(__name__)

# Woken at once by a programme change; otherwise checks this often.
IDLE_CHECK_S = 60.0
# A personal reminder is forgotten this long after its session started.
PERSONAL_KEPT_AFTER = timedelta(days=1)
# Sends in flight at once: a slow room does not hold the others, and a rate
# limit (429, which nio waits out and retries) does not pile requests up.
IN_FLIGHT = 4


class Broadcaster:
    def __init__(
        self,
        storage: Storage,
        chat: ChatClient,
        renderer: Renderer,
        agenda: AgendaService,
        *,
        prefix: str,
        now: Callable[[], datetime],
        pace: timedelta,
        offsets: list[timedelta],
        grace: timedelta,
        gazette: GazetteSchedule | None = None,
        gazette_feed: bool = False,
        personal: timedelta = timedelta(minutes=15),
        notify: Literal["none", "room"] = "none",
        retry_delay: float = 5.0,
        metrics: Metrics | None = None,
        kinds: Kinds | None = None,
    ) -> None:
        self._metrics = metrics or Metrics()
        self._notify = notify
        # Rooms where the bot may not call @room, as last seen (logged once each).
        self._may_not_call: set[str] = set()
        self.rule = ReminderRule(tuple(offsets), grace, personal)
        self._gazette = gazette
        self._storage = storage
        self._agenda = agenda
        self._chat = chat
        self._now = now
        self._env = Env(storage, renderer, agenda, prefix, now, gazette, gazette_feed)
        # The registered kinds unless given (read at the first row: their
        # modules are not imported with this one).
        self._kinds = kinds
        self._sender = Sender(
            chat,
            storage,
            retry_delay=retry_delay,
            metrics=self._metrics,
            pace=pace.total_seconds(),
            in_flight=IN_FLIGHT,
        )
        self._running = asyncio.Lock()
        self.wake = asyncio.Event()

    @property
    def kinds(self) -> Kinds:
        if self._kinds is None:
            from bot.broadcasts.registry import registered

            self._kinds = registered()
        return self._kinds

    async def run(self) -> None:
        """Deliver until cancelled: at start, when woken, when a reminder is due."""
        while True:
            try:
                await self.deliver()
            except Exception:
                log.exception("broadcasts: delivery round failed; retrying later")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.seconds_to_next_due())
            self.wake.clear()

    def seconds_to_next_due(self) -> float:
        """Until the next reminder or gazette step, at most IDLE_CHECK_S."""
        now = self._now()
        idle = now + timedelta(seconds=IDLE_CHECK_S)
        upcoming = [self.rule.next_time(self._agenda.agenda, now, before=idle)]
        if self._gazette is not None:
            upcoming.append(self._gazette.next_moment(now))
        soonest = min((t for t in upcoming if t is not None), default=idle)
        return min(IDLE_CHECK_S, max(0.05, (soonest - now).total_seconds()))

    async def _queue_gazette(self) -> None:
        """The gazette's drafts and publications that are due (`bot.gazette.schedule`)."""
        if self._gazette is not None:
            await self._gazette.tick()

    async def _queue_personal(self) -> None:
        """Direct messages for `!rappelle-moi`, at the session's current time."""
        now = self._now()
        for wanted in await self._storage.personal.reminders():
            session = self._agenda.agenda.get(wanted.sid)
            if session is None or session.cancelled or session.start <= now:
                # Forgotten once well past: the session's current start (it
                # may have been moved), or the start asked for if it is gone.
                began = session.start if session is not None else _utc(wanted.start)
                if now - began > PERSONAL_KEPT_AFTER:
                    await self._storage.personal.remove(wanted.user_id, wanted.sid)
                continue
            due = self.rule.personal_due(session)
            if due > now:
                continue
            late = self.rule.late(due, now)
            room_id = await self._storage.personal.direct_room(wanted.user_id)
            if room_id is None and not late:  # too late: no room to open for it
                # They left their direct room (forgotten then): a new one.
                room_id = await ensure_direct_room(self._chat, self._storage, wanted.user_id)
            if room_id is None:
                continue
            start = int(session.start.timestamp())
            broadcast = PersonalKey(session.sid, start, wanted.user_id)
            status = "skipped" if late else "pending"
            if await self._storage.outbox.queue(broadcast, room_id, status=status):
                log.info(
                    "broadcasts: personal reminder %s", "skipped (too late)" if late else "queued"
                )

    async def _queue_reminders(self) -> None:
        now = self._now()
        for due in self.rule.due(self._agenda.agenda, now):
            broadcast = due.key
            if not self.rule.late(due.at, now):
                if await self._storage.outbox.queue_for_subscribers(broadcast, REMINDERS):
                    log.info("broadcasts: reminder %s queued", broadcast)
            elif await self._storage.outbox.queue_for_subscribers(
                broadcast, REMINDERS, status="skipped"
            ):
                log.info(
                    "broadcasts: reminder %s skipped, due %s ago (grace %s)",
                    broadcast,
                    now - due.at,
                    self.rule.grace,
                )

    async def deliver(self) -> int:
        """Queue what is new, then send every pending row; returns rows sent."""
        async with self._running:
            await self._queue_reminders()
            await self._queue_gazette()
            await self._queue_personal()
            queued = await self._storage.outbox.fan_out_changes(REMINDERS, ChangeKey)
            if queued:
                log.info("broadcasts: %d post(s) queued", queued)
            by_room: dict[str, list[OutboxItem]] = defaultdict(list)
            for item in await self._storage.outbox.pending():
                by_room[item.room_id].append(item)
            results = await asyncio.gather(
                *(self._deliver_room(items) for items in by_room.values())
            )
            return sum(results)

    async def _deliver_room(self, items: list[OutboxItem]) -> int:
        sent = 0
        for item in items:
            if await self._deliver_one(item):
                sent += 1
        return sent

    async def _deliver_one(self, item: OutboxItem) -> bool:
        if not await self._storage.outbox.still_pending(item.id):
            return False  # abandoned since this round began (the bot left the room)
        try:
            kind, key = self.kinds.read(item.broadcast)
        except ValueError:
            log.error("broadcasts: unknown broadcast %s", item.broadcast)
            return await self._skip(item)
        post = await kind.render(self._env, key, item.room_id)
        if post is None:
            return await self._skip(item)
        if isinstance(post, Message):
            post = Post(post)
        if isinstance(post.reply, Message):
            post = replace(post, reply=await self._calling(kind, key, item.room_id, post.reply))
        out = Outgoing(
            SendKind.BROADCAST,
            item.room_id,
            post.reply,
            item.txn_id,
            label=f"broadcast {item.broadcast} to {item.room_id}",
            replaces=post.replaces,
        )
        attempts = Attempts(
            made=item.attempts,
            record=lambda device: self._storage.outbox.attempt(item.id, device),
            since=item.created_at,
            device_id=item.device_id,
        )
        delivered = await self._sender.deliver(out, attempts)
        if delivered.sent and delivered.event_id is not None and kind.sent is not None:
            await kind.sent(self._env, key, item.room_id, delivered.event_id)
        status = "sent" if delivered.sent else "abandoned" if delivered.abandoned else "failed"
        await self._storage.outbox.finish(item.id, status)
        return delivered.sent

    async def _skip(self, item: OutboxItem) -> bool:
        await self._storage.outbox.finish(item.id, "skipped")
        self._sender.skipped(SendKind.BROADCAST)
        return False

    async def _calling(self, kind: Kind[Any], key: Any, room_id: str, message: Message) -> Message:
        """Whom the post calls (it rings for them): its person, if its kind names one
        (a personal reminder); with `broadcasts.notify: room`, an announcement to a
        room calls the room (@room), where the bot's power level allows it."""
        if kind.person is not None:
            return replace(message, mentions=(kind.person(key),))
        if self._notify != "room" or not kind.announcement:
            return message
        if not await self._may_call_room(room_id):
            return message
        return replace(message, mentions_room=True)

    async def _may_call_room(self, room_id: str) -> bool:
        """Whether the bot's power level reaches the room's `notifications.room`."""
        needed = await self._chat.notification_level(room_id, "room")
        level = await self._chat.power_level(room_id, self._chat.user_id)
        if level >= needed:
            self._may_not_call.discard(room_id)
            return True
        if room_id not in self._may_not_call:
            self._may_not_call.add(room_id)
            log.info(
                "broadcasts: posts to %s stay quiet notices: @room needs power level %s there,"
                " the bot has %s",
                room_id,
                needed,
                level,
            )
        return False


def _utc(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)
