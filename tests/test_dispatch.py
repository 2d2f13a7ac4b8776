"""The command core with a recording fake chat client: parsing, errors, exactly once."""

from __future__ import annotations

import asyncio
import types
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.chat import IncomingMessage, SendError
from bot.commands import build_registry
from bot.commands.core import Context, Problem, Registry, UsageError, command
from bot.dispatch import parse, txn_id_for
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
    @command("purger", role=Role.MODERATOR)
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
        role=Role.MODERATOR,
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

    chat = FakeChat(levels={(ROOM, "@mod:example.org"): 50})
    dispatcher, _, storage = await make_dispatcher(tmp_path, [], FakeClock(NOW), chat)
    dispatcher.registry = build_registry().collect(types.SimpleNamespace(notebook=notebook))  # type: ignore[arg-type]

    async def say(text: str, sender: str = "@alice:example.org") -> str:
        reply = await dispatcher.answer(msg(text, sender=sender))
        assert isinstance(reply, Message)
        return reply.body

    try:
        assert await say("!notebook LIRE 3") == "page 3"  # alias, any case
        assert await say("!carnet ecrire x") == (
            "Désolé, « !carnet ecrire » est réservée aux modérateurs de ce salon."
        )
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
        assert "!carnet ecrire <texte>" in await say("!aide", "@mod:example.org")
        assert "!carnet ecrire" not in await say("!aide")
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


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
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
def test_any_text_never_raises_nor_leaks_exception_text(tmp_path: Path, body: str) -> None:
    async def run() -> Message | None:
        dispatcher, _, storage = await make_dispatcher(tmp_path, [], FakeClock(NOW))
        try:
            return await dispatcher.answer(msg(body))
        finally:
            await storage.close()

    reply = asyncio.run(run())
    if reply is not None:
        assert reply.body and reply.html
        assert "réf." not in reply.body  # the error boundary was not needed
        assert "Traceback" not in reply.body and "Error" not in reply.body


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
            await storage.inbox.attempt("$y")
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
