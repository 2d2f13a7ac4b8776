"""Message rendering: one Jinja2 environment, each message a text + HTML pair.

`name.txt.j2` gives the plain `body`, `name.html.j2` the `formatted_body`
(autoescaped: a calendar title `<script>` shows as text). An operator's
template directory overrides the packaged templates file by file.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from zoneinfo import ZoneInfo

import jinja2
import markupsafe
from babel.dates import format_date, format_timedelta


@dataclass(frozen=True, slots=True)
class Message:
    body: str
    html: str
    # Users this message mentions on purpose (pills): they get notified.
    mentions: tuple[str, ...] = ()
    # Ids of the sessions this message presents: a 🔔 reaction to it asks
    # for personal reminders of them.
    sessions: tuple[str, ...] = ()


def packaged_templates() -> Path:
    """Templates inside the wheel, or at the repository top level in a checkout."""
    inside = Path(str(files("bot"))) / "templates"
    if inside.is_dir():
        return inside
    return Path(__file__).resolve().parent.parent / "templates"


def safe_url(value: str) -> str:
    """Only http(s) links become clickable; anything else renders as text."""
    return value if urlparse(value).scheme in ("http", "https") else ""


class Renderer:
    def __init__(self, language: str, tz: ZoneInfo, override: Path | None = None) -> None:
        self.language = language
        self.tz = tz
        dirs: list[Path] = []
        if override is not None:
            dirs += [override / language, override]
        dirs.append(packaged_templates() / language)
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader([str(d) for d in dirs]),
            autoescape=_autoescape,  # noqa: S701 - escapes HTML and macros, see _autoescape
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
        )
        self._env.filters["safe_url"] = safe_url
        self._env.filters["plain"] = plain
        self._env.globals["timezone"] = tz.key
        self._env.filters["day"] = self.day_label
        self._env.filters["hour"] = self.time_label

    def render(self, name: str, **context: Any) -> Message:
        body = self._env.get_template(f"{name}.txt.j2").render(**context)
        html = self._env.get_template(f"{name}.html.j2").render(**context)
        return Message(body=_tidy(body), html=_tidy(html))

    # -- dates, in the bot's zone and language --------------------------------

    def local(self, moment: datetime) -> datetime:
        return moment.astimezone(self.tz)

    def day_label(self, day: date, today: date | None = None) -> str:
        with_year = today is not None and day.year != today.year
        return _day_label(day, with_year, self.language)

    def until(self, moment: datetime, now: datetime) -> str:
        """'dans 3 heures', 'dans 2 jours': how long until `moment`."""
        return str(
            format_timedelta(
                max(moment - now, timedelta(minutes=1)),
                granularity="minute",
                threshold=1.5,
                add_direction=True,
                locale=self.language,
            )
        )

    def duration(self, span: timedelta) -> str:
        """'15 minutes', '1 heure'."""
        return str(format_timedelta(span, threshold=1.5, locale=self.language))

    def time_label(self, moment: datetime) -> str:
        # Digits only: no locale data needed ("14h05" in French, "14:05" otherwise).
        local = self.local(moment)
        sep = "h" if self.language == "fr" else ":"
        return f"{local.hour:02d}{sep}{local.minute:02d}"


@lru_cache(maxsize=1024)
def _day_label(day: date, with_year: bool, language: str) -> str:
    # French writes the first of the month "1er".
    d = "d'er'" if language == "fr" and day.day == 1 else "d"
    return format_date(day, f"EEEE {d} MMMM{' y' if with_year else ''}", locale=language)


def _autoescape(name: str | None) -> bool:
    """HTML templates escape; so do shared macro files (`_*.j2`), whatever calls them.

    Macros are called from both kinds of templates: escaping inside them makes
    the HTML safe by default, and text templates undo it with `|plain`.
    """
    if name is None:
        return True
    return name.endswith(".html.j2") or Path(name).name.startswith("_")


def plain(value: object) -> str:
    """Text of a (possibly escaped) macro result, for the plain `body`."""
    # Markup() here only reads our own escaped output back to text.
    return markupsafe.Markup(str(value)).unescape()  # noqa: S704


def _tidy(text: str) -> str:
    lines = [line.rstrip() for line in text.strip().splitlines()]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):  # at most one blank line in a row
            out.append(line)
    return "\n".join(out)
