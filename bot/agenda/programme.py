"""A programme in YAML or JSON (a BlueHats day announced as a table) → sessions.

The format, documented with an example in `agenda.example.yaml`::

    events:
      - title: Journées BlueHats au salon Open Source Experience 2024
        place: Paris                   # optional
        link: https://…                # optional, http(s)
        timezone: Europe/Paris         # optional, default: the bot's zone
        dates: [2024-12-04, 2024-12-05]   # or a single date
        sessions:
          - date: 2024-12-04           # optional when the event has one date
            time: 10h00-10h30          # or start: "10:00" and end: "10:30"
            title: Ouverture           # required
            speakers: [Nom (Organisation)]   # or "A, B"
            room: Salle BlueHats
            link: https://…
            tags: [grist]
            description: …
            id: osxp24-ouverture       # optional: the author's own key
            cancelled: false

The same structure in JSON is read by `parse_programme_json` (source kind
`json`): dates and times are then texts ("2024-12-04", "10h00-10h30").
Text is plain text, never HTML. Every problem is reported at once with its
dotted path (`events.0.sessions.2.end: …`), like the configuration.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from datetime import UTC, date, datetime, time
from typing import Annotated, Any
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from bot.agenda.bounds import Bounds, Earliest
from bot.agenda.clock import time_of_day, time_range
from bot.agenda.model import Session


class ProgrammeError(Exception):
    """The data is not a usable programme; the message lists every problem."""


def parse_time(value: Any) -> time:
    """'10h', '10h30', '10:30', or a YAML sexagesimal int (10:30 unquoted = 630)."""
    if isinstance(value, time):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 10:30 as 630 (minutes).
        hours, minutes = divmod(value, 60)
        return parse_time(f"{hours}:{minutes:02d}")
    found = time_of_day(str(value))
    if found is None:
        raise ValueError(f"not a time of day: {value!r} (examples: 10h, 10h30, 10:30)")
    return found


def _text(value: Any) -> str:
    return " ".join(str(value).split()) if value is not None else ""


def _lines(value: Any) -> Any:
    """Multi-line text with LF line breaks only: a CRLF or a lone CR (a double-quoted
    "\\r" in YAML), U+2028 and the like would otherwise reach the calendars (the
    icalendar releases pyproject allows before collective/icalendar PR 1462, June
    2026, write a lone CR as is), the pages and the messages."""
    return "\n".join(value.splitlines()) if isinstance(value, str) else value


def _link(value: Any) -> str:
    text = _text(value)
    if text and urlparse(text).scheme not in ("http", "https"):
        raise ValueError(f"not an http(s) link: {text!r}")
    return text


def _names(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list):
        raise ValueError("expected a list or a comma-separated text")
    return tuple(t for t in (_text(i) for i in items) if t)


def _dates(value: Any) -> list[date]:
    return value if isinstance(value, list) else [value]


Text = Annotated[str, BeforeValidator(_text)]
Lines = Annotated[str, BeforeValidator(_lines)]
Link = Annotated[str, BeforeValidator(_link)]
Names = Annotated[tuple[str, ...], BeforeValidator(_names)]
Clock = Annotated[time, BeforeValidator(parse_time)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SessionEntry(_Model):
    title: Text
    date: dt.date | None = None
    time: str | None = None
    start: Clock | None = None
    end: Clock | None = None
    speakers: Names = ()
    room: Text = ""
    link: Link = ""
    tags: Names = ()
    description: Lines = ""
    id: Text = ""
    cancelled: bool = False

    @field_validator("title")
    @classmethod
    def _title(cls, value: str) -> str:
        if not value:
            raise ValueError("the title is empty")
        return value

    @model_validator(mode="after")
    def _times(self) -> SessionEntry:
        start, end = self.start, self.end
        if self.time is not None:
            found = time_range(self.time)
            if found is None:
                raise ValueError(f"time: not a range: {self.time!r} (example: 10h00-10h30)")
            start, end = found
        if start is None or end is None:
            raise ValueError("give time: 10h00-10h30, or start and end")
        if end <= start:
            raise ValueError(f"end {end:%H:%M} is not after start {start:%H:%M}")
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)
        return self


class EventEntry(_Model):
    title: Text
    place: Text = ""
    link: Link = ""
    timezone: str | None = None
    dates: Annotated[list[dt.date], BeforeValidator(_dates)] = Field(min_length=1)
    sessions: list[SessionEntry] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {value!r} (example: Europe/Paris)") from None
        return value

    @model_validator(mode="after")
    def _session_dates(self) -> EventEntry:
        problems = []
        for i, s in enumerate(self.sessions):
            if s.date is None and len(self.dates) > 1:
                problems.append(f"sessions.{i}.date: required, the event has several dates")
            elif s.date is not None and s.date not in self.dates:
                problems.append(f"sessions.{i}.date: {s.date} is not one of the event's dates")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class Programme(_Model):
    events: list[EventEntry] = Field(min_length=1)


def _problems(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        if err["type"] == "missing":
            msg = "missing"
        for part in msg.split("; "):
            # Problems found at event level name the session themselves.
            if part.startswith("sessions."):
                sub, _, text = part.partition(": ")
                out.append(f"{where}.{sub}: {text}")
            else:
                out.append(f"{where}: {part}")
    return out


# Said when a source read as YAML may be JSON: PyYAML reads YAML 1.1, not quite a
# superset of JSON (tab indentation, escaped emoji), and JSON has its own kind.
_JSON_HINT = "; if the source is JSON, declare it as such ({url: …, kind: json})"


def parse_programme(
    data: bytes,
    *,
    source: str,
    tz: ZoneInfo,
    window_start: datetime,
    window_end: datetime,
    bounds: Bounds | None = None,
) -> list[Session]:
    """Sessions overlapping the window, the earliest `bounds.max_sessions` of them (what
    was cut noted in `bounds.notes`); ProgrammeError listing every problem otherwise."""
    try:
        raw = yaml.safe_load(data)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        hint = _JSON_HINT if data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"{", b"[") else ""
        raise ProgrammeError(f"not valid YAML{where}{hint}") from None
    _check_text(raw, _JSON_HINT)
    return programme_sessions(
        raw,
        source=source,
        tz=tz,
        window_start=window_start,
        window_end=window_end,
        bounds=bounds,
    )


def parse_programme_json(
    data: bytes,
    *,
    source: str,
    tz: ZoneInfo,
    window_start: datetime,
    window_end: datetime,
    bounds: Bounds | None = None,
) -> list[Session]:
    """`parse_programme` for the same programme written in JSON (RFC 8259: UTF-8,
    -16 or -32), read by a JSON parser: YAML 1.1 is not quite a superset of it."""
    try:
        raw = json.loads(data)
    except json.JSONDecodeError as exc:
        raise ProgrammeError(
            f"not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except UnicodeDecodeError:
        raise ProgrammeError("not valid JSON: not UTF-8 text") from None
    _check_text(raw)
    return programme_sessions(
        raw,
        source=source,
        tz=tz,
        window_start=window_start,
        window_end=window_end,
        bounds=bounds,
    )


def _check_text(raw: Any, hint: str = "") -> None:
    """ProgrammeError for a text no message, page or log line could encode: a lone
    UTF-16 surrogate, which a \\u escape gives (json.loads of half an emoji; PyYAML
    even of both halves, "\\ud83d\\ude00", as YAML 1.1 does not pair them)."""
    if where := _unpaired_surrogate(raw):
        raise ProgrammeError(
            f"{where}: a \\u escape of half a character (a lone UTF-16 surrogate); "
            f"write the character itself (or, in JSON, both halves){hint}"
        )


def _unpaired_surrogate(value: Any, where: str = "") -> str | None:
    """The dotted path of a text (or key) holding a lone surrogate."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return where or "(top level)"
        return None
    items: Iterable[tuple[Any, Any]]
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        if isinstance(key, str) and _unpaired_surrogate(key):
            return where or "(top level)"  # the key itself cannot be printed
        if found := _unpaired_surrogate(item, f"{where}.{key}" if where else str(key)):
            return found
    return None


def programme_sessions(
    raw: Any,
    *,
    source: str,
    tz: ZoneInfo,
    window_start: datetime,
    window_end: datetime,
    bounds: Bounds | None = None,
) -> list[Session]:
    """The sessions of a programme already loaded (mappings, lists, texts, dates)."""
    bounds = bounds if bounds is not None else Bounds()
    if not isinstance(raw, dict) or "events" not in raw:
        raise ProgrammeError("not a programme: expected a mapping with an 'events' list")
    try:
        programme = Programme.model_validate(raw)
    except ValidationError as exc:
        raise ProgrammeError("; ".join(_problems(exc))) from None
    kept = Earliest(bounds.max_sessions)
    for event in programme.events:
        zone = ZoneInfo(event.timezone) if event.timezone else tz
        for entry in event.sessions:
            day = entry.date or event.dates[0]
            assert entry.start is not None and entry.end is not None  # set by the validator
            start = datetime.combine(day, entry.start, zone).astimezone(UTC)
            end = datetime.combine(day, entry.end, zone).astimezone(UTC)
            if end <= window_start or start >= window_end:
                continue
            kept.add(
                Session(
                    title=entry.title,
                    start=start,
                    end=end,
                    description=entry.description.strip(),
                    location=", ".join(p for p in (entry.room, event.place) if p),
                    url=entry.link or event.link,
                    speakers=entry.speakers,
                    categories=entry.tags,
                    event=event.title,
                    source=source,
                    uid=entry.id,
                    cancelled=entry.cancelled,
                )
            )
    if note := kept.note(source):
        bounds.notes.append(note)
    return kept.sessions()
