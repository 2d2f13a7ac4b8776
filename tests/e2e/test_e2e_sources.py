"""Bounded sources on a real Synapse, the bot as its own process, the calendar served
on loopback by the test: an endless series, then 60,000 events, then a parse that
hangs; answers and moderators' edits stay fast, memory stays bounded, each failure is
reported once; a SIGTERM during a 60,000-event refresh ends the bot promptly, cleanly."""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from bot.devserver import DevHomeserver
from tests.helpers import (
    BotProcess,
    User,
    bot_process,
    eventually,
    loopback_http,
    webinar_calendar,
)

pytestmark = [pytest.mark.e2e, pytest.mark.long(90)]

MIB = 1024 * 1024
MINUTE = timedelta(minutes=1)


def cafe(at: datetime) -> list[str]:
    """One session in every version of the calendar (the one a moderator edits)."""
    return [
        "BEGIN:VEVENT",
        "UID:cafe@bluehats",
        "DTSTAMP:20260101T000000Z",
        f"DTSTART:{at:%Y%m%dT%H%M%SZ}",
        "DURATION:PT1H",
        "SUMMARY:Café BlueHats",
        "END:VEVENT",
    ]


def calendar(n: int, start: datetime, step: timedelta, cafe_at: datetime, tag: str = "") -> bytes:
    """n webinars every `step` from `start`, and the café."""
    starts = ((i, start + i * step) for i in range(n))
    return webinar_calendar(starts, uid="big-{i}" + tag, extra=cafe(cafe_at)).encode()


def series(uid: str, start: str, rule: str, title: str, cafe_at: datetime) -> bytes:
    """One recurring series, and the café."""
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//FR\r\nBEGIN:VEVENT\r\n"
        f"UID:{uid}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:{start}\r\nDURATION:PT1M\r\n"
        f"RRULE:{rule}\r\nSUMMARY:{title}\r\nEND:VEVENT\r\n"
        + "\r\n".join(cafe(cafe_at))
        + "\r\nEND:VCALENDAR\r\n"
    ).encode()


class Calendar:
    def __init__(self) -> None:
        self.body = b""

    async def handle(self, request: web.Request) -> web.Response:
        return web.Response(body=self.body, content_type="text/calendar")


def status_kib(pid: int, field: str) -> int:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    return int(match.group(1)) if match else 0


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


async def parser_peak(pid: int, stop: asyncio.Event, peaks: dict[int, int]) -> None:
    """The peak resident memory of each child of the bot (its parser processes)."""
    while not stop.is_set():
        for child in children(pid):
            peaks[child] = max(peaks.get(child, 0), status_kib(child, "VmHWM"))
        await asyncio.sleep(0.2)


def logged(log: Path, since: int) -> str:
    return log.read_text()[since:]


async def timed_ask(user: User, room: str, text: str, bot_id: str) -> tuple[str, float]:
    t0 = time.monotonic()
    answer = await user.ask(room, text, bot_id)
    return str(answer.source["content"]["body"]), time.monotonic() - t0


def update_agenda(config: Path, **agenda: Any) -> None:
    raw = yaml.safe_load(config.read_text())
    raw["agenda"].update(agenda)
    config.write_text(yaml.safe_dump(raw))


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent's parent to reap it is not)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return re.search(r"^State:\s+Z", text, re.M) is None


async def restart(bot: BotProcess, config: Path, **agenda: Any) -> int:
    """Stopped, its configuration's `agenda` section updated, started; where its log goes on."""
    if bot.proc is not None and bot.proc.returncode is None:
        assert await bot.terminate() == 0
    update_agenda(config, **agenda)
    since = bot.log.stat().st_size if bot.log.exists() else 0
    await bot.start()
    return since


async def until_logged(
    bot: BotProcess, since: int, what: Callable[[str], bool], timeout: float
) -> str:
    async with asyncio.timeout(timeout):
        while not what(text := logged(bot.log, since)):
            assert bot.proc is not None and bot.proc.returncode is None, text
            await asyncio.sleep(0.2)
    return text


async def test_bounded_sources_fast_answers_bounded_memory_and_a_clean_stop(
    synapse: DevHomeserver, tmp_path: Path, make_user
) -> None:
    alice = await make_user("alice")
    feed = Calendar()
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start = now + timedelta(hours=1)
    cafe_at = start + 30 * MINUTE
    async with loopback_http({"/agenda.ics": feed.handle}) as base:
        bot, bot_id, _, _ = bot_process(
            synapse,
            tmp_path,
            bot={"moderators": [alice.user_id]},
        )
        update_agenda(bot.config, sources=[f"{base}/agenda.ics"])
        try:
            # 1. An endless series: its first 1,000 occurrences, one warning.
            feed.body = series(
                "every-minute@t", f"{start:%Y%m%dT%H%M%SZ}", "FREQ=MINUTELY", "Spam", cafe_at
            )
            since = await restart(bot, bot.config)
            text = await until_logged(bot, since, lambda t: "agenda: 1001 sessions" in t, 120)
            capped = [line for line in text.splitlines() if "over the limits" in line]
            assert len(capped) == 1 and "every-minute@t ('Spam')" in capped[0]
            room = await alice.create_room(invite=[bot_id])
            await alice.wait_joined(room, bot_id)
            answer, _ = await timed_ask(alice, room, "!agenda café", bot_id)
            found = re.search(r"\[([a-z2-7]{6})\]", answer)
            assert found and "Café BlueHats" in answer, answer
            sid = found.group(1)

            # 2. 60,000 events: the earliest 20,000 kept; meanwhile answers and an
            # edit within 2 s, from the last good copy.
            feed.body = calendar(60_000, start + MINUTE, 6 * MINUTE, cafe_at)
            since = await restart(bot, bot.config)
            assert bot.proc is not None
            stop, peaks = asyncio.Event(), {}
            sampler = asyncio.create_task(parser_peak(bot.proc.pid, stop, peaks))
            await eventually(lambda: bool(children(bot.proc.pid)), timeout=60)  # parsing
            refresh_t0 = time.monotonic()
            answer, took = await timed_ask(alice, room, "!agenda", bot_id)
            assert "Spam" in answer and took < 2, took
            edited, took = await timed_ask(
                alice, room, f"!session modifier {sid} salle=Salle-9", bot_id
            )
            assert "Séance modifiée" in edited and took < 2, (edited, took)
            assert "sources and 1 edit(s)" not in logged(bot.log, since)  # still refreshing
            text = await until_logged(bot, since, lambda t: "sources and 1 edit(s)" in t, 600)
            took = time.monotonic() - refresh_t0
            stop.set()
            await sampler
            capped = [line for line in text.splitlines() if "over the limits" in line]
            assert len(capped) == 1 and "60001 sessions in the window" in capped[0]
            bot_peak = status_kib(bot.proc.pid, "VmHWM") * 1024
            parser_max = max(peaks.values()) * 1024
            print(
                f"60,000 events refreshed in {took:.0f} s; peak RSS: bot "
                f"{bot_peak / MIB:.0f} MiB, parser {parser_max / MIB:.0f} MiB"
            )
            assert bot_peak < 250 * MIB and parser_max < 250 * MIB
            answer, took = await timed_ask(alice, room, "!agenda", bot_id)
            assert "Webinaire Superset n°0" in answer and took < 2, took
            shown, _ = await timed_ask(alice, room, f"!session {sid}", bot_id)
            assert "Salle-9" in shown  # the edit survived the refresh

            # 3. A parse that hangs: stopped at the timeout, one error, answers go on.
            # The shortest timeout allowed: the hanging parse burns a CPU until then.
            feed.body = series("forever@t", "19700101T000000Z", "FREQ=SECONDLY", "Forever", cafe_at)
            since = await restart(bot, bot.config, parse_timeout="5s")
            answer, took = await timed_ask(alice, room, "!agenda", bot_id)
            assert "Webinaire Superset n°0" in answer and took < 2, took
            text = await until_logged(bot, since, lambda t: "parse_timeout (5 s)" in t, 120)
            await asyncio.sleep(1)
            errors = [line for line in logged(bot.log, since).splitlines() if " ERROR " in line]
            assert len(errors) == 1 and "keeping its last good copy" in errors[0], errors
            answer, took = await timed_ask(alice, room, "!agenda", bot_id)
            assert "Webinaire Superset n°0" in answer and took < 2, took

            # 4. A SIGTERM during a 60,000-event refresh: the bot ends at once, cleanly.
            feed.body = calendar(60_000, start, 6 * MINUTE, cafe_at, tag="-v2")
            since = await restart(bot, bot.config, parse_timeout="120s")
            await eventually(lambda: bool(children(bot.proc.pid)), timeout=60)
            parsers = children(bot.proc.pid)
            await asyncio.sleep(2)  # well into the parse
            assert "60001 sessions" not in logged(bot.log, since)  # still parsing
            t0 = time.monotonic()
            bot.proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(30):
                code = await bot.proc.wait()
            print(f"stopped {time.monotonic() - t0:.1f} s after SIGTERM during a refresh")
            assert code == 0 and time.monotonic() - t0 < 10
            text = logged(bot.log, since)
            assert "Traceback" not in text and "CancelledError" not in text, text
            assert " ERROR " not in text, text
            # The parser was killed; multiprocessing's resource tracker ends on its own.
            await eventually(lambda: not any(alive(pid) for pid in parsers), timeout=5)
        finally:
            if bot.proc is not None and bot.proc.returncode is None:
                await bot.kill()
