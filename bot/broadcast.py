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
thing is due, or until woken by a programme change or a new feed entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Literal

from bot.agenda.model import Session
from bot.agenda.sources import AgendaService
from bot.broadcast_key import (
    BroadcastKey,
    ChangeKey,
    DeskKey,
    FeedKey,
    GazetteKey,
    IssueEditKey,
    IssueKey,
    IssueRedactKey,
    MovedKey,
    PersonalKey,
    ReminderKey,
    parse,
)
from bot.chat import ChatClient
from bot.commands.personal import presenting
from bot.db.outbox import OutboxItem
from bot.db.storage import Storage
from bot.db.subscriptions import REMINDERS
from bot.delivery import Attempts, Kind, Outgoing, Sender
from bot.direct_rooms import ensure_direct_room
from bot.gazette.desk import Post
from bot.gazette.schedule import GazetteSchedule
from bot.ops import Metrics
from bot.render import Message, Renderer
from bot.views import after_sid, render_change, views

log = logging.getLogger(__name__)

# Woken at once by a programme change; otherwise checks this often.
IDLE_CHECK_S = 60.0
# A personal reminder is forgotten this long after its session started.
PERSONAL_KEPT_AFTER = timedelta(days=1)
# What `broadcasts.notify: room` makes ring: what rooms subscribed to (the
# reminders, programme changes, gazette and feed), not the editors' desk nor
# the notice that a room's posts followed it to its replacement.
ANNOUNCEMENTS = (ReminderKey, ChangeKey, GazetteKey, FeedKey, IssueKey, IssueEditKey)
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
    ) -> None:
        self._metrics = metrics or Metrics()
        self._notify = notify
        # Rooms where the bot may not call @room, as last seen (logged once each).
        self._may_not_call: set[str] = set()
        self._personal = personal
        self._has_feed = gazette_feed
        self._gazette = gazette
        self._storage = storage
        self._agenda = agenda
        self._offsets = offsets
        self._grace = grace
        self._renderer = renderer
        self._prefix = prefix
        self._chat = chat
        self._now = now
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

    def _due(self, now: datetime) -> list[tuple[Session, timedelta, datetime]]:
        """(session, offset, due time) of reminders due at or before now, sessions not started."""
        longest = max(self._offsets, default=timedelta(0))
        out = []
        for session in self._agenda.agenda.between(now, now + longest):
            if session.start <= now:
                continue  # already started: no reminder any more
            for offset in self._offsets:
                due = session.start - offset
                if due <= now:
                    out.append((session, offset, due))
        return out

    def seconds_to_next_due(self) -> float:
        now = self._now()
        offsets = (*self._offsets, self._personal)
        horizon = max(offsets) + timedelta(seconds=IDLE_CHECK_S)
        upcoming = [
            s.start - off
            for s in self._agenda.agenda.between(now, now + horizon)
            for off in offsets
            if s.start - off > now
        ]
        if self._gazette is not None:
            moment = self._gazette.next_moment(now)
            if moment is not None:
                upcoming.append(moment)
        if not upcoming:
            return IDLE_CHECK_S
        return min(IDLE_CHECK_S, max(0.05, (min(upcoming) - now).total_seconds()))

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
            due = session.start - self._personal
            if due > now:
                continue
            late = now - due > self._grace
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
        for session, offset, due in self._due(now):
            seconds, start = int(offset.total_seconds()), int(session.start.timestamp())
            broadcast = ReminderKey(session.sid, seconds, start)
            if now - due <= self._grace:
                if await self._storage.outbox.queue_for_subscribers(broadcast, REMINDERS):
                    log.info("broadcasts: reminder %s queued", broadcast)
            elif await self._storage.outbox.queue_for_subscribers(
                broadcast, REMINDERS, status="skipped"
            ):
                log.info(
                    "broadcasts: reminder %s skipped, due %s ago (grace %s)",
                    broadcast,
                    now - due,
                    self._grace,
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
            key = parse(item.broadcast)
        except ValueError:
            log.error("broadcasts: unknown broadcast %s", item.broadcast)
            return await self._skip(item)
        post = await self._render(key, item)
        if post is None:
            return await self._skip(item)
        if isinstance(post, Message):
            post = Post(post)
        if isinstance(post.reply, Message):
            post = replace(post, reply=await self._calling(key, item.room_id, post.reply))
        out = Outgoing(
            Kind.BROADCAST,
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
        if delivered.sent and self._gazette is not None and isinstance(key, IssueKey):
            await self._gazette.posts.sent(key, item.room_id, delivered.event_id)
        status = "sent" if delivered.sent else "abandoned" if delivered.abandoned else "failed"
        await self._storage.outbox.finish(item.id, status)
        return delivered.sent

    async def _skip(self, item: OutboxItem) -> bool:
        await self._storage.outbox.finish(item.id, "skipped")
        self._sender.skipped(Kind.BROADCAST)
        return False

    async def _calling(self, key: BroadcastKey, room_id: str, message: Message) -> Message:
        """Whom the post calls (it rings for them): a personal reminder, its
        person; with `broadcasts.notify: room`, an announcement to a room,
        the room (@room), where the bot's power level allows it.

        A gazette issue's correction calls the room as the issue did: an edit
        keeps the kind of the message it edits (and never rings again).
        """
        if isinstance(key, PersonalKey):
            return replace(message, mentions=(key.user_id,))
        if self._notify != "room" or not isinstance(key, ANNOUNCEMENTS):
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

    async def _render(self, key: BroadcastKey, item: OutboxItem) -> Message | Post | None:
        """The post, or None when it no longer makes sense (the session started)."""
        if isinstance(key, ReminderKey):
            return self._render_reminder(key.sid, key.start)
        if isinstance(key, PersonalKey):
            return self._render_reminder(key.sid, key.start, personal=True)
        if isinstance(key, IssueKey | IssueEditKey | IssueRedactKey | DeskKey):
            if self._gazette is None:
                log.info("broadcasts: %s not sent, the gazette is off", item.broadcast)
                return None
            return await self._gazette.posts.post(key, item.room_id)
        if isinstance(key, GazetteKey):  # queued before the editorial gazette
            return self._renderer.render("gazette_notice", prefix=self._prefix)
        if isinstance(key, FeedKey):
            found = await self._storage.feeds.entry(str(key))
            if found is None:
                return None
            title, link = found
            return self._renderer.render("feed_entry", title=title, link=link, prefix=self._prefix)
        if isinstance(key, MovedKey):
            kinds = await self._storage.subscriptions.kinds(item.room_id)
            if not kinds:
                return None  # unsubscribed since: nothing followed the room
            return self._renderer.render(
                "room_moved", kinds=kinds, prefix=self._prefix, feed=self._has_feed
            )
        record = await self._storage.agenda.change(key.change)
        if record is None:
            return None
        now = self._now()
        starts = [
            datetime.fromisoformat(str(state["start"]))
            for state in (record.payload.get("before"), record.payload.get("after"))
            if isinstance(state, dict)
        ]
        if starts and max(starts) <= now:
            log.info("broadcasts: %s not sent, the session has started", item.broadcast)
            return None
        # The session as it is now: same id after a moderator's edit, a new
        # one when its calendar moved it (its id follows its time and title).
        current = next(
            (
                s
                for sid in (record.sid, after_sid(record))
                if sid and (s := self._agenda.agenda.get(sid)) is not None and not s.cancelled
            ),
            None,
        )
        message = render_change(
            record,
            now=now,
            renderer=self._renderer,
            prefix=self._prefix,
            sid=current.sid if current else None,
        )
        if current is None or current.start <= now or record.kind == "cancelled":
            return message
        return presenting(message, (current.sid,))

    def _render_reminder(self, sid: str, start: int, *, personal: bool = False) -> Message | None:
        session = self._agenda.agenda.get(sid)
        now = self._now()
        if session is None or session.cancelled or session.start <= now:
            return None  # gone, cancelled or started since it was queued
        if int(session.start.timestamp()) != start:
            return None  # moved: the reminder for its new time is another broadcast
        (view,) = views([session], now, self._renderer)
        message = self._renderer.render(
            "reminder",
            v=view,
            until=self._renderer.until(session.start, now),
            today=self._renderer.local(now).date(),
            prefix=self._prefix,
            personal=personal,
        )
        return message if personal else presenting(message, (session.sid,))


def _utc(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)
