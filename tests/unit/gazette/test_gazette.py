"""The editorial gazette with a fake chat and a fake clock: drafts on time, approvals by
someone who had no part in the text (four eyes), withdrawn by changes and by a ✅ taken
back, publication once per room, corrections, retraction."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.agenda.sources import AgendaService
from bot.app import gazette_schedule
from bot.broadcast import Broadcaster
from bot.chat import IncomingMessage, IncomingReaction, IncomingRedaction, Triggered
from bot.commands import build_registry
from bot.commands.core import Services
from bot.commands.gazette import APPROVE
from bot.db.feeds import FeedEntry
from bot.db.storage import Storage
from bot.db.subscriptions import GAZETTE
from bot.db.upgrade import UpgradeTable, upgrades
from bot.dispatch import Dispatcher
from bot.feeds import FeedKey
from bot.gazette.posts import IssueKey
from bot.render import Message, Renderer
from tests.fakes import FakeChat, FakeClock, make_config

PARIS_TZ = "Europe/Paris"
EDITORS = "!editors:example.org"
ROOMS = ["!a:example.org", "!b:example.org", "!c:example.org"]
ALICE, BOB, CLAUDE = "@alice:example.org", "@bob:example.org", "@claude:example.org"
DENISE = "@denise:example.org"  # a third moderator
MODERATORS = [ALICE, BOB, DENISE]
# The 15th of every month at 10:00, Paris: the fire of 15 December 2026 is 09:00 UTC.
SCHEDULE = "0 10 15 * *"
FIRE = datetime(2026, 12, 15, 9, 0, tzinfo=UTC)
CALENDAR = (
    b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//FR\r\nBEGIN:VEVENT\r\nUID:g@t\r\n"
    b"DTSTAMP:20260101T000000Z\r\nDTSTART;TZID=Europe/Paris:20261217T140000\r\n"
    b"DURATION:PT1H\r\nSUMMARY:Webinaire Grist\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)


@dataclass
class Newsroom:
    dispatcher: Dispatcher
    broadcaster: Broadcaster
    chat: FakeChat
    storage: Storage
    clock: FakeClock
    woken: list[int]

    async def say(self, text: str, sender: str = ALICE, room: str = EDITORS) -> Message:
        event = f"$c{len(self.chat.sent)}-{text[:20]}-{sender}"
        reply = await self.dispatcher.answer(IncomingMessage(room, event, sender, text))
        assert isinstance(reply, Message)
        return reply

    async def preview(self, sender: str = ALICE, text: str = "!gazette apercu") -> str:
        """`!gazette apercu` (or `text`) answered through the real path: the answer's event id."""
        before = len(self.chat.sent)
        msg = IncomingMessage(EDITORS, f"$p{before}", sender, text)
        await self.dispatcher.accept(msg)
        await self.dispatcher.settle(5)
        (sent,) = self.chat.sent[before:]
        return sent.event_id

    async def react(self, target: str, sender: str, event_id: str | None = None) -> str:
        """A ✅ on `target` (its event id: `event_id`): the bot's answer in the editors' room."""
        before = len(self.chat.sent)
        event_id = event_id or f"$r{before}{sender}"
        await self.dispatcher.accept_reaction(
            IncomingReaction(EDITORS, event_id, sender, target, "✅\ufe0f")
        )
        await self.dispatcher.settle(5)
        answers = self.chat.sent[before:]
        assert len(answers) == 1
        assert answers[0].reply_to is None  # not a reply to a reaction
        message = answers[0].message
        assert isinstance(message, Message)
        return message.body

    async def redact(self, reaction: str, sender: str, event_id: str | None = None) -> list[str]:
        """`sender` redacts the event `reaction`: the bot's answers (none, or one)."""
        before = len(self.chat.sent)
        event_id = event_id or f"$x{before}-{reaction}"
        redaction = IncomingRedaction(EDITORS, event_id, sender, reaction)
        await self.dispatcher.accept_redaction(redaction)
        await self.dispatcher.settle(5)
        answers = self.chat.sent[before:]
        assert all(a.room_id == EDITORS and a.reply_to is None for a in answers)
        return [a.message.body for a in answers if isinstance(a.message, Message)]

    def posts(self, room: str) -> list[Message]:
        return [
            s.message
            for s in self.chat.sent
            if s.room_id == room and isinstance(s.message, Message) and s.replaces is None
        ]

    def editors(self) -> list[str]:
        return [m.body for m in self.posts(EDITORS)]


@pytest.fixture
async def newsroom(tmp_path: Path) -> AsyncIterator[Newsroom]:
    source = tmp_path / "agenda.ics"
    source.write_bytes(CALENDAR)
    storage = await Storage.open(tmp_path / "db.sqlite")
    for room in ROOMS:
        await storage.subscriptions.add(room, GAZETTE, ALICE)
    clock = FakeClock(datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    levels = {(EDITORS, ALICE): 50, (EDITORS, BOB): 50, (EDITORS, DENISE): 50, (EDITORS, CLAUDE): 0}
    chat = FakeChat(levels=levels)
    cfg = make_config(
        tmp_path,
        gazette={"editors_room": EDITORS, "schedule": SCHEDULE, "number": 33},
        # The editors' room is the community's moderators' room here, and the
        # moderators are named in the configuration too.
        bot={"moderator_rooms": [EDITORS], "moderators": MODERATORS},
    )
    renderer = Renderer("fr", cfg.bot.tz)
    woken: list[int] = []
    async with aiohttp.ClientSession() as http:
        agenda = AgendaService([str(source)], storage, http, cfg.bot.tz, timedelta(days=366), clock)
        await agenda.start()
        broadcaster = Broadcaster(
            storage,
            chat,
            renderer,
            agenda,
            prefix="!",
            now=clock,
            pace=timedelta(0),
            offsets=[],
            grace=timedelta(minutes=15),
            gazette=gazette_schedule(cfg, storage, renderer, agenda, clock),
            retry_delay=0,
        )
        services = Services(
            config=cfg,
            renderer=renderer,
            agenda=agenda,
            now=clock,
            wake=lambda: woken.append(1),
        )
        dispatcher = Dispatcher(build_registry(), services, chat, storage, retry_delay=0)
        yield Newsroom(dispatcher, broadcaster, chat, storage, clock, woken)
    await storage.close()


async def test_the_draft_is_built_draft_ahead_before_the_publication_once(
    newsroom: Newsroom,
) -> None:
    await newsroom.broadcaster.deliver()
    assert newsroom.editors() == []  # 14 days ahead: too early
    assert await newsroom.storage.gazette.draft() is None
    newsroom.clock.value = FIRE - timedelta(days=3) + timedelta(seconds=1)
    assert newsroom.broadcaster.seconds_to_next_due() <= 60
    await newsroom.broadcaster.deliver()
    await newsroom.broadcaster.deliver()
    (notice,) = newsroom.editors()
    assert notice.startswith("📝 Le brouillon de la gazette n°33 est prêt")
    assert "mardi 15 décembre à 10h00" in notice
    draft = await newsroom.storage.gazette.draft()
    assert draft is not None and draft.number == 33
    # The agenda of the 15 days from the publication: the webinar of the 17th.
    preview = await newsroom.say("!gazette apercu")
    assert preview.body.startswith("🧢 Gazette BlueHats n°33")
    assert "Webinaire Grist" in preview.body and "Jeudi 17 décembre" in preview.body


async def test_an_approval_counts_from_a_moderator_who_had_no_part_in_the_issue(
    newsroom: Newsroom,
) -> None:
    added = await newsroom.say("!gazette ajouter À la une Les BlueHats days reviennent")
    assert added.body.startswith("✅ Élément n°1 ajouté")
    refused = await newsroom.say("!gazette valider")
    assert "Vous avez écrit un élément de ce numéro" in refused.body
    assert "autre modérateur" in refused.body
    approved = await newsroom.say("!gazette valider", sender=BOB)
    assert "est validée" in approved.body
    # A change by anyone withdraws it, and says so; here by the approver himself.
    changed = await newsroom.say("!gazette ajouter 2 Le SILL accueille Grist", sender=BOB)
    assert "Validation retirée" in changed.body and BOB in changed.body
    status = await newsroom.say("!gazette")
    assert "Validations : 0/1" in status.body
    # Bob changed it last, but Alice wrote item 1: neither may approve it now
    # (before, Alice could: only the last changer was kept out).
    for author in (ALICE, BOB):
        refused = await newsroom.say("!gazette valider", sender=author)
        assert "Vous avez écrit un élément de ce numéro" in refused.body, author
    not_yet = await newsroom.say("!gazette publier")
    assert "pas encore validée" in not_yet.body
    assert f"Ne peuvent pas la valider : {ALICE}, {BOB}." in not_yet.body
    # A third moderator, who wrote nothing, may.
    assert "est validée" in (await newsroom.say("!gazette valider", sender=DENISE)).body
    assert "Validations : 1/1 (@denise:example.org)" in (await newsroom.say("!gazette")).body
    removed = await newsroom.say("!gazette retirer 1", sender=BOB)
    assert "Validation retirée" in removed.body
    # Alice's item is gone, but she did change this draft: still not hers to approve.
    assert "Vous avez modifié ce brouillon" in (await newsroom.say("!gazette valider")).body
    assert "est validée" in (await newsroom.say("!gazette valider", sender=DENISE)).body


async def test_whoever_changed_the_draft_otherwise_cannot_approve_it_either(
    newsroom: Newsroom,
) -> None:
    # Built on Bob's request: Bob changed it (what it gathers is in what is approved).
    built = await newsroom.say("!gazette brouillon", sender=BOB)
    assert built.body.startswith("📝 Brouillon de la gazette n°33 construit")
    refused = await newsroom.say("!gazette valider", sender=BOB)
    assert "Vous avez modifié ce brouillon" in refused.body
    await newsroom.say("!gazette ajouter 1 Premier élément")
    await newsroom.say("!gazette ajouter 1 Deuxième élément", sender=DENISE)
    # Denise takes her item back: she wrote nothing left, but she changed the draft.
    await newsroom.say("!gazette retirer 2", sender=DENISE)
    refused = await newsroom.say("!gazette valider", sender=DENISE)
    assert "Vous avez modifié ce brouillon" in refused.body
    # Nobody left who had no part in it: the issue cannot go out on its own.
    newsroom.clock.value = FIRE + timedelta(seconds=5)
    await newsroom.broadcaster.deliver()
    assert all(newsroom.posts(room) == [] for room in ROOMS)
    (missed,) = [b for b in newsroom.editors() if b.startswith("⏰")]
    assert "n'y a pas pris part" in missed


async def test_whoever_asked_for_a_correction_cannot_approve_it(newsroom: Newsroom) -> None:
    await newsroom.say("!gazette ajouter 1 Texte avec une fote")
    await newsroom.say("!gazette valider", sender=BOB)
    await newsroom.say("!gazette publier", sender=BOB)
    await newsroom.broadcaster.deliver()
    await newsroom.say("!gazette corriger 1 Texte sans faute", sender=DENISE)
    refused = await newsroom.say("!gazette valider", sender=DENISE)
    assert "Vous avez demandé ce changement" in refused.body
    assert [s for s in newsroom.chat.sent if s.replaces is not None] == []
    # Alice wrote the item corrected, not the correction: she may approve it.
    approved = await newsroom.say("!gazette valider")
    assert "Correction validée" in approved.body


async def test_a_check_mark_on_the_latest_preview_approves_an_older_one_does_not(
    newsroom: Newsroom,
) -> None:
    await newsroom.say("!gazette ajouter à la une Premier élément")
    old = await newsroom.preview()
    await newsroom.say("!gazette ajouter Sur le SILL Deuxième élément")
    assert "périmé" in await newsroom.react(old, BOB)
    latest = await newsroom.preview(BOB)
    assert "autre modérateur" in await newsroom.react(latest, ALICE)  # Alice wrote it
    assert "est validée" in await newsroom.react(latest, BOB)
    # A ✅ on anything else is a reaction like any other: no answer.
    before = len(newsroom.chat.sent)
    await newsroom.dispatcher.accept_reaction(
        IncomingReaction(EDITORS, "$other", BOB, "$some-message", "✅")
    )
    await newsroom.dispatcher.settle(1)
    assert len(newsroom.chat.sent) == before


async def test_an_unapproved_issue_is_not_sent_and_the_editors_are_told_once(
    newsroom: Newsroom,
) -> None:
    await newsroom.say("!gazette ajouter 1 Un élément")
    newsroom.clock.value = FIRE + timedelta(seconds=5)
    await newsroom.broadcaster.deliver()
    await newsroom.broadcaster.deliver()
    assert all(newsroom.posts(room) == [] for room in ROOMS)
    missed = [b for b in newsroom.editors() if b.startswith("⏰")]
    assert len(missed) == 1
    assert "n°33 n'est pas partie" in missed[0] and "1 validation(s) manquante(s)" in missed[0]
    # Approved later, it goes out when a moderator says so.
    await newsroom.say("!gazette valider", sender=BOB)
    published = await newsroom.say("!gazette publier", sender=BOB)
    assert "n°33 publiée" in published.body and newsroom.woken
    await newsroom.broadcaster.deliver()
    assert [len(newsroom.posts(room)) for room in ROOMS] == [1, 1, 1]


async def test_an_approved_issue_goes_out_at_its_time_once_per_room_as_previewed(
    newsroom: Newsroom,
) -> None:
    await newsroom.say(
        "!gazette ajouter À la une <script>alert(1)</script> **gras** [site](https://code.gouv.fr)"
        " [piège](javascript:alert(1))"
    )
    preview = await newsroom.say("!gazette apercu")
    await newsroom.say("!gazette valider", sender=BOB)
    newsroom.clock.value = FIRE + timedelta(seconds=1)
    await newsroom.broadcaster.deliver()
    await newsroom.broadcaster.deliver()
    for room in ROOMS:
        (post,) = newsroom.posts(room)
        assert (post.body, post.html) == (preview.body, preview.html)
        assert "&lt;script&gt;" in post.html and "<script" not in post.html
        assert "<strong>gras</strong>" in post.html
        assert '<a href="https://code.gouv.fr">site</a>' in post.html
        assert "javascript:" not in post.html.replace("(javascript:alert(1))", "")
    # The next issue is number 34.
    assert "n°34" in (await newsroom.say("!gazette brouillon")).body
    archives = await newsroom.say("!gazette archives")
    assert "n°33, mardi 15 décembre, 3 salon(s)" in archives.body


async def test_a_correction_edits_every_copy_once_and_a_retraction_redacts_them(
    newsroom: Newsroom,
) -> None:
    await newsroom.say("!gazette ajouter 1 Texte avec une fote")
    await newsroom.say("!gazette valider", sender=BOB)
    await newsroom.say("!gazette publier")
    await newsroom.broadcaster.deliver()
    copies = {room: newsroom.chat.sent[-3:][i].event_id for i, room in enumerate(ROOMS)}
    asked = await newsroom.say("!gazette corriger 1 Texte sans faute", sender=BOB)
    assert "attente" in asked.body
    assert "autre modérateur" in (await newsroom.say("!gazette valider", sender=BOB)).body
    preview = await newsroom.say("!gazette apercu correction")
    assert "Texte sans faute" in preview.body
    approved = await newsroom.say("!gazette valider")
    assert "Correction validée" in approved.body and "3 salons" in approved.body
    await newsroom.broadcaster.deliver()
    await newsroom.broadcaster.deliver()
    edits = [s for s in newsroom.chat.sent if s.replaces is not None]
    assert sorted((e.room_id, e.replaces) for e in edits) == sorted(copies.items())
    assert all("Texte sans faute" in e.message.body for e in edits)  # type: ignore[union-attr]
    retract = await newsroom.say("!gazette retirer-tout")
    assert "3 salons" in retract.body
    await newsroom.say("!gazette valider", sender=BOB)
    await newsroom.broadcaster.deliver()
    await newsroom.broadcaster.deliver()
    assert sorted((r, e) for r, e, _ in newsroom.chat.redactions) == sorted(copies.items())
    journal = (await newsroom.say("!gazette journal")).body
    for action in ("a publié", "a demandé une correction", "a demandé un retrait"):
        assert action in journal


async def test_members_and_other_rooms_change_nothing(newsroom: Newsroom) -> None:
    for text in (
        "!gazette ajouter 1 Je passe",
        "!gazette valider",
        "!gazette publier",
        "!gazette brouillon",
    ):
        reply = await newsroom.say(text, sender=CLAUDE)
        assert "réservé" in reply.body or "modérateurs" in reply.body
    assert await newsroom.storage.gazette.draft() is None
    newsroom.chat.levels[(ROOMS[0], ALICE)] = 100
    elsewhere = await newsroom.say("!gazette brouillon", room=ROOMS[0])
    assert "salon de rédaction" in elsewhere.body
    assert await newsroom.storage.gazette.draft() is None


async def test_a_feed_entry_listed_in_an_issue_is_not_relayed_again(newsroom: Newsroom) -> None:
    key = FeedKey.of("https://code.gouv.fr/feed.xml", "x")
    await newsroom.storage.feeds.record(
        "https://code.gouv.fr/feed.xml",
        [FeedEntry("x", "Webinaire Superset", "https://code.gouv.fr/w", key, True)],
        GAZETTE,
    )
    await newsroom.say("!gazette brouillon")
    await newsroom.say("!gazette valider", sender=BOB)
    preview = await newsroom.say("!gazette apercu")
    assert "Webinaire Superset" in preview.body
    await newsroom.say("!gazette publier", sender=BOB)
    await newsroom.broadcaster.deliver()
    for room in ROOMS:
        (post,) = newsroom.posts(room)  # the issue only, not the relay
        assert post.body.startswith("🧢 Gazette BlueHats n°33")
    assert set((await newsroom.storage.outbox.status(str(key))).values()) == {"skipped"}


async def test_an_issue_published_ahead_of_its_time_is_not_missed_then(newsroom: Newsroom) -> None:
    newsroom.clock.value = FIRE - timedelta(days=2)
    await newsroom.broadcaster.deliver()  # the draft of n°33, for the 15th
    await newsroom.say("!gazette ajouter 1 En avance")
    await newsroom.say("!gazette valider", sender=BOB)
    await newsroom.say("!gazette publier", sender=BOB)
    await newsroom.broadcaster.deliver()
    newsroom.clock.value = FIRE + timedelta(seconds=5)
    await newsroom.broadcaster.deliver()
    assert [len(newsroom.posts(room)) for room in ROOMS] == [1, 1, 1]
    assert not [b for b in newsroom.editors() if b.startswith("⏰")]
    # The next draft (n°34) is for the next publication, built 3 days before it.
    newsroom.clock.value = datetime(2027, 1, 12, 9, 0, 1, tzinfo=UTC)
    await newsroom.broadcaster.deliver()
    ready = [b for b in newsroom.editors() if "n°34 est prêt" in b]
    assert len(ready) == 1 and "vendredi 15 janvier" in ready[0]


async def test_a_check_mark_taken_back_withdraws_its_approval(newsroom: Newsroom) -> None:
    await newsroom.say("!gazette ajouter 1 Un élément")
    preview = await newsroom.preview()
    assert "est validée" in await newsroom.react(preview, DENISE, event_id="$ok-denise")
    # Someone else removing Denise's ✅ (a moderator may redact it) withdraws nothing.
    assert await newsroom.redact("$ok-denise", BOB) == []
    assert "Validations : 1/1" in (await newsroom.say("!gazette")).body
    (notice,) = await newsroom.redact("$ok-denise", DENISE, event_id="$undo")
    assert notice.startswith(
        "↩️ @denise:example.org a retiré son ✅ : sa validation de la gazette n°33 est retirée."
    )
    assert "Validations : 0/1. Elle ne sera pas publiée avant d'être validée à nouveau." in notice
    # The same redaction delivered again: answered once.
    assert await newsroom.redact("$ok-denise", DENISE, event_id="$undo") == []
    assert "pas encore validée" in (await newsroom.say("!gazette publier", sender=BOB)).body
    # Nor does it go out at its time.
    newsroom.clock.value = FIRE + timedelta(seconds=5)
    await newsroom.broadcaster.deliver()
    await newsroom.broadcaster.deliver()
    assert all(newsroom.posts(room) == [] for room in ROOMS)
    assert len([b for b in newsroom.editors() if b.startswith("⏰")]) == 1
    journal = (await newsroom.say("!gazette journal")).body
    assert f"{DENISE} · a retiré sa validation (✅ effacé) · n°33" in journal
    # Approved again (the preview is still current), it goes out when asked.
    assert "est validée" in await newsroom.react(preview, DENISE, event_id="$ok-again")
    assert "n°33 publiée" in (await newsroom.say("!gazette publier", sender=BOB)).body
    await newsroom.broadcaster.deliver()
    assert [len(newsroom.posts(room)) for room in ROOMS] == [1, 1, 1]


async def test_a_check_mark_taken_back_once_its_approval_no_longer_counts_changes_nothing(
    newsroom: Newsroom,
) -> None:
    await newsroom.say("!gazette ajouter 1 Un élément")
    preview = await newsroom.preview()
    assert "est validée" in await newsroom.react(preview, DENISE, event_id="$ok")
    await newsroom.say("!gazette ajouter 1 Un autre")  # a new version: the approval is void
    (notice,) = await newsroom.redact("$ok", DENISE)
    assert "il validait une version modifiée depuis, qui ne comptait déjà plus" in notice
    assert "a retiré sa validation" not in (await newsroom.say("!gazette journal")).body
    # A ✅ refused (Alice wrote it), then taken back: nothing to say.
    latest = await newsroom.preview()
    assert "autre modérateur" in await newsroom.react(latest, ALICE, event_id="$mine")
    assert await newsroom.redact("$mine", ALICE) == []
    # Published, then the ✅ that approved it taken back: nothing is withdrawn.
    assert "est validée" in await newsroom.react(latest, BOB, event_id="$ok-bob")
    await newsroom.say("!gazette publier", sender=DENISE)
    await newsroom.broadcaster.deliver()
    (notice,) = await newsroom.redact("$ok-bob", BOB)
    assert "la gazette n°33 est déjà publiée : rien n'est retiré" in notice
    assert [len(newsroom.posts(room)) for room in ROOMS] == [1, 1, 1]
    assert newsroom.chat.redactions == []
    # A retraction approved by a ✅ on its request is carried out at once: taken back
    # afterwards, nothing is undone either.
    request = await newsroom.preview(BOB, "!gazette retirer-tout")
    assert "Retrait validé" in await newsroom.react(request, DENISE, event_id="$ok-retract")
    (notice,) = await newsroom.redact("$ok-retract", DENISE)
    assert "ce changement de la gazette n°33 est déjà appliqué : rien n'est retiré" in notice


async def test_a_check_mark_taken_back_at_once_is_withdrawn_after_its_answer(
    newsroom: Newsroom, monkeypatch: pytest.MonkeyPatch
) -> None:
    await newsroom.say("!gazette ajouter 1 Un élément")
    preview = await newsroom.preview()
    store = newsroom.storage.gazette
    approve = store.approve

    async def slow_approve(*args: Any, **kwargs: Any) -> bool:
        for _ in range(50):  # a busy database: the withdrawal could overtake it
            await asyncio.sleep(0)
        return await approve(*args, **kwargs)

    monkeypatch.setattr(store, "approve", slow_approve)
    before = len(newsroom.chat.sent)
    # Both in one sync batch: the redaction is recorded before the ✅ is answered.
    dispatcher = newsroom.dispatcher
    await dispatcher.accept_reaction(IncomingReaction(EDITORS, "$quick", DENISE, preview, "✅"))
    await dispatcher.accept_redaction(IncomingRedaction(EDITORS, "$undo", DENISE, "$quick"))
    await dispatcher.settle(5)
    approved, withdrawn = [s.message.body for s in newsroom.chat.sent[before:]]
    assert "est validée" in approved
    assert "sa validation de la gazette n°33 est retirée" in withdrawn
    assert "Validations : 0/1" in (await newsroom.say("!gazette")).body


async def test_a_check_mark_taken_back_just_before_a_crash_is_answered_at_restart_once(
    newsroom: Newsroom,
) -> None:
    await newsroom.say("!gazette ajouter 1 Un élément")
    preview = await newsroom.preview()
    await newsroom.react(preview, DENISE, event_id="$ok")
    # Recorded as the sync callback records it, then the bot dies before answering.
    taken_back = Triggered(APPROVE, "$ok", (), undo=True)
    await newsroom.storage.inbox.add(
        "$undo", EDITORS, DENISE, "", None, command="gazette", trigger=taken_back
    )
    before = len(newsroom.chat.sent)
    assert await newsroom.dispatcher.resume_pending() == 1
    await newsroom.dispatcher.drain()
    (notice,) = newsroom.chat.sent[before:]
    assert (notice.room_id, notice.reply_to) == (EDITORS, None)
    assert "sa validation de la gazette n°33 est retirée" in notice.message.body  # type: ignore[union-attr]
    assert await newsroom.dispatcher.resume_pending() == 0
    assert "Validations : 0/1" in (await newsroom.say("!gazette")).body


async def test_a_publication_decided_before_a_withdrawal_is_not_made_after_it(
    newsroom: Newsroom,
) -> None:
    await newsroom.say("!gazette ajouter 1 Un élément")
    preview = await newsroom.preview()
    await newsroom.react(preview, DENISE, event_id="$ok")
    draft = await newsroom.storage.gazette.draft()
    assert draft is not None
    # Approved by Denise when decided; her ✅ taken back before the transaction.
    await newsroom.redact("$ok", DENISE)
    queued = await newsroom.storage.gazette.publish(
        draft,
        body="x",
        html="x",
        broadcast=IssueKey(draft.number),
        feed_entries=[],
        by=BOB,
        now=int(newsroom.clock().timestamp()),
        approved_by=(DENISE,),
    )
    assert queued is None
    assert await newsroom.storage.gazette.draft() == draft


async def test_a_draft_of_the_previous_schema_keeps_who_changed_it(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    old = await Storage.open(path, migrations=UpgradeTable(s for s in upgrades if s.version < 20))
    db = old.db
    await db.execute(
        "INSERT INTO gazette_issues (id, number, status, since, content, revision, changed_by, "
        "changed_at, created_at) VALUES (1, 33, 'draft', 0, '{}', 4, $1, 200, 100)",
        BOB,
    )
    await db.execute(
        "INSERT INTO gazette_items (issue_id, n, section, text, author, added_at) "
        "VALUES (1, 1, 'À la une', 'Un élément', $1, 150)",
        ALICE,
    )
    for actor, action, at in ((DENISE, "remove", 160), (CLAUDE, "add", 50)):  # 50: older
        await db.execute(
            "INSERT INTO gazette_log (at, actor, action, number, detail) "
            "VALUES ($1, $2, $3, 33, '')",
            at,
            actor,
            action,
        )
    await old.close()
    storage = await Storage.open(path)
    try:
        assert await storage.gazette.changers(1) == {ALICE, BOB, DENISE}
    finally:
        await storage.close()
