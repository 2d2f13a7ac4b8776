"""A plain (non-editable) install carries the templates and the sample agenda."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_ships_templates_and_sample_agenda_and_renders_from_them(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
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
    for lang in ("fr", "en"):
        for name in ("agenda.txt.j2", "agenda.html.j2", "help.txt.j2", "_macros.j2"):
            assert f"bot/templates/{lang}/{name}" in names
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
