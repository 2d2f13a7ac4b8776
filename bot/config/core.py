"""The `bot:` and `storage:` sections: language, time zone, moderators, where state is kept."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator

from bot.config.base import Duration, MatrixId, RoomRef, _Model
from bot.limits import Rate

# The secret nio's crypto store is protected with (better here than in the file).
ENV_STORE_KEY = "BLUEHATS_STORE_KEY"
STORE_KEY_MIN_LENGTH = 16


class StorageConfig(_Model):
    path: Path = Path("data")
    # The secret that nio's crypto store (the device's keys and sessions) is
    # pickled with, through a key derived from it (bot.matrix.store_key). None:
    # nio's default key, which anyone can read.
    key: SecretStr | None = None

    @field_validator("key")
    @classmethod
    def _key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < STORE_KEY_MIN_LENGTH:
            # The message never shows the key.
            raise ValueError(
                f"at least {STORE_KEY_MIN_LENGTH} characters; make one with "
                'python -c "import secrets; print(secrets.token_urlsafe(32))"'
            )
        return value


class RateConfig(_Model):
    """A burst of `burst` commands, then one more every `every` (0s: no limit)."""

    burst: int = Field(ge=1, le=1000)
    every: Duration

    @field_validator("every")
    @classmethod
    def _every(cls, value: timedelta) -> timedelta:
        if not timedelta(0) <= value <= timedelta(hours=1):
            raise ValueError("must be between 0s (no limit) and 1h, such as 3s")
        return value

    @property
    def rate(self) -> Rate:
        return Rate(self.burst, self.every.total_seconds())


class LimitsConfig(_Model):
    """How much one person, or one room, may ask (see `bot.limits`)."""

    per_sender: RateConfig = RateConfig(burst=5, every=timedelta(seconds=3))
    per_room: RateConfig = RateConfig(burst=20, every=timedelta(seconds=1))
    # Commands answered at the same time; the others wait their turn.
    answers_at_once: int = Field(default=4, ge=1, le=64)


class BotConfig(_Model):
    prefix: str = "!"
    language: Literal["fr", "en"] = "fr"
    timezone: str = "Europe/Paris"
    # Community moderators: they change the data every room shares (agenda,
    # mentors, gazette). Listed here by Matrix ID, and/or the members with
    # power level >= 50 (or creators, room v12) of the rooms listed in
    # `moderator_rooms`. A room's own power levels grant rights over that
    # room's settings only (bot.permissions).
    moderators: list[MatrixId] = Field(default_factory=list)
    moderator_rooms: list[RoomRef] = Field(default_factory=list, max_length=20)
    templates: Path | None = None
    # An edited command edits the answer when the edit comes this soon after
    # the command (0 = edits are ignored).
    edit_window: Duration = timedelta(minutes=10)
    # A room where no one but the bot has been joined or invited for this long
    # is left (its subscriptions end). The operators' error room is never left.
    leave_empty_after: Duration = timedelta(days=1)
    limits: LimitsConfig = LimitsConfig()

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not value or any(c.isspace() for c in value) or len(value) > 5:
            raise ValueError("must be 1 to 5 characters without spaces, such as '!'")
        return value

    @field_validator("edit_window")
    @classmethod
    def _edit_window(cls, value: timedelta) -> timedelta:
        # Answered commands are forgotten after a week (bot.db.inbox): an
        # edit of one no longer recorded could not be told from conversation.
        if not timedelta(0) <= value <= timedelta(days=1):
            raise ValueError("must be between 0s and 1d, such as 10m")
        return value

    @field_validator("leave_empty_after")
    @classmethod
    def _leave_empty_after(cls, value: timedelta) -> timedelta:
        if value < timedelta(minutes=1):
            raise ValueError("must be at least 1m")
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone: {value!r} (example: Europe/Paris)") from None
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)
