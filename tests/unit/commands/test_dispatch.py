"""The command core with a recording fake chat client: parsing, errors, exactly once."""

from __future__ import annotations

import asyncio
import time
import types
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.agenda.model import Session
from bot.chat import FileUpload, IncomingMessage, SendError
from bot.commands import build_registry
from bot.commands.core import Context, Problem, Registry, UsageError, command
from bot.commands.runner import parse
from bot.db.storage import Storage
from bot.dispatch import txn_id_for
from bot.permissions import Role
from bot.render import Message
from tests.fakes import FakeChat, FakeClock, make_dispatcher
from tests.helpers import NOW

ROOM = "!room:example.org"


def msg(body: str, event_id: str = "$e1", sender: str = "@alice:example.org") -> IncomingMessage:
    return IncomingMessage(ROOM, event_id, sender, body)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("!agenda", ("agenda", "")),
        ("  !Agenda   demain   superset ", ("agenda", "demain superset")),
        ("!AIDE", ("aide", "")),
        ("!agenda\nsecond line ignored", ("agenda", "")),
        ("> <@bob:x> !aide\n\n!agenda", ("agenda", "")),  # reply fallback stripped
        ("agenda", None),
        ("! agenda", None),
        ("!!!", None),
        ("!", None),
        ("", None),
        ("Bonjour !agenda", None),
    ],
)
def test_parse(body: str, expected: tuple[str, str] | None) -> None:
    assert parse(body, "!") == expected


async def test_unknown_command_gets_one_line_pointing_to_help(tmp_path: Path) -> None:
    dispatcher, _, storage = await make_dispatcher(tmp_path, [], FakeClock(NOW))
    reply = await dispatcher.answer(msg("!agneda"))
    await storage.close()
    assert reply is not None
    assert reply.body == (
        "Je ne connais pas la commande « !agneda ». Tapez !aide pour la liste des commandes."
    )


async def test_long_unknown_command_is_not_echoed_whole(tmp_path: Path) -> None:
    dispatcher, _, storage = await make_dispatcher(tmp_path, [], FakeClock(NOW))
    reply = await dispatcher.answer(msg("!" + "x" * 500))
    await storage.close()
    assert reply is not None and len(reply.body) < 200 and "…" in reply.body


async def test_crash_in_a_command_answers_a_reference_not_the_exception(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dispatcher, _, storage = await make_dispatcher(tmp_path, [], FakeClock(NOW))

    @command("boum")
    async def boom(ctx: Context) -> Message:
        raise RuntimeError("secret internals /etc/passwd")

    dispatcher.registry = build_registry().collect(types.SimpleNamespace(boom=boom))  # type: ignore[arg-type]
    reply = await dispatcher.answer(msg("!boum"))
    await storage.close()
    assert reply is not None
    assert "réf." in reply.body
    for text in (reply.body, reply.html):
        assert "secret internals" not in text and "RuntimeError" not in text
        assert "Traceback" not in text
    ref = reply.body.split("réf. ")[1][:4]
    assert any(ref in r.getMessage() and r.exc_info for r in caplog.records)


async def _moderator_registry() -> Registry:
    @command("purger", role=Role.ROOM)
    async def purge(ctx: Context) -> Message:
        return Message("purgé", "purgé")

    return build_registry().collect(types.SimpleNamespace(purge=purge))  # type: ignore[arg-type]


async def test_moderator_commands_refused_politely_and_hidden_from_help(tmp_path: Path) -> None:
    chat = FakeChat(levels={(ROOM, "@mod:example.org"): 50})
    dispatcher, _, storage = await make_dispatcher(
        tmp_path, [], FakeClock(NOW), chat, bot={"moderators": ["@admin:elsewhere.org"]}
    )
    dispatcher.registry = await _moderator_registry()
    try:
        refused = await dispatcher.answer(msg("!purger", sender="@alice:example.org"))
        assert refused is not None
        assert refused.body == "Désolé, « !purger » est réservée aux modérateurs de ce salon."
        done = await dispatcher.answer(msg("!purger", sender="@mod:example.org"))
        assert done is not None and done.body == "purgé"
        # A config admin whose power level here is 0.
        admin = await dispatcher.answer(msg("!purger", sender="@admin:elsewhere.org"))
        assert admin is not None and admin.body == "purgé"
        member_help = await dispatcher.answer(msg("!aide", sender="@alice:example.org"))
        mod_help = await dispatcher.answer(msg("!aide", sender="@mod:example.org"))
        assert member_help is not None and mod_help is not None
        assert "!purger" not in member_help.body and "!purger" in mod_help.body
    finally:
        await storage.close()


async def test_a_declared_command_routes_checks_and_words_its_usage_once(tmp_path: Path) -> None:
    """Sub-commands, their role and their syntax come from one declaration."""

    @command("carnet", "notebook", usage="", about="")
    async def notebook(ctx: Context) -> Message:
        raise UsageError

    @notebook.sub(
        "ecrire",
        "write",
        role=Role.COMMUNITY,
        usage="<texte>",
        example="%(prefix)scarnet ecrire bonjour",
    )
    async def write(ctx: Context) -> Message:
        if not ctx.args:
            raise Problem("quote")
        return Message(f"écrit : {ctx.args}", "")

    @notebook.sub("lire", usage="[page]")
    async def read(ctx: Context) -> Message:
        return Message(f"page {ctx.args or 1}", "")

    chat = FakeChat(levels={(ROOM, "@mod:example.org"): 50, (ROOM, "@own:example.org"): 100})
    # @mod moderates the community's moderators' room; @own, a room of theirs.
    dispatcher, _, storage = await make_dispatcher(
        tmp_path, [], FakeClock(NOW), chat, bot={"moderator_rooms": ["!mods:example.org"]}
    )
    chat.levels[("!mods:example.org", "@mod:example.org")] = 50
    dispatcher.registry = build_registry().collect(types.SimpleNamespace(notebook=notebook))  # type: ignore[arg-type]

    async def say(text: str, sender: str = "@alice:example.org") -> str:
        reply = await dispatcher.answer(msg(text, sender=sender))
        assert isinstance(reply, Message)
        return reply.body

    try:
        assert await say("!notebook LIRE 3") == "page 3"  # alias, any case
        refused = "Désolé, « !carnet ecrire » est réservée aux modérateurs de la communauté."
        assert await say("!carnet ecrire x") == refused
        # Admin of the room it is typed in, not a community moderator.
        assert await say("!carnet ecrire x", "@own:example.org") == refused
        assert await say("!carnet write x", "@mod:example.org") == "écrit : x"
        # The usage lists what the sender may run, with its arguments.
        assert await say("!carnet") == "Utilisation : !carnet lire [page]"
        assert await say("!carnet", "@mod:example.org") == (
            "Utilisation : !carnet ecrire <texte> | lire [page]"
        )
        # A problem is answered with the syntax of the sub-command that raised it.
        problem = await say("!carnet ecrire", "@mod:example.org")
        assert problem.splitlines()[1] == (
            "Syntaxe : !carnet ecrire <texte> — ex. !carnet ecrire bonjour"
        )
        mod_help = await say("!aide", "@mod:example.org")
        community = mod_help.split("Pour les modérateurs de la communauté :\n", 1)[1]
        assert "• !carnet ecrire <texte>\n" in community
        assert "!carnet ecrire" not in await say("!aide")
        assert "!carnet ecrire" not in await say("!aide", "@own:example.org")
    finally:
        await storage.close()


async def test_each_command_answered_once_with_its_own_transaction_id(tmp_path: Path) -> None:
    dispatcher, chat, storage = await make_dispatcher(tmp_path, [], FakeClock(NOW))
    try:
        await dispatcher.accept(msg("!aide", "$a"))
        await dispatcher.accept(msg("!aide", "$a"))  # redelivered by a sync
        await dispatcher.accept(msg("bonjour", "$b"))  # not a command
        await dispatcher.accept(msg("!aide", "$c", sender=chat.user_id))  # the bot itself
        await dispatcher.drain()
        assert [(s.reply_to, s.txn_id) for s in chat.sent] == [("$a", txn_id_for("$a"))]
        assert await storage.inbox.status("$a") == "done"
        assert await storage.inbox.status("$b") is None  # conversation is not stored
    finally:
        await storage.close()


async def test_pending_commands_are_resent_with_the_same_transaction_id(tmp_path: Path) -> None:
    dispatcher, chat, storage = await make_dispatcher(tmp_path, [], FakeClock(NOW))
    try:
        # Recorded by a previous run that died before answering.
        await storage.inbox.add("$x", ROOM, "@alice:example.org", "!agenda", None)
        assert await dispatcher.resume_pending() == 1
        await dispatcher.drain()
        assert [s.txn_id for s in chat.sent] == [txn_id_for("$x")]
        assert await dispatcher.resume_pending() == 0
    finally:
        await storage.close()


async def test_transient_send_failures_are_retried_permanent_ones_given_up(
    tmp_path: Path,
) -> None:
    chat = FakeChat(failures=[SendError("502", permanent=False), SendError("502", permanent=False)])
    dispatcher, _, storage = await make_dispatcher(tmp_path, [], FakeClock(NOW), chat)
    try:
        await dispatcher.accept(msg("!aide", "$t"))
        await dispatcher.drain()
        assert len(chat.sent) == 1 and await storage.inbox.status("$t") == "done"
        chat.failures = [SendError("M_FORBIDDEN", permanent=True)]
        await dispatcher.accept(msg("!aide", "$p"))
        await dispatcher.drain()
        assert len(chat.sent) == 1 and await storage.inbox.status("$p") == "failed"
    finally:
        await storage.close()


def test_any_text_never_raises_nor_leaks_exception_text(tmp_path: Path) -> None:
    # One dispatcher and store for all the examples (they shared the store
    # already): each example is one answer, not a new store and event loop.
    with asyncio.Runner() as runner:
        dispatcher, _, storage = runner.run(make_dispatcher(tmp_path, [], FakeClock(NOW)))

        @settings(max_examples=300, deadline=None)
        @given(
            body=st.one_of(
                st.text(),
                st.text().map(lambda t: "!" + t),
                st.builds(
                    lambda c, a: f"!{c} {a}",
                    st.sampled_from(["agenda", "aide", "help", "AGENDA"]),
                    st.text(),
                ),
            )
        )
        def answers(body: str) -> None:
            reply = runner.run(dispatcher.answer(msg(body)))
            if reply is not None:
                assert reply.body and reply.html
                assert "réf." not in reply.body  # the error boundary was not needed
                assert "Traceback" not in reply.body and "Error" not in reply.body

        try:
            answers()
        finally:
            runner.run(storage.close())


async def test_a_reply_that_keeps_failing_is_given_up_even_across_restarts(
    tmp_path: Path,
) -> None:
    chat = FakeChat(failures=[SendError("timeout", permanent=False)] * 10)
    dispatcher, _, storage = await make_dispatcher(tmp_path, [], FakeClock(NOW), chat)
    try:
        await dispatcher.accept(msg("!aide", "$z"))
        await dispatcher.drain()
        assert await storage.inbox.status("$z") == "failed" and chat.sent == []
        assert len(chat.failures) == 10 - 5  # five attempts, not more
        # A row left pending by runs that died while sending is not retried forever.
        await storage.inbox.add("$y", ROOM, "@alice:example.org", "!aide", None)
        for _ in range(5):
            await storage.inbox.attempt("$y", chat.device_id)
        await dispatcher.resume_pending()
        await dispatcher.drain()
        assert await storage.inbox.status("$y") == "failed" and len(chat.failures) == 5
    finally:
        await storage.close()


async def test_settle_lets_this_batch_answers_go_out_before_the_next_sync(
    tmp_path: Path,
) -> None:
    dispatcher, chat, storage = await make_dispatcher(tmp_path, [], FakeClock(NOW))
    try:
        await dispatcher.accept(msg("!aide", "$s"))
        assert chat.sent == []  # answered in the background…
        await dispatcher.settle()
        assert [s.reply_to for s in chat.sent] == ["$s"]  # …and out before settle returns
    finally:
        await storage.close()


# -- edited commands ----------------------------------------------------------------------------

T0 = 1_800_000_000_000  # the command's origin_server_ts (ms)
ALICE = "@alice:example.org"
UNKNOWN = "Je ne connais pas la commande « !agneda »"
WITHDRAWN = "Commande retirée : le message modifié n'en contient plus."


def typed(body: str, event_id: str = "$c", ts: int = T0, sender: str = ALICE) -> IncomingMessage:
    return IncomingMessage(ROOM, event_id, sender, body, ts=ts)


def edit(
    body: str, event_id: str, after_s: float, replaces: str = "$c", sender: str = ALICE
) -> IncomingMessage:
    """`replaces` edited to `body`, `after_s` seconds after the command was sent."""
    return IncomingMessage(
        ROOM, event_id, sender, body, ts=T0 + int(after_s * 1000), replaces=replaces
    )


def bodies(chat: FakeChat) -> list[str]:
    return [s.message.body for s in chat.sent if isinstance(s.message, Message)]


async def test_an_edit_of_an_answered_command_edits_the_answer_in_place(tmp_path: Path) -> None:
    dispatcher, chat, storage = await make_dispatcher(tmp_path, [], FakeClock(NOW))
    try:
        await dispatcher.accept(typed("!agneda"))
        await dispatcher.drain()
        (answer,) = chat.sent
        assert answer.reply_to == "$c" and bodies(chat)[0].startswith(UNKNOWN)
        await dispatcher.accept(edit("!aide", "$e1", after_s=30))
        await dispatcher.drain()
        assert len(chat.sent) == 2
        edited = chat.sent[1]
        # An edit of the bot's answer, not a new answer, with its own transaction id.
        assert edited.replaces == answer.event_id and edited.reply_to is None
        assert edited.txn_id == txn_id_for("$e1") != answer.txn_id
        assert "!agenda" in bodies(chat)[1] and UNKNOWN not in bodies(chat)[1]  # the help
        assert await storage.inbox.status("$e1") == "done"
    finally:
        await storage.close()


async def test_several_edits_each_replace_the_first_answer_the_latest_wins(
    tmp_path: Path,
) -> None:
    dispatcher, chat, storage = await make_dispatcher(tmp_path, [], FakeClock(NOW))
    try:
        await dispatcher.accept(typed("!aide"))
        await dispatcher.drain()
        await dispatcher.accept(edit("!agneda", "$e1", after_s=10))
        await dispatcher.drain()
        await dispatcher.accept(edit("!aide", "$e2", after_s=20))
        await dispatcher.drain()
        first = chat.sent[0].event_id
        # The spec: each edit replaces the original event, never an earlier edit.
        assert [s.replaces for s in chat.sent] == [None, first, first]
        assert bodies(chat)[1].startswith(UNKNOWN) and bodies(chat)[2] == bodies(chat)[0]
        # Two edits in one batch: only the newest is answered.
        await dispatcher.accept(edit("!agneda", "$e3", after_s=30))
        await dispatcher.accept(edit("!aide", "$e4", after_s=40))
        await dispatcher.drain()
        assert [s.txn_id for s in chat.sent[3:]] == [txn_id_for("$e4")]
        assert chat.sent[3].replaces == first and bodies(chat)[3] == bodies(chat)[0]
    finally:
        await storage.close()


async def test_a_command_edited_before_it_was_answered_is_answered_once_with_the_new_text(
    tmp_path: Path,
) -> None:
    dispatcher, chat, storage = await make_dispatcher(tmp_path, [], FakeClock(NOW))
    try:
        # Both in one sync batch (the bot was away when they were sent).
        await dispatcher.accept(typed("!agneda"))
        await dispatcher.accept(edit("!aide", "$e1", after_s=5))
        await dispatcher.drain()
        (answer,) = chat.sent
        assert answer.replaces is None and answer.reply_to == "$c"  # a reply to the command
        assert "!agenda" in bodies(chat)[0] and UNKNOWN not in bodies(chat)[0]
        assert answer.txn_id == txn_id_for("$e1")
        assert await storage.inbox.status("$c") == "done"
        # A later edit replaces that answer.
        await dispatcher.accept(edit("!agneda", "$e2", after_s=9))
        await dispatcher.drain()
        assert chat.sent[1].replaces == answer.event_id and bodies(chat)[1].startswith(UNKNOWN)
    finally:
        await storage.close()


async def test_edits_too_late_by_someone_else_or_of_conversation_are_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dispatcher, chat, storage = await make_dispatcher(
        tmp_path, [], FakeClock(NOW), bot={"edit_window": "10m"}
    )
    caplog.set_level("DEBUG", logger="bot.dispatch")
    try:
        await dispatcher.accept(typed("!agneda"))
        await dispatcher.accept(typed("bonjour", "$talk"))
        await dispatcher.drain()
        await dispatcher.accept(edit("!aide", "$late", after_s=10 * 60 + 1))
        await dispatcher.accept(edit("!aide", "$bob", after_s=5, sender="@bob:example.org"))
        await dispatcher.accept(edit("!aide", "$talk-edit", after_s=5, replaces="$talk"))
        await dispatcher.drain()
        assert len(chat.sent) == 1  # the first answer only
        for event_id in ("$late", "$bob", "$talk-edit"):
            assert await storage.inbox.status(event_id) is None  # not even recorded
        assert "made 601s after its command" in caplog.text
        # Within the window, the same edit counts.
        await dispatcher.accept(edit("!aide", "$ok", after_s=10 * 60))
        await dispatcher.drain()
        assert len(chat.sent) == 2 and chat.sent[1].replaces == chat.sent[0].event_id
    finally:
        await storage.close()


async def test_an_edit_that_removes_the_command_withdraws_the_answer(tmp_path: Path) -> None:
    dispatcher, chat, storage = await make_dispatcher(tmp_path, [], FakeClock(NOW))
    try:
        await dispatcher.accept(typed("!aide"))
        await dispatcher.drain()
        await dispatcher.accept(edit("oups, mauvais salon", "$e1", after_s=10))
        await dispatcher.drain()
        assert chat.sent[1].replaces == chat.sent[0].event_id
        assert bodies(chat)[1] == WITHDRAWN
        # Edited before any answer: nothing at all.
        await dispatcher.accept(typed("!aide", "$c2"))
        await dispatcher.accept(edit("rien", "$e2", after_s=1, replaces="$c2"))
        await dispatcher.drain()
        assert len(chat.sent) == 2
        assert await storage.inbox.status("$c2") == await storage.inbox.status("$e2") == "done"
    finally:
        await storage.close()


async def test_a_file_answer_is_not_edited_a_new_answer_is_posted(tmp_path: Path) -> None:
    start = NOW + timedelta(days=1)
    grist = Session(title="Webinaire Grist", start=start, end=start + timedelta(hours=1))
    dispatcher, chat, storage = await make_dispatcher(tmp_path, [grist], FakeClock(NOW))
    try:
        await dispatcher.accept(typed("!agenda ics"))
        await dispatcher.drain()
        assert isinstance(chat.sent[0].message, FileUpload)
        await dispatcher.accept(edit("!aide", "$e1", after_s=10))
        await dispatcher.drain()
        notice = chat.sent[1]
        assert notice.replaces is None and notice.reply_to == "$c"
        assert isinstance(notice.message, Message) and "!agenda" in notice.message.body
        # Edited back into a file: a new file; then into a notice again: new notice.
        await dispatcher.accept(edit("!agenda ics", "$e2", after_s=20))
        await dispatcher.drain()
        file = chat.sent[2]
        assert isinstance(file.message, FileUpload) and file.replaces is None
        assert file.reply_to == "$c"
    finally:
        await storage.close()


async def test_edits_are_answered_exactly_once_across_restarts(tmp_path: Path) -> None:
    dispatcher, chat, storage = await make_dispatcher(tmp_path, [], FakeClock(NOW))
    await dispatcher.accept(typed("!agneda"))
    await dispatcher.drain()
    await dispatcher.accept(edit("!aide", "$e1", after_s=10))
    await dispatcher.drain()
    # The bot died after recording a second edit, before answering it.
    await storage.inbox.add("$e2", ROOM, ALICE, "!agneda", None, sent_ms=T0 + 20_000, replaces="$c")
    await storage.close()

    chat = FakeChat()
    dispatcher, _, storage = await make_dispatcher(tmp_path, [], FakeClock(NOW), chat)
    try:
        assert await dispatcher.resume_pending() == 1
        await dispatcher.drain()
        (resumed,) = chat.sent
        # Answered as an edit of the first answer, with the edit's transaction id.
        assert resumed.replaces == f"$ev-{txn_id_for('$c')}"
        assert resumed.txn_id == txn_id_for("$e2") and bodies(chat)[0].startswith(UNKNOWN)
        # Redelivered by the sync after the restart: nothing again.
        await dispatcher.accept(typed("!agneda"))
        await dispatcher.accept(edit("!aide", "$e1", after_s=10))
        await dispatcher.accept(edit("!agneda", "$e2", after_s=20))
        await dispatcher.drain()
        assert await dispatcher.resume_pending() == 0
        assert len(chat.sent) == 1
    finally:
        await storage.close()


async def test_a_zero_edit_window_turns_edits_off(tmp_path: Path) -> None:
    dispatcher, chat, storage = await make_dispatcher(
        tmp_path, [], FakeClock(NOW), bot={"edit_window": "0s"}
    )
    try:
        await dispatcher.accept(typed("!agneda"))
        await dispatcher.drain()
        await dispatcher.accept(edit("!aide", "$e1", after_s=0))
        await dispatcher.drain()
        assert len(chat.sent) == 1 and await storage.inbox.status("$e1") is None
    finally:
        await storage.close()


async def test_edits_and_private_answers(tmp_path: Path) -> None:
    """A private command's notice in the room is what an edit replaces; a command
    edited into a private one answers in private, not in the room's answer."""
    dispatcher, chat, storage = await make_dispatcher(tmp_path, [], FakeClock(NOW))
    try:
        await dispatcher.accept(typed("!mes-donnees"))
        await dispatcher.drain()
        dm, notice = chat.sent
        assert dm.room_id != ROOM and notice.room_id == ROOM and notice.reply_to == "$c"
        await dispatcher.accept(edit("!aide", "$e1", after_s=10))
        await dispatcher.drain()
        assert chat.sent[-1].replaces == notice.event_id and chat.sent[-1].room_id == ROOM

        chat.sent.clear()
        await dispatcher.accept(typed("!aide", "$c2"))
        await dispatcher.drain()
        (help_answer,) = chat.sent
        await dispatcher.accept(edit("!mes-donnees", "$e2", after_s=10, replaces="$c2"))
        await dispatcher.drain()
        _, private, said = chat.sent
        assert private.room_id == dm.room_id and private.replaces is None
        assert "Ce que le bot garde à votre sujet" in private.message.body
        # Nothing personal replaces the help in the room: a pointer, as a new notice.
        assert said.room_id == ROOM and said.replaces is None
        assert said.message.body == "🔒 Je vous ai répondu en message privé."
        assert help_answer.room_id == ROOM
    finally:
        await storage.close()


async def left_pending(storage: Storage, event_id: str, *, days: float, device: str) -> None:
    """As a run that crashed between the answer and its mark, `days` ago, on `device`."""
    await storage.db.execute(
        "UPDATE inbox SET status = 'pending', body = $1, received_at = $2, device_id = $3 "
        "WHERE event_id = $4",
        "!mes-donnees",
        int(time.time() - days * 86400),
        device,
        event_id,
    )


async def test_an_answer_sent_before_a_long_outage_is_not_sent_again(tmp_path: Path) -> None:
    """Past the homeserver's memory of its transaction id, the pending answer is
    looked for in the room (both messages of a private one) and not posted twice."""
    dispatcher, chat, storage = await make_dispatcher(tmp_path, [], FakeClock(NOW))
    try:
        await dispatcher.accept(typed("!mes-donnees"))
        await dispatcher.drain()
        dm, notice = chat.sent
        await left_pending(storage, "$c", days=2, device=chat.device_id)
        assert await dispatcher.resume_pending() == 1
        await dispatcher.drain()
        assert chat.sent == [dm, notice]  # nothing new
        assert chat.looked_for == [(dm.room_id, dm.txn_id), (ROOM, notice.txn_id)]
        assert await storage.inbox.status("$c") == "done"
        # Marked as if just sent: an edit of the command edits that notice.
        await dispatcher.accept(edit("!aide", "$e1", after_s=10))
        await dispatcher.drain()
        assert chat.sent[-1].replaces == notice.event_id

        # Under a new device that cannot read the bot's events: abandoned, not resent.
        await dispatcher.accept(typed("!mes-donnees", "$c2"))
        await dispatcher.drain()
        sent = list(chat.sent)
        chat.unreadable.add(ROOM)
        chat.sent.remove(sent[-1])  # the notice is in the room, unreadable
        await left_pending(storage, "$c2", days=0, device="OLDDEVICE")
        await dispatcher.resume_pending()
        await dispatcher.drain()
        assert chat.sent == sent[:-1]
        assert await storage.inbox.status("$c2") == "failed"
        assert dispatcher.metrics.abandoned.labels("reply")._value.get() == 1
    finally:
        await storage.close()


async def test_two_private_answers_at_once_open_one_direct_room(tmp_path: Path) -> None:
    dispatcher, chat, storage = await make_dispatcher(tmp_path, [], FakeClock(NOW))
    opened = chat.open_direct_room

    async def open_slowly(user_id: str) -> str:
        # A room's creation is round trips, then a sync that shows it.
        for _ in range(50):
            await asyncio.sleep(0)
        return await opened(user_id)

    chat.open_direct_room = open_slowly  # type: ignore[method-assign]
    try:
        await dispatcher.accept(typed("!mes-donnees", "$c1"))
        await dispatcher.accept(typed("!mon-agenda", "$c2"))
        await dispatcher.drain()
        ((_, dm),) = chat.direct_rooms
        assert sorted(s.room_id for s in chat.sent) == sorted([dm, dm, ROOM, ROOM])
    finally:
        await storage.close()
