"""An expired account and a revoked token on a real Synapse: named states, never a crash.

Synapse's own `account_validity` (what tchapgouv/synapse-email-account-validity
does on Tchap) and its admin API set the bot's expiry; the bot's device is
logged out with the client API, as a person or an administrator would.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from pydantic import SecretStr

from bot import config as configuration
from bot.app import BotApp
from bot.config import OpsConfig
from bot.devserver import DevHomeserver, free_port
from bot.matrix import recovery
from bot.matrix.session_state import State
from tests.e2e.test_e2e_identity import encrypted_room_with, readable_answer, signed_by_owner
from tests.helpers import (
    PASSWORD,
    User,
    bot_config,
    bot_devices,
    eventually,
    get,
    running,
    unique,
)

pytestmark = pytest.mark.e2e

YEAR_MS = 365 * 24 * 3600 * 1000


@pytest.fixture(scope="module")
def expiring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevHomeserver]:
    """A Synapse whose accounts expire (renewal by e-mail is off: no mail server here)."""
    with DevHomeserver(
        tmp_path_factory.mktemp("expiring"),
        limits={"account_validity": {"enabled": True, "period": "6w"}},
    ) as hs:
        yield hs


@pytest.fixture
async def user_on() -> AsyncIterator[list[User]]:
    """Users of the `expiring` server, closed after the test."""
    users: list[User] = []
    yield users
    for user in users:
        await user.close()


def with_ops(cfg: configuration.Config) -> tuple[configuration.Config, int]:
    port = free_port()
    ops = OpsConfig(http=f"127.0.0.1:{port}")
    return cfg.model_copy(update={"ops": ops}), port


async def health(port: int) -> tuple[int, str]:
    status, text = await get(port, "/healthz")
    return status, text.strip()


async def until_health(port: int, expected: str, timeout: float = 60.0) -> tuple[int, str]:
    """/healthz once its line starts with `expected` (polled: it is what a probe does)."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                status, text = await health(port)
            except aiohttp.ClientConnectionError:  # not listening yet
                status, text = 0, ""
            if text.startswith(expected):
                return status, text
            await asyncio.sleep(0.2)


async def metric_state(port: int) -> dict[str, float]:
    _, text = await get(port, "/metrics")
    found = {}
    for line in text.splitlines():
        if line.startswith("bluehats_session_state{"):
            label, value = line.split(" ")
            found[label.split('"')[1]] = float(value)
    return found


def errors(caplog: pytest.LogCaptureFixture, words: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR and words in r.getMessage()
    ]


def set_expiry(hs: DevHomeserver, admin: str, user_id: str, when_ms: int) -> None:
    hs.call(
        "POST",
        "/_synapse/admin/v1/account_validity/validity",
        {"user_id": user_id, "expiration_ts": when_ms, "enable_renewal_emails": False},
        token=admin,
    )


async def test_expired_account_is_a_state_the_bot_leaves_once_renewed(
    expiring: DevHomeserver,
    tmp_path: Path,
    user_on: list[User],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="bot.matrix.recovery")
    monkeypatch.setattr(recovery, "EXPIRED_CHECK_S", 0.3)
    admin = expiring.login(expiring.register(unique("admin"), PASSWORD, admin=True), PASSWORD)
    alice = await User(expiring, unique("alice")).login()
    user_on.append(alice)
    cfg, bot_id = bot_config(expiring, tmp_path / "bot")
    cfg, port = with_ops(cfg)
    app = BotApp(cfg)
    async with running(app):
        room = await alice.create_room(invite=[bot_id])
        await alice.wait_joined(room, bot_id)
        await alice.ask(room, "!aide", bot_id)
        assert (await health(port))[0] == 200

        set_expiry(expiring, admin, bot_id, int(time.time() * 1000) - 60_000)
        await alice.send(room, "bonjour")  # ends the bot's long-poll: its next sync is refused
        status, line = await until_health(port, "expired:")
        assert status == 503
        assert f"the homeserver says the account {bot_id} has expired" in line
        states = await metric_state(port)
        assert states["expired"] == 1.0 and states["ok"] == 0.0

        # Several checks later: still up, still one ERROR line (no crash loop, no flood).
        await eventually(lambda: caplog.text.count("account still expired") >= 3)
        assert len(errors(caplog, "session expired")) == 1
        assert "renewal e-mail" in errors(caplog, "session expired")[0]

        set_expiry(expiring, admin, bot_id, int(time.time() * 1000) + YEAR_MS)
        answer = await alice.ask(room, "!aide", bot_id)
        assert "!agenda" in answer.source["content"]["body"]
        assert (await health(port))[0] == 200
        assert (await metric_state(port))["ok"] == 1.0
        assert "session usable again" in caplog.text


async def test_revoked_token_with_a_password_logs_in_again_on_the_same_signed_device(
    synapse: DevHomeserver, tmp_path: Path, js_user, make_user, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    cfg, bot_id = bot_config(synapse, tmp_path / "bot")
    cfg, port = with_ops(cfg)
    js = await js_user("element")
    alice = await make_user("alice")
    session_file = tmp_path / "bot" / "session.json"
    async with running(BotApp(cfg)) as app:
        assert app.chat is not None
        device = app.chat.device_id
        room = await encrypted_room_with(js, bot_id)
        await readable_answer(js, room, "!aide", bot_id)
        plain = await alice.create_room(invite=[bot_id])
        await alice.wait_joined(plain, bot_id)

        # The bot's device logged out (its token revoked, the device and its keys deleted).
        token = json.loads(session_file.read_text())["access_token"]
        devices = bot_devices(synapse, session_file)
        synapse.call("POST", "/_matrix/client/v3/logout", {}, token=token)
        await alice.send(plain, "bonjour")  # ends the bot's long-poll

        await eventually(lambda: "logged in again as" in caplog.text, timeout=60)
        saved = json.loads(session_file.read_text())
        assert saved["device_id"] == device and saved["access_token"] != token
        # The same device again, no new one (members see no new device of the bot).
        assert device in devices and bot_devices(synapse, session_file) == devices
        assert len(errors(caplog, "session revoked")) == 1
        # Signed again, and read by the client that excludes unsigned devices.
        assert await signed_by_owner(js, bot_id, device)
        answer = await readable_answer(js, room, "!agenda", bot_id)
        assert answer["content"]["body"].startswith("📅 Prochaines séances BlueHats")
        await until_health(port, "ok")


async def test_revoked_token_without_a_password_stays_up_in_the_revoked_state(
    synapse: DevHomeserver, tmp_path: Path, make_user, caplog: pytest.LogCaptureFixture
) -> None:
    cfg, bot_id = bot_config(synapse, tmp_path / "bot")
    assert cfg.matrix.password is not None
    token = synapse.login(bot_id, cfg.matrix.password.get_secret_value())
    matrix = cfg.matrix.model_copy(update={"password": None, "access_token": SecretStr(token)})
    cfg, port = with_ops(cfg.model_copy(update={"matrix": matrix}))
    alice = await make_user("alice")
    app = BotApp(cfg)
    async with running(app):
        room = await alice.create_room(invite=[bot_id])
        await alice.wait_joined(room, bot_id)
        await alice.ask(room, "!aide", bot_id)

        synapse.call("POST", "/_matrix/client/v3/logout", {}, token=token)
        await alice.send(room, "bonjour")
        status, line = await until_health(port, "revoked:")
        assert status == 503 and "was revoked" in line
        assert (await metric_state(port))["revoked"] == 1.0
        (error,) = errors(caplog, "session revoked")
        assert "matrix.access_token" in error and token not in caplog.text
        assert app.chat is not None and app.chat.states.state is State.REVOKED

    # Started again with the same revoked token: up (health, metric), not a crash loop.
    caplog.clear()
    again = BotApp(cfg)
    task = asyncio.create_task(again.run(handle_signals=False))
    status, line = await until_health(port, "revoked:")
    assert status == 503 and not task.done()
    assert (await metric_state(port))["revoked"] == 1.0
    assert len(errors(caplog, "session revoked")) == 1
    again.stop()
    await asyncio.wait_for(task, 30)  # a clean stop, no exception
