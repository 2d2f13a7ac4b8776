"""`!session`, `!prochain`, moderators' edits and change records, with a fake chat and clock."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import icalendar
import pytest

from bot.agenda.sources import AgendaService
from bot.chat import FileUpload, IncomingMessage
from bot.commands import build_registry
from bot.commands.core import Services
from bot.commands.session import Problem, parse_day, parse_edit, parse_times, tokens
from bot.db.storage import Storage
from bot.dispatch import Dispatcher
from bot.render import Message, Renderer
from bot.views import render_change
from tests.fakes import FakeChat, FakeClock, make_config

PARIS = ZoneInfo("Europe/Paris")
# Monday 23 November 2026, 10:00 in Paris.
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
ROOM = "!room:example.org"
MOD = "@mod:example.org"
MEMBER = "@member:example.org"


def ics(*events: tuple[str, str, str]) -> bytes:
    """(uid, local start 'YYYYmmddTHHMM', title), one hour each, Paris time."""
    body = "".join(
        f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20260101T000000Z\r\n"
        f"DTSTART;TZID=Europe/Paris:{start}00\r\nDURATION:PT1H\r\nSUMMARY:{title}\r\n"
        "LOCATION:Salle A\r\nEND:VEVENT\r\n"
        for uid, start, title in events
    )
    return (
        f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//FR\r\n{body}END:VCALENDAR\r\n".encode()
    )


CALENDAR = ics(
    ("w1", "20261124T1400", "Webinaire Grist"),
    ("w2", "20261201T1400", "Webinaire Grist"),
    ("s1", "20261125T1000", "Atelier Superset"),
)


@dataclass
class Bot:
    dispatcher: Dispatcher
    chat: FakeChat
    storage: Storage
    agenda: AgendaService
    clock: FakeClock
    source: Path
    _n: int = 0

    async def say(self, text: str, sender: str = MEMBER) -> Message | FileUpload:
        self._n += 1
        msg = IncomingMessage(ROOM, f"$e{self._n}", sender, text)
        reply = await self.dispatcher.answer(msg)
        assert reply is not None
        return reply

    async def text(self, text: str, sender: str = MEMBER) -> str:
        reply = await self.say(text, sender)
        assert isinstance(reply, Message)
        return reply.body


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[Bot]:
    source = tmp_path / "agenda.ics"
    source.write_bytes(CALENDAR)
    # MOD moderates ROOM, the community's moderators' room.
    cfg = make_config(tmp_path, agenda={"sources": [str(source)]}, bot={"moderator_rooms": [ROOM]})
    storage = await Storage.open(tmp_path / "db.sqlite")
    clock = FakeClock(NOW)
    chat = FakeChat(levels={(ROOM, MOD): 50})
    async with aiohttp.ClientSession() as http:
        agenda = AgendaService(
            [str(source)], storage, http, PARIS, timedelta(days=366), clock, retry_delays=()
        )
        await agenda.start()
        renderer = Renderer("fr", PARIS)
        services = Services(config=cfg, renderer=renderer, agenda=agenda, now=clock)
        dispatcher = Dispatcher(build_registry(), services, chat, storage, retry_delay=0)
        yield Bot(dispatcher, chat, storage, agenda, clock, source)
    await storage.close()


def sid_of(bot: Bot, title: str) -> str:
    (session,) = [s for s in bot.agenda.agenda if s.title == title]
    return session.sid


def paris(d: int, h: int, m: int = 0, month: int = 11) -> datetime:
    return datetime(2026, month, d, h, m, tzinfo=PARIS)


async def test_next_and_session_in_full(bot: Bot) -> None:
    text = await bot.text("!prochain")
    assert text.startswith("⏭️ Prochaine séance BlueHats, dans 28 heures")
    assert "Webinaire Grist" in text and "mardi 24 novembre, 14h00 – 15h00" in text
    assert "📍 Salle A" in text
    assert f"Identifiant : {next(iter(bot.agenda.agenda)).sid}" in text
    sid = sid_of(bot, "Atelier Superset")
    superset = await bot.text(f"!session {sid}")
    assert "Atelier Superset" in superset and "mercredi 25 novembre, 10h00 – 11h00" in superset
    assert f"!session {sid} ics" in superset

    bot.clock.value = paris(24, 14, 30).astimezone(UTC)  # during the first webinar
    text = await bot.text("!next")
    assert "Atelier Superset" in text and "dans 20 heures" in text
    assert "En ce moment : Webinaire Grist" in text
    assert "Aucune séance BlueHats à venir ne correspond à « matomo »" in await bot.text(
        "!prochain matomo"
    )


async def test_next_is_a_timed_session_named_with_its_day(bot: Bot) -> None:
    """A BlueHats day is an all-day event framing its sessions: `!prochain` gives the
    first session of the day, and says which day it belongs to."""
    day = (
        "BEGIN:VEVENT\r\nUID:day\r\nDTSTAMP:20260101T000000Z\r\n"
        "DTSTART;VALUE=DATE:20261124\r\nDTEND;VALUE=DATE:20261125\r\n"
        "SUMMARY:Journée BlueHats à Ségur\r\nEND:VEVENT\r\n"
    )
    bot.source.write_bytes(CALENDAR.replace(b"END:VCALENDAR", day.encode() + b"END:VCALENDAR"))
    await bot.agenda.refresh()
    text = await bot.text("!prochain")
    assert "📌 Webinaire Grist" in text and "mardi 24 novembre, 14h00 – 15h00" in text
    assert "🧢 Fait partie de : Journée BlueHats à Ségur" in text
    # The day itself is listed by !agenda, and named as ongoing once it started.
    bot.clock.value = paris(24, 9).astimezone(UTC)
    text = await bot.text("!prochain")
    assert "📌 Webinaire Grist" in text
    assert "En ce moment : Journée BlueHats à Ségur" in text
    # A session outside the day is not said to be part of it.
    bot.clock.value = paris(24, 16).astimezone(UTC)
    text = await bot.text("!prochain")
    assert "📌 Atelier Superset" in text and "Fait partie de" not in text


async def test_next_falls_back_to_an_all_day_event_when_nothing_else_is_left(
    bot: Bot,
) -> None:
    day = (
        "BEGIN:VEVENT\r\nUID:day\r\nDTSTAMP:20260101T000000Z\r\n"
        "DTSTART;VALUE=DATE:20261210\r\nDTEND;VALUE=DATE:20261211\r\n"
        "SUMMARY:Journée BlueHats de décembre\r\nEND:VEVENT\r\n"
    )
    bot.source.write_bytes(ics().replace(b"END:VCALENDAR", day.encode() + b"END:VCALENDAR"))
    await bot.agenda.refresh()
    text = await bot.text("!prochain")
    assert "📌 Journée BlueHats de décembre" in text and "Fait partie de" not in text


async def test_agenda_lists_ids(bot: Bot) -> None:
    text = await bot.text("!agenda")
    for session in bot.agenda.agenda:
        assert f"[{session.sid}]" in text
    assert "Détails : !session <identifiant>" in text


async def test_unknown_id_and_usage(bot: Bot) -> None:
    text = await bot.text("!session abcdef")
    assert text.splitlines() == [
        "Aucune séance à venir n'a l'identifiant « abcdef ». "
        "Les identifiants figurent dans !agenda.",
        "Syntaxe : !session <identifiant> [ics]",
    ]
    assert (await bot.text("!session")).startswith("Utilisation : !session <identifiant>")


async def test_member_refused_nothing_changes(bot: Bot) -> None:
    sid = sid_of(bot, "Atelier Superset")
    before = list(bot.agenda.agenda)
    for command in (
        '!session ajouter 30/11 14h-15h "Atelier Matomo"',
        f"!session modifier {sid} 15h-16h",
        f"!session annuler {sid}",
    ):
        text = await bot.text(command, sender=MEMBER)
        verb = command.split()[1]
        assert text == (
            f"Désolé, « !session {verb} » est réservée aux modérateurs de la communauté."
        )
    assert list(bot.agenda.agenda) == before
    assert await bot.storage.agenda.edits() == []
    assert await bot.storage.agenda.audit() == []


async def test_add_modify_cancel_restore_with_changes_recorded(bot: Bot) -> None:
    text = await bot.text(
        '!session ajouter 30/11 14h-15h "Atelier Matomo" salle=Salle B intervenants="Ana, Léo"',
        sender=MOD,
    )
    assert text.startswith("✅ Séance ajoutée")
    sid = re.search(r"Identifiant : (\w+)", text).group(1)  # type: ignore[union-attr]
    session = bot.agenda.agenda.get(sid)
    assert session is not None
    assert (session.start, session.end) == (paris(30, 14), paris(30, 15))
    assert session.location == "Salle B" and session.speakers == ("Ana", "Léo")
    assert await bot.storage.agenda.changes_since(0) == []  # an addition is not a change notice

    text = await bot.text(f"!session modifier {sid} 1/12 15h30", sender=MOD)
    assert "✅ Séance modifiée" in text
    assert "mardi 1er décembre, 15h30 – 16h30" in text  # duration kept
    assert "avant : lundi 30 novembre, 14h00 – 15h00" in text
    moved = bot.agenda.agenda.get(sid)
    assert moved is not None and moved.start == paris(1, 15, 30, month=12)

    sid_grist = next(s.sid for s in bot.agenda.agenda if s.title == "Webinaire Grist")
    text = await bot.text(f"!session modifier {sid_grist} salle=Salle C", sender=MOD)
    assert "avant : mardi 24 novembre, 14h00 – 15h00, Salle A" in text

    text = await bot.text(f"!session annuler {sid}", sender=MOD)
    assert "❌ Séance annulée" in text and f"!session rétablir {sid}" in text
    assert "Atelier Matomo" not in await bot.text("!agenda")
    assert "Cette séance a été annulée" in await bot.text(f"!session {sid}")

    changes = await bot.storage.agenda.changes_since(0)
    assert [(c.kind, c.sid) for c in changes] == [
        ("moved", sid),
        ("relocated", sid_grist),
        ("cancelled", sid),
    ]
    renderer = bot.dispatcher.services.renderer
    notices = [render_change(c, now=NOW, renderer=renderer, prefix="!").body for c in changes]
    assert notices[0].startswith(
        "⚠️ Changement de programme : « Atelier Matomo » : "
        "lundi 30 novembre, 14h00 – 15h00 → mardi 1er décembre, 15h30 – 16h30"
    )
    assert "lieu : Salle A → Salle C" in notices[1]
    assert notices[2].startswith("⚠️ Changement de programme : « Atelier Matomo » du mardi 1er")
    assert "est annulée" in notices[2]

    text = await bot.text(f"!session rétablir {sid}", sender=MOD)
    assert "✅ Séance rétablie" in text
    assert "Atelier Matomo" in await bot.text("!agenda")
    assert "rien à rétablir" in await bot.text(f"!session rétablir {sid}", sender=MOD)

    # Every change stays in the trail, the restoration included (its cancel
    # edit is gone from the edits): who, what, from which room.
    trail = await bot.storage.agenda.audit()
    assert [(e.action, e.target, e.actor, e.room_id) for e in trail] == [
        ("restore", sid, MOD, ROOM),
        ("cancel", sid, MOD, ROOM),
        ("modify", sid_grist, MOD, ROOM),
        ("modify", sid, MOD, ROOM),
        ("add", sid, MOD, ROOM),
    ]
    assert json.loads(trail[2].detail) == {"location": "Salle C"}
    journal = (await bot.text("!session journal", sender=MOD)).splitlines()
    assert journal[0] == "Journal de l'agenda (le plus récent d'abord) :"
    assert journal[1].endswith(f"{MOD} : rétablit {sid} « Atelier Matomo » (depuis {ROOM})")
    assert "réservée aux modérateurs de la communauté" in await bot.text("!session journal")


async def test_edits_survive_a_restart_and_a_source_refresh(bot: Bot, tmp_path: Path) -> None:
    sid = sid_of(bot, "Atelier Superset")
    await bot.text(f"!session modifier {sid} 11h-12h", sender=MOD)
    await bot.agenda.refresh()
    assert bot.agenda.agenda.get(sid).start == paris(25, 11)  # type: ignore[union-attr]
    async with aiohttp.ClientSession() as http:
        again = AgendaService(
            [str(bot.source)], bot.storage, http, PARIS, timedelta(days=366), bot.clock
        )
        await again.start()
    assert again.agenda.get(sid).start == paris(25, 11)  # type: ignore[union-attr]
    assert len(await bot.storage.agenda.changes_since(0)) == 1  # the restart found nothing new


async def test_source_change_recorded_once_and_uid_reshuffle_silent(bot: Bot) -> None:
    # The site rebuilds with new UIDs: nothing changed for users.
    bot.source.write_bytes(CALENDAR.replace(b"UID:w", b"UID:new-w").replace(b"UID:s", b"UID:x"))
    await bot.agenda.refresh()
    assert await bot.storage.agenda.changes_since(0) == []
    # One webinar moves from 14h to 15h (new UIDs again).
    bot.source.write_bytes(
        ics(
            ("a", "20261124T1500", "Webinaire Grist"),
            ("b", "20261201T1400", "Webinaire Grist"),
            ("c", "20261125T1000", "Atelier Superset"),
        )
    )
    await bot.agenda.refresh()
    await bot.agenda.refresh()
    (change,) = await bot.storage.agenda.changes_since(0)
    notice = render_change(
        change, now=NOW, renderer=bot.dispatcher.services.renderer, prefix="!"
    ).body
    assert notice.startswith(
        "⚠️ Changement de programme : « Webinaire Grist » : mardi 24 novembre, "
        "14h00 – 15h00 → 15h00 – 16h00"
    )


@pytest.mark.parametrize(
    ("command", "first_line"),
    [
        ('!session ajouter 31/02 14h-15h "X"', "Date non reconnue : « 31/02 »"),
        ('!session ajouter 30/11 15h-14h "X"', "La fin doit être après le début"),
        ('!session ajouter 30/11 14h-15h "X', "Un guillemet n'est pas refermé."),
        ('!session ajouter 30/11 "X"', "Il manque l'horaire"),
        ("!session ajouter 30/11 14h-15h", "Il manque le titre."),
        ('!session ajouter 14h-15h "X"', "Il manque la date."),
        ('!session ajouter 30/11 25h-26h "X"', "Horaire non reconnu : « 25h-26h »"),
        ('!session ajouter 30/11 14h-15h "X" couleur=bleu', "Option inconnue : « couleur »"),
        ('!session ajouter 30/11 14h-15h "X" lien=javascript:alert(1)', "Le lien doit commencer"),
        ('!session ajouter 01/01/2020 14h-15h "X"', "Cette date est déjà passée"),
        ("!session modifier", "Il manque l'identifiant"),
        ("!session annuler zzzzzz", "Aucune séance à venir n'a l'identifiant « zzzzzz »"),
    ],
)
async def test_bad_edits_get_one_clear_line_and_change_nothing(
    bot: Bot, command: str, first_line: str
) -> None:
    before = list(bot.agenda.agenda)
    lines = (await bot.text(command, sender=MOD)).splitlines()
    assert lines[0].startswith(first_line), lines
    assert lines[1].startswith("Syntaxe : !session ")
    assert len(lines) == 2
    assert list(bot.agenda.agenda) == before


async def test_modify_needs_something_and_duplicates_refused(bot: Bot) -> None:
    sid = sid_of(bot, "Atelier Superset")
    assert (await bot.text(f"!session modifier {sid}", sender=MOD)).startswith("Rien à modifier")
    same = await bot.text(f"!session modifier {sid} 25/11 10h-11h salle=Salle A", sender=MOD)
    assert same.startswith("Rien à modifier")
    text = await bot.text('!session ajouter 25/11 10h-11h "atelier superset"', sender=MOD)
    assert text.startswith(f"Cette séance existe déjà (identifiant {sid})")


async def test_ics_exports(bot: Bot) -> None:
    sid = sid_of(bot, "Atelier Superset")
    upload = await bot.say(f"!session {sid} ics")
    assert isinstance(upload, FileUpload)
    assert upload.filename == "atelier-superset.ics" and upload.mimetype == "text/calendar"
    (event,) = icalendar.Calendar.from_ical(upload.data).walk("VEVENT")
    assert event["DTSTART"].dt == paris(25, 10)
    whole = await bot.say("!agenda ics grist")
    assert isinstance(whole, FileUpload)
    titles = [str(e["SUMMARY"]) for e in icalendar.Calendar.from_ical(whole.data).walk("VEVENT")]
    assert titles == ["Webinaire Grist", "Webinaire Grist"]
    # Nothing to export: a notice says so rather than an empty file.
    assert "Aucune séance" in await bot.text("!agenda ics matomo")


def test_typed_dates_and_times() -> None:
    today = date(2026, 11, 23)
    assert parse_day("04/12", today) == date(2026, 12, 4)
    assert parse_day("04/01", today) == date(2027, 1, 4)  # no year: the next one
    assert parse_day("4/12/26", today) == date(2026, 12, 4)
    assert parse_day("2026-12-04", today) == date(2026, 12, 4)
    assert parse_day("Demain", today) == date(2026, 11, 24)
    assert parse_day("Atelier", today) is None
    assert parse_times("14h-15h30") == (time(14), time(15, 30))
    assert parse_times("9h30–10h") == (time(9, 30), time(10))
    assert parse_times("14:00-15:00") == (time(14), time(15))
    assert parse_times("15h") == (time(15), None)
    assert parse_times("2024") is None
    assert tokens('« Atelier d\'Ana » salle="Salle B"') == ["Atelier d'Ana", "salle=Salle B"]
    args = parse_edit(["04/12", "14h-15h", "Atelier", "Grist", "intervenants=Ana, Léo"], today)
    assert args.fields == {"title": "Atelier Grist", "speakers": ["Ana", "Léo"]}
    with pytest.raises(Problem):
        parse_edit(["lien=ftp://x"], today)


async def test_english_answers(bot: Bot) -> None:
    services = bot.dispatcher.services
    bot.dispatcher.services = dataclasses.replace(services, renderer=Renderer("en", PARIS))
    text = await bot.text("!next")
    assert text.startswith("⏭️ Next BlueHats session, in 28 hours")
    assert "Tuesday 24 November, 14:00 – 15:00" in text
    lines = (await bot.text('!session add 30/11 15h-14h "X"', sender=MOD)).splitlines()
    assert lines[0].startswith("The end must be after the start")
    assert lines[1].startswith('Syntax: !session add <date> <start>-<end> "<title>"')
    sid = sid_of(bot, "Atelier Superset")
    assert "✅ Session changed" in await bot.text(f"!session edit {sid} 11h", sender=MOD)
    (change,) = await bot.storage.agenda.changes_since(0)
    notice = render_change(change, now=NOW, renderer=Renderer("en", PARIS), prefix="!").body
    assert notice.startswith(
        '⚠️ Programme change: "Atelier Superset": Wednesday 25 November, 10:00 – 11:00 → '
        "11:00 – 12:00"
    )
