"""The invite queue without a homeserver: what is joined, declined, once, and kept."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from nio import InviteMemberEvent, JoinResponse, RoomLeaveResponse

from bot.db.storage import Storage
from bot.matrix import invites as invites_module
from bot.matrix.invites import Invites
from bot.matrix.session_state import SessionStates
from tests.helpers import eventually

BOT = "@bot:agent.dinum.tchap.gouv.fr"
ALLOWED = ["agent.*.tchap.gouv.fr", "!agent.externe.tchap.gouv.fr"]


class RecordingClient:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        # Cleared: joins wait, as one waiting out the homeserver's join limit.
        self.open = asyncio.Event()
        self.open.set()

    async def join(self, room_id: str) -> Any:
        self.calls.append(("join", room_id))
        await self.open.wait()
        return JoinResponse(room_id)

    async def room_leave(self, room_id: str) -> Any:
        self.calls.append(("leave", room_id))
        return RoomLeaveResponse()


def invite(inviter: str, *, invitee: str = BOT) -> SimpleNamespace:
    """An invite as nio's sync shows it (one member event per person invited)."""
    member = {"membership": "invite"}
    event = InviteMemberEvent(
        {"sender": inviter, "state_key": invitee, "content": member},
        inviter,
        invitee,
        "invite",
        "leave",
        member,
    )
    return SimpleNamespace(invite_state=[event])


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[Storage]:
    opened = await Storage.open(tmp_path / "db.sqlite")
    yield opened
    await opened.close()


@contextlib.asynccontextmanager
async def queue(storage: Storage, client: RecordingClient) -> AsyncIterator[Invites]:
    session = SimpleNamespace(client=client, user_id=BOT, states=SessionStates())
    invites = Invites(session, storage, ALLOWED)  # type: ignore[arg-type]
    await invites.load()
    task = asyncio.create_task(invites.run())
    try:
        yield invites
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture(autouse=True)
def no_pace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(invites_module, "JOIN_PACE_S", 0.0)


async def test_joins_allowed_declines_others_each_once(storage: Storage) -> None:
    client = RecordingClient()
    client.open.clear()
    shown = {
        "!a:x": invite("@agent:agent.finances.tchap.gouv.fr"),
        "!b:x": invite("@partner:agent.externe.tchap.gouv.fr"),
        "!c:x": invite("@someone:agent.finances.tchap.gouv.fr", invitee="@other:x"),
        "!d:x": invite("@agent:agent.interieur.tchap.gouv.fr"),
    }
    async with queue(storage, client) as invites:
        await invites.note(shown)
        await eventually(lambda: client.calls == [("join", "!a:x")], timeout=5)
        await invites.note(shown)  # shown again (a sync without a token) while joining
        client.open.set()
        await eventually(lambda: invites.waiting == 0, timeout=5)
        await asyncio.sleep(0.05)
    assert client.calls == [("join", "!a:x"), ("leave", "!b:x"), ("join", "!d:x")]


async def test_a_withdrawn_invite_is_not_joined(storage: Storage, monkeypatch) -> None:
    monkeypatch.setattr(invites_module, "JOIN_PACE_S", 0.3)
    client = RecordingClient()
    async with queue(storage, client) as invites:
        await invites.note(
            {
                "!a:x": invite("@a:agent.dinum.tchap.gouv.fr"),
                "!b:x": invite("@b:agent.dinum.tchap.gouv.fr"),
            }
        )
        await eventually(lambda: client.calls == [("join", "!a:x")], timeout=5)
        await invites.note({}, left=["!b:x"])  # withdrawn while waiting its turn
        await asyncio.sleep(0.5)
        assert invites.waiting == 0
    assert client.calls == [("join", "!a:x")]


async def test_the_queue_outlives_a_restart(storage: Storage) -> None:
    stalled = RecordingClient()
    stalled.open.clear()
    async with queue(storage, stalled) as invites:
        await invites.note(
            {
                "!a:x": invite("@a:agent.dinum.tchap.gouv.fr"),
                "!b:x": invite("@b:agent.dinum.tchap.gouv.fr"),
            }
        )
        await eventually(lambda: stalled.calls == [("join", "!a:x")], timeout=5)
    client = RecordingClient()
    async with queue(storage, client) as invites:
        await eventually(lambda: invites.waiting == 0, timeout=5)
    assert client.calls == [("join", "!a:x"), ("join", "!b:x")]
