"""The `agenda:`, `reminders:` and `broadcasts:` sections: what is read, recalled and posted."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import Field, field_validator, model_validator

from bot.agenda import kinds
from bot.config.base import Duration, _Model


def _check_location(value: str) -> str:
    scheme = urlparse(value).scheme
    if scheme not in ("", "file", "http", "https") and len(scheme) > 1:
        raise ValueError(f"unsupported source {value!r}: use a file path or an http(s) URL")
    return value


class AgendaSource(_Model):
    """One entry of `agenda.sources`: a path or URL (its identity, in the database
    too), and the kind of its content (bot.agenda.kinds), guessed when not given."""

    url: str
    kind: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare(cls, value: Any) -> Any:
        # A bare path or URL: its kind is guessed, as before kinds were declared
        # (checked here so that a problem is reported at the entry, not at `.url`).
        if isinstance(value, str):
            return {"url": _check_location(value)}
        if not isinstance(value, dict | AgendaSource):
            raise ValueError("expected a file path, an http(s) URL, or {url: …, kind: …}")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _check_location(value)

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str | None) -> str | None:
        if value is not None and value not in kinds.KINDS:
            raise ValueError(f"unknown kind {value!r}: the kinds are {kinds.known()}")
        return value


class AgendaConfig(_Model):
    # Bare strings (a path or URL) or {url: …, kind: …}: see AgendaSource.
    sources: list[AgendaSource] = Field(default_factory=list)
    refresh: Duration = timedelta(hours=1)
    max_items: int = Field(default=10, ge=1, le=50)
    horizon: Duration = timedelta(days=366)
    # Bounds of one source (bot.agenda.bounds): the earliest sessions kept.
    max_sessions: int = Field(default=20_000, ge=100, le=1_000_000)
    max_per_series: int = Field(default=1_000, ge=10, le=1_000_000)
    # Limits of the parser process (bot.agenda.worker): per job, and its memory in MiB.
    parse_timeout: Duration = timedelta(seconds=120)
    parse_memory: int = Field(default=512, ge=256, le=65_536)

    @field_validator("parse_timeout")
    @classmethod
    def _parse_timeout(cls, value: timedelta) -> timedelta:
        if not timedelta(seconds=5) <= value <= timedelta(hours=1):
            raise ValueError("must be between 5s and 1h")
        return value

    @field_validator("refresh")
    @classmethod
    def _refresh(cls, value: timedelta) -> timedelta:
        if value < timedelta(minutes=1):
            raise ValueError("must be at least 1m")
        return value


class RemindersConfig(_Model):
    # One reminder per offset before each session, in rooms subscribed to `rappels`.
    offsets: list[Duration] = Field(
        default_factory=lambda: [timedelta(days=1), timedelta(hours=1)], max_length=10
    )
    # A reminder due while the bot was down is still sent this late, never after the start.
    grace: Duration = timedelta(minutes=15)
    # Personal reminders (!rappelle-moi <id>): a direct message this long before.
    personal: Duration = timedelta(minutes=15)

    @field_validator("offsets")
    @classmethod
    def _offsets(cls, value: list[timedelta]) -> list[timedelta]:
        if any(v <= timedelta(0) or v > timedelta(days=30) for v in value):
            raise ValueError("each offset must be between 1s and 30d")
        return sorted(set(value), reverse=True)


class BroadcastConfig(_Model):
    # Pause between two posts to rooms (Tchap asks bots for about 1 message/s).
    pace: Duration = timedelta(seconds=1)
    # `none`: posts to subscribed rooms are quiet notices; `room`: they call
    # the room (@room) where the bot's power level allows it.
    notify: Literal["none", "room"] = "none"
