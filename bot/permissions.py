"""Who may do what: two kinds of rights, and what a room's power levels mean.

- *Community moderators* change the data every room shares (the agenda's
  sessions, the mentor directory and their audit trails; the gazette, which
  adds its editors' room rule): the Matrix IDs of `bot.moderators` (config
  admins), and the members whose power level is >= 50, or who are creators
  (room v12), in one of the rooms of `bot.moderator_rooms`. Those rights come
  from those rooms wherever the person types (their direct room with the bot
  included) and end when they are demoted or leave.
- *Room moderators* (power level >= 50 in that very room) change only what
  belongs to that room: its subscriptions.

Nothing else grants anything: whoever creates a room (or a direct room with
the bot) is its admin, so a room's power levels never give community rights.
The power levels and memberships read come from the homeserver's room state
only, never from events that arrived encrypted (`bot.matrix.authority`).

Room version 12 (MSC4289) changed the rules: the room creators (the sender of
`m.room.create` and its `additional_creators`) have no entry in
`m.room.power_levels` yet outrank everyone. A bot reading only the power
levels would see a creator at level 0 and refuse them.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Protocol

log = logging.getLogger(__name__)

MODERATOR_LEVEL = 50

# Room versions in which creators are privileged (MSC4289); later numeric
# versions keep the rule.
_PRIVILEGED_CREATOR_VERSIONS = frozenset({"org.matrix.hydra.11"})


class Role(IntEnum):
    """What a command asks of the person who runs it."""

    ANYONE = 0
    # A moderator of the room the command is typed in: that room's settings.
    ROOM = 1
    # A community moderator: data every room shares.
    COMMUNITY = 2


@dataclass(frozen=True, slots=True)
class Rights:
    """What one person may do in one room."""

    room: bool = False  # this room's settings
    community: bool = False  # shared data

    def allows(self, role: Role) -> bool:
        if role is Role.COMMUNITY:
            return self.community
        if role is Role.ROOM:
            return self.room
        return True


NO_RIGHTS = Rights()
# Config admins (`bot.moderators`): the operators' people, trusted everywhere.
ALL_RIGHTS = Rights(room=True, community=True)


def creators_are_privileged(room_version: str) -> bool:
    if room_version in _PRIVILEGED_CREATOR_VERSIONS:
        return True
    return room_version.isdigit() and int(room_version) >= 12


def power_level(
    user_id: str,
    create_sender: str,
    create_content: Mapping[str, Any],
    power_levels: Mapping[str, Any] | None,
) -> float:
    """The user's effective power level; creators of v12 rooms get infinity."""
    version = str(create_content.get("room_version", "1"))
    if creators_are_privileged(version):
        extra = create_content.get("additional_creators") or []
        if user_id == create_sender or user_id in extra:
            return math.inf
    if power_levels is None:
        # No power levels event: the creator has 100, everyone else 0 (spec).
        return 100 if user_id == create_sender else 0
    users = power_levels.get("users") or {}
    try:
        return int(users.get(user_id, power_levels.get("users_default", 0)))
    except (TypeError, ValueError):
        return 0


def state_event_level(event_type: str, power_levels: Mapping[str, Any] | None) -> float:
    """The power level needed to send a state event of this type.

    `events[type]`, else `state_default`, else 50. Without a power levels
    event, the room's creator only (100: what `power_level` gives them; the
    spec would let anyone, its `state_default` being 0 then).
    """
    if power_levels is None:
        return 100
    events = power_levels.get("events")
    candidates = [
        events.get(event_type) if isinstance(events, Mapping) else None,
        power_levels.get("state_default"),
    ]
    for value in candidates:
        if value is None or isinstance(value, bool):
            continue
        try:
            return int(value)
        except (TypeError, ValueError):
            return math.inf  # unreadable: nobody
    return 50


def notification_level(key: str, power_levels: Mapping[str, Any] | None) -> float:
    """The power level needed to call `key` (`room`: @room) in a room.

    `notifications[key]` of the power levels; 50 when absent, or when it is
    not a number (Synapse drops such a value, then applies the default:
    synapse/push/bulk_push_rule_evaluator.py, rust/src/push/evaluator.rs).
    """
    notifications = (power_levels or {}).get("notifications")
    value = notifications.get(key) if isinstance(notifications, Mapping) else None
    try:
        return 50 if value is None else int(value)
    except (TypeError, ValueError):
        return 50


class RoomState(Protocol):
    """What the rights are read from: the homeserver's room state (`ChatClient`)."""

    async def power_level(self, room_id: str, user_id: str) -> float: ...

    async def is_joined(self, room_id: str, user_id: str) -> bool: ...

    async def resolve_alias(self, alias: str) -> str | None: ...

    async def join_room(self, room_id: str, *, via: Sequence[str] = ()) -> bool: ...

    async def joined_rooms(self) -> set[str] | None: ...


class ModeratorRooms:
    """`bot.moderator_rooms` as room IDs.

    Room IDs count as written; aliases once resolved (`refresh`: at start,
    then regularly, so that an alias moved to another room is followed). A
    room the bot left for its upgrade is replaced by the new one.
    """

    def __init__(self, entries: Sequence[str]) -> None:
        self.entries = list(entries)
        self._resolved: dict[str, str] = {e: e for e in self.entries if e.startswith("!")}
        # Old room → new room, for the upgrades the bot followed.
        self._replaced: dict[str, str] = {}

    @property
    def room_ids(self) -> frozenset[str]:
        return frozenset(self._follow(r) for r in self._resolved.values())

    def _follow(self, room_id: str) -> str:
        seen = {room_id}
        while (new := self._replaced.get(room_id)) is not None and new not in seen:
            seen.add(new)
            room_id = new
        return room_id

    async def refresh(self, chat: RoomState, upgrades: Mapping[str, str]) -> None:
        """Resolve the aliases; follow the `upgrades` (old room → new room) the
        bot followed; join the rooms the bot is not in yet."""
        before = self.room_ids
        self._replaced = dict(upgrades)
        for entry in self.entries:
            if not entry.startswith("#"):
                continue
            room_id = await chat.resolve_alias(entry)
            if room_id is None:
                if entry not in self._resolved:
                    log.warning("bot.moderator_rooms: cannot resolve %s (kept unresolved)", entry)
                continue  # a failed look-up keeps the last answer
            if self._resolved.get(entry) != room_id:
                log.info("bot.moderator_rooms: %s is %s", entry, room_id)
                self._resolved[entry] = room_id
        if self.room_ids != before:
            log.info("moderators' rooms: %s", ", ".join(sorted(self.room_ids)) or "none")
        joined = await chat.joined_rooms()
        if joined is None:
            return
        for entry, room_id in self._resolved.items():
            room_id = self._follow(room_id)
            if room_id in joined:
                continue
            via = [entry.split(":", 1)[1]] if ":" in entry else []
            if not await chat.join_room(room_id, via=via):
                log.warning(
                    "bot.moderator_rooms: the bot is not in %s (%s) and cannot join it: "
                    "invite it there, or its moderators have no rights",
                    entry,
                    room_id,
                )


class Permissions:
    """The rights of a person in a room, read from the homeserver's room state."""

    def __init__(
        self, admins: Iterable[str], moderator_rooms: ModeratorRooms, state: RoomState
    ) -> None:
        self._admins = frozenset(admins)
        self._rooms = moderator_rooms
        self._state = state

    async def rights(self, room_id: str, user_id: str) -> Rights:
        if user_id in self._admins:
            return ALL_RIGHTS
        room = await self._state.power_level(room_id, user_id) >= MODERATOR_LEVEL
        return Rights(room=room, community=await self.community(user_id))

    async def community(self, user_id: str) -> bool:
        """Whether `user_id` is a community moderator now."""
        if user_id in self._admins:
            return True
        for room_id in sorted(self._rooms.room_ids):
            if await self._state.power_level(
                room_id, user_id
            ) >= MODERATOR_LEVEL and await self._state.is_joined(room_id, user_id):
                return True
        return False


# Tchap: one homeserver per ministry, `agent.<ministry>.tchap.gouv.fr`, and
# one for partners outside the State (`agent.externe.tchap.gouv.fr`), whose
# accounts are not vetted State agents: a State bot answers agents, so the
# default leaves the partners' server out (list it to let them in).
TCHAP_DOMAIN = "tchap.gouv.fr"
TCHAP_AGENTS = "agent.*.tchap.gouv.fr"
TCHAP_PARTNERS = "agent.externe.tchap.gouv.fr"
EXCLUDE = "!"

# A server name is `host[:port]` (host: a DNS name, an IPv4 address or an
# IPv6 literal in brackets); a pattern has the same shape, optionally
# preceded by "!".
_PATTERN_RE = re.compile(r"^!?(\[[0-9a-f:.]+\]|[a-z0-9.*?\-]+)(:[0-9*?]+)?$", re.IGNORECASE)


def is_tchap_server(server: str) -> bool:
    host, _ = _split_server(server.lower())
    return host.endswith("." + TCHAP_DOMAIN)


def default_allowed_servers(own_server: str) -> list[str]:
    """Where invites come from when `matrix.allowed_servers` is not set.

    A Tchap bot: every agents' server of every ministry, not the partners'
    one, and always its own. Elsewhere: the bot's own server only.
    """
    if is_tchap_server(own_server):
        return [TCHAP_AGENTS, EXCLUDE + TCHAP_PARTNERS, own_server.lower()]
    return [own_server.lower()]


def check_server_pattern(pattern: str) -> str | None:
    """Why this `allowed_servers` entry is unusable, or None when it is fine."""
    if not _PATTERN_RE.match(pattern):
        return (
            f"not a server name or pattern: {pattern!r} (examples: agent.dinum.tchap.gouv.fr, "
            f"agent.*.tchap.gouv.fr, !agent.externe.tchap.gouv.fr, localhost:8448)"
        )
    return None


def invite_allowed(inviter: str, allowed_servers: Iterable[str]) -> bool:
    """Invites are accepted only from users of the allowed homeservers.

    `allowed_servers` holds server names or patterns, read in order; the last
    one matching the inviter's server decides: a plain one allows, one
    starting with "!" refuses (as in .gitignore). So
    `["agent.*.tchap.gouv.fr", "!agent.externe.tchap.gouv.fr"]` lets in every
    ministry but the partners' server. In a pattern, `*` stands for any run of
    characters and `?` for one, both within one label of the name: never
    across a `.` or the `:` before the port (`agent.*.tchap.gouv.fr` does
    not match `agent.a.b.tchap.gouv.fr`). A pattern without a port matches
    only servers without one (`example.org:8448` is another server than
    `example.org`); `example.org:*` matches any port. Case does not matter.
    """
    if ":" not in inviter:
        return False
    server = inviter.split(":", 1)[1].lower()
    allowed = False
    for entry in allowed_servers:
        pattern = entry.strip().lower()
        excluded = pattern.startswith(EXCLUDE)
        if excluded:
            pattern = pattern[len(EXCLUDE) :]
        if _server_matches(server, pattern):
            allowed = not excluded
    return allowed


def _split_server(server: str) -> tuple[str, str | None]:
    """`host[:port]` → (host, port or None); an IPv6 literal keeps its brackets."""
    if server.startswith("["):
        end = server.find("]")
        if end == -1:
            return server, None
        rest = server[end + 1 :]
        return server[: end + 1], rest[1:] if rest.startswith(":") else None
    host, sep, port = server.partition(":")
    return host, port if sep else None


def _server_matches(server: str, pattern: str) -> bool:
    host, port = _split_server(server)
    pattern_host, pattern_port = _split_server(pattern)
    if (port is None) != (pattern_port is None):
        return False
    if port is not None and not _glob(pattern_port or "").fullmatch(port):
        return False
    return _glob(pattern_host).fullmatch(host) is not None


@functools.lru_cache(maxsize=256)
def _glob(pattern: str) -> re.Pattern[str]:
    """`*` and `?` within one label (no `.`, no `:`); everything else literal."""
    parts = []
    for char in pattern:
        if char == "*":
            parts.append(r"[^.:]*")
        elif char == "?":
            parts.append(r"[^.:]")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts))
