"""What every section shares: the error, the strict model, durations, IDs, host:port."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict

MXID_RE = re.compile(r"^@[a-z0-9._=\-/+]+:[A-Za-z0-9.\-]+(:\d{1,5})?$")
_DURATION_RE = re.compile(
    r"^\s*(?:(\d+)\s*d)?\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m)?\s*(?:(\d+)\s*s)?\s*$"
)


class ConfigError(Exception):
    """The configuration cannot be used; `problems` lists (dotted key, message)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("\n".join(f"{key}: {msg}" for key, msg in problems))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_duration(value: Any) -> timedelta:
    """Accept `1h`, `30m`, `1d`, `1h30m`, `45s`, a number of seconds or a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str):
        match = _DURATION_RE.match(value)
        if match and any(match.groups()):
            days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
            return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    raise ValueError(f"not a duration: {value!r} (examples: 15m, 1h, 1d, 1h30m)")


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def server_name(user_id: str) -> str:
    return user_id.split(":", 1)[1]


def _check_mxid(value: str) -> str:
    if not MXID_RE.match(value):
        raise ValueError(f"not a Matrix user ID: {value!r} (expected @name:server)")
    return value


MatrixId = Annotated[str, BeforeValidator(lambda v: _check_mxid(str(v).strip()))]


def _check_room_id(value: str | None) -> str | None:
    # Room v12 IDs have no server part: "!" and an opaque string.
    if value is not None and not (value.startswith("!") and len(value) > 1):
        raise ValueError(f"expected a room ID such as !abc:server, not {value!r}")
    return value


RoomId = Annotated[str, BeforeValidator(lambda v: _check_room_id(str(v).strip()))]

# A room alias: "#", a localpart, ":" and a server name (with an optional port).
ALIAS_RE = re.compile(r"^#[^:\s]+:[A-Za-z0-9.\-]+(:\d{1,5})?$")


def _check_room_ref(value: str) -> str:
    if value.startswith("#"):
        if not ALIAS_RE.match(value):
            raise ValueError(f"not a room alias: {value!r} (expected #name:server)")
        return value
    if not (value.startswith("!") and len(value) > 1 and not any(c.isspace() for c in value)):
        raise ValueError(f"expected a room ID (!abc:server) or alias (#name:server), not {value!r}")
    return value


# A room named in the config by its ID or by an alias (resolved by the bot).
RoomRef = Annotated[str, BeforeValidator(lambda v: _check_room_ref(str(v).strip()))]


def _host_port(value: str | None, example: str) -> str | None:
    if value is None:
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected host:port, e.g. {example}, not {value!r}")
    return value


def _split_host_port(value: str | None) -> tuple[str, int] | None:
    if value is None:
        return None
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)
