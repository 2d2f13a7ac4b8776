"""iCalendar normalisation, on the real code.gouv.fr calendar and on edge cases."""

from __future__ import annotations

import random
import re
import string
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.agenda.ics import CalendarError, clean_text
from bot.agenda.model import Agenda
from tests.helpers import EVER, parse, real_fixture

PARIS = ZoneInfo("Europe/Paris")


def cal(*events: str, extra: str = "") -> str:
    body = "".join(
        f"BEGIN:VEVENT\r\nDTSTAMP:20260101T000000Z\r\n{e.strip()}\r\nEND:VEVENT\r\n" for e in events
    )
    return f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//FR\r\n{extra}{body}END:VCALENDAR\r\n"


def real_calendar() -> bytes:
    return real_fixture("mission-logiciels-libres.ics").read_bytes()


def test_real_calendar_all_events_with_decoded_text() -> None:
    sessions = parse(real_calendar())
    assert len(sessions) == 74
    by_title = {s.title: s for s in sessions}
    esup = by_title["Présentation d'Esup Pod et d'OpenMole"]  # &#39; decoded
    assert esup.description.startswith("Interventions de Nicolas Can sur Esup Pod et de")
    assert "<a" not in esup.description and "&lt;" not in esup.description
    # A webinar in UTC with DURATION and no DTEND, its link given as LOCATION.
    matomo = by_title["Présentation de Matomo (1/2)"]
    assert matomo.start == datetime(2020, 7, 17, 11, 0, tzinfo=UTC)
    assert matomo.end - matomo.start == timedelta(hours=1, minutes=30)
    assert matomo.url.startswith("https://webinaire.numerique.gouv.fr/") and not matomo.location
    assert matomo.description == "Interventions de Ronan Chardonneau, formateur Matomo"  # &#92;,
    # An all-day event (VALUE=DATE) covers the Paris day; folded title rejoined.
    summit = by_title["Présentations de la journée BlueHats 🧢 2018 - Paris Open Source Summit"]
    assert summit.all_day
    assert summit.start.astimezone(PARIS) == datetime(2018, 12, 6, tzinfo=PARIS)
    assert summit.end - summit.start == timedelta(days=1)


def _reshuffle_uids(data: bytes) -> bytes:
    rng = random.Random(7)

    def new_uid(_: re.Match[bytes]) -> bytes:
        return b"UID:" + "".join(rng.choices(string.ascii_letters, k=21)).encode()

    return re.sub(rb"UID:[^\r\n]+", new_uid, data)


def test_same_sessions_when_every_uid_changes() -> None:
    """code.gouv.fr draws new UIDs at each site build: ids must not change."""
    before = Agenda(parse(real_calendar()))
    after = Agenda(parse(_reshuffle_uids(real_calendar())))
    assert _reshuffle_uids(real_calendar()) != real_calendar()
    assert [s.sid for s in before] == [s.sid for s in after]
    # Loaded twice (two sources or two refreshes merged): still one each.
    merged = Agenda([*before, *after])
    assert len(merged) == len(before) == 74


def test_rrule_exdate_moved_and_cancelled_occurrences() -> None:
    data = cal(
        """UID:weekly@t
DTSTART;TZID=Europe/Paris:20270104T100000
DTEND;TZID=Europe/Paris:20270104T110000
RRULE:FREQ=WEEKLY;COUNT=5
EXDATE;TZID=Europe/Paris:20270111T100000
SUMMARY:Point hebdo""",
        """UID:weekly@t
RECURRENCE-ID;TZID=Europe/Paris:20270118T100000
DTSTART;TZID=Europe/Paris:20270118T150000
DTEND;TZID=Europe/Paris:20270118T160000
SUMMARY:Point hebdo (déplacé)""",
        """UID:weekly@t
RECURRENCE-ID;TZID=Europe/Paris:20270125T100000
DTSTART;TZID=Europe/Paris:20270125T100000
DTEND;TZID=Europe/Paris:20270125T110000
STATUS:CANCELLED
SUMMARY:Point hebdo""",
    )
    agenda = Agenda(parse(data))
    starts = [(s.start.astimezone(PARIS).strftime("%d %H:%M"), s.title) for s in agenda]
    assert starts == [
        ("04 10:00", "Point hebdo"),
        ("18 15:00", "Point hebdo (déplacé)"),
        ("01 10:00", "Point hebdo"),
    ]
    # The cancelled occurrence is known as cancelled (for `!session <id>`), never listed.
    assert [s.start.astimezone(PARIS).day for s in agenda.cancelled] == [25]
    assert all(s.uid == "weekly@t" for s in parse(data))


def test_cancelled_event_never_listed() -> None:
    data = cal("UID:c@t\nDTSTART:20270301T100000Z\nSTATUS:CANCELLED\nSUMMARY:Annulé")
    agenda = Agenda(parse(data))
    assert list(agenda) == []
    assert agenda.between(EVER[0]) == []
    (cancelled,) = agenda.cancelled
    assert agenda.get(cancelled.sid.upper()) == cancelled


def test_timezones_and_dst() -> None:
    data = cal(
        # Weekly in New York across both DST changes (US 14 March, EU 28 March 2027).
        "UID:ny@t\nDTSTART;TZID=America/New_York:20270310T090000\nDURATION:PT1H\n"
        "RRULE:FREQ=WEEKLY;COUNT=4\nSUMMARY:NY",
        # The week after the spring change in Paris (28 March 2027): 10:00 stays 10:00.
        "UID:w@t\nDTSTART;TZID=Europe/Paris:20270325T100000\nDURATION:PT1H\n"
        "RRULE:FREQ=WEEKLY;COUNT=2\nSUMMARY:Hebdo",
        # Floating time: the bot's zone.
        "UID:f@t\nDTSTART:20270601T140000\nDTEND:20270601T150000\nSUMMARY:Flottant",
    )
    sessions = {(s.title, s.start.astimezone(PARIS).strftime("%m-%d %H:%M")) for s in parse(data)}
    assert {x for x in sessions if x[0] == "NY"} == {
        ("NY", "03-10 15:00"),  # EST -5, CET +1
        ("NY", "03-17 14:00"),  # EDT -4, CET +1: the three weeks out of step
        ("NY", "03-24 14:00"),
        ("NY", "03-31 15:00"),  # EDT -4, CEST +2
    }
    assert ("Hebdo", "03-25 10:00") in sessions and ("Hebdo", "04-01 10:00") in sessions
    assert ("Flottant", "06-01 14:00") in sessions


def test_window_limits_infinite_series() -> None:
    data = cal("UID:d@t\nDTSTART:20270101T090000Z\nDURATION:PT1H\nRRULE:FREQ=DAILY\nSUMMARY:Daily")
    start = datetime(2027, 2, 1, tzinfo=UTC)
    sessions = parse(data, start, start + timedelta(days=10))
    assert len(sessions) == 10


@pytest.mark.parametrize(
    "garbage",
    [b"", b"hello", b"<html>502 Bad Gateway</html>", b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\n"],
)
def test_garbage_is_a_clear_error(garbage: bytes) -> None:
    with pytest.raises(CalendarError):
        parse(garbage)


def test_clean_text_keeps_titles_as_text_and_strips_description_markup() -> None:
    assert clean_text("<script>x</script> &amp; co") == "<script>x</script> & co"
    assert clean_text("a&lt;br&gt;b &lt;b&gt;gras&lt;/b&gt;", markup=True) == "a\nb gras"
    assert clean_text("110 bis&#92;, le lab") == "110 bis, le lab"
