"""Room lifecycle on the Matrix side: leaves, membership and tombstones from the
sync handed to the core (`Handlers.on_left/on_members/on_upgrade`, see
`bot.rooms` for what is done), and joining, leaving and counting members.

All of it read from the homeserver's room state only (`state.is_room_state`:
never an encrypted event's plaintext). A tombstone is handed over only when
its sender's server passes the invite rules and their power level in the old
room lets them send `m.room.tombstone` there; the core then checks, once in
the new room, that its `m.room.create` names the old room as predecessor.

nio keeps a room it left (kicked, banned) in `client.rooms`: the rooms left
are remembered here so that they are not counted as rooms the bot is in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Literal
from urllib.parse import urlencode

from nio import JoinedRoomsResponse, JoinResponse, RoomLeaveResponse
from nio.api import Api

from bot import permissions
from bot.chat import MembersChanged, RoomLeft, RoomUpgraded
from bot.logsafe import printable
from bot.matrix.authority import RoomAuthority
from bot.matrix.events import Handlers
from bot.matrix.login import Session
from bot.matrix.responses import describe
from bot.matrix.state import is_room_state

log = logging.getLogger(__name__)

# How long a send to a room just joined waits for a sync to show it (nio
# sends only to rooms its sync has shown).
JOINED_ROOM_WAIT_S = 30.0

_GONE = ("leave", "ban")
TOMBSTONE = "m.room.tombstone"


class RoomLifecycleEvents:
    def __init__(
        self,
        session: Session,
        handlers: Handlers,
        *,
        authority: RoomAuthority,
        allowed_servers: Callable[[], Iterable[str]],
        room_shown: Callable[[str], Awaitable[None]],
    ) -> None:
        self._session = session
        self._handlers = handlers
        # A tombstone is followed only when its sender may send one (power
        # levels) and could have invited the bot (`Invites.allowed`).
        self._authority = authority
        self._allowed_servers = allowed_servers
        self._room_shown = room_shown
        self._left: set[str] = set()
        self._seen: set[str] = set()
        # Joined by `join()`, not shown by a sync yet.
        self._joining: set[str] = set()

    # -- from the sync ----------------------------------------------------------------

    async def on_left_room(self, room_id: str, info: Any) -> None:
        """A room in the sync's `rooms.leave`: the bot is not in it any more."""
        self._left.add(room_id)
        self._seen.discard(room_id)
        user_id = self._session.user_id
        how: Literal["kicked", "banned", "left"] = "left"
        by, reason = user_id, ""
        for event in _events(info):
            if not is_room_state(event):
                continue
            source = event.source
            content = source.get("content") or {}
            if (
                source.get("type") == "m.room.member"
                and source.get("state_key") == user_id
                and content.get("membership") in _GONE
            ):
                by = str(source.get("sender") or user_id)
                reason = str(content.get("reason") or "")
                if content.get("membership") == "ban":
                    how = "banned"
                else:
                    how = "left" if by == user_id else "kicked"
        if self._handlers.on_left is not None:
            await self._handlers.on_left(RoomLeft(room_id, how, by, reason))

    async def on_joined_room(self, room_id: str, info: Any) -> None:
        """A room in the sync's `rooms.join`: membership changes and tombstones."""
        self._left.discard(room_id)
        self._joining.discard(room_id)
        user_id = self._session.user_id
        departed: list[str] = []
        bot_joined = members_seen = False
        upgrades: list[tuple[str, str]] = []
        marked = [(e, False) for e in info.state] + [(e, True) for e in info.timeline.events]
        for event, in_timeline in marked:
            if not is_room_state(event):
                continue
            source = event.source
            content = source.get("content") or {}
            kind = source.get("type")
            if kind == "m.room.member":
                members_seen = True
                member = source.get("state_key")
                membership = content.get("membership")
                if member == user_id:
                    prev = getattr(event, "prev_membership", None)
                    bot_joined |= membership == "join" and prev != "join" and in_timeline
                elif membership in _GONE and isinstance(member, str):
                    departed.append(member)
            elif kind == TOMBSTONE and source.get("state_key") == "":
                new_room = content.get("replacement_room")
                if isinstance(new_room, str) and new_room and new_room != room_id:
                    upgrades.append((new_room, str(source.get("sender", ""))))
        if (members_seen or room_id not in self._seen) and self._handlers.on_members is not None:
            change = MembersChanged(
                room_id, self._others(room_id), tuple(dict.fromkeys(departed)), bot_joined
            )
            await self._handlers.on_members(change)
        self._seen.add(room_id)
        for new_room, sender in upgrades[-1:]:  # the last tombstone is the one in force
            if not permissions.invite_allowed(sender, self._allowed_servers()):
                log.info(
                    "%s was upgraded to %s by %s: not followed (server not allowed)",
                    room_id,
                    printable(new_room),
                    sender,
                )
            elif not await self._authority.may_send_state(room_id, sender, TOMBSTONE):
                log.warning(
                    "%s was upgraded to %s by %s: not followed (their power level there is "
                    "below what %s needs)",
                    room_id,
                    printable(new_room),
                    sender,
                    TOMBSTONE,
                )
            elif self._handlers.on_upgrade is not None:
                await self._handlers.on_upgrade(RoomUpgraded(room_id, new_room, sender))

    # -- for the core -----------------------------------------------------------------

    def others_in_rooms(self) -> dict[str, int | None]:
        rooms = self._session.client.rooms
        return {room_id: self._others(room_id) for room_id in rooms if room_id not in self._left}

    async def joined_rooms(self) -> set[str] | None:
        resp = await self._session.client.joined_rooms()
        if not isinstance(resp, JoinedRoomsResponse):
            log.info("cannot list the rooms the bot is in: %s", describe(resp))
            return None
        return {str(room_id) for room_id in resp.rooms}

    def _others(self, room_id: str) -> int | None:
        """Others joined or invited; None when not known.

        Members are lazy-loaded: nio knows only those the sync showed. The
        room summary has the counts, but Synapse sends it only at a first
        sync or when membership changed, not at a restart's sync: a quiet
        room then looks empty. Unknown is not empty (the bot would leave
        every quiet room a day after each restart).
        """
        room = self._session.client.rooms.get(room_id)
        if room is None:
            return None
        summary = room.summary
        if summary is not None and None not in (
            summary.joined_member_count,
            summary.invited_member_count,
        ):
            counted = int(summary.joined_member_count) + int(summary.invited_member_count)
        elif room.members_synced:  # nio asked the server for the whole list
            counted = len(room.users)
        else:
            return None
        return max(0, counted - 1)  # the counts include the bot

    async def join(self, room_id: str, via: Sequence[str] = ()) -> bool:
        client = self._session.client
        # nio's `join()` takes no `server_name`: the same request, with them.
        method, path = Api.join(client.access_token, room_id)
        if via:
            path += "&" + urlencode([("server_name", server) for server in via])
        resp = await client._send(JoinResponse, method, path)
        if not isinstance(resp, JoinResponse):
            log.info("could not join %s: %s", room_id, describe(resp))
            return False
        if room_id not in client.rooms:
            self._joining.add(room_id)
        self._left.discard(room_id)
        log.info("joined %s", room_id)
        return True

    async def leave(self, room_id: str) -> None:
        self._left.add(room_id)
        resp = await self._session.client.room_leave(room_id)
        if not isinstance(resp, RoomLeaveResponse):
            log.warning("could not leave %s: %s", room_id, describe(resp))

    async def until_shown(self, room_id: str) -> None:
        """Before posting to a room just joined: until a sync shows it (bounded)."""
        if room_id not in self._joining:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(JOINED_ROOM_WAIT_S):
                await self._room_shown(room_id)


def _events(info: Any) -> list[Any]:
    return [*getattr(info, "state", []), *info.timeline.events]
