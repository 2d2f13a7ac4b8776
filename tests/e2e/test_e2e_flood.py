"""One person floods the bot on a real Synapse: the others do not notice.

Alice sends 200 commands at once, as fast as her client can. She gets the
answers her burst (and its refills) allow, one "doucement" notice, nothing
more; meanwhile Bob's command in another room is answered, and the
programme-change notice it causes reaches a third, subscribed room, while
her flood is still being sent (bench/flood.py measures how fast: ~1-2 s).
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from nio import RoomMessagesResponse

from bot.app import DB_FILE, BotApp
from bot.config import LimitsConfig
from bot.devserver import DevHomeserver
from tests.helpers import User, bot_config, is_reply, running, with_moderators

pytestmark = pytest.mark.e2e

FLOOD = 200
SHIPPED: dict[str, Any] = {}  # bot.limits as shipped: the defaults
SLOW = "⏳ Doucement : trop de commandes d'affilée. Je reprends dans un instant."


def body(event: Any) -> str:
    return str(event.source.get("content", {}).get("body", ""))


async def history(user: User, room_id: str) -> list[Any]:
    """Every event of the room, oldest first (a sync would cut a busy timeline)."""
    resp = await user.client.room_messages(room_id, limit=1000)
    assert isinstance(resp, RoomMessagesResponse), resp
    return list(reversed(resp.chunk))


async def test_a_flood_by_one_member_leaves_the_others_served_on_time(
    synapse: DevHomeserver, tmp_path: Path, make_user
) -> None:
    storage = tmp_path / "bot"
    cfg, bot_id = bot_config(synapse, storage, bot={"limits": SHIPPED})
    per_sender = LimitsConfig().per_sender
    alice = await make_user("alice")  # floods room A
    carol = await make_user("carol")  # in room A too: says when the flood is all read
    bob = await make_user("bob")  # a community moderator; admin of rooms B and C
    cfg = with_moderators(cfg, bob.user_id)
    day = datetime.now(ZoneInfo("Europe/Paris")).date() + timedelta(days=5)

    async with running(BotApp(cfg)):
        room_a = await alice.create_room(invite=[bot_id, carol.user_id])
        room_b = await bob.create_room(invite=[bot_id])
        room_c = await bob.create_room(invite=[bot_id])
        await carol.client.join(room_a)
        for user, room in ((alice, room_a), (bob, room_b), (bob, room_c)):
            await user.wait_joined(room, bot_id)
        await alice.wait_joined(room_a, carol.user_id)
        assert "Ce salon recevra" in body(await bob.ask(room_c, "!abonner rappels", bot_id))
        added = await bob.ask(room_b, f'!session ajouter {day:%d/%m/%Y} 14h-15h "Atelier"', bot_id)
        sid = re.search(r"Identifiant : (\w+)", body(added)).group(1)  # type: ignore[union-attr]

        sent = 0
        underway = asyncio.Event()

        async def one() -> str:
            nonlocal sent
            event_id = await alice.send(room_a, "!aide")
            sent += 1
            if sent == 20:
                underway.set()
            return event_id

        started = time.monotonic()
        flood = asyncio.gather(*(one() for _ in range(FLOOD)))
        await underway.wait()

        # Meanwhile, Bob moves a session from room B: answered there, announced in room C.
        asked_at, sent_before = time.monotonic(), sent
        moved = await bob.send(room_b, f"!session modifier {sid} 16h-17h")
        answer = await bob.reply_to(room_b, moved, bot_id)
        answered_in = time.monotonic() - asked_at
        notice = await bob.wait_for(
            room_c,
            lambda e: e.sender == bot_id and "16h00 – 17h00" in body(e),
        )
        announced_in = time.monotonic() - asked_at
        # Served while she is still flooding, not after her: an order, not a
        # wall-clock bound (bench/flood.py measures the times).
        during_flood = not flood.done()
        flood_ids = await flood
        assert sent_before < FLOOD  # Bob's turn came during the flood
        assert "Séance modifiée" in body(answer)
        assert body(notice).startswith("⚠️ Changement de programme")

        # Carol's command comes after all of Alice's in the room's timeline:
        # answered, every one of Alice's was read (and kept or dropped).
        marker = await carol.ask(room_a, "!aide", bot_id)
        elapsed = time.monotonic() - started
        assert "!agenda" in body(marker)
    # Stopped: every answer under way has gone out.

    events = await history(alice, room_a)
    from_bot = [e for e in events if e.sender == bot_id and "body" in e.source["content"]]
    flood_set = set(flood_ids)
    slow = [e for e in from_bot if body(e) == SLOW]
    answers = [e for e in from_bot if any(is_reply(e, x, bot_id) for x in flood_set)]
    answers = [e for e in answers if body(e) != SLOW]
    assert len(slow) == 1  # told once…
    assert any(is_reply(slow[0], x, bot_id) for x in flood_set)  # …in reply to her command
    with sqlite3.connect(storage / DB_FILE) as db:
        kept = db.execute(
            "SELECT COUNT(*), SUM(status = 'done') FROM inbox WHERE sender = ?", (alice.user_id,)
        ).fetchone()
    assert kept[0] == kept[1] == len(answers)  # the others neither stored nor answered
    # A burst, one more per `every` seconds of flood, and the rounding.
    allowed = per_sender.burst + elapsed / per_sender.every.total_seconds() + 1
    assert len(answers) <= allowed, (len(answers), elapsed)
    assert len(answers) < FLOOD / 4
    # The others did not wait for her.
    assert during_flood, (answered_in, announced_in)
    print(
        f"\nflood of {FLOOD} in {elapsed:.1f}s: {len(answers)} answered, 1 notice; "
        f"Bob (after {sent_before} sent) answered in {answered_in * 1000:.0f} ms, "
        f"room C told in {announced_in * 1000:.0f} ms"
    )
