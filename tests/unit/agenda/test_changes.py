"""Programme changes between two agendas: one per real change, none for noise."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from bot.agenda.changes import ChangeKind, diff
from bot.agenda.ics import parse_ics
from bot.agenda.model import Agenda, Session
from tests.helpers import real_fixture

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def at(day: int, hour: int, minute: int = 0, month: int = 12) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=PARIS).astimezone(UTC)


def s(title: str, start: datetime, minutes: int = 60, **kw: object) -> Session:
    return Session(title=title, start=start, end=start + timedelta(minutes=minutes), **kw)  # type: ignore[arg-type]


def moved(session: Session, start: datetime, minutes: int = 60, **kw: object) -> Session:
    return dataclasses.replace(
        session, start=start, end=start + timedelta(minutes=minutes), sid="", search_key="", **kw
    )


def real(uid_salt: str = "") -> list[Session]:
    data = real_fixture("mission-logiciels-libres.ics").read_bytes()
    if uid_salt:  # what every site build does: new random UIDs everywhere
        data = re.sub(rb"UID:(\S+)", lambda m: b"UID:" + uid_salt.encode() + m.group(1), data)
    return parse_ics(
        data,
        source="real",
        tz=PARIS,
        window_start=datetime(2000, 1, 1, tzinfo=UTC),
        window_end=datetime(2100, 1, 1, tzinfo=UTC),
    )


def test_real_calendar_with_all_uids_changed_gives_no_change() -> None:
    before, after = real(), real("rebuilt-")
    assert {x.uid for x in before}.isdisjoint({x.uid for x in after})
    long_ago = datetime(2020, 1, 1, tzinfo=UTC)  # every session still upcoming
    found = diff(Agenda(before), Agenda(after), now=long_ago)
    assert found.changes == [] and found.suppressed == []


def test_one_occurrence_of_a_weekly_series_moved() -> None:
    weekly = [s("Webinaire BlueHats", at(1 + 7 * i, 14), uid=f"w{i}") for i in range(4)]
    new = list(weekly)
    new[2] = moved(weekly[2], at(15, 15), uid="other")  # 14h → 15h, new UID
    (change,) = diff(Agenda(weekly), Agenda(new), now=NOW).changes
    assert change.kind is ChangeKind.MOVED
    assert change.before == weekly[2] and change.after == new[2]


def test_end_room_and_link_changes() -> None:
    a = s("Atelier Grist", at(2, 10), location="Salle A", url="https://a.example")
    b = s("Atelier Superset", at(3, 10), location="Salle A")
    new = [
        dataclasses.replace(a, end=a.end + timedelta(minutes=30)),
        dataclasses.replace(b, location="Salle B"),
    ]
    changes = diff(Agenda([a, b]), Agenda(new), now=NOW).changes
    assert [(c.kind, c.before.title) for c in changes] == [
        (ChangeKind.MOVED, "Atelier Grist"),
        (ChangeKind.RELOCATED, "Atelier Superset"),
    ]


def test_cancelled_explicitly_or_vanished() -> None:
    a, b, c = (s(t, at(d, 10)) for t, d in (("A", 2), ("B", 3), ("C", 4)))
    new = [dataclasses.replace(a, cancelled=True), c]  # A flagged, B gone
    changes = diff(Agenda([a, b, c]), Agenda(new), now=NOW).changes
    assert [(x.kind, x.before.title, x.after is not None) for x in changes] == [
        (ChangeKind.CANCELLED, "A", True),
        (ChangeKind.CANCELLED, "B", False),
    ]


def test_past_sessions_and_additions_are_not_changes() -> None:
    past = s("Passé", NOW - timedelta(days=1))
    started = s("En cours", NOW - timedelta(minutes=10))
    kept = s("Gardé", at(2, 10))
    new = [kept, s("Nouveau", at(5, 10))]
    assert diff(Agenda([past, started, kept]), Agenda(new), now=NOW).changes == []


def test_retitled_and_moved_with_a_stable_uid() -> None:
    old = s("Atelier", at(2, 10), uid="stable@x")
    new = s("Atelier Grist (complet)", at(2, 11), uid="stable@x")
    (change,) = diff(Agenda([old]), Agenda([new]), now=NOW).changes
    assert change.kind is ChangeKind.MOVED and change.after == new


def test_far_same_title_is_another_occurrence_not_a_move() -> None:
    old = s("Café BlueHats", at(2, 10))
    new = s("Café BlueHats", at(2, 10) + timedelta(days=30))
    changes = diff(Agenda([old]), Agenda([new]), now=NOW).changes
    assert [c.kind for c in changes] == [ChangeKind.CANCELLED]


def test_half_empty_publication_is_not_a_mass_cancellation() -> None:
    old = [s(f"Séance {i}", at(1 + i, 10)) for i in range(12)]
    explicit = dataclasses.replace(old[0], cancelled=True)
    new = [explicit, old[1]]  # 10 of 12 vanished, one explicitly cancelled
    found = diff(Agenda(old), Agenda(new), now=NOW)
    assert [(c.kind, c.before.title) for c in found.changes] == [(ChangeKind.CANCELLED, "Séance 0")]
    assert len(found.suppressed) == 10


def test_change_keys_are_stable_and_distinct() -> None:
    old = s("Atelier", at(2, 10))
    first = diff(Agenda([old]), Agenda([moved(old, at(2, 11))]), now=NOW).changes[0]
    again = diff(Agenda([old]), Agenda([moved(old, at(2, 11))]), now=NOW).changes[0]
    other = diff(Agenda([old]), Agenda([moved(old, at(2, 12))]), now=NOW).changes[0]
    assert first.key == again.key != other.key


def test_move_across_the_dst_change_pairs_correctly() -> None:
    # Weekly at 10:00 Paris across the spring change (28 March 2027).
    weekly = [
        s("Point", datetime(2027, 3, 21 + 7 * i, 10, tzinfo=PARIS).astimezone(UTC))
        for i in range(2)
    ]
    assert weekly[0].start.hour == 9 and weekly[1].start.hour == 8  # UTC shifts, Paris does not
    new = [weekly[0], moved(weekly[1], datetime(2027, 3, 28, 11, tzinfo=PARIS).astimezone(UTC))]
    (change,) = diff(Agenda(weekly), Agenda(new), now=NOW).changes
    assert change.before == weekly[1] and change.after is not None
    assert change.after.start.astimezone(PARIS).hour == 11
