"""`bluehats-bot identity --reset` on a homeserver whose logins MAS handles.

Under MAS the homeserver asks no password to replace cross-signing keys: it
answers the `m.oauth` stage (spec v1.17, MSC4312) with a URL where a person,
logged in as the bot, approves the reset. The bot runs on the test's Synapse
behind a stand-in for what MAS changes (tests/mas_reset.py); the command runs
as its own process, as an operator runs it, with the token of a MAS session
and no password in its configuration.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from bot.app import BotApp, StartupError
from bot.config import Config
from bot.devserver import DevHomeserver
from bot.matrix import cross_signing as xs
from tests.e2e.test_e2e_identity import encrypted_room_with, readable_answer, signed_by_owner
from tests.helpers import PASSWORD, bot_config, running, unique
from tests.mas_reset import MasResetStandIn

pytestmark = [pytest.mark.e2e, pytest.mark.long(30)]


@dataclass
class MasBot:
    cfg: Config  # the bot's, behind the stand-in
    bot_id: str
    storage: Path
    config: Path
    master: str  # the identity created at the bot's first start
    device: str
    mas: MasResetStandIn


@asynccontextmanager
async def bot_behind_mas(synapse: DevHomeserver, tmp_path: Path) -> AsyncIterator[MasBot]:
    """A bot that started once behind the stand-in (its identity created, no approval
    needed for a first upload), and the configuration the operator's command uses."""
    cfg, bot_id = bot_config(synapse, tmp_path / "bot")
    assert cfg.matrix.password is not None
    async with MasResetStandIn(synapse, bot_id, cfg.matrix.password.get_secret_value()) as mas:
        cfg = cfg.model_copy(
            update={"matrix": cfg.matrix.model_copy(update={"homeserver": mas.url})}
        )
        async with running(BotApp(cfg)) as app:
            assert app.identity is not None and app.identity.action == "created"
            assert app.identity.master_key is not None
            master, device = app.identity.master_key, app.identity.device_id
        assert mas.challenges == 0
        token = json.loads((cfg.storage.path / "session.json").read_text())["access_token"]
        config = tmp_path / "config.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "matrix": {"homeserver": mas.url, "user_id": bot_id, "access_token": token},
                    "storage": {"path": str(cfg.storage.path)},
                    "agenda": {"sources": [s.url for s in cfg.agenda.sources]},
                }
            )
        )
        yield MasBot(cfg, bot_id, cfg.storage.path, config, master, device, mas)


class Cli:
    """`bluehats-bot identity --reset` as its own process; stdout read as it comes."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.stdout: list[str] = []

    @classmethod
    async def start(cls, config: Path, *args: str) -> Cli:
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "bot", "identity", "--config", str(config), *args),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def approval_url(self) -> str:
        """The URL, once printed (the command waits for the approval then)."""
        assert self.proc.stdout is not None
        async with asyncio.timeout(60):
            while line := (await self.proc.stdout.readline()).decode():
                self.stdout.append(line)
                if line.startswith("    http"):
                    return line.strip()
        raise AssertionError(f"no URL printed: {''.join(self.stdout)}")

    async def end(self, timeout: float = 60) -> tuple[int, str, str]:
        out, err = await asyncio.wait_for(self.proc.communicate(), timeout)
        assert self.proc.returncode is not None
        return self.proc.returncode, "".join(self.stdout) + out.decode(), err.decode()


async def published(synapse: DevHomeserver, user_id: str, device_id: str) -> dict[str, Any]:
    """`keys/query` on Synapse itself, as another account of the server sees it."""
    viewer = synapse.register(unique("viewer"), PASSWORD)
    token = synapse.login(viewer, PASSWORD)
    body = {"device_keys": {user_id: [device_id]}}
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{synapse.url}/_matrix/client/v3/keys/query",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
        ) as resp,
    ):
        assert resp.status == 200
        return dict(await resp.json())


def master_of(answer: dict[str, Any], user_id: str) -> str | None:
    return xs.key_public(answer.get("master_keys", {}).get(user_id))


def device_signed_by_master(answer: dict[str, Any], user_id: str, device_id: str) -> bool:
    """The device signed by the self-signing key, itself signed by the master key."""
    master = master_of(answer, user_id)
    ssk_object = answer.get("self_signing_keys", {}).get(user_id)
    ssk = xs.key_public(ssk_object)
    device = answer["device_keys"][user_id][device_id]
    return bool(
        master
        and ssk
        and xs.verify_json(ssk_object, user_id, master, master)
        and xs.verify_json(device, user_id, ssk, ssk)
    )


def printed_master(stdout: str) -> str:
    line = next(x for x in stdout.splitlines() if x.startswith("master key:"))
    return line.split(":", 1)[1].replace(" ", "")


async def test_reset_waits_for_the_approval_then_publishes_a_new_identity(
    synapse: DevHomeserver, tmp_path: Path, js_user
) -> None:
    async with bot_behind_mas(synapse, tmp_path) as bot:
        cli = await Cli.start(bot.config, "--reset")
        url = await cli.approval_url()
        assert url == bot.mas.approval_url
        assert "approve" in "".join(cli.stdout)

        # While it waits, the store is its own: the bot cannot start beside it.
        with pytest.raises(StartupError, match="in use by another bluehats-bot process"):
            await BotApp(bot.cfg).run(handle_signals=False)
        # Retried, still not approved: the old identity stays.
        async with asyncio.timeout(30):
            while bot.mas.challenges < 2:  # noqa: ASYNC110 - the command's retries
                await asyncio.sleep(0.1)
        assert master_of(await published(synapse, bot.bot_id, bot.device), bot.bot_id) == (
            bot.master
        )

        # The person opens the URL, logged in as the bot, and approves.
        async with aiohttp.ClientSession() as http, http.get(url) as page:
            assert page.status == 200
        code, stdout, stderr = await cli.end()
        assert code == 0, stderr

        assert "device signed:      yes" in stdout
        recovery_key = stdout.strip().splitlines()[-1].strip()
        assert len(recovery_key.split(" ")) == 12
        assert recovery_key not in stderr
        assert stdout.count(url) == 1  # told once, however many retries

        new_master = printed_master(stdout)
        assert new_master != bot.master
        answer = await published(synapse, bot.bot_id, bot.device)
        assert master_of(answer, bot.bot_id) == new_master
        assert device_signed_by_master(answer, bot.bot_id, bot.device)

        # The bot again: Element's stack, excluding insecure devices, reads its answers.
        js = await js_user("element")
        async with running(BotApp(bot.cfg)) as app:
            assert app.identity is not None and app.identity.trusted
            assert app.identity.action == "checked"
            room = await encrypted_room_with(js, bot.bot_id)
            await readable_answer(js, room, "!aide", bot.bot_id)
        assert await js.cross_signing_key(bot.bot_id) == new_master
        assert await signed_by_owner(js, bot.bot_id, bot.device)


async def test_reset_never_approved_gives_up_when_the_wait_is_over(
    synapse: DevHomeserver, tmp_path: Path
) -> None:
    async with bot_behind_mas(synapse, tmp_path) as bot:
        cli = await Cli.start(bot.config, "--reset", "--wait", "3s")
        await cli.approval_url()
        code, stdout, stderr = await cli.end()
        assert code == 1
        assert "nobody approved the reset at" in stderr and "within 3 s" in stderr
        assert "run `identity --reset` again" in stderr
        assert "Traceback" not in stderr
        assert "New identity" not in stdout

        answer = await published(synapse, bot.bot_id, bot.device)
        assert master_of(answer, bot.bot_id) == bot.master
        assert device_signed_by_master(answer, bot.bot_id, bot.device)
        # The bot still holds the keys of its identity: nothing lost.
        shown = await Cli.start(bot.config)
        code, stdout, stderr = await shown.end()
        assert code == 0, stderr
        assert "signing key here:   yes" in stdout
        assert printed_master(stdout) == bot.master


async def test_interrupted_reset_ends_cleanly(synapse: DevHomeserver, tmp_path: Path) -> None:
    async with bot_behind_mas(synapse, tmp_path) as bot:
        cli = await Cli.start(bot.config, "--reset", "--wait", "5m")
        await cli.approval_url()
        cli.proc.send_signal(signal.SIGTERM)  # as `docker stop` does; Ctrl-C does the same
        code, _, stderr = await cli.end()
        assert code == 1
        assert "interrupted" in stderr and "Traceback" not in stderr
        answer = await published(synapse, bot.bot_id, bot.device)
        assert master_of(answer, bot.bot_id) == bot.master
