"""The store as an operator handles it (the real entry point, a real Synapse): one process
per storage.path, and `bluehats-bot backup` while the bot answers, restored on a new volume."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.config import ENV_RECOVERY_KEY
from bot.devserver import DevHomeserver
from tests.helpers import BotProcess, bot_process

pytestmark = pytest.mark.e2e


async def cli(config: Path, *args: str, env: dict[str, str]) -> tuple[int, str, str]:
    """`bluehats-bot <args> --config config` to its end: (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "bot", args[0], "--config", str(config), *args[1:]),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def body(event: Any) -> str:
    return str(event.source["content"]["body"])


def rows(db: Path, table: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()  # noqa: S608


async def test_one_process_per_store_and_a_backup_that_restores(
    synapse: DevHomeserver, tmp_path: Path, make_user
) -> None:
    alice, mentor = await make_user("alice"), await make_user("mentor")
    bot, bot_id, storage, _ = bot_process(synapse, tmp_path, bot={"moderators": [alice.user_id]})
    room = await alice.create_room(invite=[bot_id])
    await bot.start()
    assert bot.proc is not None
    await alice.wait_joined(room, bot_id)
    lock = storage / "bluehats.lock"
    assert lock.read_text().strip() == str(bot.proc.pid)
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600

    # A second `run` on the same storage.path: stops at once, one clear line, nothing opened.
    busy = f"the storage directory {storage} is in use by another bluehats-bot process " + (
        f"(PID {bot.proc.pid})"
    )
    code, _, stderr = await cli(bot.config, "run", env=bot.env)
    assert code == 1
    errors = [line for line in stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and busy in errors[0], stderr
    assert "Traceback" not in stderr
    # `identity` too: it would be a second Olm machine on the bot's device.
    code, stdout, stderr = await cli(bot.config, "identity", env=bot.env)
    assert code == 1 and busy in stderr and "Traceback" not in stderr
    assert "device:" not in stdout
    # The first keeps answering.
    assert "!agenda" in body(await alice.ask(room, "!aide", bot_id))

    # What the backup must carry: a subscription and a mentor.
    assert body(await alice.ask(room, "!abonner rappels", bot_id)).startswith("✅")
    added = await alice.ask(room, f"!mentor ajouter {mentor.user_id} Grist, Matomo", bot_id)
    assert body(added).startswith("✅")
    subscriptions = body(await alice.ask(room, "!abonnements", bot_id))
    mentors = body(await alice.ask(room, "!mentors grist", bot_id))
    assert subscriptions.startswith("Ce salon reçoit : les rappels")
    assert f"({mentor.user_id})" in mentors

    # The backup while commands are in flight (the bot writes its inbox meanwhile).
    in_flight = [await alice.send(room, command) for command in ("!aide", "!agenda", "!mentors")]
    copy = tmp_path / "backups" / "bluehats-backup.db"
    copy.parent.mkdir()
    code, stdout, stderr = await cli(bot.config, "backup", str(copy), env=bot.env)
    assert code == 0, stderr
    assert stdout.startswith(f"backup: OK {copy} (")
    assert re.search(r"^  subscriptions: +1$", stdout, re.MULTILINE), stdout
    assert re.search(r"^  mentors: +1$", stdout, re.MULTILINE), stdout
    for event_id in in_flight:
        await alice.reply_to(room, event_id, bot_id)
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert sorted(p.name for p in copy.parent.iterdir()) == [copy.name]  # one file, no -wal
    live = storage / "bluehats.db"
    for table in ("subscriptions", "mentors", "mentor_topics", "subscription_audit"):
        assert rows(copy, table) == rows(live, table), table
    # An existing file is kept unless --force.
    code, _, stderr = await cli(bot.config, "backup", str(copy), env=bot.env)
    assert code == 1 and "exists" in stderr and "--force" in stderr

    assert await bot.terminate() == 0
    recovery_key = (storage / "recovery-key.txt").read_text().strip()

    # A lost volume: a new storage.path holding only the copy, a fresh crypto store,
    # the recovery key given by the environment.
    restored = tmp_path / "restored"
    restored.mkdir()
    copy.rename(restored / "bluehats.db")
    config = yaml.safe_load(bot.config.read_text())
    config["storage"]["path"] = str(restored)
    restored_config = tmp_path / "restored.yaml"
    restored_config.write_text(yaml.safe_dump(config))
    env = {**bot.env, ENV_RECOVERY_KEY: recovery_key}
    again = BotProcess(restored_config, env, tmp_path / "restored.log")
    await again.start()
    try:
        assert "opened with the recovery key" in again.log.read_text()  # a new, signed device
        assert body(await alice.ask(room, "!abonnements", bot_id)) == subscriptions
        assert body(await alice.ask(room, "!mentors grist", bot_id)) == mentors
    finally:
        assert await again.terminate() == 0
