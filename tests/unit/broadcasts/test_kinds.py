"""Broadcast kinds: one text per kind, read back as written, including rows of older
versions; a new kind works by registration alone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import pytest

from bot.broadcast import Broadcaster
from bot.broadcasts.kind import Env, Key, Kind, Kinds
from bot.broadcasts.registry import parse, registered
from bot.feeds import FeedKey
from bot.gazette.posts import GazetteKey
from bot.reminders import ChangeKey, PersonalKey, ReminderKey
from bot.render import Message, Renderer
from tests.fakes import PARIS, ROOMS, World

KEYS: list[tuple[Key, str]] = [
    (ReminderKey("lmh3jk", 3600, 1795525200), "reminder:lmh3jk:3600:1795525200"),
    (
        PersonalKey("lmh3jk", 1795525200, "@agent:example.org"),
        "personal:lmh3jk:1795525200:@agent:example.org",
    ),
    (GazetteKey("20261120T0900"), "gazette:20261120T0900"),
    (ChangeKey("a040ebdfb52691f66b0e1a906f6eeea2"), "change:a040ebdfb52691f66b0e1a906f6eeea2"),
    (FeedKey("652e9e909939603ca237b9d5"), "feed:652e9e909939603ca237b9d5"),
]


@pytest.mark.parametrize(("key", "text"), KEYS)
def test_every_kind_round_trips(key: Key, text: str) -> None:
    assert str(key) == text
    assert parse(text) == key
    assert parse(str(key)) == key


def test_keys_written_by_schema_9_still_parse() -> None:
    # As stored in the outbox of tests/fixtures/schema-v9.sqlite3 (built by f-strings then).
    stored = {
        "reminder:lmh3jk:86400:1795525200": ReminderKey("lmh3jk", 86400, 1795525200),
        "personal:lmh3jk:1795525200:@agent:example.org": PersonalKey(
            "lmh3jk", 1795525200, "@agent:example.org"
        ),
        "gazette:20261113T0900": GazetteKey("20261113T0900"),
        "change:a040ebdfb52691f66b0e1a906f6eeea2": ChangeKey("a040ebdfb52691f66b0e1a906f6eeea2"),
        "feed:652e9e909939603ca237b9d5": FeedKey("652e9e909939603ca237b9d5"),
        # The dev server's and the fan-out benchmark's labels.
        "gazette:test": GazetteKey("test"),
        "gazette:bench": GazetteKey("bench"),
    }
    for text, key in stored.items():
        assert parse(text) == key
        assert str(key) == text


def test_constructors_build_the_texts_of_schema_9() -> None:
    fire = datetime(2026, 11, 20, 10, 0, tzinfo=UTC).astimezone()
    assert str(GazetteKey.at(fire)) == "gazette:20261120T1000"
    # The digest schema 9 stored in feed_entries.broadcast for this entry.
    feed = FeedKey.of("https://example.org/feed.xml", "https://example.org/n2")
    assert str(feed) == "feed:652e9e909939603ca237b9d5"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "reminder",
        "reminder:",
        "nonsense:x",
        "reminder:lmh3jk:3600",
        "reminder:lmh3jk:1h:1795525200",
        "reminder:lmh3jk:3600:1795525200:extra",
        "reminder::3600:1795525200",
        "personal:lmh3jk:1795525200",
        "personal:lmh3jk:soon:@agent:example.org",
    ],
)
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="broadcast"):
        parse(text)


def test_txn_ids_are_deterministic_distinct_and_short() -> None:
    rooms = ["!a:example.org", "!b:example.org"]
    ids = [key.txn_id(room) for key, _ in KEYS for room in rooms]
    assert ids == [key.txn_id(room) for key, _ in KEYS for room in rooms]  # same inputs, same ids
    assert len(set(ids)) == len(ids)  # one per (broadcast, room)
    assert all(len(txn) <= 255 and txn.isascii() for txn in ids)
    assert ReminderKey("lmh3jk", 3600, 1795525200).txn_id(rooms[0]).startswith("bh-o-")
    assert FeedKey("652e9e909939603ca237b9d5").txn_id(rooms[0]).startswith("bh-f-")


# -- a kind added by registration only ------------------------------------------------


@dataclass(frozen=True, slots=True)
class WaveKey(Key):
    """A test kind: a wave to a room, `n`, on behalf of a room ID (the rest of the text)."""

    prefix: ClassVar[str] = "wave"
    n: int
    sender_room: str


async def render_wave(env: Env, key: WaveKey, room_id: str) -> Message | None:
    if key.n == 0:
        return None  # no longer makes sense: skipped
    return Message(f"👋 {key.n} de {key.sender_room}", f"<p>👋 {key.n}</p>")


def test_a_new_kind_reads_back_as_written() -> None:
    kinds = Kinds(Kind(WaveKey, render_wave))
    key = WaveKey(3, "!a:example.org")
    assert str(key) == "wave:3:!a:example.org"
    assert kinds.read(str(key))[1] == key
    with pytest.raises(ValueError, match="unknown broadcast kind"):
        kinds.read("reminder:lmh3jk:3600:1795525200")  # not registered there
    with pytest.raises(ValueError, match="two broadcast kinds"):
        Kinds(Kind(WaveKey, render_wave), Kind(WaveKey, render_wave))


async def test_a_kind_registered_alone_is_queued_rendered_sent_and_told(world: World) -> None:
    told: list[tuple[WaveKey, str, str]] = []

    async def sent(env: Env, key: WaveKey, room_id: str, event_id: str) -> None:
        told.append((key, room_id, event_id))

    wave = Kind(WaveKey, render_wave, announcement=True, sent=sent)
    world.chat.levels[(ROOMS[1], world.chat.user_id)] = 50  # may call the room
    broadcaster = Broadcaster(
        world.storage,
        world.chat,
        Renderer("fr", PARIS),
        world.agenda,
        prefix="!",
        now=world.clock,
        pace=timedelta(0),
        offsets=[],
        grace=timedelta(minutes=15),
        notify="room",
        retry_delay=0,
        kinds=Kinds(*registered(), wave),
    )
    key, skipped = WaveKey(3, ROOMS[0]), WaveKey(0, ROOMS[0])
    assert await world.storage.outbox.queue(key, ROOMS[1]) == 1
    assert await world.storage.outbox.queue(skipped, ROOMS[1]) == 1
    assert await broadcaster.deliver() == 1
    assert await broadcaster.deliver() == 0  # once
    (post,) = world.chat.sent
    assert (post.room_id, post.txn_id) == (ROOMS[1], key.txn_id(ROOMS[1]))
    assert isinstance(post.message, Message)
    assert post.message.body == f"👋 3 de {ROOMS[0]}"
    assert post.message.mentions_room  # an announcement, with `broadcasts.notify: room`
    assert told == [(key, ROOMS[1], post.event_id)]
    assert await world.storage.outbox.status(str(skipped)) == {ROOMS[1]: "skipped"}
