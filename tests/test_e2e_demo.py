"""`bluehats-bot demo`: what a newcomer runs first, through the installed entry point."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


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
