"""`.ics` export: parsed back by icalendar and by our own reader, as Outlook/Thunderbird would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import icalendar

from bot.agenda.export import safe_filename, to_ics
from bot.agenda.ics import parse_ics
from bot.agenda.model import Session
from tests.helpers import real_fixture

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
EVER = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


def read_back(data: bytes) -> list[Session]:
    return parse_ics(data, source="export", tz=PARIS, window_start=EVER[0], window_end=EVER[1])


def sessions() -> list[Session]:
    return [
        # Saturday before and Monday after the spring change (28 March 2027).
        Session(
            title='Atelier <script>alert("x")</script>, données; 🧢',
            start=datetime(2027, 3, 27, 9, 0, tzinfo=UTC),
            end=datetime(2027, 3, 27, 10, 30, tzinfo=UTC),
            description="Première ligne\nDeuxième ligne, avec virgule; et point-virgule",
            location="Salle B, Paris",
            url="https://grist.numerique.gouv.fr",
            speakers=("Ana Lopez", "Léo Martin"),
            categories=("grist", "atelier"),
            event="Journée BlueHats",
        ),
        Session(
            title="Webinaire Superset",
            start=datetime(2027, 3, 29, 8, 0, tzinfo=UTC),
            end=datetime(2027, 3, 29, 9, 0, tzinfo=UTC),
            url="javascript:alert(1)",
        ),
        Session(
            title="Journée BlueHats",
            start=datetime(2027, 4, 1, tzinfo=PARIS).astimezone(UTC),
            end=datetime(2027, 4, 2, tzinfo=PARIS).astimezone(UTC),
            all_day=True,
        ),
        Session(
            title="Annulée",
            start=datetime(2027, 4, 3, 8, tzinfo=UTC),
            end=datetime(2027, 4, 3, 9, tzinfo=UTC),
            cancelled=True,
        ),
    ]


def test_round_trip_same_sessions_same_ids() -> None:
    original = sessions()
    data = to_ics(original, tz=PARIS, now=NOW)
    back = read_back(data)
    kept = [s for s in original if not s.cancelled]
    assert [s.sid for s in back] == [s.sid for s in kept]
    assert [(s.title, s.start, s.end, s.all_day) for s in back] == [
        (s.title, s.start, s.end, s.all_day) for s in kept
    ]
    first = back[0]
    assert first.location == "Salle B, Paris"
    assert first.url == "https://grist.numerique.gouv.fr"
    assert first.description.startswith("Première ligne\nDeuxième ligne, avec virgule; et point")
    assert "Intervenants : Ana Lopez, Léo Martin" in first.description
    assert "Événement : Journée BlueHats" in first.description
    assert back[1].url == ""  # a javascript: link is not exported


def test_outlook_friendly_structure() -> None:
    data = to_ics(sessions(), tz=PARIS, now=NOW)
    cal = icalendar.Calendar.from_ical(data)
    assert str(cal["METHOD"]) == "PUBLISH" and str(cal["VERSION"]) == "2.0"
    (tz,) = cal.walk("VTIMEZONE")
    assert str(tz["TZID"]) == "Europe/Paris"
    assert {c.name for c in tz.subcomponents} == {"STANDARD", "DAYLIGHT"}
    events = cal.walk("VEVENT")
    assert not any("ATTENDEE" in e for e in events)
    saturday, monday, all_day = events
    # Wall times with TZID: 10:00 on both sides of the DST change.
    assert saturday["DTSTART"].params["TZID"] == "Europe/Paris"
    assert saturday["DTSTART"].dt.replace(tzinfo=None) == datetime(2027, 3, 27, 10, 0)
    assert monday["DTSTART"].dt.replace(tzinfo=None) == datetime(2027, 3, 29, 10, 0)
    assert all_day["DTSTART"].params.get("VALUE") == "DATE"
    assert str(saturday["CATEGORIES"].to_ical().decode()) == "grist,atelier"
    raw_lines = data.split(b"\r\n")
    assert b"\n" not in data.replace(b"\r\n", b"")  # CRLF only
    assert max(len(line) for line in raw_lines) <= 75


def test_uids_stable_across_exports() -> None:
    first = icalendar.Calendar.from_ical(to_ics(sessions(), tz=PARIS, now=NOW))
    later = icalendar.Calendar.from_ical(to_ics(sessions(), tz=PARIS, now=NOW + timedelta(days=3)))
    uids = [str(e["UID"]) for e in first.walk("VEVENT")]
    assert uids == [str(e["UID"]) for e in later.walk("VEVENT")]
    assert uids[0] == f"{sessions()[0].sid}@bluehats-bot"


def test_real_calendar_round_trip() -> None:
    real = read_back(real_fixture("mission-logiciels-libres.ics").read_bytes())
    assert len(real) == 74
    back = read_back(to_ics(real, tz=PARIS, now=NOW))
    assert sorted(s.sid for s in back) == sorted(s.sid for s in real)


def test_safe_filename() -> None:
    assert safe_filename("Atelier Grist : données & tableaux") == "atelier-grist-donnees-tableaux"
    assert safe_filename("🧢🧢") == "agenda"
    assert len(safe_filename("x" * 200)) == 60
