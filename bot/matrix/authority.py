"""Who may do what in a room: power levels and, in v12 rooms, the creators.

Two state events decide it, `m.room.create` (its sender and
`additional_creators`) and `m.room.power_levels`. The sync carries both (its
filter asks for them, and the first sync of each start has the full state),
and each sync's copy replaces the cached one: a promotion counts from the next
command on. A room the sync has not shown them for is asked for those two
events only (never the whole room state). The rules themselves are in
`bot.permissions`.

Memberships are kept for the rooms whose members were asked about (the
moderators' rooms): the first question reads the member's state event, the
sync's membership events then keep the answer current; a gap in a room's
timeline (a "limited" sync, whose lazy-loaded state may leave a departure
out) forgets them.

Only the homeserver's state counts (`state.is_room_state`): an encrypted
event whose plaintext says `m.room.power_levels`, `m.room.create` or
`m.room.member` is anyone's say-so, not the room's state.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import Any

from nio import Api, RoomGetStateEventError, RoomGetStateEventResponse

from bot import permissions
from bot.matrix.login import Session
from bot.matrix.responses import describe
from bot.matrix.state import is_room_state

log = logging.getLogger(__name__)

CREATE = "m.room.create"
POWER_LEVELS = "m.room.power_levels"
MEMBER = "m.room.member"


class _NoPowerLevels:
    """The room has no `m.room.power_levels` (the creator has 100, the rest 0)."""


NO_POWER_LEVELS = _NoPowerLevels()


class _NotFound:
    """The room has no such state event."""


NOT_FOUND = _NotFound()


class RoomAuthority:
    def __init__(self, session: Session) -> None:
        self._session = session
        # Room id → (sender, content) of `m.room.create`.
        self._create: dict[str, tuple[str, dict[str, Any]]] = {}
        # Room id → content of `m.room.power_levels`, or NO_POWER_LEVELS.
        self._power_levels: dict[str, dict[str, Any] | _NoPowerLevels] = {}
        # Room id → user id → membership, for the rooms asked about.
        self._members: dict[str, dict[str, str]] = {}
        # Requests made for want of a synced copy (a measure for tests and logs).
        self.fetched = 0

    def update(self, room_id: str, events: Iterable[Any]) -> None:
        """A room's state and timeline events of a sync, in that order: the last copy wins."""
        members = self._members.get(room_id)
        for event in events:
            if not is_room_state(event):
                continue  # what arrived encrypted is never room state
            source = event.source
            content = source.get("content")
            if not isinstance(content, dict):
                continue
            kind = source.get("type")
            state_key = source.get("state_key")
            if kind == MEMBER and members is not None and isinstance(state_key, str):
                members[state_key] = str(content.get("membership", "leave"))
            if state_key != "":
                continue
            if kind == CREATE:
                self._create[room_id] = (str(source.get("sender", "")), dict(content))
            elif kind == POWER_LEVELS:
                self._power_levels[room_id] = dict(content)

    def gap(self, room_id: str) -> None:
        """Events of the room were left out of a sync: what was cached may be stale."""
        self._members.pop(room_id, None)

    async def membership(self, room_id: str, user_id: str) -> str | None:
        """ "join", "leave", "invite", "ban"…; None when it cannot be read."""
        members = self._members.setdefault(room_id, {})
        known = members.get(user_id)
        if known is not None:
            return known
        event = await self._fetch(room_id, MEMBER, user_id)
        if event is None:
            return None
        membership = "leave" if isinstance(event, _NotFound) else str(event[1].get("membership"))
        # Not cached if a sync recorded another answer meanwhile (newer).
        return self._members.setdefault(room_id, {}).setdefault(user_id, membership)

    async def power_level(self, room_id: str, user_id: str) -> float:
        create = await self.create(room_id)
        if create is None:
            return 0  # unknown: grant nothing
        power_levels = await self._power_levels_of(room_id)
        if power_levels is None:
            return 0
        sender, content = create
        return permissions.power_level(
            user_id,
            sender,
            content,
            None if isinstance(power_levels, _NoPowerLevels) else power_levels,
        )

    async def may_send_state(self, room_id: str, user_id: str, event_type: str) -> bool:
        """Whether the user's power level lets them send this state event in the room."""
        power_levels = await self._power_levels_of(room_id)
        if power_levels is None:
            return False  # unknown: grant nothing
        needed = permissions.state_event_level(
            event_type, None if isinstance(power_levels, _NoPowerLevels) else power_levels
        )
        return await self.power_level(room_id, user_id) >= needed

    async def notification_level(self, room_id: str, key: str) -> float:
        """The power level needed to call `key` (`room`: @room) in the room."""
        power_levels = await self._power_levels_of(room_id)
        if power_levels is None:
            return math.inf  # unknown: grant nothing
        return permissions.notification_level(
            key, None if isinstance(power_levels, _NoPowerLevels) else power_levels
        )

    async def create(self, room_id: str) -> tuple[str, dict[str, Any]] | None:
        """(sender, content) of the room's `m.room.create`; None when it cannot be read."""
        create = self._create.get(room_id)
        if create is None:
            event = await self._fetch(room_id, CREATE)
            if event is None or isinstance(event, _NotFound):
                return None
            create = self._create[room_id] = event
        return create

    async def _power_levels_of(self, room_id: str) -> dict[str, Any] | _NoPowerLevels | None:
        """The content of `m.room.power_levels`, NO_POWER_LEVELS; None when unreadable."""
        if room_id in self._power_levels:
            return self._power_levels[room_id]
        event = await self._fetch(room_id, POWER_LEVELS)
        if event is None:
            return None
        power_levels = NO_POWER_LEVELS if isinstance(event, _NotFound) else event[1]
        self._power_levels[room_id] = power_levels
        return power_levels

    async def _fetch(
        self, room_id: str, event_type: str, state_key: str = ""
    ) -> tuple[str, dict[str, Any]] | _NotFound | None:
        """(sender, content) of one state event; NOT_FOUND; None when it cannot be read."""
        # The whole event (`format=event`, Synapse's and the spec's since v1.16):
        # v12 creators are known by the sender of `m.room.create`, not its content.
        # nio's `room_get_state_event` takes no query parameter.
        client = self._session.client
        method, path = Api.room_get_state_event(client.access_token, room_id, event_type, state_key)
        path += ("&" if "?" in path else "?") + "format=event"
        self.fetched += 1
        resp = await client._send(
            RoomGetStateEventResponse, method, path, response_data=(event_type, state_key, room_id)
        )
        if isinstance(resp, RoomGetStateEventError) and resp.status_code == "M_NOT_FOUND":
            return NOT_FOUND
        # nio turns only a 404 into an error: a 403 comes back as a "response".
        body = getattr(resp, "content", None)
        if not isinstance(resp, RoomGetStateEventResponse) or not isinstance(body, dict):
            log.warning("cannot read %s of %s: %s", event_type, room_id, describe(resp))
            return None
        if "errcode" in body:
            log.warning("cannot read %s of %s: %s", event_type, room_id, body.get("errcode"))
            return None
        if isinstance(body.get("content"), dict) and body.get("type") == event_type:
            return str(body.get("sender", "")), dict(body["content"])
        # A server that ignored `format` gave the content alone; rooms before
        # v11 name their creator in it.
        return str(body.get("creator", "")), dict(body)
