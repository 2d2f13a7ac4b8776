"""The editorial gazette on a real Synapse, with the bot as its own process.

Two moderators of the editors' room (its creator, and a second one promoted to
power level 50; both also named in `bot.moderators`) write, preview and approve
an issue; a member (level 0) tries the same and is refused. With a third
moderator: four eyes (an author does not approve once the other wrote an item
too; the third one does, by ✅) and a ✅ taken back (redacted) withdraws the
approval. An issue published goes out to three subscribed rooms, survives a
SIGKILL in the middle of the fan-out (one copy per room), is then corrected (one
m.replace per copy, through another SIGKILL) and retracted (every copy
redacted), each change approved by the moderator who did not make it. On the
schedule (the bot in the test's process, on a `MovingClock`): the issue goes out
at its minute, the wall clock bringing its last seconds; the next issue,
unapproved, does not go out at its minute. The last test runs the editors' room
encrypted, as Tchap's private rooms are.
"""

from __future__ import annotations

import asyncio
import sqlite3
import urllib.parse
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from babel.dates import format_date
from nio import Api, RoomCreateResponse, RoomSendResponse

from bot import config as configuration
from bot.app import BotApp
from bot.devserver import DevHomeserver
from tests.helpers import (
    PARIS,
    BotProcess,
    CryptoUser,
    MovingClock,
    User,
    bot_config,
    bot_process,
    eventually,
    running,
    with_moderators,
)

pytestmark = [pytest.mark.e2e, pytest.mark.long(100)]

APPROVE = "✅"
NUMBER = 7  # gazette.number: the first issue of these tests
HEADER = "🧢 Gazette BlueHats n°"


def content(event: Any) -> dict[str, Any]:
    return dict(event.source.get("content", {}))


def body(event: Any) -> str:
    return str(content(event).get("body", ""))


def is_issue(event: Any, bot_id: str, number: int) -> bool:
    """A copy of issue `number` as posted (not an edit of it)."""
    c = content(event)
    return (
        event.sender == bot_id
        and str(c.get("body", "")).startswith(f"{HEADER}{number}")
        and c.get("m.relates_to", {}).get("rel_type") != "m.replace"
    )


def edits_of(user: User, room: str, event_id: str, bot_id: str) -> list[Any]:
    return [
        e
        for e in user.events.get(room, [])
        if e.sender == bot_id
        and content(e).get("m.relates_to", {}).get("rel_type") == "m.replace"
        and content(e)["m.relates_to"].get("event_id") == event_id
    ]


async def said_after(
    user: User, room: str, mark: int, bot_id: str, text: str, timeout: float = 30.0
) -> Any:
    """The bot's first message in `room` after the `mark`-th event whose body holds `text`."""
    async with asyncio.timeout(timeout):
        while True:
            for event in user.events.get(room, [])[mark:]:
                if event.sender == bot_id and text in body(event):
                    return event
            await user.sync(500)


async def react(user: User | CryptoUser, room: str, event_id: str, key: str = APPROVE) -> str:
    """A reaction as Element sends it (in an encrypted room, the first event a
    client sends shares its room key: with every device, as Element does)."""
    resp = await user.client.room_send(
        room,
        "m.reaction",
        {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}},
        ignore_unverified_devices=True,
    )
    return str(resp.event_id)


async def encrypted_react(user: CryptoUser, room: str, event_id: str, key: str = APPROVE) -> str:
    """A reaction encrypted, as Element sends it in an encrypted room (nio would not)."""
    client = user.client
    if not client.rooms[room].members_synced:
        await client.joined_members(room)
    if client.olm.should_share_group_session(room):
        await client.share_group_session(room, ignore_unverified_devices=True)
    reaction = {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}}
    kind, encrypted = client.encrypt(room, "m.reaction", reaction)
    assert kind == "m.room.encrypted"
    method, path, data = Api.room_send(client.access_token, room, kind, encrypted, str(uuid4()))
    resp = await client._send(RoomSendResponse, method, path, data, (room,))
    assert isinstance(resp, RoomSendResponse), resp
    return str(resp.event_id)


def outbox(storage: Path, like: str) -> list[tuple[str, str, int]]:
    """(broadcast, status, rows) of the outbox rows whose broadcast is LIKE `like`."""
    with sqlite3.connect(storage / "bluehats.db") as db:
        return db.execute(
            "SELECT broadcast, status, count(*) FROM outbox WHERE broadcast LIKE ? "
            "GROUP BY broadcast, status ORDER BY broadcast, status",
            (like,),
        ).fetchall()


async def all_sent(storage: Path, like: str, rows: int) -> None:
    """Once the outbox rows LIKE `like` are `rows` rows, all sent. Every copy goes out
    before its row is marked (and a resend after a SIGKILL reuses its txn id): a
    sync from then on shows every copy there will ever be."""
    await eventually(lambda: [(s, n) for _, s, n in outbox(storage, like)] == [("sent", rows)])


def sent_at(event: Any, clock: MovingClock) -> datetime:
    """When the homeserver received `event`, on the bot's clock (Paris time)."""
    return datetime.fromtimestamp(event.server_timestamp / 1000, PARIS) + clock.offset


def fire_minutes(ahead: timedelta) -> tuple[datetime, datetime]:
    """Two consecutive whole minutes in Paris (in one hour), at least `ahead` from now."""
    at = datetime.now(PARIS) + ahead
    fire = at.replace(second=0, microsecond=0) + timedelta(minutes=1)
    if fire.minute == 59:  # both in one hour: one cron expression
        fire += timedelta(minutes=1)
    return fire, fire + timedelta(minutes=1)


@dataclass
class Newsroom:
    """The bot (not started), its editors' room and three rooms subscribed to the gazette;
    the bot is a process (`bot`), or runs in the test's process (`config`)."""

    hs: DevHomeserver
    bot: BotProcess | None
    config: configuration.Config | None
    bot_id: str
    storage: Path
    a: User  # moderator: the editors' room's creator (v12: above every level)
    b: User  # moderator: power level 50
    member: User  # power level 0
    c: User | None  # a third moderator (power level 50), when asked for
    editors: str
    rooms: list[str]
    fires: tuple[datetime, datetime] | None  # the schedule's two times, if scheduled

    @property
    def process(self) -> BotProcess:
        assert self.bot is not None, "the bot runs in the test's process"
        return self.bot

    async def start(self) -> None:
        await self.process.start()
        await self.subscribe()

    async def subscribe(self) -> None:
        """Once the bot started: in every room, the three subscribed to the gazette."""
        for room in (self.editors, *self.rooms):
            await self.a.wait_joined(room, self.bot_id)
        for room in self.rooms:
            answer = await self.a.ask(room, "!abonner gazette", self.bot_id)
            assert body(answer).startswith("✅"), body(answer)

    async def ask(self, who: User, text: str) -> Any:
        """`who` says `text` in the editors' room; the bot's answer."""
        return await who.ask(self.editors, text, self.bot_id)

    def mark(self, who: User, room: str | None = None) -> int:
        return len(who.events.get(room or self.editors, []))

    def event(self, room: str, event_id: str) -> dict[str, Any]:
        """The event as the server returns it now (redacted or not), read by A."""
        path = (
            f"/_matrix/client/v3/rooms/{urllib.parse.quote(room)}"
            f"/event/{urllib.parse.quote(event_id)}"
        )
        return dict(self.hs.call("GET", path, token=str(self.a.client.access_token)))


@pytest.fixture
async def newsroom(synapse: DevHomeserver, tmp_path: Path, make_user) -> Any:
    """Build a `Newsroom`: `gazette:` keys, `broadcasts.pace`, and `scheduled` for a
    `gazette.schedule` of two consecutive minutes ten minutes ahead (the test moves
    the clock of a bot run `in_process`)."""

    async def make(
        *,
        gazette: dict[str, Any],
        pace: str = "0s",
        scheduled: bool = False,
        third: bool = False,
        in_process: bool = False,
    ) -> Newsroom:
        a, b, member = await make_user("alice"), await make_user("bruno"), await make_user("mona")
        c = await make_user("claire") if third else None
        others = [u for u in (b, member, c) if u is not None]
        editors = await a.create_room(invite=[u.user_id for u in others])
        rooms = [await a.create_room() for _ in range(3)]
        for user in others:
            await user.client.join(editors)
            await a.wait_joined(editors, user.user_id)
        moderators = [u.user_id for u in (a, b, c) if u is not None]
        levels = await a.client.room_get_state_event(editors, "m.room.power_levels")
        users = {**levels.content.get("users", {}), **{m: 50 for m in moderators[1:]}}
        await a.client.room_put_state(
            editors, "m.room.power_levels", {**levels.content, "users": users}
        )
        fires = None
        if scheduled:
            fires = fire_minutes(timedelta(minutes=10))
            fire, again = fires
            cron = f"{fire.minute},{again.minute} {fire.hour} {fire.day} {fire.month} *"
            gazette = {**gazette, "schedule": cron}
        sections: dict[str, Any] = {
            "gazette": {"editors_room": editors, "number": NUMBER, **gazette},
            "broadcasts": {"pace": pace},
            "reminders": {"offsets": []},  # only the gazette in these rooms
        }
        bot: BotProcess | None = None
        config: configuration.Config | None = None
        if in_process:
            storage = tmp_path / "data"
            config, bot_id = bot_config(synapse, storage, **sections)
            config = with_moderators(config, *moderators)
        else:
            # Moderators by the configuration as well as by their power level.
            bot, bot_id, storage, _ = bot_process(
                synapse, tmp_path, **sections, bot={"moderators": moderators}
            )
        for room in (editors, *rooms):
            await a.client.room_invite(room, bot_id)
        return Newsroom(
            synapse, bot, config, bot_id, storage, a, b, member, c, editors, rooms, fires
        )

    return make


async def test_issue_approved_published_once_through_sigkill_corrected_and_retracted(
    newsroom: Any,
) -> None:
    news: Newsroom = await newsroom(
        gazette={},  # no schedule: published by hand (the schedule: the next test)
        # Slow enough to kill the bot between the first copy and the last.
        pace="2s",
    )
    a, b, bot_id, editors, rooms = news.a, news.b, news.bot_id, news.editors, news.rooms
    await news.start()

    added = await news.ask(a, "!gazette ajouter 1 Voir <script>alert(1)</script> et **gras**")
    assert body(added).startswith("✅ Élément n°1"), body(added)
    preview = await news.ask(a, "!gazette apercu")
    assert body(preview).startswith(f"{HEADER}{NUMBER}"), body(preview)
    assert "&lt;script&gt;" in content(preview)["formatted_body"]

    # A changed the draft last: their own ✅ does not approve it; B's does.
    # (The answer to a reaction is a notice in the room, not a reply.)
    mark = news.mark(a)
    await react(a, editors, preview.event_id)
    await said_after(a, editors, mark, bot_id, "autre modérateur")
    mark = news.mark(a)
    await react(b, editors, preview.event_id)
    await said_after(a, editors, mark, bot_id, "validée")
    status = await news.ask(a, "!gazette")
    assert "1/1" in body(status) and b.user_id in body(status), body(status)
    assert outbox(news.storage, "issue:%") == []  # nothing goes out before it is published

    # Published: killed after the first copy, before the last.
    day = datetime.now(PARIS).date()
    published = await news.ask(a, "!gazette publier")
    assert body(published).startswith("📣"), body(published)
    days = {day, datetime.now(PARIS).date()}  # (a publication at midnight)
    async with asyncio.timeout(30):
        while not any(is_issue(e, bot_id, NUMBER) for r in rooms for e in a.events.get(r, [])):
            await a.sync(200)
    await news.process.kill()
    # A copy is out and rows are still pending. All three may be: on a loaded
    # machine the kill can land between the first send and its row's mark,
    # and that row is then resent after the restart with the same txn id.
    pending = {s: n for _, s, n in outbox(news.storage, f"issue:{NUMBER}")}
    assert pending.get("pending", 0) >= 1, pending

    await news.process.start()
    await all_sent(news.storage, f"issue:{NUMBER}", len(rooms))
    await a.sync(0)
    copies = [[e for e in a.events.get(r, []) if is_issue(e, bot_id, NUMBER)] for r in rooms]
    assert [len(c) for c in copies] == [1] * len(rooms)
    posted = [(room, copy.event_id) for room, (copy,) in zip(rooms, copies, strict=True)]
    for (copy,) in copies:
        # Exactly what the preview showed; the item's HTML arrived as text.
        assert body(copy) == body(preview)
        html = content(copy)["formatted_body"]
        assert html == content(preview)["formatted_body"]
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "<script" not in html
        assert "<strong>gras</strong>" in html
    draft = await news.ask(a, "!gazette brouillon")
    assert body(draft).startswith("📝") and f"n°{NUMBER + 1}" in body(draft), body(draft)

    # A correction of item 1, approved by the other moderator: one edit per copy,
    # also when the bot is killed in the middle of the edits.
    fixed = await news.ask(a, "!gazette corriger 1 nouveau texte")
    # (Draft n°N+1 waits too: plain "valider" would ask which.)
    own = await news.ask(a, "!gazette valider correction")
    assert "autre modérateur" in body(own), body(own)
    await a.sync(0)
    assert not any(edits_of(a, room, copy, bot_id) for room, copy in posted)
    approved = await news.ask(b, "!gazette valider correction")
    assert "validée" in body(approved), (body(fixed), body(approved))
    async with asyncio.timeout(30):
        while not any(edits_of(a, room, copy, bot_id) for room, copy in posted):
            await a.sync(200)
    await news.process.kill()
    pending = {s: n for _, s, n in outbox(news.storage, f"issue-edit:{NUMBER}:%")}
    assert pending.get("pending", 0) >= 1, pending  # as above: all may still be pending
    await news.process.start()
    await all_sent(news.storage, f"issue-edit:{NUMBER}:%", len(rooms))
    await a.sync(0)
    for room, copy in posted:
        (edit,) = edits_of(a, room, copy, bot_id)
        new = content(edit)["m.new_content"]
        assert str(new["body"]).startswith(f"{HEADER}{NUMBER}"), new
        assert "nouveau texte" in new["body"] and "alert(1)" not in new["body"]

    # The retraction, asked by B, approved by A's ✅ on B's request, as its answer says.
    retract = await news.ask(b, "!gazette retirer-tout")
    assert "✅ sur ce message" in body(retract), body(retract)
    mark = news.mark(a)
    await react(a, editors, retract.event_id)
    await said_after(a, editors, mark, bot_id, "Retrait validé")
    async with asyncio.timeout(60):
        while not all(
            "redacted_because" in news.event(room, copy).get("unsigned", {})
            for room, copy in posted
        ):
            await a.sync(500)  # the redactions come through the sync too
    for room, copy in posted:
        redacted = news.event(room, copy)
        assert redacted["content"] == {}
        assert redacted["unsigned"]["redacted_because"]["sender"] == bot_id
    assert outbox(news.storage, f"issue-redact:{NUMBER}") == [
        (f"issue-redact:{NUMBER}", "sent", len(rooms))
    ]

    # Who did what, and the issue in the archives with its date.
    journal = body(await news.ask(b, "!gazette journal"))
    assert f"{b.user_id} · a demandé un retrait" in journal, journal
    assert f"{a.user_id} · a retiré (validé)" in journal, journal
    archives = body(await news.ask(b, "!gazette archives"))
    dates = [format_date(d, "d MMMM", locale="fr") for d in days]
    assert f"n°{NUMBER}, " in archives and "(retirée)" in archives, archives
    assert any(d in archives for d in dates), archives
    assert await news.process.terminate() == 0
    assert "Traceback" not in news.process.log.read_text()


async def test_on_schedule_an_approved_issue_goes_out_at_its_minute_an_unapproved_one_does_not(
    newsroom: Any,
) -> None:
    # Issue N at the first time, N+1 a minute later (its draft is built as soon
    # as N is out: draft_ahead is 3 days). The bot's clock is moved to 3 s before
    # the first time: the wall clock brings the schedule's minute (the real-time
    # witness of the schedule); then moved to the second time.
    news: Newsroom = await newsroom(gazette={}, scheduled=True, in_process=True)
    assert news.fires is not None and news.config is not None
    fire, again = news.fires
    a, b, bot_id, editors, rooms = news.a, news.b, news.bot_id, news.editors, news.rooms
    clock = MovingClock()
    async with running(BotApp(news.config, now=clock)) as app:
        await news.subscribe()
        # The fire time is within draft_ahead (3 days): the draft is ready at once.
        ready = await said_after(a, editors, 0, bot_id, f"n°{NUMBER}")
        assert body(ready).startswith("📝"), body(ready)
        await news.ask(a, "!gazette ajouter 1 Texte **gras**")
        preview = await news.ask(a, "!gazette apercu")
        mark = news.mark(a)
        await react(b, editors, preview.event_id)
        await said_after(a, editors, mark, bot_id, "validée")
        assert outbox(news.storage, "issue:%") == []  # nothing goes out before its time

        clock.move_to(fire - timedelta(seconds=3), app)
        async with asyncio.timeout(30):
            while not all(
                any(is_issue(e, bot_id, NUMBER) for e in a.events.get(r, [])) for r in rooms
            ):
                await a.sync(500)
        first = min(
            sent_at(e, clock) for r in rooms for e in a.events[r] if is_issue(e, bot_id, NUMBER)
        )
        assert first >= fire, (first, fire)  # at its minute, not before
        draft = await news.ask(a, "!gazette brouillon")
        assert body(draft).startswith("📝") and f"n°{NUMBER + 1}" in body(draft), body(draft)

        # Issue N+1 is not approved: at its time nothing goes out, the editors are told.
        mark = news.mark(a)
        clock.move_to(again, app)
        missed = await said_after(a, editors, mark, bot_id, "n'est pas partie")
        assert f"n°{NUMBER + 1}" in body(missed), body(missed)
        assert clock() >= again
        assert outbox(news.storage, f"issue:{NUMBER + 1}") == []
        # That notice went out in a later round than the issue: one copy per room.
        await a.sync(0)
        copies = [[e for e in a.events.get(r, []) if is_issue(e, bot_id, NUMBER)] for r in rooms]
        assert [len(c) for c in copies] == [1] * len(rooms)
        assert all(body(c) == body(preview) for (c,) in copies)
    assert outbox(news.storage, f"issue:{NUMBER}") == [(f"issue:{NUMBER}", "sent", len(rooms))]


async def test_member_can_neither_write_approve_nor_publish_nor_can_a_changed_draft(
    newsroom: Any,
) -> None:
    news: Newsroom = await newsroom(gazette={})  # no schedule: published by hand only
    a, member, bot_id, editors = news.a, news.member, news.bot_id, news.editors
    await news.start()
    draft = await news.ask(a, "!gazette brouillon")
    assert body(draft).startswith("📝"), body(draft)
    await news.ask(a, "!gazette ajouter sur le sill Premier élément")
    preview = await news.ask(a, "!gazette apercu")
    before = body(await news.ask(a, "!gazette"))

    for attempt in (
        "!gazette ajouter 1 Intrus",
        "!gazette retirer 1",
        "!gazette valider",
        "!gazette publier",
    ):
        answer = await news.ask(member, attempt)
        assert "modérateurs" in body(answer), (attempt, body(answer))
    mark = news.mark(a)
    await react(member, editors, preview.event_id)
    await said_after(a, editors, mark, bot_id, "modérateurs")
    # A moderator of a subscribed room is no editor: refused there too.
    elsewhere = await a.ask(news.rooms[0], "!gazette ajouter 1 Ailleurs", bot_id)
    assert not body(elsewhere).startswith("✅"), body(elsewhere)
    assert body(await news.ask(a, "!gazette")) == before

    # Still unapproved: A, who wrote it, cannot publish it.
    published = await news.ask(a, "!gazette publier")
    assert "pas encore validée" in body(published), body(published)
    assert "Intrus" not in body(await news.ask(a, "!gazette apercu"))
    # Approved by B, then changed by A: the approval is gone, publishing refused.
    assert "validée" in body(await news.ask(news.b, "!gazette valider"))
    changed = await news.ask(a, "!gazette ajouter 3 Deuxième élément")
    assert "⚠️ Validation retirée" in body(changed), body(changed)
    published = await news.ask(a, "!gazette publier")
    assert "pas encore validée" in body(published), body(published)
    assert outbox(news.storage, "issue:%") == []
    assert await news.process.terminate() == 0
    assert "Traceback" not in news.process.log.read_text()
    # The bot stopped: all it ever sent is on the server, and no issue is there.
    await a.sync(0)
    for room in news.rooms:
        assert not any(is_issue(e, bot_id, NUMBER) for e in a.events.get(room, []))


async def test_no_approval_by_an_author_and_a_check_mark_taken_back_withdraws_it(
    newsroom: Any,
) -> None:
    news: Newsroom = await newsroom(gazette={}, third=True)  # published by hand only
    a, b, c, bot_id, editors = news.a, news.b, news.c, news.bot_id, news.editors
    assert c is not None
    await news.start()
    added = await news.ask(a, "!gazette ajouter 1 L'élément de A")
    assert body(added).startswith("✅ Élément n°1"), body(added)
    added = await news.ask(b, "!gazette ajouter 2 L'élément de B")
    assert body(added).startswith("✅ Élément n°2"), body(added)

    # A changed the draft before B: B's change no longer lets A approve A's own item.
    refused = await news.ask(a, "!gazette valider")
    assert "Vous avez écrit un élément de ce numéro" in body(refused), body(refused)
    preview = await news.ask(a, "!gazette apercu")
    mark = news.mark(a)
    await react(b, editors, preview.event_id)
    refused = await said_after(a, editors, mark, bot_id, "⛔")
    assert "Vous avez écrit un élément de ce numéro" in body(refused), body(refused)

    # C wrote nothing: C's ✅ approves; C redacting it withdraws the approval.
    mark = news.mark(a)
    check = await react(c, editors, preview.event_id)
    await said_after(a, editors, mark, bot_id, "est validée")
    assert "1/1" in body(await news.ask(a, "!gazette"))
    mark = news.mark(a)
    await c.client.room_redact(editors, check)
    notice = await said_after(a, editors, mark, bot_id, "↩️")
    assert f"{c.user_id} a retiré son ✅" in body(notice), body(notice)
    assert "ne sera pas publiée avant d'être validée à nouveau" in body(notice), body(notice)
    published = await news.ask(a, "!gazette publier")
    assert "pas encore validée" in body(published), body(published)
    assert "0/1" in body(await news.ask(a, "!gazette"))
    journal = body(await news.ask(c, "!gazette journal"))
    assert f"{c.user_id} · a retiré sa validation (✅ effacé)" in journal, journal
    assert outbox(news.storage, "issue:%") == []
    assert await news.process.terminate() == 0
    assert "Traceback" not in news.process.log.read_text()


async def crypto_said_after(user: CryptoUser, room: str, mark: int, bot_id: str, text: str) -> Any:
    """As `said_after`, for a client whose own sync loop fills `events`."""

    def found() -> Any:
        return next(
            (e for e in user.events.get(room, [])[mark:] if e.sender == bot_id and text in body(e)),
            None,
        )

    await eventually(lambda: found() is not None)
    return found()


async def joined(user: CryptoUser, room: str, user_id: str) -> None:
    """`user_id` has joined `room` (nio's room members include invited people)."""

    async def members() -> set[str]:
        return {m.user_id for m in getattr(await user.client.joined_members(room), "members", [])}

    async with asyncio.timeout(30):
        while user_id not in await members():  # noqa: ASYNC110 - polls the server
            await asyncio.sleep(0.1)


async def test_encrypted_editors_room_preview_approval_and_publication(
    synapse: DevHomeserver, tmp_path: Path, crypto_user
) -> None:
    # Tchap's private rooms are encrypted: the editors' room too, with two moderators.
    a, b = await crypto_user(), await crypto_user()
    created = await a.client.room_create(
        invite=[b.user_id],
        initial_state=[
            {
                "type": "m.room.encryption",
                "state_key": "",
                "content": {"algorithm": "m.megolm.v1.aes-sha2"},
            }
        ],
    )
    assert isinstance(created, RoomCreateResponse), created
    editors = created.room_id
    await eventually(lambda: editors in b.invites)
    await b.client.join(editors)
    levels = await a.client.room_get_state_event(editors, "m.room.power_levels")
    users = {**levels.content.get("users", {}), b.user_id: 50}
    await a.client.room_put_state(
        editors, "m.room.power_levels", {**levels.content, "users": users}
    )
    plain = await a.client.room_create()  # a subscribed room, not encrypted
    assert isinstance(plain, RoomCreateResponse), plain
    bot, bot_id, storage, _ = bot_process(
        synapse,
        tmp_path,
        gazette={"editors_room": editors},
        broadcasts={"pace": "0s"},
        bot={"moderators": [a.user_id, b.user_id]},
    )
    for room in (editors, plain.room_id):
        await a.client.room_invite(room, bot_id)
    await bot.start()
    for room in (editors, plain.room_id):
        await joined(a, room, bot_id)
    # Both moderators must know the bot's device and each other's to share room keys.
    for user, other in ((a, b), (b, a)):
        for peer in (bot_id, other.user_id):
            await eventually(
                lambda u=user, p=peer: any(u.client.device_store.active_user_devices(p))
            )
    subscribed = await a.reply_to(
        plain.room_id, await a.say(plain.room_id, "!abonner gazette"), bot_id
    )
    assert body(subscribed).startswith("✅"), body(subscribed)

    added = await a.reply_to(
        editors, await a.say(editors, "!gazette ajouter 1 Texte **chiffré**"), bot_id
    )
    assert added.decrypted and body(added).startswith("✅ Élément n°1"), body(added)
    preview = await a.reply_to(editors, await a.say(editors, "!gazette apercu"), bot_id)
    assert preview.decrypted and body(preview).startswith(f"{HEADER}1"), body(preview)

    # A's ✅ in clear (as nio sends reactions), B's encrypted (as Element does).
    mark = len(a.events[editors])
    await react(a, editors, preview.event_id)
    refused = await crypto_said_after(a, editors, mark, bot_id, "autre modérateur")
    assert refused.decrypted
    mark = len(a.events[editors])
    await encrypted_react(b, editors, preview.event_id)
    await crypto_said_after(a, editors, mark, bot_id, "validée")
    published = await b.reply_to(editors, await b.say(editors, "!gazette publier"), bot_id)
    assert published.decrypted and body(published).startswith("📣"), body(published)

    issue = await crypto_said_after(a, plain.room_id, 0, bot_id, f"{HEADER}1")
    assert "<strong>chiffré</strong>" in content(issue)["formatted_body"]
    assert body(issue) == body(preview)
    assert outbox(storage, "issue:1") == [("issue:1", "sent", 1)]
    assert await bot.terminate() == 0
    assert "Traceback" not in bot.log.read_text()
