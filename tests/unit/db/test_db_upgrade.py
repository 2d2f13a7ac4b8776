"""A database written at schema 9 (tests/fixtures/schema-v9.sqlite3) upgraded in place.

The values asserted are those `tests/fixtures/make_schema_v9_db.py` wrote
through the schema-9 code: every row is read back through today's API.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import astuple, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from bot.agenda.model import Session
from bot.agenda.sources import AgendaService
from bot.agenda.worker import Parsed, ParseJob, ThreadParser
from bot.broadcast import Broadcaster
from bot.broadcasts.registry import parse
from bot.chat import IncomingMessage, Triggered
from bot.db.agenda import CachedSource, Edit
from bot.db.inbox import InboxItem
from bot.db.mentors import ERASED, AuditEntry, MentorRequest, MentorTopic
from bot.db.outbox import OutboxItem
from bot.db.personal import PersonalReminder
from bot.db.storage import Storage
from bot.db.undecrypted import Undecrypted
from bot.db.upgrade import upgrades
from bot.gazette.posts import GazetteKey
from bot.reminders import ChangeKey
from bot.render import Message, Renderer
from bot.textnorm import fold
from tests.fakes import FakeChat, FakeClock, StaticAgenda, make_dispatcher

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "schema-v9.sqlite3"
PARIS = ZoneInfo("Europe/Paris")
T0 = int(datetime(2026, 11, 20, 8, 0, tzinfo=UTC).timestamp())  # the script's first second
BOT = "@bot:example.org"
MOD = "@mod:example.org"
ALICE = "@alice:example.org"
AGENT = "@agent:example.org"
CAMILLE = "@camille:example.org"
DOMINIQUE = "@dominique:example.org"
EVE = "@eve:example.org"
FRANK = "@frank:example.org"
ROOM_A = "!rappels-a:example.org"
ROOM_B = "!rappels-b:example.org"
ROOM_G = "!gazette:example.org"
DM = "!dm-agent:example.org"
FEED = "https://example.org/feed.xml"
CALENDAR = "https://example.org/agenda.ics"
GRIST = Session(
    "Webinaire Grist",
    datetime(2026, 11, 24, 13, 0, tzinfo=UTC),
    datetime(2026, 11, 24, 14, 0, tzinfo=UTC),
    location="En ligne",
    url="https://example.org/grist",
    speakers=("Camille Dupont",),
)
MATOMO = Session(
    "Atelier Matomo",
    datetime(2026, 11, 26, 9, 0, tzinfo=UTC),
    datetime(2026, 11, 26, 10, 30, tzinfo=UTC),
    location="Salle Émile-Zola, Paris",
)
GRIST_START = 1795525200
MOVED = "a040ebdfb52691f66b0e1a906f6eeea2"  # Grist moved from 14h to 15h (fanned out)
CANCELLED = "7aa4c6d678414ff8fce6b01b02744e13"  # Matomo cancelled (not fanned out yet)
# The outbox rows schema 9 left pending, with the transaction ids it gave them.
PENDING = [
    OutboxItem(2, f"change:{MOVED}", ROOM_B, "bh-o-a040ebdfb52691f66b0e1a90-2", 1),
    OutboxItem(
        5, f"reminder:lmh3jk:3600:{GRIST_START}", ROOM_A, "bh-o-c7d71f8c932258935b5cf13d-1", 0
    ),
    OutboxItem(
        6, f"reminder:lmh3jk:3600:{GRIST_START}", ROOM_B, "bh-o-c7d71f8c932258935b5cf13d-2", 0
    ),
    OutboxItem(8, "gazette:20261120T0900", ROOM_G, "bh-o-e746ee4c9448e51e23ef441c-3", 0),
    OutboxItem(9, "feed:652e9e909939603ca237b9d5", ROOM_G, "bh-f-652e9e909939603ca237b9d5-3", 0),
    OutboxItem(
        10, f"personal:lmh3jk:{GRIST_START}:{AGENT}", DM, "bh-o-b8b67ab06b93474cbd334bc0", 0
    ),
]


@pytest.fixture
def v9(tmp_path: Path) -> Path:
    """A copy of the fixture (the test changes it)."""
    path = tmp_path / "db.sqlite"
    shutil.copyfile(FIXTURE, path)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (9,)
    return path


@pytest.fixture
async def storage(v9: Path) -> AsyncIterator[Storage]:
    storage = await Storage.open(v9)
    yield storage
    await storage.close()


def dump(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [*db.iterdump(), str(db.execute("PRAGMA user_version").fetchone())]


async def test_upgraded_in_place_then_a_second_open_changes_nothing(v9: Path) -> None:
    # Closed before asserting: a connection left open keeps its thread, and
    # the test process, alive after a failure.
    storage = await Storage.open(v9)
    version = await storage.schema_version()
    await storage.close()
    assert version == upgrades.latest == 23
    before = dump(v9)
    storage = await Storage.open(v9)
    version = await storage.schema_version()
    await storage.close()
    assert version == upgrades.latest
    assert dump(v9) == before


async def test_every_row_is_read_back_intact(storage: Storage) -> None:
    assert GRIST.sid == "lmh3jk" and MATOMO.sid == "mlstot"
    # kv
    assert await storage.kv.get(f"sync_token:{BOT}") == "s72594_4483_1934"
    assert await storage.kv.get(f"feed:{FEED}:polled") == "1"
    assert await storage.kv.get(f"feed:{FEED}:etag") == '"feed-v7"'
    # subscriptions
    assert await storage.subscriptions.kinds(ROOM_A) == ["rappels"]
    assert await storage.subscriptions.kinds(ROOM_B) == ["rappels"]
    assert await storage.subscriptions.kinds(ROOM_G) == ["gazette"]
    # agenda: the source's copy, edits, changes (one fanned out, one not)
    source = await storage.agenda.source(CALENDAR)
    assert source is not None
    assert source == CachedSource(CALENDAR, source.body, '"cal-v1"', "Fri, 20 Nov 2026", T0 + 3)
    assert (
        source.body.startswith(b"BEGIN:VCALENDAR\r\n") and b"SUMMARY:Webinaire Grist" in source.body
    )
    assert await storage.agenda.edits() == [
        Edit(
            1,
            "add",
            "mlstot",
            {
                "title": "Atelier Matomo",
                "start": "2026-11-26T09:00:00+00:00",
                "end": "2026-11-26T10:30:00+00:00",
                "all_day": False,
                "location": "Salle Émile-Zola, Paris",
                "url": "",
                "speakers": [],
                "description": "",
            },
            MOD,
            T0 + 5,
        ),
        Edit(2, "modify", "lmh3jk", {"location": "Salle Émile"}, MOD, T0 + 6),
    ]
    # The agenda's audit trail starts with the edits made before it existed
    # (from an unknown room), the most recent first.
    trail = await storage.agenda.audit()
    assert [(e.actor, e.room_id, e.action, e.target, e.at) for e in trail] == [
        (MOD, "", "modify", "lmh3jk", T0 + 6),
        (MOD, "", "add", "mlstot", T0 + 5),
    ]
    assert json.loads(trail[0].detail) == {"location": "Salle Émile"}
    changes = await storage.agenda.changes_since(0)
    assert [(c.key, c.kind, c.sid, c.created_at) for c in changes] == [
        (MOVED, "moved", "lmh3jk", T0 + 3),
        (CANCELLED, "cancelled", "mlstot", T0 + 7),
    ]
    moved = await storage.agenda.change(MOVED)
    assert moved is not None and moved.payload["after"] == {
        "title": "Webinaire Grist",
        "start": "2026-11-24T14:00:00+00:00",
        "end": "2026-11-24T15:00:00+00:00",
        "all_day": False,
        "location": "En ligne",
        "url": "https://example.org/grist",
        "speakers": ["Camille Dupont"],
        "description": "",
    }
    # outbox: pending rows keep their transaction ids; finished ones are counted
    # (Queued at the fixture's times, attempted by no known device.)
    assert [replace(i, created_at=0) for i in await storage.outbox.pending()] == PENDING
    assert await storage.outbox.count("sent") == 2
    assert await storage.outbox.count("failed") == 1
    assert await storage.outbox.count("skipped") == 1
    assert await storage.outbox.status(f"reminder:lmh3jk:86400:{GRIST_START}") == {
        ROOM_A: "sent",
        ROOM_B: "failed",
    }
    assert await storage.outbox.status("gazette:20261113T0900") == {ROOM_G: "skipped"}
    for item in PENDING:
        assert str(parse(item.broadcast)) == item.broadcast
    # feed entries
    assert await storage.feeds.entry("feed:652e9e909939603ca237b9d5") == (
        "La gazette BlueHats n°2",
        "https://example.org/n2",
    )
    assert await storage.feeds.entry("feed:8c7ed02c2310386c30b394b9") == (
        "Gazette n°1",
        "https://example.org/n1",
    )
    # personal reminders (by command, by 🔔) and the direct room
    assert await storage.personal.reminders() == [
        PersonalReminder(AGENT, "lmh3jk", "Webinaire Grist", GRIST_START),
        PersonalReminder(AGENT, "mlstot", "Atelier Matomo", 1795683600),
    ]
    assert await storage.personal.via(AGENT, "$bell-1") == ["mlstot"]
    assert await storage.personal.direct_room(AGENT) == DM
    # posted sessions: a 🔔 on the post asks for them
    assert await storage.posts.mark(f"$ev-{ROOM_A}", ROOM_A, "remind") == ("lmh3jk", "mlstot")
    # inbox
    assert await storage.inbox.pending() == [
        InboxItem("$cmd-pending", ROOM_B, ALICE, "!prochain grist", "$root", T0 + 21, 1),
        # A 🔔 recorded as its command's text: what it resolved to, kept as such.
        InboxItem(
            "$cmd-direct",
            ROOM_A,
            AGENT,
            "!rappelle-moi lmh3jk",
            None,
            T0 + 22,
            1,
            True,
            trigger=Triggered("remind", "$cmd-direct", ("lmh3jk",)),
        ),
    ]
    assert await storage.inbox.status("$cmd-done") == "done"
    assert await storage.inbox.status("$cmd-failed") == "failed"
    # undecrypted events
    assert await storage.undecrypted.pending() == [
        Undecrypted(
            "$enc-1",
            ROOM_A,
            ALICE,
            "megolm-A",
            {
                "type": "m.room.encrypted",
                "event_id": "$enc-1",
                "sender": ALICE,
                "origin_server_ts": T0 * 1000,
                "content": {"algorithm": "m.megolm.v1.aes-sha2", "session_id": "megolm-A"},
            },
            T0 + 23,
        )
    ]
    assert await storage.undecrypted.told(ROOM_B, ALICE, "megolm-B")
    assert not await storage.undecrypted.told(ROOM_A, ALICE, "megolm-A")
    # mentor directory: Dominique erased everywhere, as the neutral marker now
    assert await storage.mentors.topics() == [
        MentorTopic(FRANK, None, "gitlab", "GitLab", DOMINIQUE, T0 + 29),
        MentorTopic(CAMILLE, "Camille Dupont", "grist", "Grist", MOD, T0 + 25),
    ]
    assert await storage.mentors.requests() == [MentorRequest(EVE, "metabase", "Métabase", T0 + 31)]
    assert await storage.mentors.audit() == [
        AuditEntry(ERASED, "erase-self", ERASED, "", T0 + 32),
        AuditEntry(MOD, "remove", CAMILLE, "matomo", T0 + 30),
        AuditEntry(ERASED, "add", FRANK, "GitLab", T0 + 29),
        AuditEntry(MOD, "approve", ERASED, "Superset", T0 + 28),
        AuditEntry(MOD, "add", CAMILLE, "Matomo", T0 + 26),
        AuditEntry(MOD, "add", CAMILLE, "Grist", T0 + 25),
    ]


@pytest.mark.parametrize(
    ("language", "label"), [("fr", "(personne retirée)"), ("en", "(person removed)")]
)
async def test_erased_people_show_as_the_label_in_the_journal(
    v9: Path, language: str, label: str
) -> None:
    chat = FakeChat(levels={(ROOM_A, MOD): 50})
    dispatcher, _, storage = await make_dispatcher(
        v9.parent,
        [],
        FakeClock(datetime(2026, 11, 23, 9, tzinfo=UTC)),
        chat,
        bot={"language": language, "moderator_rooms": [ROOM_A]},
    )
    try:
        reply = await dispatcher.answer(IncomingMessage(ROOM_A, "$j", MOD, "!mentor journal"))
    finally:
        await storage.close()
    assert isinstance(reply, Message)
    lines = reply.body.splitlines()
    assert sum(label in line for line in lines) == 3
    assert label in reply.html
    assert DOMINIQUE not in reply.body and DOMINIQUE not in reply.html
    if language == "en":
        assert "(personne retirée)" not in reply.body  # stored no more: the label is a template's
    else:
        assert lines[1].endswith(f"{label} : s'est retiré·e de l'annuaire")
        assert lines[3].endswith(f"{label} : ajoute {FRANK} (GitLab)")
        assert lines[4].endswith(f"{MOD} : valide {label} (Superset)")


async def test_pending_rows_are_delivered_with_their_stored_txn_ids(storage: Storage) -> None:
    chat = FakeChat()
    broadcaster = Broadcaster(
        storage,
        chat,
        Renderer("fr", PARIS),
        StaticAgenda([GRIST, MATOMO]),
        prefix="!",
        now=FakeClock(GRIST.start - timedelta(hours=1)),
        pace=timedelta(0),
        offsets=[],
        grace=timedelta(minutes=15),
        retry_delay=0,
    )
    # The six rows left pending, and the change not fanned out yet, to both rooms.
    assert await broadcaster.deliver() == 8
    sent = {(s.room_id, s.txn_id) for s in chat.sent}
    assert {(item.room_id, item.txn_id) for item in PENDING} <= sent
    cancelled = ChangeKey(CANCELLED)
    assert sent - {(item.room_id, item.txn_id) for item in PENDING} == {
        (ROOM_A, cancelled.txn_id(ROOM_A)),
        (ROOM_B, cancelled.txn_id(ROOM_B)),
    }
    assert await storage.outbox.pending() == []
    bodies = {s.txn_id: s.message.body for s in chat.sent if isinstance(s.message, Message)}
    assert bodies[PENDING[1].txn_id].startswith("⏰")  # the reminder
    assert "La gazette BlueHats n°2" in bodies[PENDING[4].txn_id]  # the feed entry


async def test_mentor_topics_written_with_ligatures_are_found_by_their_ascii_spelling(
    v9: Path,
) -> None:
    """Keys folded before œ→oe were kept: the upgrade re-spells them (one topic, not two)."""
    with sqlite3.connect(v9) as db:
        db.execute("INSERT INTO mentors (user_id, display_name) VALUES (?, ?)", (EVE, "Eve"))
        for key, label in [("mise en œuvre", "Mise en œuvre"), ("ex aequo", "Ex aequo")]:
            db.execute(
                "INSERT INTO mentor_topics (user_id, topic_key, label, added_by, added_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (EVE, key, label, MOD, T0),
            )
        # The same person also holds the same topic spelt the other way.
        db.execute(
            "INSERT INTO mentor_topics (user_id, topic_key, label, added_by, added_at) "
            "VALUES (?, 'ex æquo', 'Ex æquo', ?, ?)",
            (EVE, MOD, T0),
        )
    storage = await Storage.open(v9)
    try:
        found = await storage.mentors.topics(topic_key=fold("MISE EN OEUVRE"))
        assert [(t.user_id, t.label) for t in found] == [(EVE, "Mise en œuvre")]
        assert [t.label for t in await storage.mentors.topics(topic_key=fold("ex æquo"))] == [
            "Ex aequo"
        ]
    finally:
        await storage.close()


async def test_after_the_upgrade_a_room_left_abandons_its_pending_rows(storage: Storage) -> None:
    # Step 14 rebuilt the outbox (for the 'abandoned' status): rows and ids kept.
    ended = await storage.rooms.end(ROOM_B, "@x:example.org", "kicked by @x:example.org")
    assert ended.kinds == ["rappels"] and ended.abandoned == 2
    assert await storage.outbox.count("abandoned") == 2
    assert [item.id for item in await storage.outbox.pending()] == [5, 8, 9, 10]
    assert await storage.outbox.queue(GazetteKey("20261201T0900"), ROOM_G) == 1
    assert max(item.id for item in await storage.outbox.pending()) > 10
    (entry,) = await storage.subscriptions.history(ROOM_B)
    assert (entry.kind, entry.action, entry.actor) == ("rappels", "ended", "@x:example.org")


class CountingParser(ThreadParser):
    def __init__(self) -> None:
        self.parsed: list[str] = []

    async def parse(self, job: ParseJob) -> Parsed:
        self.parsed.append(job.source)
        return await super().parse(job)


async def test_agenda_parses_the_saved_copy_once_then_starts_from_stored_sessions(
    storage: Storage,
) -> None:
    """Schema 9 stored no sessions: the first start parses the saved copy (no network)."""
    clock = FakeClock(datetime(2026, 11, 20, 9, 0, tzinfo=UTC))
    agendas = []
    async with aiohttp.ClientSession() as http:
        for _ in range(2):
            parser = CountingParser()
            svc = AgendaService(
                [CALENDAR], storage, http, PARIS, timedelta(days=366), clock, parser=parser
            )
            await svc.start()
            agendas.append(([astuple(s) for s in svc.agenda], parser.parsed))
    (first, parsed_first), (second, parsed_second) = agendas
    assert (parsed_first, parsed_second) == ([CALENDAR], [])
    assert first == second
    grist, matomo = (Session(*fields) for fields in first)  # type: ignore[arg-type]
    assert (grist.sid, grist.title, grist.location) == ("lmh3jk", "Webinaire Grist", "Salle Émile")
    assert (matomo.sid, matomo.title, matomo.start) == (MATOMO.sid, MATOMO.title, MATOMO.start)
