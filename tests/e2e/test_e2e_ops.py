"""ops.error_room on a real Synapse: failing sources and unexpected errors are posted."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bot.app import BotApp
from bot.config import OpsConfig
from bot.devserver import DevHomeserver
from tests.helpers import bot_config, loopback_http, running, sample_agenda

pytestmark = pytest.mark.e2e


def body(event: Any) -> str:
    return str(event.source["content"]["body"])


async def test_error_room_gets_failing_sources_and_command_errors(
    synapse: DevHomeserver, tmp_path: Path, make_user, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def gone(_request: web.Request) -> web.Response:
        return web.Response(status=404)

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("token=s3cr3t in an exception text")

    alice = await make_user("alice")
    async with loopback_http({"/gone.ics": gone}) as base:
        cfg, bot_id = bot_config(
            synapse, tmp_path / "bot", sources=[str(sample_agenda()), f"{base}/gone.ics"]
        )
        # The error room exists (the bot invited) before the bot starts.
        errors = await alice.create_room(invite=[bot_id])
        ops = OpsConfig(error_room=errors, error_room_every=timedelta(seconds=1))
        cfg = cfg.model_copy(update={"ops": ops})
        monkeypatch.setattr("bot.commands.agenda.render_agenda", broken)
        async with running(BotApp(cfg)):
            await alice.wait_joined(errors, bot_id)

            def alerts() -> list[str]:
                return [
                    body(e)
                    for e in alice.events.get(errors, [])
                    if e.sender == bot_id and "body" in e.source["content"]
                ]

            first = await alice.wait_for(
                errors, lambda e: e.sender == bot_id and "body" in e.source["content"]
            )
            assert body(first).startswith("🚨 Incident du bot BlueHats :")
            assert "bot.agenda.sources : agenda: source http://127.0.0.1:" in body(first)
            assert "/gone.ics failed: HTTP 404" in body(first)

            room = await alice.create_room(invite=[bot_id])
            await alice.wait_joined(room, bot_id)
            answer = await alice.ask(room, "!agenda", bot_id)
            ref = re.search(r"réf\. (\w+)", body(answer))
            assert ref, body(answer)
            await alice.wait_for(
                errors, lambda e: e.sender == bot_id and ref.group(1) in str(e.source)
            )
            posted = "\n".join(alerts())
            assert f"command agenda failed (ref {ref.group(1)}" in posted
            assert "s3cr3t" not in posted and "Traceback" not in posted
