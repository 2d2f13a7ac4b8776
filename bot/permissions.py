"""Who may do what: config admins, room moderators (power level), everyone else.

Room version 12 (MSC4289) changed the rules: the room creators (the sender of
`m.room.create` and its `additional_creators`) have no entry in
`m.room.power_levels` yet outrank everyone. A bot reading only the power
levels would see a creator at level 0 and refuse them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from enum import IntEnum
from typing import Any

MODERATOR_LEVEL = 50

# Room versions in which creators are privileged (MSC4289); later numeric
# versions keep the rule.
_PRIVILEGED_CREATOR_VERSIONS = frozenset({"org.matrix.hydra.11"})


class Role(IntEnum):
    ANYONE = 0
    MODERATOR = 50
    ADMIN = 100


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


def role_for(
    user_id: str,
    admins: Iterable[str],
    level: float,
) -> Role:
    if user_id in set(admins):
        return Role.ADMIN
    if level >= MODERATOR_LEVEL:
        return Role.MODERATOR
    return Role.ANYONE


def invite_allowed(inviter: str, allowed_servers: Iterable[str]) -> bool:
    """Invites are accepted only from users of the allowed homeservers."""
    if ":" not in inviter:
        return False
    return inviter.split(":", 1)[1].lower() in {s.lower() for s in allowed_servers}
