"""One answer to "when does the next issue go out": `!abonnements`, `!gazette` and the
broadcaster ask the schedule, and agree, also once an issue went out ahead of its time."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.unit.gazette import test_gazette
from tests.unit.gazette.test_gazette import BOB, FIRE, ROOMS, Newsroom

newsroom = test_gazette.newsroom  # the fixture: editors' room, three subscribed rooms


async def next_times(newsroom: Newsroom) -> tuple[str, str]:
    """The next issue as `!abonnements` (in a subscribed room) and `!gazette` tell it."""
    (room,) = [
        line
        for line in (await newsroom.say("!abonnements", room=ROOMS[0])).body.splitlines()
        if line.startswith("Prochaine gazette")
    ]
    (desk,) = [
        line
        for line in (await newsroom.say("!gazette")).body.splitlines()
        if line.startswith("Prochaine publication")
    ]
    return room, desk


async def test_subscribers_editors_and_broadcaster_agree_on_the_next_issue(
    newsroom: Newsroom,
) -> None:
    room, desk = await next_times(newsroom)  # on the 1st, no draft yet
    assert room == "Prochaine gazette : mardi 15 décembre à 10h00."
    assert desk == "Prochaine publication : mardi 15 décembre à 10h00."
    newsroom.clock.value = FIRE - timedelta(seconds=30)
    assert newsroom.broadcaster.seconds_to_next_due() == pytest.approx(30)

    # Published ahead of its time: the 15th is decided, the next issue is January's.
    newsroom.clock.value = FIRE - timedelta(days=2)
    await newsroom.broadcaster.deliver()  # the draft of n°33, for the 15th
    await newsroom.say("!gazette ajouter 1 En avance")
    await newsroom.say("!gazette valider", sender=BOB)
    assert "publiée" in (await newsroom.say("!gazette publier", sender=BOB)).body
    await newsroom.broadcaster.deliver()
    room, desk = await next_times(newsroom)
    assert room == "Prochaine gazette : vendredi 15 janvier 2027 à 10h00."
    assert desk == "Prochaine publication : vendredi 15 janvier à 10h00."
    # Nothing is due on the 15th any more: the broadcaster sleeps its longest.
    newsroom.clock.value = FIRE - timedelta(seconds=30)
    assert newsroom.broadcaster.seconds_to_next_due() == pytest.approx(60)
    newsroom.clock.value = FIRE + timedelta(seconds=5)
    await newsroom.broadcaster.deliver()
    assert [len(newsroom.posts(room)) for room in ROOMS] == [1, 1, 1]
