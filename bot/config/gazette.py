"""The `gazette:` section: the editorial gazette (drafts, approvals) and the news feed."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlparse

from pydantic import Field, field_validator, model_validator

from bot.config.base import Duration, RoomId, _Model

DEFAULT_SECTIONS = ["À la une", "Sur le SILL", "Appels à contribution"]


class GazetteConfig(_Model):
    # Cron expression in bot.timezone of each issue's publication, e.g.
    # "0 10 15 */2 *" (the 15th of every other month, 10:00). None: issues
    # are published only with `!gazette publier`. Needs `editors_room`.
    schedule: str | None = None
    # The room (ID) where moderators write, preview and approve each issue;
    # the bot must be invited there. None: no editorial gazette.
    editors_room: RoomId | None = None
    # The draft of an issue is built this long before its publication.
    draft_ahead: Duration = timedelta(days=3)
    # The number of the next issue (then +1 at each publication; a higher
    # number set here later makes the numbering jump forward).
    number: int = Field(default=1, ge=1, le=100_000)
    # An issue lists the sessions of this many days from its publication.
    agenda_days: int = Field(default=15, ge=1, le=90)
    # The sections moderators write in (`!gazette ajouter <section> <texte>`).
    sections: list[str] = Field(default_factory=lambda: list(DEFAULT_SECTIONS))
    # Moderators who must approve an issue before it goes out, none of whom
    # wrote one of its items or changed its draft (and a correction or a
    # retraction, none of whom asked for it).
    approvals: int = Field(default=1, ge=1, le=5)
    # RSS/Atom feed whose new entries are posted to `gazette` rooms.
    feed: str | None = None
    # Only entries whose title matches this regular expression are posted.
    title_filter: str | None = None
    poll: Duration = timedelta(minutes=30)
    # A poll bringing more new entries than this posts none of them (a site
    # that changed every entry's id): they are marked seen, and an error says so.
    feed_burst: int = Field(default=10, ge=1, le=1000)

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        if value is not None:
            from bot.gazette.cron import Cron

            try:
                Cron.check(value)
            except ValueError as exc:
                raise ValueError(f"not a cron expression ({exc})") from None
        return value

    @field_validator("feed")
    @classmethod
    def _feed(cls, value: str | None) -> str | None:
        if value is not None and urlparse(value).scheme not in ("http", "https"):
            raise ValueError("must be an http(s) URL")
        return value

    @field_validator("title_filter")
    @classmethod
    def _filter(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression ({exc})") from None
        return value

    @field_validator("poll")
    @classmethod
    def _poll(cls, value: timedelta) -> timedelta:
        if value < timedelta(minutes=1):
            raise ValueError("must be at least 1m")
        return value

    @field_validator("draft_ahead")
    @classmethod
    def _draft_ahead(cls, value: timedelta) -> timedelta:
        if not timedelta(0) <= value <= timedelta(days=60):
            raise ValueError("must be between 0s and 60d")
        return value

    @field_validator("sections")
    @classmethod
    def _sections(cls, value: list[str]) -> list[str]:
        from bot.textnorm import fold

        names = [" ".join(v.split()) for v in value]
        if not 1 <= len(names) <= 12:
            raise ValueError("give between 1 and 12 sections")
        if any(not n or len(n) > 60 or n[0].isdigit() for n in names):
            raise ValueError("each section needs a name of 1 to 60 characters, not a number")
        if len({fold(n) for n in names}) != len(names):
            raise ValueError("two sections have the same name")
        return names

    @model_validator(mode="after")
    def _editors(self) -> GazetteConfig:
        if self.schedule is not None and self.editors_room is None:
            raise ValueError(
                "gazette.schedule needs gazette.editors_room: the room where moderators "
                "approve each issue before it is published"
            )
        return self
