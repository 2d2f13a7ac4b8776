"""Message rendering: one Jinja2 environment, each message a text + HTML pair.

`name.txt.j2` gives the plain `body`, `name.html.j2` the `formatted_body`
(autoescaped: a calendar title `<script>` shows as text). One template tree
serves every language: its wording is English, marked with `{% trans %}`, and
the language's gettext catalog (`templates/locale/<lang>/LC_MESSAGES/
messages.po`) translates it. An operator's template directory overrides the
packaged templates file by file.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache, lru_cache
from importlib.resources import files
from io import BytesIO
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from zoneinfo import ZoneInfo

import jinja2
import markupsafe
from babel.dates import format_date, format_time, format_timedelta
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

# The language of data that must not follow `bot.language` (see `data_text`).
DEFAULT_LANGUAGE = "fr"


@dataclass(frozen=True, slots=True)
class Message:
    body: str
    html: str
    # Users this message calls on purpose (pills, or the person whose direct
    # room it goes to): it rings for them.
    mentions: tuple[str, ...] = ()
    # It calls the whole room (@room): it rings for every member.
    mentions_room: bool = False
    # Ids of the sessions this message presents: a 🔔 reaction to it asks
    # for personal reminders of them.
    sessions: tuple[str, ...] = ()
    # What a ✅ reaction to this message approves (a gazette preview), if anything.
    approves: str | None = None

    @property
    def rings(self) -> bool:
        """Whether it calls anyone: then it is meant to notify, not a quiet notice."""
        return bool(self.mentions) or self.mentions_room


def packaged_templates() -> Path:
    """Templates inside the wheel, or at the repository top level in a checkout."""
    inside = Path(str(files("bot"))) / "templates"
    if inside.is_dir():
        return inside
    return Path(__file__).resolve().parent.parent / "templates"


def catalog_path(language: str) -> Path:
    return packaged_templates() / "locale" / language / "LC_MESSAGES" / "messages.po"


@cache
def translations(language: str) -> Translations:
    """The language's catalog, compiled in memory from its `.po` file.

    No build step: the `.po` files are the only copy, in the repository and in
    the wheel. Fuzzy entries are left out, as `msgfmt` does.
    """
    with catalog_path(language).open("rb") as po:
        catalog = read_po(po, locale=language)
    mo = BytesIO()
    write_mo(mo, catalog)
    mo.seek(0)
    return Translations(mo, domain="messages")


def data_text(message: str) -> str:
    """`message` in the default language, for text that must not follow `bot.language`.

    An untitled calendar event is named when its source is parsed, before
    any renderer, and that name is part of the session's id (`session_id`
    hashes the title). The demo also speaks the default language, like the
    bot it starts.
    """
    return translations(DEFAULT_LANGUAGE).gettext(message)


def safe_url(value: str) -> str:
    """Only http(s) links become clickable; anything else renders as text."""
    return value if urlparse(value).scheme in ("http", "https") else ""


class Renderer:
    def __init__(self, language: str, tz: ZoneInfo, override: Path | None = None) -> None:
        self.language = language
        self.tz = tz
        self.translations = translations(language)
        dirs: list[Path] = []
        if override is not None:
            # <dir>/<language>/ first: the layout of the per-language trees.
            dirs += [override / language, override]
        dirs.append(packaged_templates())
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader([str(d) for d in dirs]),
            autoescape=_autoescape,  # noqa: S701 - escapes HTML and macros, see _autoescape
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
            extensions=["jinja2.ext.i18n"],
        )
        # Old-style gettext: `{% trans %}` output is markup (its placeholders are
        # escaped), while `_("<id>")` is plain text that autoescaping escapes.
        self._env.install_gettext_translations(  # type: ignore[attr-defined]
            self.translations, newstyle=False
        )
        self._env.filters["safe_url"] = safe_url
        self._env.filters["plain"] = plain
        self._env.globals["timezone"] = tz.key
        self._env.filters["day"] = self.day_label
        self._env.filters["hour"] = lambda moment: self.time_label(_moment(moment))
        # A moment (aware datetime, or Unix time) → its day in the bot's zone.
        self._env.filters["localdate"] = lambda moment: self.local(_moment(moment)).date()
        # "mardi 1er décembre" → "Mardi 1er décembre" (`capitalize` would lower the rest).
        self._env.filters["sentence"] = lambda text: text[:1].upper() + text[1:]

    def render(self, name: str, **context: Any) -> Message:
        body = self._env.get_template(f"{name}.txt.j2").render(**context)
        html = self._env.get_template(f"{name}.html.j2").render(**context)
        return Message(body=_tidy(body), html=_tidy(html))

    def page(self, name: str, **context: Any) -> str:
        """A web page, `templates/web/<name>.html.j2` (autoescaped, same catalog and dates)."""
        return self._env.get_template(f"web/{name}.html.j2").render(**context)

    def gettext(self, message: str) -> str:
        return str(self.translations.gettext(message))

    def pgettext(self, context: str, message: str) -> str:
        # Babel types it `str | object`: the message itself comes back if missing.
        return str(self.translations.pgettext(context, message))

    def internal_error(self, ref: str) -> Message:
        """The answer when even the `error` template fails: the catalog alone."""
        text = self.translations.gettext("Internal error (ref. %(ref)s).") % {"ref": ref}
        return Message(body=text, html=text)

    # -- dates, in the bot's zone and language --------------------------------

    def local(self, moment: datetime) -> datetime:
        return moment.astimezone(self.tz)

    def day_label(self, day: date, today: date | None = None) -> str:
        with_year = today is not None and day.year != today.year
        # CLDR date patterns: EEEE weekday, d day, MMMM month, y year. French
        # writes the first of the month "1er": a pattern of its own.
        pgettext = self.pgettext
        if day.day == 1 and with_year:
            pattern = pgettext("day label, first of the month, with the year", "EEEE d MMMM y")
        elif day.day == 1:
            pattern = pgettext("day label, first of the month", "EEEE d MMMM")
        elif with_year:
            pattern = pgettext("day label, with the year", "EEEE d MMMM y")
        else:
            pattern = pgettext("day label", "EEEE d MMMM")
        return _day_label(day, pattern, self.language)

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
        """'15 minutes', '2 hours': `until` without its direction ('in …')."""
        text = str(
            format_timedelta(
                max(span, timedelta(minutes=1)),
                granularity="minute",
                threshold=1.5,
                locale=self.language,
            )
        )
        # CLDR joins some French units with a no-break space ("2\xa0heures"),
        # not their "dans 2 heures" forms: one kind of space, as always.
        return text.replace("\xa0", " ")

    def time_label(self, moment: datetime) -> str:
        # A CLDR pattern, digits only: "14h05" in French, "14:05" in English.
        pattern = self.pgettext("time of day", "HH:mm")
        return str(format_time(self.local(moment).time(), pattern, locale=self.language))

    def moment_label(self, timestamp: float) -> str:
        """A Unix time as its day and time of day: "mardi 1er décembre 14h05"."""
        moment = datetime.fromtimestamp(timestamp, UTC)
        return f"{self.day_label(self.local(moment).date())} {self.time_label(moment)}"


@lru_cache(maxsize=1024)
def _day_label(day: date, pattern: str, language: str) -> str:
    return str(format_date(day, pattern, locale=language))


def _moment(value: datetime | int) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromtimestamp(value, UTC)


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
