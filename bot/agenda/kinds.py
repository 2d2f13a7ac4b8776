"""Kinds of calendar sources: the parser that reads each, and the guess for bare sources.

An entry of `agenda.sources` is read by the parser of its kind, declared
(`{url: …, kind: json}`) or, for a bare path or URL, guessed as before kinds
were declared: by the name's extension, else by the content, else a programme
(`guess`). A source's identity (in the database, in logs) stays its path or
URL; the kind only chooses the parser.

Each kind is one function registered below with `@kind(...)`. The parsers are
imported when first used: the configuration names the kinds without loading
icalendar (`bot.config.agenda` checks a declared kind against `KINDS`).

Adding a kind (say pretalx's schedule JSON): its parser in its own module of
`bot/agenda/` (bytes → sessions, its own error for unusable data), and one
`kind(...)(lazy(module, function, error))` here saying which extensions or
content are its own (or none: then it is only used when declared). The
configuration, `check-config`, the worker and the README's list
(`config.example.yaml`) are the only other places to mention it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlparse
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from bot.agenda.bounds import Bounds
    from bot.agenda.model import Session


class ParseFn(Protocol):
    def __call__(
        self,
        body: bytes,
        *,
        source: str,
        tz: ZoneInfo,
        window_start: datetime,
        window_end: datetime,
        bounds: Bounds | None = None,
    ) -> list[Session]:
        """Sessions overlapping the window, within `bounds` (what was cut noted in
        `bounds.notes`); `bot.fetch.SourceError` when the data is unusable."""


@dataclass(frozen=True, slots=True)
class Kind:
    name: str
    parse: ParseFn
    about: str  # what it reads, in a few words (check-config, errors)
    extensions: tuple[str, ...] = ()  # lower case, with the dot
    # Whether the start of a content (BOM and leading blanks removed) is of this kind.
    sniff: Callable[[bytes], bool] | None = None


KINDS: dict[str, Kind] = {}
# A bare source whose name and content say nothing is read as this kind.
FALLBACK = "programme"


def kind(
    name: str,
    *,
    about: str,
    extensions: tuple[str, ...] = (),
    sniff: Callable[[bytes], bool] | None = None,
) -> Callable[[ParseFn], ParseFn]:
    """Register the decorated function as the parser of kind `name`."""

    def register(parse: ParseFn) -> ParseFn:
        if name in KINDS:
            raise ValueError(f"kind {name!r} registered twice")
        KINDS[name] = Kind(name, parse, about, extensions, sniff)
        return parse

    return register


def known() -> str:
    """The kinds' names, for messages: 'ics, programme, json'."""
    return ", ".join(KINDS)


class SourceRef(Protocol):
    """A configured source: its path or URL and its declared kind (None: guessed)."""

    @property
    def url(self) -> str: ...

    @property
    def kind(self) -> str | None: ...


def _path(source: str) -> str:
    parsed = urlparse(source)
    return parsed.path if parsed.scheme in ("http", "https") else source


def guess(source: str, body: bytes) -> Kind:
    """The kind of a bare source: by its name's extension, else by its content."""
    suffix = PurePosixPath(_path(source)).suffix.lower()
    for found in KINDS.values():
        if suffix in found.extensions:
            return found
    head = body.lstrip(b"\xef\xbb\xbf \t\r\n")[:64]
    for found in KINDS.values():
        if found.sniff is not None and found.sniff(head):
            return found
    return KINDS[FALLBACK]


def of(source: str, body: bytes, declared: str | None = None) -> Kind:
    """The kind that reads this source: the declared one, else the guess."""
    if declared is None:
        return guess(source, body)
    try:
        return KINDS[declared]
    except KeyError:
        raise ValueError(f"unknown source kind {declared!r}: use one of {known()}") from None


# -- the kinds (parsers imported on first use) --------------------------------------


def lazy(module: str, function: str, error: str) -> ParseFn:
    """The parser `module.function`, imported on first use (icalendar is slow to
    import, and the bot's process parses only through the parser process), its
    error `module.error` turned into `SourceError`."""

    def parse(body: bytes, **options: Any) -> list[Session]:
        from bot.fetch import SourceError

        found = importlib.import_module(module)
        try:
            sessions: list[Session] = getattr(found, function)(body, **options)
        except getattr(found, error) as exc:
            raise SourceError(str(exc)) from None
        return sessions

    return parse


kind(
    "ics",
    about="iCalendar (RFC 5545)",
    extensions=(".ics", ".ical", ".icalendar"),
    sniff=lambda head: head[:15].upper().startswith(b"BEGIN:VCALENDAR"),
)(lazy("bot.agenda.ics", "parse_ics", "CalendarError"))
kind(
    "programme",
    about="a programme in YAML (format in agenda.example.yaml)",
    extensions=(".yaml", ".yml"),
)(lazy("bot.agenda.programme", "parse_programme", "ProgrammeError"))
# JSON is not read as YAML: PyYAML (YAML 1.1) rejects tab-indented JSON and
# leaves an escaped emoji ("\ud83d\ude00") as two lone surrogates, which no
# message or page can encode (tests/unit/agenda/test_kinds.py).
kind(
    "json",
    about="the same programme written in JSON",
    extensions=(".json",),
)(lazy("bot.agenda.programme", "parse_programme_json", "ProgrammeError"))
