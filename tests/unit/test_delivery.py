"""The one sender: what a failing send costs, for answers and posts alike."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from bot.chat import Redaction, SendError
from bot.db.storage import Storage
from bot.delivery import SEND_ATTEMPTS, TXN_MEMORY_S, Attempts, Kind, Outgoing, Sender
from bot.ops import Metrics
from bot.reminders import REMIND, presenting
from bot.render import Message
from tests.fakes import FakeChat, Sent

NOTICE = presenting(Message(body="Bonjour", html="Bonjour"), ("abc123",))


def outgoing(kind: Kind = Kind.BROADCAST) -> Outgoing:
    return Outgoing(kind, "!room:example.org", NOTICE, "bh-o-txn", label="test post")


class Counter:
    """Attempts as a table stores them: one more before each send."""

    def __init__(self) -> None:
        self.recorded = 0
        self.devices: list[str] = []

    async def record(self, device_id: str) -> None:
        self.recorded += 1
        self.devices.append(device_id)


async def test_transient_errors_are_retried_with_the_same_transaction_id(tmp_path: Path) -> None:
    chat = FakeChat(failures=[SendError("502", permanent=False)] * 2)
    storage = await Storage.open(tmp_path / "db.sqlite")
    try:
        metrics = Metrics()
        sender = Sender(chat, storage, retry_delay=0, metrics=metrics)
        counter = Counter()
        delivered = await sender.deliver(outgoing(), Attempts(0, counter.record))
        assert delivered.sent and delivered.event_id == "$ev-bh-o-txn"
        assert counter.recorded == 3  # each attempt stored before it was made
        assert [s.txn_id for s in chat.sent] == ["bh-o-txn"]
        # The post presents a session: a 🔔 on it asks for a reminder of it.
        assert await storage.posts.mark("$ev-bh-o-txn", "!room:example.org", REMIND) == ("abc123",)
        assert metrics.broadcasts.labels("sent")._value.get() == 1
    finally:
        await storage.close()


async def test_permanent_error_and_attempts_of_earlier_runs_end_the_retries(
    tmp_path: Path,
) -> None:
    storage = await Storage.open(tmp_path / "db.sqlite")
    try:
        chat = FakeChat(failures=[SendError("M_FORBIDDEN", permanent=True)])
        sender = Sender(chat, storage, retry_delay=0)
        counter = Counter()
        assert not (await sender.deliver(outgoing(), Attempts(0, counter.record))).sent
        assert counter.recorded == 1 and chat.sent == []

        # Four attempts made before a restart: one more, then it is given up.
        chat.failures = [SendError("timeout", permanent=False)] * 3
        counter = Counter()
        made = SEND_ATTEMPTS - 1
        assert not (await sender.deliver(outgoing(), Attempts(made, counter.record))).sent
        assert counter.recorded == 1 and len(chat.failures) == 2

        # A new command was stored with its first attempt counted: no second write.
        chat.failures = []
        counter = Counter()
        reply = outgoing(Kind.REPLY)
        assert (await sender.deliver(reply, Attempts(0, counter.record, True))).sent
        assert counter.recorded == 0
    finally:
        await storage.close()


async def test_paced_sender_spaces_its_sends(tmp_path: Path) -> None:
    storage = await Storage.open(tmp_path / "db.sqlite")
    try:
        chat = FakeChat()
        sender = Sender(chat, storage, retry_delay=0, pace=0.05, in_flight=4)
        counter = Counter()
        started = time.monotonic()
        for _ in range(3):
            await sender.deliver(outgoing(), Attempts(0, counter.record))
        # Three sends, two gaps of at least `pace`.
        assert time.monotonic() - started >= 0.1
        assert len(chat.sent) == 3
    finally:
        await storage.close()


async def test_an_edited_post_makes_a_bell_on_it_mean_its_new_sessions(tmp_path: Path) -> None:
    storage = await Storage.open(tmp_path / "db.sqlite")
    try:
        chat = FakeChat()
        sender = Sender(chat, storage, retry_delay=0)
        first = await sender.deliver(outgoing(Kind.REPLY), Attempts(0, Counter().record))
        assert first.event_id is not None
        room = "!room:example.org"
        new = presenting(Message(body="Superset", html="Superset"), ("def456",))
        edit = Outgoing(Kind.REPLY, room, new, "bh-edit", "edit", replaces=first.event_id)
        assert (await sender.deliver(edit, Attempts(0, Counter().record))).sent
        assert chat.sent[-1].replaces == first.event_id
        # Reactions go to the event edited (clients show its new content).
        assert await storage.posts.mark(first.event_id, room, REMIND) == ("def456",)
        # Edited into a post without sessions: a 🔔 on it asks for nothing.
        gone = Message(body="Commande retirée", html="Commande retirée")
        edit = Outgoing(Kind.REPLY, room, gone, "bh-edit-2", "edit", replaces=first.event_id)
        assert (await sender.deliver(edit, Attempts(0, Counter().record))).sent
        assert await storage.posts.mark(first.event_id, room, REMIND) == ()
    finally:
        await storage.close()


# -- when the homeserver may have forgotten the transaction id ----------------------------------

ROOM = "!room:example.org"
T0 = 1_800_000_000.0  # when the item was created
FORGOTTEN = T0 + TXN_MEMORY_S + 1


@pytest.mark.parametrize(
    ("made", "device", "now", "looked"),
    [
        (0, None, FORGOTTEN, False),  # never tried: nothing can have gone out
        (1, "FAKEDEVICE", T0 + 60, False),  # tried lately by this device: deduplicated
        (1, "FAKEDEVICE", FORGOTTEN, True),  # tried longer ago than the homeserver remembers
        (1, "OLDDEVICE", T0 + 60, True),  # tried by another device of the bot
        (1, None, T0 + 60, True),  # by a device not recorded (a row of an earlier version)
    ],
)
async def test_an_item_tried_before_is_looked_for_when_its_id_may_be_forgotten(
    tmp_path: Path, made: int, device: str | None, now: float, looked: bool
) -> None:
    storage = await Storage.open(tmp_path / "db.sqlite")
    try:
        chat = FakeChat()
        sender = Sender(chat, storage, retry_delay=0, wall=lambda: now)
        counter = Counter()
        attempts = Attempts(made, counter.record, since=T0, device_id=device)
        assert (await sender.deliver(outgoing(), attempts)).sent
        assert chat.looked_for == ([(ROOM, "bh-o-txn")] if looked else [])
        assert len(chat.sent) == 1
        assert counter.devices == ["FAKEDEVICE"]  # the attempt stored with its device
    finally:
        await storage.close()


async def test_found_counts_as_sent_absent_is_sent_once_unreadable_is_abandoned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    storage = await Storage.open(tmp_path / "db.sqlite")
    try:
        metrics = Metrics()
        tried = Attempts(1, Counter().record, since=T0, device_id="FAKEDEVICE")

        # The earlier attempt did go out: it is in the room, nothing is sent.
        chat = FakeChat()
        chat.sent.append(Sent(ROOM, NOTICE, "bh-o-txn", None, None, "$earlier"))
        sender = Sender(chat, storage, retry_delay=0, metrics=metrics, wall=lambda: FORGOTTEN)
        delivered = await sender.deliver(outgoing(), tried)
        assert (delivered.sent, delivered.event_id) == (True, "$earlier")
        assert len(chat.sent) == 1
        # Recorded as if just sent: a 🔔 on it asks for its session.
        assert await storage.posts.mark("$earlier", ROOM, REMIND) == ("abc123",)

        # Not in the room, which shows every event of the bot's since: sent, once.
        chat = FakeChat()
        sender = Sender(chat, storage, retry_delay=0, metrics=metrics, wall=lambda: FORGOTTEN)
        assert (await sender.deliver(outgoing(), tried)).sent
        assert [s.txn_id for s in chat.sent] == ["bh-o-txn"]
        assert metrics.broadcasts.labels("sent")._value.get() == 2

        # The room cannot tell (its events unreadable to this device): abandoned.
        chat = FakeChat(unreadable={ROOM})
        sender = Sender(chat, storage, retry_delay=0, metrics=metrics, wall=lambda: FORGOTTEN)
        caplog.clear()
        delivered = await sender.deliver(outgoing(), tried)
        assert (delivered.sent, delivered.abandoned) == (False, True)
        assert chat.sent == []
        assert metrics.abandoned.labels("broadcast")._value.get() == 1
        (warning,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert warning.levelno == logging.WARNING
        assert warning.getMessage().startswith("test post abandoned: it was tried before")

        # A redaction made again changes nothing: never looked for.
        redaction = Outgoing(Kind.BROADCAST, ROOM, Redaction("$issue"), "bh-r-txn", "retraction")
        assert (await sender.deliver(redaction, tried)).sent
        assert chat.redactions == [(ROOM, "$issue", "bh-r-txn")]
        assert chat.looked_for == [(ROOM, "bh-o-txn")]  # the post's look only
    finally:
        await storage.close()
