"""One reminder rule: `!abonnements` lists the times the broadcaster sends at, on the fake clock."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from bot.broadcast import Broadcaster
from bot.render import Message, Renderer
from tests.fakes import PARIS, ROOMS, START, World, make_config


def reminded(world: World) -> list[str]:
    return [
        s.message.body
        for s in world.chat.sent
        if isinstance(s.message, Message) and s.message.body.startswith("⏰")
    ]


async def test_subscriptions_list_the_times_the_broadcaster_sends_at(world: World) -> None:
    config = make_config(
        world.storage_path,
        reminders={"offsets": ["1h", "1d", "10m"]},
        bot={"moderator_rooms": [ROOMS[0]]},
    )
    world.dispatcher.services = replace(world.dispatcher.services, config=config)
    rules = config.reminders
    broadcaster = Broadcaster(
        world.storage,
        world.chat,
        Renderer("fr", PARIS),
        world.agenda,
        prefix="!",
        now=world.clock,
        pace=timedelta(0),
        offsets=rules.offsets,
        grace=rules.grace,
        personal=rules.personal,
        retry_delay=0,
    )
    await world.say("!abonner rappels")
    listed = (await world.say("!abonnements")).splitlines()[1]
    assert listed == (
        "Prochains rappels : lundi 23 novembre à 14h00 pour « Webinaire Grist » ; "
        "mardi 24 novembre à 13h00 pour « Webinaire Grist » ; "
        "mardi 24 novembre à 13h50 pour « Webinaire Grist »."
    )
    # Each time listed: the broadcaster sleeps until it, sends nothing before, one post at it.
    for offset in (timedelta(days=1), timedelta(hours=1), timedelta(minutes=10)):
        due = START - offset
        world.clock.value = due - timedelta(seconds=20)
        assert broadcaster.seconds_to_next_due() == pytest.approx(20)
        assert await broadcaster.deliver() == 0
        world.clock.value = due
        assert await broadcaster.deliver() == 1
    assert len(reminded(world)) == 3
    assert "Prochains rappels" not in await world.say("!abonnements")  # none left
