"""YAML programmes: the shipped example, time zones, and every error named by its key."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import icalendar
import pytest

from bot.agenda.export import to_ics
from bot.agenda.programme import ProgrammeError, parse_programme

PARIS = ZoneInfo("Europe/Paris")
EXAMPLE = Path(__file__).resolve().parent.parent.parent.parent / "agenda.example.yaml"
EVER = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


def parse(text: str | bytes, start: datetime = EVER[0], end: datetime = EVER[1]):
    data = text.encode() if isinstance(text, str) else text
    return parse_programme(data, source="test", tz=PARIS, window_start=start, window_end=end)


def test_shipped_example_osxp_2024() -> None:
    sessions = parse(EXAMPLE.read_bytes())
    assert len(sessions) == 8
    opening = sessions[0]
    assert opening.title == "Ouverture des journées BlueHats"
    # 10h00 in Paris in December (UTC+1).
    assert opening.start == datetime(2024, 12, 4, 9, 0, tzinfo=UTC)
    assert opening.end == datetime(2024, 12, 4, 9, 30, tzinfo=UTC)
    assert opening.location == "Salle BlueHats, Paris"
    assert opening.event == "Journées BlueHats au salon Open Source Experience 2024"
    assert opening.uid == "osxp24-ouverture"
    assert opening.url == "https://code.gouv.fr/fr/bluehats/"  # the event's link by default
    assert opening.description.startswith("Accueil, présentation")
    grist = next(s for s in sessions if "Grist" in s.title)
    assert grist.url == "https://grist.numerique.gouv.fr"
    assert grist.categories == ("grist", "atelier")
    tour = next(s for s in sessions if s.title.startswith("Tour de table"))
    assert tour.speakers == ("Agents publics utilisateurs de logiciels libres",)
    assert {s.start.date().isoformat() for s in sessions} == {"2024-12-04", "2024-12-05"}


def test_dst_and_other_zones() -> None:
    sessions = parse(
        """
events:
  - title: Printemps
    dates: 2027-03-28   # the spring change in Europe
    sessions:
      - {time: 10h-11h, title: Après le changement d'heure}
  - title: New York
    timezone: America/New_York
    dates: 2027-03-20
    sessions:
      - {start: "9:00", end: "10h30", title: Webinar}
"""
    )
    assert sessions[0].start == datetime(2027, 3, 28, 8, 0, tzinfo=UTC)  # UTC+2 already
    assert sessions[1].start == datetime(2027, 3, 20, 13, 0, tzinfo=UTC)  # EDT, UTC-4
    assert sessions[1].end == datetime(2027, 3, 20, 14, 30, tzinfo=UTC)


def test_line_breaks_of_a_description_reach_the_calendar_as_line_feeds() -> None:
    """A lone CR (or CRLF, or U+2028) typed in a description: one line break each
    in the session and in the .ics, never a bare CR inside a content line."""
    (session,) = parse(
        r"""
events:
  - title: Journée
    dates: 2027-03-20
    sessions:
      - time: 10h-11h
        title: Atelier
        description: "Un\rdeux\r\ntrois\u2028quatre\r\rcinq"
"""
    )
    assert session.description == "Un\ndeux\ntrois\nquatre\n\ncinq"
    data = to_ics([session], tz=PARIS, now=EVER[0])
    assert re.search(rb"\r(?!\n)", data) is None
    (event,) = icalendar.Calendar.from_ical(data).walk("VEVENT")
    assert str(event["DESCRIPTION"]).startswith("Un\ndeux\ntrois\nquatre\n\ncinq\n\n")


def test_window_and_cancelled_flag() -> None:
    text = """
events:
  - title: E
    dates: [2026-12-01, 2026-12-02]
    sessions:
      - {date: 2026-12-01, time: 10h-11h, title: Un}
      - {date: 2026-12-02, time: 10h-11h, title: Deux, cancelled: true}
"""
    inside = parse(text, datetime(2026, 12, 2, tzinfo=UTC), EVER[1])
    assert [(s.title, s.cancelled) for s in inside] == [("Deux", True)]


def problems(text: str) -> str:
    with pytest.raises(ProgrammeError) as caught:
        parse(text)
    return str(caught.value)


def test_bad_yaml_says_where() -> None:
    message = problems("events:\n  - title: [unclosed\n    dates: 2026-12-01\n")
    assert message.startswith("not valid YAML at line")


def test_not_a_programme() -> None:
    assert "expected a mapping with an 'events' list" in problems("")
    assert "expected a mapping with an 'events' list" in problems("- a\n- b\n")


def test_every_field_problem_named_by_its_key() -> None:
    message = problems(
        """
events:
  - title: E
    dates: [2026-12-01]
    colour: blue
    sessions:
      - {time: 10h-11h, title: "  "}
      - {time: 25h-26h, title: X}
      - {time: 10h-11h, title: Y, link: "javascript:alert(1)"}
"""
    )
    assert "events.0.colour: unknown key" in message
    assert "events.0.sessions.0.title: the title is empty" in message
    assert "events.0.sessions.1: not a time of day: '25h-26h'" in message
    assert "events.0.sessions.2.link: not an http(s) link" in message


def test_times_and_dates_checked() -> None:
    message = problems(
        """
events:
  - title: E
    dates: [2026-12-01, 2026-12-02]
    sessions:
      - {date: 2026-12-01, time: 11h-10h, title: A}
"""
    )
    assert "events.0.sessions.0: end 10:00 is not after start 11:00" in message
    message = problems(
        """
events:
  - title: E
    dates: [2026-12-01, 2026-12-02]
    sessions:
      - {time: 10h-11h, title: A}
      - {date: 2026-12-09, time: 10h-11h, title: B}
"""
    )
    assert "events.0.sessions.0.date: required, the event has several dates" in message
    assert "events.0.sessions.1.date: 2026-12-09 is not one of the event's dates" in message
    assert "events.0.timezone: unknown time zone" in problems(
        "events:\n  - {title: E, dates: 2026-12-01, timezone: Mars/Olympus}\n"
    )
