"""Who may change the community's data, on a real Synapse.

Any agent can create a room, invite the bot and be that room's admin (its v12
creator), or open a direct room with the bot: neither gives rights over what
every room shares. Community moderators are the moderators of the room listed
in `bot.moderator_rooms` (here by its alias), wherever they type, until they
are demoted or leave.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import pytest
from nio import RoomPreset

from bot.app import BotApp
from bot.devserver import DevHomeserver, free_port
from tests.helpers import User, bot_config, get, running, unique

pytestmark = pytest.mark.e2e

PARIS = ZoneInfo("Europe/Paris")
COMMUNITY_ONLY = "réservée aux modérateurs de la communauté"


def body(event: Any) -> str:
    return str(event.source["content"]["body"])


async def direct_room(user: User, bot_id: str) -> str:
    """A direct room with the bot, as a client opens one: its creator is its admin."""
    room = await user.create_room(
        invite=[bot_id], is_direct=True, preset=RoomPreset.trusted_private_chat
    )
    await user.wait_joined(room, bot_id)
    return room


async def set_level(admin: User, room: str, user_id: str, level: int) -> None:
    levels = await admin.client.room_get_state_event(room, "m.room.power_levels")
    users = {**levels.content.get("users", {}), user_id: level}
    await admin.client.room_put_state(
        room, "m.room.power_levels", {**levels.content, "users": users}
    )


async def until(check: Callable[[], Awaitable[bool]], within: float) -> float:
    """Seconds until `check()` holds (each check waits for the bot's answer)."""
    started = asyncio.get_running_loop().time()
    async with asyncio.timeout(within):
        while not await check():
            pass
    return asyncio.get_running_loop().time() - started


async def published(port: int) -> set[tuple[str, ...]]:
    """The public calendar's sessions: uid, title, link, status, start."""
    status, text = await get(port, "/agenda.ics")
    assert status == 200
    calendar = icalendar.Calendar.from_ical(text)
    return {
        (
            str(e.get("UID")),
            str(e.get("SUMMARY")),
            str(e.get("URL", "")),
            str(e.get("STATUS", "")),
            e.decoded("DTSTART").isoformat(),
        )
        for e in calendar.walk("VEVENT")
    }


async def test_rights_come_from_the_moderators_room_never_from_a_room_anyone_opens(
    synapse: DevHomeserver, tmp_path: Path, make_user
) -> None:
    mod = await make_user("mod")  # creates the moderators' room: its v12 creator
    bruno = await make_user("bruno")  # promoted to 50 there, later demoted
    carla = await make_user("carla")  # promoted to 50 there, later leaves
    agent = await make_user("agent")  # any agent: admin of their own rooms only
    alias = unique("moderation")
    mods_room = await mod.create_room(
        alias=alias, invite=[bruno.user_id, carla.user_id], name="Modération BlueHats"
    )
    for user in (bruno, carla):
        await user.client.join(mods_room)
        await mod.wait_joined(mods_room, user.user_id)
        await set_level(mod, mods_room, user.user_id, 50)

    port = free_port()
    cfg, bot_id = bot_config(
        synapse,
        tmp_path / "bot",
        bot={"moderator_rooms": [f"#{alias}:{synapse.server_name}"]},
        web={"http": f"127.0.0.1:{port}", "public_url": f"http://127.0.0.1:{port}"},
    )
    await mod.client.room_invite(mods_room, bot_id)
    async with running(BotApp(cfg)):
        await mod.wait_joined(mods_room, bot_id)  # joined at start: the room is configured
        own = await agent.create_room(invite=[bot_id], name="Le salon d'un agent")
        await agent.wait_joined(own, bot_id)
        agent_dm = await direct_room(agent, bot_id)

        listing = body(await agent.ask(own, "!agenda", bot_id))
        sid = re.findall(r"\[([a-z0-9]+)\]$", listing, re.MULTILINE)[0]
        shown = body(await agent.ask(own, f"!session {sid}", bot_id))
        calendar = await published(port)
        day = datetime.now(PARIS).date() + timedelta(days=5)
        attempts = [
            f"!session annuler {sid}",
            f'!session ajouter {day:%d/%m/%Y} 14h-15h "Fausse séance"',
            f"!session modifier {sid} lien=https://hameconnage.example/",
            f"!mentor ajouter {agent.user_id} Grist",
            "!mentor journal",
            "!session journal",
        ]
        # In the agent's own room (its creator) and in their direct room with the bot.
        for room in (own, agent_dm):
            for attempt in attempts:
                refused = body(await agent.ask(room, attempt, bot_id))
                assert COMMUNITY_ONLY in refused, (attempt, refused)
        # Nothing changed: the session, the directory, the public calendar.
        assert body(await agent.ask(own, f"!session {sid}", bot_id)) == shown
        assert "vide" in body(await agent.ask(own, "!mentors", bot_id))
        assert await published(port) == calendar
        agent_help = body(await agent.ask(own, "!aide", bot_id))
        assert "!abonner" in agent_help  # their room's settings are theirs
        assert "session ajouter" not in agent_help and "communauté" not in agent_help
        # Their own room's settings stay theirs.
        subscribed = body(await agent.ask(own, "!abonner rappels", bot_id))
        assert "réservée" not in subscribed and "rappels" in subscribed

        # A moderator of the moderators' room, from that room and from their DM.
        added = body(
            await mod.ask(mods_room, f'!session ajouter {day:%d/%m/%Y} 14h-15h "Atelier"', bot_id)
        )
        assert "réservée" not in added and "Atelier" in added
        mod_dm = await direct_room(mod, bot_id)
        mentor = body(await mod.ask(mod_dm, f"!mentor ajouter {agent.user_id} Grist", bot_id))
        assert "est mentor pour : Grist" in mentor
        mod_help = body(await mod.ask(mod_dm, "!aide", bot_id))
        assert "Pour les modérateurs de la communauté" in mod_help
        # The trail says who, what and from which room.
        trail = body(await mod.ask(mod_dm, "!session journal", bot_id))
        assert mod.user_id in trail and mods_room in trail and "Atelier" in trail
        assert mod_dm in body(await mod.ask(mod_dm, "!mentor journal", bot_id))

        # Promoted in the moderators' room: rights wherever they type.
        bruno_dm = await direct_room(bruno, bot_id)
        assert COMMUNITY_ONLY not in body(await bruno.ask(bruno_dm, "!session journal", bot_id))
        carla_dm = await direct_room(carla, bot_id)
        assert COMMUNITY_ONLY not in body(await carla.ask(carla_dm, "!mentor journal", bot_id))

        # Demoted there, or gone from it: refused within seconds.
        await set_level(mod, mods_room, bruno.user_id, 0)

        async def bruno_refused() -> bool:
            answer = await bruno.ask(bruno_dm, "!session journal", bot_id)
            return COMMUNITY_ONLY in body(answer)

        assert await until(bruno_refused, within=10) < 10
        await carla.client.room_leave(mods_room)

        async def carla_refused() -> bool:
            answer = await carla.ask(carla_dm, "!mentor journal", bot_id)
            return COMMUNITY_ONLY in body(answer)

        assert await until(carla_refused, within=10) < 10
