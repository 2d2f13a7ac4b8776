"""`bluehats-bot demo`: what a newcomer runs first, through the installed entry point;
and where its log goes."""

from __future__ import annotations

import getpass
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bot.__main__ import demo_log_file


@pytest.mark.e2e
def test_demo_answers_agenda_then_stops_everything_on_ctrl_c() -> None:
    # The console script installed beside this interpreter (the venv's bin/).
    beside = Path(sys.executable).parent / "bluehats-bot"
    exe = str(beside) if beside.exists() else shutil.which("bluehats-bot")
    assert exe, "the console script must be installed"
    proc = subprocess.Popen(
        [exe, "demo"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    out = []
    deadline = time.monotonic() + 120
    assert proc.stdout is not None
    for line in proc.stdout:
        out.append(line)
        if "Ctrl-C" in line or time.monotonic() > deadline:
            break
    text = "".join(out)
    assert "📅 Prochaines séances BlueHats" in text, text
    assert "Café BlueHats" in text and "Permanence annulée" not in text
    url = re.search(r"serveur : (http://127\.0\.0\.1:\d+)", text)
    assert url, text
    urllib.request.urlopen(f"{url[1]}/_matrix/client/versions", timeout=5).close()

    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, rest
    assert "Traceback" not in text + rest
    # The newcomer reads the demo's words, not the bot's log lines: those are in a file.
    log_line = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (DEBUG|INFO|WARNING) ")
    assert not log_line.search(text + rest), text + rest
    log_file = re.search(r"journal du bot : (\S+) ;", text)
    assert log_file, text
    assert "ready: @bluehats:" in Path(log_file[1]).read_text()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{url[1]}/_matrix/client/versions", timeout=5)


def test_the_demo_log_follows_no_symlink_planted_in_the_temp_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another user of the machine plants a symlink at the name the demo's log had
    (`bluehats-demo-<user>.log`): the demo writes a new file of its own, 0600."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the shared temp directory
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    planted = tmp_path / f"bluehats-demo-{getpass.getuser()}.log"
    planted.symlink_to(victim)

    path, stream = demo_log_file()
    with stream:
        stream.write("ready: @bluehats:localhost\n")
    assert victim.read_text() == "precious\n"
    assert path.parent == tmp_path and path != planted and not path.is_symlink()
    assert path.read_text() == "ready: @bluehats:localhost\n"
    mode = path.lstat()
    assert stat.S_ISREG(mode.st_mode) and stat.S_IMODE(mode.st_mode) == 0o600
    assert mode.st_uid == os.getuid()
    # A second demo gets a file of its own.
    again, stream = demo_log_file()
    stream.close()
    assert again != path
