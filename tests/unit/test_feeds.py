"""The gazette feed served on loopback: first poll silent, new entries once, bad feeds survived."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from bot.agenda.worker import ProcessParser
from bot.broadcast import Broadcaster
from bot.db.storage import Storage
from bot.db.subscriptions import GAZETTE
from bot.feeds import TITLE_MAX, FeedWatcher, entry_key, parse_feed
from bot.gazette.posts import GazetteKey
from bot.render import Message, Renderer
from tests.fakes import FakeChat, FakeClock, StaticAgenda
from tests.helpers import Server, loopback_http, real_feed, with_new_entry

PARIS = ZoneInfo("Europe/Paris")
ROOMS = ["!g1:example.org", "!g2:example.org"]
GAZETTES = r"^Gazette BlueHats"


@pytest.fixture
async def served() -> AsyncIterator[tuple[Server, str]]:
    server = Server()
    async with loopback_http({"/feed.xml": server.handle}) as base:
        yield server, f"{base}/feed.xml"


def gazette_broadcaster(storage: Storage, chat: FakeChat, clock: FakeClock) -> Broadcaster:
    return Broadcaster(
        storage,
        chat,
        Renderer("fr", PARIS),
        StaticAgenda([]),
        prefix="!",
        now=clock,
        pace=timedelta(0),
        offsets=[],
        grace=timedelta(minutes=15),
    )


def test_real_feed_entries_and_keys() -> None:
    entries = parse_feed(real_feed())
    assert len(entries) == 10
    gazettes = [e.title for e in entries if re.search(GAZETTES, e.title)]
    assert gazettes == ["Gazette BlueHats 🧢 n°32", "Gazette BlueHats 🧢 n°31"]
    assert all(e.key.startswith("https://code.gouv.fr/") for e in entries)  # ids are URLs
    # No id: the link; no link either: a hash of the text.
    assert entry_key({"link": "https://x.example/a"}) == "https://x.example/a"
    assert entry_key({"title": "t", "summary": "s"}).startswith("sha256:")


def test_bozo_feed_with_entries_is_used_without_is_refused() -> None:
    broken = real_feed().replace(b"</feed>", b"")  # not well-formed any more
    assert len(parse_feed(broken)) == 10
    with pytest.raises(Exception, match="not a usable feed"):
        parse_feed(b"<html><body>Maintenance</body></html>")


async def test_first_poll_silent_then_one_post_per_room(
    served: tuple[Server, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server, url = served
    storage = await Storage.open(tmp_path / "db.sqlite")
    for room in ROOMS:
        await storage.subscriptions.add(room, GAZETTE, "@mod:example.org")
    chat = FakeChat()
    async with aiohttp.ClientSession() as http:
        watcher = FeedWatcher(url, storage, http, title_filter=GAZETTES, retry_delays=())
        broadcaster = gazette_broadcaster(
            storage, chat, FakeClock(datetime(2026, 11, 23, tzinfo=UTC))
        )
        assert await watcher.poll() == 0  # first poll: existing entries only marked seen
        assert await watcher.poll() == 0  # 304
        server.body = with_new_entry(real_feed(), "Webinaire Superset", "https://code.gouv.fr/w")
        assert await watcher.poll() == 0  # not a gazette: seen, not posted
        link = "https://code.gouv.fr/fr/bluehats/gazette-33/"
        server.body = with_new_entry(server.body, "Gazette BlueHats 🧢 n°33", link)
        assert await watcher.poll() == 2
        assert await broadcaster.deliver() == 2
        assert await watcher.poll() == 0 and await broadcaster.deliver() == 0

        caplog.set_level(logging.INFO, logger="bot.feeds")
        server.body = b"<html>oops</html>"
        assert await watcher.poll() == 0
        assert await watcher.poll() == 0
        failures = [r for r in caplog.records if "failed: not a usable feed" in r.getMessage()]
        assert len(failures) == 1  # logged once
        server.body = with_new_entry(real_feed(), "Gazette BlueHats 🧢 n°34", link + "34")
        assert await watcher.poll() == 2  # the next good poll goes on
        assert await broadcaster.deliver() == 2
    await storage.close()
    posts = [(s.room_id, s.message.body) for s in chat.sent if isinstance(s.message, Message)]
    assert sorted(room for room, _ in posts) == sorted(ROOMS * 2)
    assert (
        posts[0][1] == f"📰 Nouvelle publication BlueHats : « Gazette BlueHats 🧢 n°33 »\n🔗 {link}"
    )


async def test_an_announcement_queued_before_the_editorial_gazette_still_goes_out(
    tmp_path: Path,
) -> None:
    """A database upgraded with a scheduled announcement still pending sends it, once."""
    storage = await Storage.open(tmp_path / "db.sqlite")
    await storage.subscriptions.add(ROOMS[0], GAZETTE, "@mod:example.org")
    await storage.outbox.queue_for_subscribers(GazetteKey("20270115T0900"), GAZETTE)
    chat = FakeChat()
    broadcaster = gazette_broadcaster(
        storage, chat, FakeClock(datetime(2027, 1, 15, 9, tzinfo=UTC))
    )
    assert await broadcaster.deliver() == 1
    assert await broadcaster.deliver() == 0
    await storage.close()
    (post,) = chat.sent
    assert isinstance(post.message, Message)
    assert post.message.body.startswith("🧢 La gazette BlueHats est parue !")


async def test_subscriptions_show_the_next_gazette(tmp_path: Path) -> None:
    from bot.chat import IncomingMessage
    from tests.fakes import make_dispatcher

    clock = FakeClock(datetime(2027, 1, 10, 9, tzinfo=UTC))
    dispatcher, chat, storage = await make_dispatcher(
        tmp_path,
        [],
        clock,
        gazette={
            "schedule": "0 10 15 */2 *",
            "editors_room": "!editors:example.org",
            "feed": "https://code.gouv.fr/fr/feed.xml",
        },
    )
    chat.levels[(ROOMS[0], "@mod:example.org")] = 50
    await dispatcher.answer(IncomingMessage(ROOMS[0], "$1", "@mod:example.org", "!abonner gazette"))
    reply = await dispatcher.answer(
        IncomingMessage(ROOMS[0], "$2", "@a:example.org", "!abonnements")
    )
    assert isinstance(reply, Message)
    assert reply.body.splitlines() == [
        "Ce salon reçoit : la gazette et les nouvelles parutions du site.",
        "Prochaine gazette : vendredi 15 janvier à 10h00.",
    ]
    await storage.close()


async def test_a_burst_of_new_entries_posts_nothing_and_alerts_once_long_titles_cut(
    served: tuple[Server, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server, url = served
    caplog.set_level(logging.INFO, logger="bot.feeds")
    storage = await Storage.open(tmp_path / "db.sqlite")
    await storage.subscriptions.add(ROOMS[0], GAZETTE, "@mod:example.org")
    parser = ProcessParser()  # as the bot does: feedparser off the event loop
    async with aiohttp.ClientSession() as http:
        watcher = FeedWatcher(url, storage, http, retry_delays=(), burst=3, parser=parser)
        assert await watcher.poll() == 0  # first poll
        assert not parser.running  # the process ends with the poll
        # A site migration: every entry has a new id.
        server.body = real_feed().replace(b"<id>", b"<id>migrated:")
        assert await watcher.poll() == 0
        bursts = [r for r in caplog.records if "gazette.feed_burst" in r.getMessage()]
        assert len(bursts) == 1 and bursts[0].levelno == logging.ERROR
        assert "none posted" in bursts[0].getMessage()
        # Seen, as at a first poll: the next new entry alone is posted.
        title = "Gazette " + "très longue " * 40
        server.body = with_new_entry(server.body, title, "https://code.gouv.fr/long")
        assert await watcher.poll() == 1
        assert len([r for r in caplog.records if "gazette.feed_burst" in r.getMessage()]) == 1
    queued = await storage.feeds.for_gazette(0)
    await storage.close()
    parser.close()
    (entry,) = queued
    assert len(entry.title) == TITLE_MAX and entry.title.endswith("longue…")
    assert entry.title.startswith("Gazette très longue très")
