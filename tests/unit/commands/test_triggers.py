"""A reaction-triggered command plugs in by declaration only: a ✋ on a post that
offers topics runs the command with those topics, taking it back runs its undo.
No line of the dispatcher, the answers or the sender names it."""

from __future__ import annotations

import sys
from collections.abc import Awaitable
from pathlib import Path

from bot.chat import IncomingMessage, IncomingReaction, IncomingRedaction, Triggered
from bot.commands.core import Context, Reaction, Registry, command
from bot.db.storage import Storage
from bot.render import Message
from tests.fakes import FakeClock, make_dispatcher
from tests.helpers import NOW

ROOM = "!mentors:example.org"
ALICE, BOB = "@alice:example.org", "@bob:example.org"
HAND = "hand"  # the trigger's name: what the offering post is marked with
# What each ✋ took on, as the feature would store it: (reaction, sender) → topics.
TAKEN: dict[tuple[str, str], tuple[str, ...]] = {}
RUNS: list[Triggered] = []


async def taken(
    _storage: Storage, reaction: str, _room_id: str, sender: str
) -> tuple[str, ...] | None:
    return TAKEN.get((reaction, sender))


async def lower_hand(ctx: Context) -> Message:
    assert ctx.trigger is not None
    RUNS.append(ctx.trigger)
    TAKEN.pop((ctx.trigger.reaction, ctx.msg.sender), None)
    return Message(f"dropped {' '.join(ctx.trigger.values)}", "dropped")


@command("offer")
async def offer_command(ctx: Context) -> Message:
    """Typed: posts the offer, marked so that a ✋ on it means its topics."""
    return Message("who mentors grist or matomo? react ✋", "offer").marked(HAND, ctx.args.split())


@command("mentor", reactions=[Reaction("✋", HAND, undo=lower_hand, given=taken)])
async def mentor_command(ctx: Context) -> Message:
    assert ctx.trigger is not None and ctx.args == ""
    RUNS.append(ctx.trigger)
    TAKEN[(ctx.trigger.reaction, ctx.msg.sender)] = ctx.trigger.values
    return Message(f"mentoring {' '.join(ctx.trigger.values)}", "mentoring")


async def test_a_declared_reaction_runs_its_command_and_taking_it_back_its_undo(
    tmp_path: Path,
) -> None:
    dispatcher, chat, storage = await make_dispatcher(tmp_path, [], FakeClock(NOW))
    dispatcher.registry = Registry().collect(sys.modules[__name__])
    TAKEN.clear()
    RUNS.clear()

    async def sent_after(step: Awaitable[None]) -> list[str]:
        before = len(chat.sent)
        await step
        await dispatcher.drain()
        for s in chat.sent[before:]:
            assert (s.room_id, s.reply_to) == (ROOM, None)  # in the room, no reply to a reaction
        return [s.message.body for s in chat.sent[before:] if isinstance(s.message, Message)]

    try:
        await dispatcher.accept(IncomingMessage(ROOM, "$cmd", BOB, "!offer grist matomo"))
        await dispatcher.drain()
        offer = chat.sent[-1].event_id
        assert offer is not None
        # Other emojis, other events, the bot itself: nothing.
        for reaction in (
            IncomingReaction(ROOM, "$thumb", ALICE, offer, "👍"),
            IncomingReaction(ROOM, "$elsewhere", ALICE, "$cmd", "✋"),
            IncomingReaction(ROOM, "$own", chat.user_id, offer, "✋"),
        ):
            assert await sent_after(dispatcher.accept_reaction(reaction)) == []
        hand = IncomingReaction(ROOM, "$hand", ALICE, offer, "✋\ufe0f")
        assert await sent_after(dispatcher.accept_reaction(hand)) == ["mentoring grist matomo"]
        assert [Triggered(HAND, "$hand", ("grist", "matomo"))] == RUNS
        # What it resolved to is stored with its row: a restart answers the same.
        item = await storage.inbox.get("$hand")
        assert item is not None and item.trigger == RUNS[0]
        assert await sent_after(dispatcher.accept_reaction(hand)) == []  # seen again: once

        # Someone else's redaction takes nothing back; its sender's runs the undo.
        bob = IncomingRedaction(ROOM, "$x", BOB, "$hand")
        assert await sent_after(dispatcher.accept_redaction(bob)) == []
        mine = IncomingRedaction(ROOM, "$undo", ALICE, "$hand")
        assert await sent_after(dispatcher.accept_redaction(mine)) == ["dropped grist matomo"]
        assert RUNS[-1] == Triggered(HAND, "$hand", ("grist", "matomo"), undo=True)
        # Nothing left to take back: a second redaction says nothing.
        again = IncomingRedaction(ROOM, "$undo2", ALICE, "$hand")
        assert await sent_after(dispatcher.accept_redaction(again)) == []

        # Taken back in the same sync batch, before its answer: answered after it.
        quick = IncomingReaction(ROOM, "$quick", ALICE, offer, "✋")
        await dispatcher.accept_reaction(quick)
        undo = IncomingRedaction(ROOM, "$undo3", ALICE, "$quick")
        both = await sent_after(dispatcher.accept_redaction(undo))
        assert both == ["mentoring grist matomo", "dropped grist matomo"]
        assert TAKEN == {}
    finally:
        await storage.close()
