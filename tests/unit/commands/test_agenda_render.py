"""`!agenda` answers, rendered with a fake clock (unit level: no homeserver)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.agenda.model import Session
from bot.chat import FileUpload, IncomingMessage
from tests.fakes import FakeClock, make_dispatcher
from tests.helpers import NOW, parse, real_fixture

PARIS = ZoneInfo("Europe/Paris")


def paris(*args: int) -> datetime:
    return datetime(*args, tzinfo=PARIS).astimezone(UTC)


def session(title: str, start: datetime, minutes: int = 60, **kw: object) -> Session:
    return Session(title=title, start=start, end=start + timedelta(minutes=minutes), **kw)  # type: ignore[arg-type]


async def ask(
    tmp_path: Path, sessions: list[Session], text: str, now: datetime = NOW, **sections: object
):
    dispatcher, _chat, storage = await make_dispatcher(
        tmp_path, sessions, FakeClock(now), **sections
    )
    try:
        msg = IncomingMessage("!room:example.org", "$ev", "@alice:example.org", text)
        reply = await dispatcher.answer(msg)
        assert reply is not None
        return reply
    finally:
        await storage.close()


async def test_grouped_by_day_in_french_with_paris_times(tmp_path: Path) -> None:
    sessions = [
        session("Webinaire Grist", paris(2026, 12, 2, 10, 0), 20, url="https://visio.example/g"),
        session(
            "Atelier Superset",
            paris(2026, 12, 2, 14, 0),
            90,
            location="Salle 4",
            speakers=("Camille Dupont", "Karim Martin"),
        ),
        session("Point de rentrée", paris(2026, 12, 1, 9, 30), 30),
        session("Journée BlueHats", paris(2027, 1, 6, 0, 0), 24 * 60, all_day=True),
    ]
    reply = await ask(tmp_path, sessions, "!agenda")
    assert reply.body.splitlines()[:4] == [
        "📅 Prochaines séances BlueHats",
        "",
        "mardi 1er décembre",
        f"• 09h30 – 10h00 · Point de rentrée [{sessions[2].sid}]",
    ]
    assert (
        f"mercredi 2 décembre\n• 10h00 – 10h20 · Webinaire Grist [{sessions[0].sid}]\n"
        "  🔗 https://visio.example/g" in reply.body
    )
    assert f"• 14h00 – 15h30 · Atelier Superset [{sessions[1].sid}]" in reply.body
    assert "🎤 Camille Dupont, Karim Martin" in reply.body and "📍 Salle 4" in reply.body
    # Another year: the year is said.
    assert "mercredi 6 janvier 2027\n• toute la journée · Journée BlueHats [" in reply.body
    # Every session shows its id; the footer says what to do with it.
    assert reply.body.endswith(
        "Détails : !session <identifiant> · dans votre agenda : !agenda ics"
        " · réagissez 🔔 pour un rappel en privé"
    )
    assert '<a href="https://visio.example/g">' in reply.html
    assert reply.html.index("mardi 1er décembre") < reply.html.index("mercredi 2 décembre")


async def test_summer_time_shown_in_paris_time(tmp_path: Path) -> None:
    reply = await ask(
        tmp_path, [session("Été", datetime(2027, 6, 3, 8, 0, tzinfo=UTC), 30)], "!agenda"
    )
    assert "jeudi 3 juin 2027\n• 10h00 – 10h30 · Été [" in reply.body


async def test_real_calendar_shifted_into_the_future_is_capped(tmp_path: Path) -> None:
    real = parse(real_fixture("mission-logiciels-libres.ics").read_bytes())
    # Whole weeks keep weekdays; the last 20 sessions land after NOW.
    twentieth_last = sorted(s.start for s in real)[-20]
    shift = timedelta(weeks=(NOW - twentieth_last).days // 7 + 1)
    shifted = [
        dataclasses.replace(s, start=s.start + shift, end=s.end + shift, sid="", search_key="")
        for s in real
    ]
    upcoming = [s for s in shifted if s.end > NOW]
    assert len(upcoming) > 10
    reply = await ask(tmp_path, shifted, "!agenda")
    assert reply.body.count("\n• ") == 10
    more = len(upcoming) - 10
    assert f"… et {more} autres séances. Affinez avec !agenda semaine" in reply.body
    assert reply.html.count("<li>") == 10
    # Entities from the real file are decoded, and HTML-escaped once, not twice.
    assert "&amp;#39;" not in reply.html and "&#39;" not in reply.body


async def test_nothing_upcoming_is_a_friendly_sentence(tmp_path: Path) -> None:
    past = session("Passé", paris(2026, 11, 1, 10, 0))
    reply = await ask(tmp_path, [past], "!agenda")
    assert reply.body == "Aucune séance BlueHats n'est prévue pour le moment : revenez bientôt !"
    reply = await ask(tmp_path, [], "!agenda demain")
    assert reply.body.startswith("Aucune séance BlueHats demain.")
    # Nothing to come, one on now: each on its own line.
    ongoing = session("En cours", NOW - timedelta(minutes=10))
    reply = await ask(tmp_path, [ongoing], "!prochain")
    assert reply.body.splitlines() == [
        "Aucune séance BlueHats n'est prévue pour le moment : revenez bientôt !",
        f"En ce moment : En cours [{ongoing.sid}]",
    ]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ("aujourd'hui", {"Ce soir", "En cours"}),
        ("aujourd’hui", {"Ce soir", "En cours"}),  # phone keyboards send ’
        ("AUJOURDHUI", {"Ce soir", "En cours"}),
        ("demain", {"Demain matin"}),
        ("semaine", {"Ce soir", "En cours", "Demain matin", "Dans six jours"}),
        ("", {"Ce soir", "En cours", "Demain matin", "Dans six jours", "Dans un mois"}),
        ("matin demain", {"Demain matin"}),
        ("semaine SOIR", {"Ce soir"}),
    ],
)
async def test_time_windows_and_words(tmp_path: Path, args: str, expected: set[str]) -> None:
    sessions = [
        session("Hier", paris(2026, 11, 22, 10, 0)),
        session("En cours", paris(2026, 11, 23, 9, 30), 60),
        session("Ce soir", paris(2026, 11, 23, 18, 0)),
        session("Demain matin", paris(2026, 11, 24, 9, 0)),
        session("Dans six jours", paris(2026, 11, 29, 9, 0)),
        session("Dans un mois", paris(2026, 12, 23, 9, 0)),
    ]
    reply = await ask(tmp_path, sessions, f"!agenda {args}")
    listed = {s.title for s in sessions if f"· {s.title}" in reply.body}
    assert listed == expected
    if "En cours" in expected:
        assert "· En cours (en cours)" in reply.body


async def test_words_match_any_field_ignoring_case_and_accents(tmp_path: Path) -> None:
    sessions = [
        session("Atelier", paris(2026, 12, 1, 10, 0), description="Tableaux de bord Superset"),
        session("Café", paris(2026, 12, 2, 10, 0), location="Ségur", categories=("Données",)),
        session("Webinaire", paris(2026, 12, 3, 10, 0)),
    ]
    assert "· Atelier" in (await ask(tmp_path, sessions, "!agenda superSET")).body
    body = (await ask(tmp_path, sessions, "!agenda segur donnees")).body
    assert "· Café" in body and "· Atelier" not in body
    nothing = await ask(tmp_path, sessions, "!agenda <b>zzz</b>")
    assert nothing.body.startswith("Aucune séance à venir ne correspond à « <b>zzz</b> »")
    assert "&lt;b&gt;zzz&lt;/b&gt;" in nothing.html and "<b>zzz" not in nothing.html


@pytest.mark.parametrize("typed", ["mise en oeuvre", "MISE EN ŒUVRE", "Mise en œuvre"])
async def test_ligatures_match_their_two_letter_spelling(tmp_path: Path, typed: str) -> None:
    sessions = [
        session("Mise en œuvre de la loi Lemaire", paris(2026, 12, 1, 10, 0)),
        session("Webinaire", paris(2026, 12, 3, 10, 0), description="Cas d'usage ex aequo"),
    ]
    body = (await ask(tmp_path, sessions, f"!agenda {typed}")).body
    assert "· Mise en œuvre de la loi Lemaire" in body and "· Webinaire" not in body
    assert "· Webinaire" in (await ask(tmp_path, sessions, "!agenda ex æquo")).body


async def test_english_when_configured(tmp_path: Path) -> None:
    reply = await ask(
        tmp_path, [session("Grist", paris(2026, 12, 2, 10, 0))], "!agenda", bot={"language": "en"}
    )
    assert reply.body.startswith(
        "📅 Upcoming BlueHats sessions\n\nWednesday 2 December\n• 10:00 – 11:00 · Grist"
    )
    export = await ask(
        tmp_path,
        [session("Grist", paris(2026, 12, 2, 10, 0))],
        "!agenda ics",
        bot={"language": "en"},
    )
    assert isinstance(export, FileUpload)
    assert b"X-WR-CALNAME:BlueHats agenda" in export.data
