"""Who may do what in a room: power levels and, in v12 rooms, the creators.

Read from the room state once per room and kept until the sync shows a change
of `m.room.power_levels` or `m.room.create`; the rules themselves are in
`bot.permissions`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from nio import RoomGetStateResponse

from bot import permissions
from bot.matrix.login import Session
from bot.matrix.responses import describe

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _RoomAuthority:
    create_sender: str
    create_content: dict[str, Any]
    power_levels: dict[str, Any] | None


class RoomAuthority:
    def __init__(self, session: Session) -> None:
        self._session = session
        self._authority: dict[str, _RoomAuthority] = {}

    def forget_if_changed(self, room_id: str, events: Iterable[Any]) -> None:
        """Called with a room's state and timeline events of each sync."""
        if any(_is_authority_event(e) for e in events):
            self._authority.pop(room_id, None)

    async def power_level(self, room_id: str, user_id: str) -> float:
        authority = self._authority.get(room_id)
        if authority is None:
            authority = await self._fetch_authority(room_id)
            if authority is None:
                return 0  # unknown: grant nothing
            self._authority[room_id] = authority
        return permissions.power_level(
            user_id, authority.create_sender, authority.create_content, authority.power_levels
        )

    async def _fetch_authority(self, room_id: str) -> _RoomAuthority | None:
        resp = await self._session.client.room_get_state(room_id)
        if not isinstance(resp, RoomGetStateResponse):
            log.warning("cannot read the state of %s: %s", room_id, describe(resp))
            return None
        create = pl = None
        for event in resp.events:
            if event.get("state_key") != "":
                continue
            if event.get("type") == "m.room.create":
                create = event
            elif event.get("type") == "m.room.power_levels":
                pl = event
        if create is None:
            return None
        return _RoomAuthority(
            str(create.get("sender", "")),
            dict(create.get("content") or {}),
            dict(pl.get("content") or {}) if pl else None,
        )


def _is_authority_event(event: Any) -> bool:
    source = getattr(event, "source", None) or {}
    return source.get("type") in ("m.room.power_levels", "m.room.create")
