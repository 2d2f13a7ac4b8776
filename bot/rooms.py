"""Rooms as they live: what the bot does when it leaves a room, is left alone
in one, or a room is upgraded. The Matrix side (`bot.matrix.rooms`) turns
membership and tombstone events into the calls below.

- Kicked, banned, or gone: the room's subscriptions end (kept in the audit
  trail, `subscription_audit`), its pending posts are abandoned (counted,
  logged once), the direct rooms pointing at it are forgotten. Nothing is
  retried there.
- A person leaves their direct room: it is forgotten and the bot leaves it;
  their next personal reminder opens a new one (`bot.broadcast`).
- Alone (no one else joined or invited) for `bot.leave_empty_after`: the bot
  leaves. "Alone since" is stored, so a restart does not reset the clock.
- Upgraded (`m.room.tombstone`, state from the homeserver, from someone the
  invite rules allow whose power level in the old room lets them send it:
  `bot.matrix.rooms`): the bot joins the replacement room and, if that
  room's `m.room.create` names the old room as its predecessor, moves the
  subscriptions, pending posts (new transaction ids), direct rooms and post
  records there, says so once (an outbox row: a restart does not say it
  twice) and leaves the old room. When the new room cannot be joined yet
  (invite-only), the move waits for the bot's join, by invite or at the next
  start. A replacement room that names another predecessor (or none) gets
  nothing: the upgrade is refused (recorded: not tried again), the bot stays
  in the old room and leaves the new one, unless it was there already.

Its broadcast kind (registered in `bot.broadcasts.registry`):

    moved:<the upgraded room's id>   (said once in its replacement room)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import ClassVar

from bot.broadcasts.kind import Env, Key, Kind
from bot.chat import ChatClient, MembersChanged, RoomLeft, RoomUpgraded
from bot.db.rooms import UPGRADE_PENDING, Upgrade
from bot.db.storage import Storage
from bot.logsafe import printable
from bot.ops import Metrics
from bot.render import Message

log = logging.getLogger(__name__)


class RoomLifecycle:
    def __init__(
        self,
        storage: Storage,
        chat: ChatClient,
        *,
        now: Callable[[], datetime],
        leave_empty_after: timedelta,
        keep: Iterable[str] = (),
        metrics: Metrics | None = None,
        wake: Callable[[], None] | None = None,
    ) -> None:
        self._storage = storage
        self._chat = chat
        self._now = now
        self._leave_empty_after = leave_empty_after
        # Rooms never left for being empty (the operators' error room).
        self._keep = frozenset(keep)
        self._metrics = metrics or Metrics()
        # Called when posts were queued (the "moved here" notice): the broadcaster.
        self._wake = wake
        # `alone_rooms`, read once: membership batches arrive for every room at
        # start, and only a change is written.
        self._alone: dict[str, int] | None = None

    # -- the bot left -----------------------------------------------------------------

    async def on_left(self, left: RoomLeft) -> None:
        if left.how == "left":
            detail = "left" if left.by == self._chat.user_id else f"left ({left.by})"
        else:
            detail = f"{left.how} by {left.by}"
        if left.reason:  # kept as typed in the audit trail; escaped in the log
            detail += f": {left.reason[:200]}"
        # The bot's own leaves (an invite declined, a room left on purpose)
        # are logged where decided: here only if they ended something.
        await self._end(left.room_id, left.by, detail, quiet=left.how == "left")

    async def forget_rooms_left(self) -> list[str]:
        """End what is kept for rooms the homeserver says the bot is not in; them.

        Catches leaves no sync showed: a kick before this version of the bot,
        a room left while its events were cut from a sync.
        """
        # Read before asking the server: a room joined meanwhile is in its answer.
        kept = await self._storage.rooms.rooms_in_use()
        joined = await self._chat.joined_rooms()
        if joined is None:
            return []
        gone = sorted(kept - joined)
        for room_id in gone:
            await self._end(room_id, self._chat.user_id, "not in the room any more")
        return gone

    async def _end(self, room_id: str, actor: str, detail: str, *, quiet: bool = False) -> None:
        ended = await self._storage.rooms.end(room_id, actor, detail)
        if self._alone is not None:
            self._alone.pop(room_id, None)
        if ended.abandoned:
            self._metrics.broadcasts.labels("abandoned").inc(ended.abandoned)
        if ended.kinds or ended.abandoned or ended.direct_users:
            log.info(
                "%s: %s; subscriptions ended: %s; %d post(s) abandoned; %d direct room(s) "
                "forgotten",
                room_id,
                printable(detail),
                ", ".join(ended.kinds) or "none",
                ended.abandoned,
                len(ended.direct_users),
            )
        elif not quiet:
            log.info("%s: %s", room_id, printable(detail))

    # -- members ----------------------------------------------------------------------

    async def on_members(self, change: MembersChanged) -> None:
        room_id = change.room_id
        if change.bot_joined:
            await self._resume_upgrades_into(room_id)
        if change.others is None:
            return  # not known: neither alone nor in company
        if change.others > 0:
            await self._not_alone(room_id)
            return
        # A direct room has one person: if they left, the bot is alone there.
        for user_id in change.departed:
            if await self._forget_direct(user_id, room_id):
                return
        await self._mark_alone(room_id)

    async def _forget_direct(self, user_id: str, room_id: str) -> bool:
        abandoned = await self._storage.rooms.forget_direct(user_id, room_id)
        if abandoned is None:
            return False
        if abandoned:
            self._metrics.broadcasts.labels("abandoned").inc(abandoned)
        log.info(
            "%s: a person left their direct room; forgotten (%d post(s) abandoned), "
            "their next reminder opens a new one",
            room_id,
            abandoned,
        )
        await self._not_alone(room_id)
        await self._chat.leave_room(room_id)
        return True

    async def _alone_rooms(self) -> dict[str, int]:
        if self._alone is None:
            self._alone = await self._storage.rooms.alone_since()
        return self._alone

    async def _mark_alone(self, room_id: str) -> None:
        alone = await self._alone_rooms()
        if room_id not in alone:
            alone[room_id] = since = int(self._now().timestamp())
            await self._storage.rooms.mark_alone(room_id, since)

    async def _not_alone(self, room_id: str) -> None:
        alone = await self._alone_rooms()
        if alone.pop(room_id, None) is not None:
            await self._storage.rooms.not_alone(room_id)

    async def leave_empty_rooms(self) -> list[str]:
        """Leave the rooms where the bot has been alone for `leave_empty_after`; them.

        Also brings "alone since" in line with the rooms the bot is in (a
        room joined or emptied without a membership event seen).
        """
        counts = self._chat.others_in_rooms()
        if not counts:
            return []  # not synced yet: nothing known, nothing to conclude
        alone = await self._alone_rooms()
        for room_id, others in counts.items():
            if others == 0:
                await self._mark_alone(room_id)
            elif others is not None:  # unknown: the clock neither starts nor stops
                await self._not_alone(room_id)
        for room_id in [r for r in alone if r not in counts]:
            await self._not_alone(room_id)  # not in it any more
        now = self._now()
        due = now.timestamp() - self._leave_empty_after.total_seconds()
        left = []
        for room_id, since in sorted(alone.items(), key=lambda item: item[1]):
            if since > due or room_id in self._keep:
                continue
            began = datetime.fromtimestamp(since, UTC)
            await self._end(
                room_id, self._chat.user_id, f"left: alone since {began:%Y-%m-%d %H:%M} UTC"
            )
            await self._chat.leave_room(room_id)
            left.append(room_id)
        return left

    # -- upgrades ---------------------------------------------------------------------

    async def on_upgrade(self, upgraded: RoomUpgraded) -> None:
        upgrade = await self._storage.rooms.upgrade_seen(
            upgraded.old_room, upgraded.new_room, upgraded.sender
        )
        if upgrade.status != UPGRADE_PENDING:
            return  # moved or refused: seen again at a restart
        await self._follow(upgrade, was_in=upgrade.new_room in self._chat.others_in_rooms())

    async def _resume_upgrades_into(self, room_id: str) -> None:
        for upgrade in await self._storage.rooms.pending_upgrades():
            if upgrade.new_room == room_id:
                await self._follow(upgrade)

    async def _follow(self, upgrade: Upgrade, *, was_in: bool = False) -> None:
        """Join the new room and move there, if it is the old room's successor.

        `was_in`: the bot was in the new room before the tombstone (then it
        stays there whatever the tombstone's worth).
        """
        old, new = upgrade.old_room, upgrade.new_room
        # The replacement room is new to its own server: the tombstone's
        # sender's server is in it (a room ID has no server part since v12).
        via = [upgrade.sender.split(":", 1)[1]] if ":" in upgrade.sender else []
        if not await self._chat.join_room(new, via=via):
            log.info(
                "%s was upgraded to %s, which the bot cannot join yet: what belongs to the "
                "old room moves there once the bot is invited",
                old,
                printable(new),
            )
            return
        if not await self._successor(upgrade, was_in=was_in):
            return
        moved = await self._storage.rooms.move(upgrade, _txn_id, MovedKey(old))
        if moved is None:
            return
        if moved.abandoned:
            self._metrics.broadcasts.labels("abandoned").inc(moved.abandoned)
        log.info(
            "%s upgraded to %s by %s: subscriptions moved: %s; %d post(s) re-queued, %d "
            "abandoned; %d direct room(s) moved",
            old,
            printable(new),
            upgrade.sender,
            ", ".join(moved.kinds) or "none",
            moved.posts,
            moved.abandoned,
            moved.direct_rooms,
        )
        if (moved.notice or moved.posts) and self._wake is not None:
            self._wake()
        await self._chat.leave_room(old)

    async def _successor(self, upgrade: Upgrade, *, was_in: bool) -> bool:
        """Whether the new room names the old one as its predecessor (the spec's
        link back, read from the homeserver once the bot is in the new room).

        When it does not, the upgrade is refused and the bot leaves the new
        room (unless it was there already, or keeps something there).
        """
        old, new = upgrade.old_room, upgrade.new_room
        named = await self._chat.predecessor(new)
        if named is None:
            log.warning(
                "%s was upgraded to %s: the new room's m.room.create cannot be read; nothing "
                "moved yet, tried again at the next join or start",
                old,
                printable(new),
            )
            return False
        if named == old:
            return True
        await self._storage.rooms.refuse_upgrade(old)
        stay = was_in or new in await self._storage.rooms.rooms_in_use()
        log.warning(
            "%s was upgraded to %s by %s: not followed, the new room names %s as its "
            "predecessor; nothing moved, %s",
            old,
            printable(new),
            upgrade.sender,
            printable(named) if named else "no room",
            "the bot stays in both" if stay else "the bot leaves the new room",
        )
        if not stay:
            await self._chat.leave_room(new)
        return False


def _txn_id(broadcast: str, room_id: str) -> str | None:
    """The transaction id of a stored broadcast's post to `room_id`; None if unreadable."""
    from bot.broadcasts.registry import parse  # every kind: this one among them

    try:
        return parse(broadcast).txn_id(room_id)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class MovedKey(Key):
    """The notice, in a replacement room, that the upgraded room's posts follow it there."""

    prefix: ClassVar[str] = "moved"
    old_room: str  # a room ID holds ':' itself: the rest, whole


async def _moved(env: Env, key: MovedKey, room_id: str) -> Message | None:
    kinds = await env.storage.subscriptions.kinds(room_id)
    if not kinds:
        return None  # unsubscribed since: nothing followed the room
    return env.renderer.render("room_moved", kinds=kinds, prefix=env.prefix, feed=env.feed)


MOVED = Kind(MovedKey, _moved)
