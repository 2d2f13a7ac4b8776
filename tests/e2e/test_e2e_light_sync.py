"""The light sync on a real Synapse: lazy-loaded members and filtered events
still let the bot answer encrypted rooms (across a restart, to a member who
joined later), and permissions come from the sync's copy of two state events."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from bot.app import BotApp
from bot.devserver import DevHomeserver
from bot.matrix.authority import RoomAuthority
from tests.helpers import bot_config, eventually, running

pytestmark = pytest.mark.e2e


async def test_encrypted_room_answers_a_member_who_joined_after_a_restart(
    synapse: DevHomeserver, tmp_path: Path, crypto_user
) -> None:
    """After a restart the bot knows the room only from a sync with lazy-loaded
    members; a member who joins then still gets the room key of its answer."""
    cfg, bot_id = bot_config(synapse, tmp_path / "bot")
    alice = await crypto_user()
    bob = await crypto_user()
    async with running(BotApp(cfg)):
        room = await alice.encrypted_room_with(bot_id)
        asked = await alice.say(room, "!aide")
        await alice.reply_to(room, asked, bot_id)
    async with running(BotApp(cfg)):
        # The first answer after the restart: nio reads the joined members once.
        again = await alice.say(room, "!aide")
        await alice.reply_to(room, again, bot_id)
        # Bob's join reaches the bot through the sync's timeline only.
        await alice.client.room_invite(room, bob.user_id)
        await eventually(lambda: room in bob.invites)
        await bob.client.join(room)
        await eventually(lambda: any(bob.client.device_store.active_user_devices(bot_id)))
        asked = await bob.say(room, "!aide")
        reply = await bob.reply_to(room, asked, bot_id)  # decrypted: a notice
        assert "!agenda" in reply.body


async def test_permissions_come_from_the_sync_and_follow_changes(
    synapse: DevHomeserver, tmp_path: Path, make_user
) -> None:
    cfg, bot_id = bot_config(synapse, tmp_path / "bot", bot={"moderators": []})
    alice = await make_user("alice")
    bob = await make_user("bob")
    async with running(BotApp(cfg)) as app:
        assert app.chat is not None
        authority = app.chat._authority
        room = await alice.create_room(invite=[bot_id, bob.user_id])
        await alice.wait_joined(room, bot_id)
        await alice.ask(room, "!aide", bot_id)  # the bot has synced its join
        assert await app.chat.power_level(room, alice.user_id) == math.inf  # v12 creator
        assert await app.chat.power_level(room, bob.user_id) == 0

        pl = await alice.client.room_get_state_event(room, "m.room.power_levels")
        promoted = {**pl.content, "users": {**pl.content.get("users", {}), bob.user_id: 50}}
        await alice.client.room_put_state(room, "m.room.power_levels", promoted)
        await alice.ask(room, "!aide", bot_id)  # a later sync than the change
        assert await app.chat.power_level(room, bob.user_id) == 50
        demoted = {**promoted, "users": {**promoted["users"], bob.user_id: 10}}
        await alice.client.room_put_state(room, "m.room.power_levels", demoted)
        await alice.ask(room, "!aide", bot_id)
        assert await app.chat.power_level(room, bob.user_id) == 10
        assert authority.fetched == 0  # never asked the homeserver: the sync told

        # A room the sync has not shown yet: two state events asked for, not the whole state.
        cold = RoomAuthority(SimpleNamespace(client=app.chat.client))  # type: ignore[arg-type]
        assert await cold.power_level(room, alice.user_id) == math.inf
        assert await cold.power_level(room, bob.user_id) == 10
        assert cold.fetched == 2
        # Not in the room: nothing granted, and said in the log rather than raised.
        other = await alice.create_room()
        assert await cold.power_level(other, alice.user_id) == 0
