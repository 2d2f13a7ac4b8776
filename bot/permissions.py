"""Who may do what: config admins, room moderators (power level), everyone else.

Room version 12 (MSC4289) changed the rules: the room creators (the sender of
`m.room.create` and its `additional_creators`) have no entry in
`m.room.power_levels` yet outrank everyone. A bot reading only the power
levels would see a creator at level 0 and refuse them.
"""

from __future__ import annotations

import functools
import math
import re
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
