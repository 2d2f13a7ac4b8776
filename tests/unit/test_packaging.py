"""A plain (non-editable) install carries the templates, their catalogs and the sample agenda."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def test_wheel_ships_templates_and_sample_agenda_and_renders_from_them(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheel = next(tmp_path.glob("bluehats_bot-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("agenda.txt.j2", "agenda.html.j2", "help.txt.j2", "_macros.j2"):
        assert f"bot/templates/{name}" in names
    for lang in ("fr", "en"):
        assert f"bot/templates/locale/{lang}/LC_MESSAGES/messages.po" in names
    assert "bot/data/sample-agenda.ics" in names

    # Installed alone (dependencies from this environment), away from the checkout.
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    probe = (
        "from zoneinfo import ZoneInfo; import bot.render as r; from bot.demo import sample_agenda;"
        "print(r.packaged_templates()); print(sample_agenda().is_file());"
        "print(r.Renderer('fr', ZoneInfo('Europe/Paris')).render('unknown', prefix='!',"
        " command='x').body)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        timeout=60,
    ).stdout.splitlines()
    assert out[0] == str(target / "bot" / "templates")
    assert out[1] == "True"
    assert out[2].startswith("Je ne connais pas la commande « !x »")


def dockerfile() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    return [i.strip() for i in "\n".join(lines).replace("\\\n", " ").splitlines() if i.strip()]


def test_dockerfile_runs_the_tested_entry_point_as_non_root_with_a_volume() -> None:
    instructions = dockerfile()
    assert sum(i.startswith("FROM ") for i in instructions) == 3  # DSFR files, wheels, run
    final = instructions[max(i for i, x in enumerate(instructions) if x.startswith("FROM ")) :]
    assert "USER bluehats" in final and "VOLUME /data" in final
    assert 'ENTRYPOINT ["bluehats-bot"]' in final
    assert 'CMD ["run", "--config", "/data/config.yaml"]' in final
    # The health check asks the endpoint that the image's environment turns on.
    env = next(i for i in final if i.startswith("ENV "))
    port = re.search(r"BLUEHATS_OPS_HTTP=127\.0\.0\.1:(\d+)", env)
    check = next(i for i in final if i.startswith("HEALTHCHECK "))
    assert port and f"http://127.0.0.1:{port.group(1)}/healthz" in check


async def test_docker_health_check_command_follows_healthz() -> None:
    from bot.devserver import free_port
    from bot.ops import Metrics, OpsServer

    check = next(i for i in dockerfile() if i.startswith("HEALTHCHECK "))
    argv = json.loads(check[check.index("CMD ") + 4 :])
    assert argv[0] == "python"
    port = free_port()
    argv = [sys.executable, *argv[1:-1], argv[-1].replace(":9108/", f":{port}/")]
    state = {"ok": True}

    async def nothing() -> None:
        return None

    server = OpsServer(Metrics(), healthy=lambda: (state["ok"], "state"), refresh=nothing)
    await server.start("127.0.0.1", port)
    try:
        healthy = await asyncio.create_subprocess_exec(*argv, stderr=asyncio.subprocess.DEVNULL)
        assert await healthy.wait() == 0
        state["ok"] = False  # the sync loop is stuck: 503
        stuck = await asyncio.create_subprocess_exec(*argv, stderr=asyncio.subprocess.DEVNULL)
        assert await stuck.wait() != 0
    finally:
        await server.close()


def test_environment_turns_the_ops_endpoint_on() -> None:
    from bot import config as configuration

    raw = {"matrix": {"homeserver": "http://127.0.0.1:1", "user_id": "@b:x.org", "password": "p"}}
    cfg = configuration.from_dict(raw, env={"BLUEHATS_OPS_HTTP": "127.0.0.1:9108"})
    assert cfg.ops.http_host_port == ("127.0.0.1", 9108)
    assert configuration.from_dict(raw, env={}).ops.http is None  # off by default
