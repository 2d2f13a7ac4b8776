"""Room state comes from the homeserver only, without a homeserver: sync
responses as Synapse sends them go through nio (the bot's client, real
Megolm encryption) and the bot's sync handling. A member who encrypts
`m.room.power_levels`, `m.room.create`, `m.room.tombstone` or `m.room.member`
payloads changes nothing: neither nio's room (members: who gets the room
keys) nor the bot's rights, upgrades or history."""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from nio import SyncResponse

from bot.chat import IncomingMessage, RoomUpgraded
from bot.db.storage import Storage
from bot.matrix.authority import NOT_FOUND
from bot.matrix.client import MatrixChat
from bot.matrix.state import StateClient, is_room_state
from bot.permissions import state_event_level
from tests.fakes import make_config

ROOM = "!room:example.org"
NEW = "!new:example.org"
EVIL = "!evil:example.org"
BOT = "@bot:example.org"
ALICE = "@alice:example.org"  # the room's creator (v12)
MOD = "@mod:example.org"  # power level 50
MALLORY = "@mallory:example.org"  # a plain member (power level 0)
EVE = "@eve:example.org"  # not in the room
TOMBSTONE = "m.room.tombstone"

_ids = itertools.count()


def event(sender: str, kind: str, content: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A room event as a sync carries it (`state_key` in `extra` for state)."""
    return {
        "event_id": f"$ev{next(_ids)}",
        "sender": sender,
        "origin_server_ts": 1_700_000_000_000,
        "type": kind,
        "content": content,
        **extra,
    }


def member(user_id: str, membership: str = "join") -> dict[str, Any]:
    return event(user_id, "m.room.member", {"membership": membership}, state_key=user_id)


def power_levels(users: dict[str, int], **rest: Any) -> dict[str, Any]:
    return event(ALICE, "m.room.power_levels", {"users": users, **rest}, state_key="")


def room_state(*, levels: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """A v12 room made by Alice: the bot, a moderator and Mallory joined, encrypted."""
    state = [
        event(ALICE, "m.room.create", {"room_version": "12"}, state_key=""),
        *(member(user) for user in (ALICE, BOT, MOD, MALLORY)),
        event(ALICE, "m.room.encryption", {"algorithm": "m.megolm.v1.aes-sha2"}, state_key=""),
    ]
    if levels is None:
        levels = power_levels({MOD: 50}, events={TOMBSTONE: 100}, state_default=50)
    if levels:
        state.append(levels)
    return state


def sync(batch: str, *, state: list[Any] = (), timeline: list[Any] = ()) -> SyncResponse:  # type: ignore[assignment]
    room = {
        "state": {"events": list(state)},
        "timeline": {"events": list(timeline), "limited": False, "prev_batch": "p"},
        "ephemeral": {"events": []},
        "account_data": {"events": []},
    }
    return SyncResponse.from_dict(
        {
            "next_batch": batch,
            "rooms": {"join": {ROOM: room}, "invite": {}, "leave": {}},
            "to_device": {"events": []},
            "presence": {"events": []},
            "account_data": {"events": []},
            "device_lists": {"changed": [], "left": []},
            "device_one_time_keys_count": {},
        }
    )


def logged_in(tmp_path: Path, user_id: str, device_id: str) -> StateClient:
    """A client with its own Olm account (no homeserver needed)."""
    store = tmp_path / device_id
    store.mkdir()
    client = StateClient("http://127.0.0.1:1", user_id, device_id=device_id, store_path=str(store))
    client.restore_login(user_id, device_id, "token")
    return client


class Encrypter:
    """A member's Megolm session in the room, its key already given to `reader`."""

    def __init__(self, client: StateClient, reader: StateClient) -> None:
        self.user_id = client.user_id
        olm = client.olm
        olm.create_outbound_group_session(ROOM)
        session = olm.outbound_group_sessions[ROOM]
        session.shared = True
        self._olm = olm
        keys = olm.account.identity_keys
        reader.olm.create_group_session(
            keys["curve25519"], keys["ed25519"], ROOM, session.id, session.session_key
        )

    def encrypted(self, payload: dict[str, Any]) -> dict[str, Any]:
        """`payload` (type, content, maybe state_key) sent as `m.room.encrypted`."""
        content = self._olm.group_encrypt(ROOM, dict(payload))
        return event(self.user_id, "m.room.encrypted", content)

    def said(self, body: str) -> dict[str, Any]:
        return self.encrypted(
            {"type": "m.room.message", "content": {"msgtype": "m.text", "body": body}}
        )


@dataclass
class Bot:
    """The bot's Matrix side, fed sync responses; what it hands to the core."""

    chat: MatrixChat
    client: StateClient
    messages: list[IncomingMessage] = field(default_factory=list)
    upgrades: list[RoomUpgraded] = field(default_factory=list)
    joined: list[bool] = field(default_factory=list)

    async def receive(self, response: SyncResponse) -> None:
        await self.client.receive_response(response)  # nio: decryption, its room model
        await self.chat._sync._on_sync(response)  # the bot

    @property
    def room(self) -> Any:
        return self.client.rooms[ROOM]


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[Bot]:
    cfg = make_config(tmp_path, matrix={"allowed_servers": ["example.org"]})
    storage = await Storage.open(tmp_path / "db.sqlite")
    chat = MatrixChat(cfg.matrix, tmp_path / "bot", storage)
    client = logged_in(tmp_path, BOT, "BOTDEVICE")
    chat._session.client = client
    bot = Bot(chat, client)

    async def on_message(msg: IncomingMessage) -> None:
        bot.messages.append(msg)

    async def on_upgrade(upgraded: RoomUpgraded) -> None:
        bot.upgrades.append(upgraded)

    async def on_members(change: Any) -> None:
        bot.joined.append(change.bot_joined)

    chat.handlers.on_message = on_message
    chat.handlers.on_upgrade = on_upgrade
    chat.handlers.on_members = on_members
    yield bot
    await client.close()
    await storage.close()


FORGED = [
    {"type": "m.room.power_levels", "state_key": "", "content": {"users": {MALLORY: 100}}},
    {
        "type": "m.room.create",
        "state_key": "",
        "content": {"room_version": "12", "additional_creators": [MALLORY]},
    },
    {
        "type": TOMBSTONE,
        "state_key": "",
        "content": {"body": "déménagé", "replacement_room": EVIL},
    },
    {"type": "m.room.member", "state_key": EVE, "content": {"membership": "join"}},
    {"type": "m.room.name", "state_key": "", "content": {"name": "pwned"}},
    {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "none"}},
]


async def test_encrypted_state_payloads_change_nothing(
    bot: Bot, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await bot.receive(sync("s1", state=room_state()))
    asked: list[tuple[str, str]] = []

    async def homeserver(room_id: str, event_type: str, state_key: str = "") -> object:
        asked.append((event_type, state_key))
        return NOT_FOUND  # Eve never was a member

    bot.chat._authority._fetch = homeserver  # type: ignore[method-assign]
    assert not await bot.chat.is_joined(ROOM, EVE)  # asked once, then kept up to date
    mallory = Encrypter(logged_in(tmp_path, MALLORY, "MALLORY"), bot.client)
    # The bot's own join, forged (as if all before it were history).
    own_join = {
        "type": "m.room.member",
        "state_key": BOT,
        "content": {"membership": "join"},
        "unsigned": {"prev_content": {"membership": "leave"}},
    }
    timeline = [
        mallory.said("!aide"),
        *(mallory.encrypted(payload) for payload in FORGED),
        mallory.encrypted(own_join),
        mallory.said("!abonner rappels"),
    ]
    with caplog.at_level(logging.INFO):
        await bot.receive(sync("s2", timeline=timeline))

    # Still a plain member for the bot: no moderator rights, no upgrade followed.
    assert await bot.chat.power_level(ROOM, MALLORY) == 0
    assert await bot.chat.power_level(ROOM, ALICE) == math.inf
    assert asked == [("m.room.member", EVE)]  # the rest from the sync
    assert not await bot.chat.is_joined(ROOM, EVE)  # her forged join changed nothing
    assert bot.upgrades == []
    # Both commands read: the forged own join made nothing before it history.
    assert [m.body for m in bot.messages] == ["!aide", "!abonner rappels"]
    assert not any(bot.joined)  # nor the bot joined anew
    # nio's room is the homeserver's: no Eve among the members (who get the
    # room keys), no power, name, tombstone or encryption from the payloads.
    room = bot.room
    assert set(room.users) == {ALICE, BOT, MOD, MALLORY}
    assert room.power_levels.get_user_level(MALLORY) == 0
    assert room.name is None and room.replacement_room is None
    assert room.encrypted
    assert bot.client.olm.users_for_key_query == {ALICE, BOT, MOD, MALLORY}  # no Eve
    # Each forged event logged once: room, sender, type; never what it said.
    forged = [r.getMessage() for r in caplog.records if "not taken as room state" in r.getMessage()]
    assert len(forged) == len(FORGED) + 1
    assert all(ROOM in line and MALLORY in line for line in forged)
    assert [line.split("'")[1] for line in forged] == [p["type"] for p in FORGED] + [
        "m.room.member"
    ]
    assert "pwned" not in caplog.text and EVIL not in caplog.text


async def test_real_state_in_the_timeline_still_counts(bot: Bot) -> None:
    await bot.receive(sync("s1", state=room_state()))
    promoted = power_levels({MOD: 50, MALLORY: 50}, events={TOMBSTONE: 100})
    await bot.receive(sync("s2", timeline=[promoted, member(EVE)]))
    assert await bot.chat.power_level(ROOM, MALLORY) == 50
    assert bot.room.power_levels.get_user_level(MALLORY) == 50
    assert EVE in bot.room.users


# -- which tombstones are followed ----------------------------------------------------------


def tombstone(sender: str, new_room: str = NEW) -> dict[str, Any]:
    return event(
        sender, TOMBSTONE, {"body": "mis à niveau", "replacement_room": new_room}, state_key=""
    )


async def test_a_tombstone_is_handed_over_only_from_someone_allowed_to_send_it(bot: Bot) -> None:
    await bot.receive(sync("s1", state=room_state()))
    # A moderator (50) where m.room.tombstone needs 100: not followed.
    await bot.receive(sync("s2", timeline=[tombstone(MOD)]))
    assert bot.upgrades == []
    # The v12 creator outranks everyone.
    await bot.receive(sync("s3", timeline=[tombstone(ALICE)]))
    assert bot.upgrades == [RoomUpgraded(ROOM, NEW, ALICE)]


async def test_without_a_tombstone_level_state_default_decides(bot: Bot) -> None:
    await bot.receive(sync("s1", state=room_state(levels=power_levels({MOD: 50}))))
    await bot.receive(sync("s2", timeline=[tombstone(MALLORY, EVIL)]))
    assert bot.upgrades == []
    await bot.receive(sync("s3", timeline=[tombstone(MOD)]))  # state_default: 50
    assert bot.upgrades == [RoomUpgraded(ROOM, NEW, MOD)]


async def test_without_power_levels_only_the_creator_may_upgrade(bot: Bot) -> None:
    asked: list[str] = []

    async def homeserver(room_id: str, event_type: str) -> object:
        asked.append(event_type)
        return NOT_FOUND  # Synapse's 404: the room has no such state event

    bot.chat._authority._fetch = homeserver  # type: ignore[method-assign]
    await bot.receive(sync("s1", state=room_state(levels={})))
    await bot.receive(sync("s2", timeline=[tombstone(MOD, EVIL)]))
    assert bot.upgrades == []
    await bot.receive(sync("s3", timeline=[tombstone(ALICE)]))
    assert bot.upgrades == [RoomUpgraded(ROOM, NEW, ALICE)]
    assert asked == ["m.room.power_levels"]  # once, then known


def test_the_level_a_state_event_needs() -> None:
    assert state_event_level(TOMBSTONE, {"events": {TOMBSTONE: 150}, "state_default": 50}) == 150
    assert state_event_level(TOMBSTONE, {"events": {}, "state_default": 20}) == 20
    assert state_event_level(TOMBSTONE, {"users": {}}) == 50
    assert state_event_level(TOMBSTONE, None) == 100  # no power levels: the creator only
    assert state_event_level(TOMBSTONE, {"events": {TOMBSTONE: "x"}}) == math.inf


def test_what_counts_as_room_state() -> None:
    decrypted = SimpleNamespace(decrypted=True, source={"type": TOMBSTONE, "state_key": ""})
    # A message event of a state event's type (no state_key): not state either.
    plain = SimpleNamespace(decrypted=False, source={"type": TOMBSTONE, "content": {}})
    state = SimpleNamespace(decrypted=False, source={"type": TOMBSTONE, "state_key": ""})
    assert not is_room_state(decrypted)
    assert not is_room_state(plain)
    assert is_room_state(state)
