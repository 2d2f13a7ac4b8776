"""Tchap-style login: an e-mail as matrix.user_id, the homeserver discovered, the token reused."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import pytest
from aiohttp import web

from bot import config as configuration
from bot.app import BotApp
from bot.devserver import DevHomeserver
from tests.helpers import PASSWORD, bot_devices, loopback_http, running, sample_agenda, unique

pytestmark = pytest.mark.e2e


async def test_email_login_with_discovered_homeserver(
    synapse: DevHomeserver, tmp_path: Path, make_user
) -> None:
    admin = synapse.login(synapse.register(unique("admin"), PASSWORD, admin=True), PASSWORD)
    localpart = unique("bluehats")
    bot_id = synapse.register(localpart, PASSWORD)
    email = f"{localpart}@numerique.example.gouv.fr"
    # Tchap accounts are e-mail accounts: bind the address to the bot's account.
    synapse.call(
        "PUT",
        f"/_synapse/admin/v2/users/{urllib.parse.quote(bot_id)}",
        {"threepids": [{"medium": "email", "address": email}]},
        token=admin,
    )
    asked: list[dict[str, str]] = []

    async def info(request: web.Request) -> web.Response:
        """A stand-in for https://matrix.agent.tchap.gouv.fr's directory."""
        asked.append(dict(request.query))
        if request.query.get("address") != email:
            return web.json_response({})
        return web.json_response({"hs": f"127.0.0.1:{synapse.port}"})

    alice = await make_user("alice")
    async with loopback_http({"/_matrix/identity/api/v1/info": info}) as directory:
        cfg = configuration.from_dict(
            {
                "matrix": {
                    "user_id": email,
                    "password": PASSWORD,
                    "identity_server": directory,
                    "homeserver_template": "http://{hs}",  # the stand-in speaks plain HTTP
                },
                "storage": {"path": str(tmp_path / "bot")},
                "agenda": {"sources": [str(sample_agenda())]},
            },
            env={},
        )
        async with running(BotApp(cfg)) as app:
            assert app.chat is not None and app.chat.user_id == bot_id
            room = await alice.create_room(invite=[bot_id])
            await alice.wait_joined(room, bot_id)  # invites from its own server: allowed
            await alice.ask(room, "!aide", bot_id)
        assert asked == [{"medium": "email", "address": email}]
        session_file = tmp_path / "bot" / "session.json"
        session = json.loads(session_file.read_text())
        assert (session["user_id"], session["login"], session["homeserver"]) == (
            bot_id,
            email,
            synapse.url,
        )
        devices = bot_devices(synapse, session_file)

        # Restarted: the saved token and homeserver are reused, no login, no discovery.
        async with running(BotApp(cfg)):
            await alice.ask(room, "!aide", bot_id)
        assert len(asked) == 1
        assert bot_devices(synapse, session_file) == devices
        assert json.loads(session_file.read_text())["device_id"] == session["device_id"]
