"""Room state comes from the homeserver only.

A room's state (members, power levels, creators, tombstone, encryption…) is
what the homeserver holds: events that it accepted as state (a `state_key`
at the top of the event, checked against the room's auth rules). An
encrypted event is a message event for the homeserver, whatever its
plaintext says: any member can encrypt `{"type": "m.room.power_levels",
"state_key": "", …}` and nio 0.26 hands it back decrypted with that
`state_key`, as if it were state. `is_room_state` is the one test every
reader of state in this package applies.

nio itself applies decrypted events to its room model
(`AsyncClient._handle_timeline_event`: `room.handle_membership` adds the
forged member to `room.users`, the people the bot shares room keys with;
`room.handle_event` takes power levels, tombstones, encryption…).
`StateClient` is nio's client without that: only state events from the
homeserver change nio's rooms.
"""

from __future__ import annotations

import logging
from typing import Any

from nio import (
    AsyncClient,
    BadEvent,
    MatrixRoom,
    MegolmEvent,
    RoomEncryptionEvent,
    RoomMemberEvent,
    UnknownBadEvent,
)

log = logging.getLogger(__name__)


def is_room_state(event: Any) -> bool:
    """Whether the event is room state as the homeserver holds it.

    It has a `state_key` of its own, and did not come out of an encrypted
    event (a decrypted payload's `state_key` is the sender's say-so).
    """
    if isinstance(event, MegolmEvent) or getattr(event, "decrypted", False):
        return False
    source = getattr(event, "source", None)
    return isinstance(source, dict) and isinstance(source.get("state_key"), str)


def claims_state(event: Any) -> bool:
    """A decrypted event whose plaintext carries a `state_key`: forged state."""
    source = getattr(event, "source", None)
    return (
        bool(getattr(event, "decrypted", False))
        and isinstance(source, dict)
        and "state_key" in source
    )


def log_forged_state(room_id: str, event: Any) -> None:
    """Once per event (where nio decrypts it): who, what type; never the content."""
    source = getattr(event, "source", None) or {}
    log.warning(
        "%s: an encrypted %r with a state_key from %s (%s): not taken as room state, "
        "which comes from the homeserver only",
        room_id,
        str(source.get("type", "?"))[:100],
        getattr(event, "sender", None) or source.get("sender", "?"),
        getattr(event, "event_id", None) or source.get("event_id", "?"),
    )


class StateClient(AsyncClient):  # type: ignore[misc]  # nio has no type information
    """nio's client, whose room model takes state from the homeserver only.

    `_handle_timeline_event` is nio 0.26's, except that an event changes the
    room (members, power levels, name, tombstone, encryption…) only when
    `is_room_state` says so: never a decrypted one, never one without a
    `state_key`. A decrypted event that nio could not parse is marked
    `decrypted` too (nio leaves it unmarked), so that no reader takes its
    plaintext for the homeserver's word.
    """

    def _handle_timeline_event(
        self,
        event: Any,
        room_id: str,
        room: MatrixRoom,
        encrypted_rooms: set[str],
    ) -> Any:
        decrypted_event = None
        if isinstance(event, MegolmEvent) and self.olm:
            event.room_id = room_id
            decrypted_event = self.olm._decrypt_megolm_no_error(event)
            if decrypted_event:
                decrypted_event.decrypted = True
                event = decrypted_event
                if claims_state(event):
                    log_forged_state(room_id, event)
        if not is_room_state(event):
            return decrypted_event
        if isinstance(event, RoomEncryptionEvent):
            encrypted_rooms.add(room_id)
        if isinstance(event, RoomMemberEvent):
            if room.handle_membership(event):
                self._invalidate_session_for_member_event(room_id)
        elif not isinstance(event, UnknownBadEvent | BadEvent):
            room.handle_event(event)
        return decrypted_event
