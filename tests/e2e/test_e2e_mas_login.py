"""Login on a homeserver under MAS (tests/mas.py in front of the real Synapse): an
e-mail account by the Matrix ID Tchap derives from it, a clear stop when its ID
is another one, a Matrix-ID account by `m.id.user`."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from bot import config as configuration
from bot.app import BotApp
from bot.devserver import DevHomeserver
from tests import mas
from tests.helpers import PASSWORD, TEST_LIMITS, loopback_http, running, sample_agenda, unique

pytestmark = pytest.mark.e2e

DOMAIN = "numerique.example.gouv.fr"


def directory(server_name: str) -> Any:
    """Tchap's directory: every address is on `server_name`."""

    async def info(request: web.Request) -> web.Response:
        return web.json_response({"hs": server_name})

    return info


@asynccontextmanager
async def mas_and_directory(synapse: DevHomeserver) -> AsyncIterator[tuple[mas.MasStandIn, str]]:
    """MAS in front of `synapse`, and Tchap's directory (its URL) naming `synapse`."""
    routes = {"/_matrix/identity/api/v1/info": directory(synapse.server_name)}
    async with mas.MasStandIn(synapse.url) as hs, loopback_http(routes) as identity_server:
        yield hs, identity_server


def email_config(
    email: str, homeserver: str, identity_server: str, storage: Path
) -> dict[str, Any]:
    return {
        "matrix": {
            "user_id": email,
            "homeserver": homeserver,
            "identity_server": identity_server,
        },
        "storage": {"path": str(storage)},
        "agenda": {"sources": [str(sample_agenda())]},
        "bot": {"limits": TEST_LIMITS},
    }


@pytest.mark.parametrize("published", [True, False], ids=["auth-metadata", "refused-3pid"])
async def test_email_account_logs_in_as_the_derived_matrix_id(
    synapse: DevHomeserver,
    tmp_path: Path,
    make_user,
    caplog: pytest.LogCaptureFixture,
    published: bool,
) -> None:
    """The bot's e-mail, with an upper-case letter and a `+`; its account was made
    the Tchap way (localpart derived from the address)."""
    caplog.set_level(logging.INFO, logger="bot.matrix")
    name = unique("bluehats")
    email = f"Bluehats+{name}@{DOMAIN}"
    bot_id = synapse.register(f"bluehats{name}-{DOMAIN}", PASSWORD)
    alice = await make_user("alice")
    async with mas_and_directory(synapse) as (hs, identity_server):
        if not published:
            # MAS behind a proxy that routes neither auth_metadata nor GET /login
            # to it: the homeserver looks classic until it refuses the e-mail.
            for path in mas.STABLE_METADATA, mas.UNSTABLE_METADATA, *mas.LOGIN_PATHS:
                hs.routes.pop(("GET", path), None)
        raw = email_config(email, hs.url, identity_server, tmp_path / "bot")
        raw["matrix"]["password"] = PASSWORD
        async with running(BotApp(configuration.from_dict(raw, env={}))) as app:
            assert app.chat is not None and app.chat.user_id == bot_id
            room = await alice.create_room(invite=[bot_id])
            await alice.wait_joined(room, bot_id)
            await alice.ask(room, "!aide", bot_id)
    derived = {"type": "m.id.user", "user": bot_id}
    e_mail = {"type": "m.id.thirdparty", "medium": "email", "address": email}
    assert hs.login_identifiers == ([derived] if published else [e_mail, derived])
    assert f"logging in as {bot_id}, the Matrix ID Tchap derives from {email}" in caplog.text
    assert PASSWORD not in caplog.text


async def test_email_account_with_another_matrix_id_stops_with_what_to_do(
    synapse: DevHomeserver, tmp_path: Path
) -> None:
    """An account whose ID does not follow the rule (e.g. `…-gouv.fr1`, made after
    a deactivated one): the process exits 1 and says to configure the Matrix ID."""
    name = unique("bluehats")
    email = f"{name}@{DOMAIN}"
    password = "secret-bot-password-42"
    synapse.register(f"{name}-{DOMAIN}1", password)
    async with mas_and_directory(synapse) as (hs, identity_server):
        config = tmp_path / "config.yaml"
        config.write_text(
            yaml.safe_dump(email_config(email, hs.url, identity_server, tmp_path / "data"))
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "run",
            "--config",
            str(config),
            env={**os.environ, "BLUEHATS_MATRIX_PASSWORD": password},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        async with asyncio.timeout(60):
            output, _ = await proc.communicate()
    log = output.decode()
    assert proc.returncode == 1, log
    derived = f"@{name}-{DOMAIN}:{synapse.server_name}"
    assert f"logging in as {derived}, the Matrix ID Tchap derives from {email}" in log
    assert "put the bot's Matrix ID (@name:server, not its e-mail) in matrix.user_id" in log
    assert "Traceback" not in log
    assert password not in log
    assert hs.login_identifiers == [{"type": "m.id.user", "user": derived}]


async def test_matrix_id_account_logs_in_with_m_id_user(
    synapse: DevHomeserver, tmp_path: Path, make_user
) -> None:
    bot_id = synapse.register(unique("bot"), PASSWORD)
    alice = await make_user("alice")
    async with mas.MasStandIn(synapse.url, stable_metadata=False) as hs:
        cfg = configuration.from_dict(
            {
                "matrix": {"homeserver": hs.url, "user_id": bot_id, "password": PASSWORD},
                "storage": {"path": str(tmp_path / "bot")},
                "agenda": {"sources": [str(sample_agenda())]},
                "bot": {"limits": TEST_LIMITS},
            },
            env={},
        )
        async with running(BotApp(cfg)):
            room = await alice.create_room(invite=[bot_id])
            await alice.wait_joined(room, bot_id)
            await alice.ask(room, "!aide", bot_id)
    assert hs.login_identifiers == [{"type": "m.id.user", "user": bot_id}]


async def test_access_token_with_an_email_account(
    synapse: DevHomeserver, tmp_path: Path, make_user
) -> None:
    """A token a MAS administrator issued (`mas-cli manage issue-compatibility-token`)
    and the account's e-mail: no login at all, the token's device (whoami)."""
    name = unique("bluehats")
    bot_id = synapse.register(f"{name}-{DOMAIN}", PASSWORD)
    token = synapse.login(bot_id, PASSWORD)
    device = synapse.call("GET", "/_matrix/client/v3/account/whoami", token=token)["device_id"]
    alice = await make_user("alice")
    async with mas_and_directory(synapse) as (hs, identity_server):
        raw = email_config(f"{name}@{DOMAIN}", hs.url, identity_server, tmp_path / "bot")
        raw["matrix"]["access_token"] = token
        async with running(BotApp(configuration.from_dict(raw, env={}))) as app:
            assert app.chat is not None
            assert (app.chat.user_id, app.chat.device_id) == (bot_id, device)
            room = await alice.create_room(invite=[bot_id])
            await alice.wait_joined(room, bot_id)
            await alice.ask(room, "!aide", bot_id)
    assert hs.login_identifiers == []
