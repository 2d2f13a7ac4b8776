"""The public web agenda (10,000 sessions) against aiohttp serving the same bytes as files.

    .venv/bin/python bench/web.py [--sessions 10000] [--runs 5] [--duration 5]
        [--connections 16] [--client auto|wrk|aiohttp] [--pin] [--code DIR]

`--code DIR` serves the bot's code found in DIR (e.g. another commit's tree:
`git archive <commit> | tar -x -C DIR`), to compare before and after a change
with the same load and floor.

Needs `wrk` (`apt-get install -y wrk`) for the figures of the issue; without it
(or with `--client aiohttp`) an aiohttp client in its own process drives the
load, but a Python client saturates before aiohttp's server does, so its
ratios come out closer to 1 than the truth.

Set-up, three processes on loopback (this machine has 2 CPUs: one server
process and one load generator at a time):

- the bot's web server (`bot.web.server.WebServer`, theme simple) around an
  `Agenda` of N generated sessions (titles, ~200-character descriptions,
  locations, speakers, spread over the next 12 months) and a `Storage` in a
  temporary directory, the published ledger synced before serving, as
  `bot.app` does; started afresh at every run;
- the floor: a bare aiohttp app serving with `add_static` (`web.FileResponse`)
  files holding exactly the bytes the bot answered for `/`, `/agenda.ics` and
  the filtered feed, no middleware, the same access-log setting;
- the load generator: `wrk -t1 -c<connections>` (keep-alive), or the aiohttp
  client fallback with as many connections.

Each run: the first (cold) answer of each path is timed on its own (the feed's
first build serialises every event; later ones are cache hits); then every
path gets a warm-up and a measure, bot and floor alternating (their order
flips at each run so that noise from other work on the machine falls on
both). Printed: medians over the runs of requests/s and p50 latency, the
ratio floor/bot of requests/s (goal: <= 2 for the feed, <= 1.2 for the 304,
where each server answers its own ETag), and the body size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import Message
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PARIS = ZoneInfo("Europe/Paris")
HOST = "127.0.0.1"
# A word in 1 session of 20 (and in nothing else a search reads): the filtered feed's q.
RARE = "Nextcloud"
RARE_EVERY = 20
TOPICS = [
    "Superset",
    "Grist",
    "Matomo",
    "Peertube",
    "OpenFisca",
    "Metabase",
    "Decidim",
    "LibreOffice",
    "Moodle",
    "GLPI",
    "Mattermost",
    "Keycloak",
]
KINDS = [
    "Webinaire",
    "Atelier",
    "Café BlueHats",
    "Présentation",
    "Table ronde",
    "Retour d'expérience",
]
SUBJECTS = [
    "prise en main",
    "déploiement en administration",
    "bonnes pratiques de sécurité",
    "contribuer au code",
    "migration depuis un outil propriétaire",
    "tableaux de bord pour les agents",
    "accessibilité et conformité RGAA",
    "hébergement souverain",
]
SENTENCES = [
    "Une présentation de l'outil suivie d'un temps de questions avec l'équipe.",
    "Les agents partagent leur retour d'expérience après un an d'utilisation.",
    "Nous verrons comment l'installer sur une infrastructure de l'État.",
    "Inscription conseillée, le lien de connexion est envoyé la veille.",
    "Ouvert à toutes et à tous, sans prérequis technique particulier.",
    "La session est enregistrée et la vidéo sera publiée sur la plateforme.",
    "Apportez vos questions : une démonstration en direct est prévue.",
]
LOCATIONS = [
    "En ligne",
    "https://webinaire.numerique.gouv.fr/meeting/bluehats",
    "DINUM, 20 avenue de Ségur, 75007 Paris",
    "Ministère de l'Intérieur, salle Marianne, Paris",
    "Hôtel de Région, Lyon",
]
SPEAKERS = ["Ana Lopez", "Jean Martin", "Awa Diallo", "Louis Bernard", "Chloé Petit"]


def make_sessions(n: int, now: datetime, seed: int = 14) -> list[object]:
    """N sessions over the next 12 months, 1 in RARE_EVERY about RARE."""
    from bot.agenda.model import Session

    rng = random.Random(seed)
    out: list[object] = []
    minutes = 365 * 24 * 60
    for i in range(n):
        offset = 30 + rng.randrange(minutes // 15) * 15
        start = now.replace(second=0, microsecond=0) + timedelta(minutes=offset)
        topic = RARE if i % RARE_EVERY == 0 else rng.choice(TOPICS)
        sentences = rng.sample(SENTENCES, 3)
        description = f"{topic} : {rng.choice(SUBJECTS)}. " + " ".join(sentences)
        out.append(
            Session(
                title=f"{rng.choice(KINDS)} {topic} : {rng.choice(SUBJECTS)}",
                start=start,
                end=start + timedelta(minutes=rng.choice((30, 60, 90, 120, 180))),
                description=description[:210],
                location=rng.choice(LOCATIONS),
                url=f"https://code.gouv.fr/evenements/{i}",
                speakers=tuple(rng.sample(SPEAKERS, rng.choice((1, 2)))),
                categories=(topic,),
                event="BlueHats" if i % 7 == 0 else "",
            )
        )
    return out


# -- the servers (each its own process) ------------------------------------------------


async def _until_terminated() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()


async def serve_bot(n: int, work: Path) -> None:
    import gc

    from bot.agenda.model import Agenda, Session
    from bot.agenda.published import PublishedLedger
    from bot.config import WebConfig
    from bot.db.storage import Storage
    from bot.render import Renderer
    from bot.web.server import WebServer
    from bot.web.site import Site

    def now() -> datetime:
        return datetime.now(UTC)

    sessions = [s for s in make_sessions(n, now()) if isinstance(s, Session)]
    agenda = Agenda(sessions)
    storage = await Storage.open(work / "db.sqlite")
    config = WebConfig(theme="simple")
    ledger = PublishedLedger(storage, kept=config.cancelled_kept, now=now)
    t0 = time.perf_counter()
    await ledger.sync(agenda)  # before serving, as bot.app does
    sync = time.perf_counter() - t0
    site = Site(
        agenda=lambda: agenda,
        ledger=ledger,
        personal=storage.personal,
        renderer=Renderer("fr", PARIS),
        config=config,
        now=now,
    )
    server = WebServer(site)
    await server.start(HOST, 0)
    gc.freeze()  # as bot.app does once started
    import bot

    code = str(Path(bot.__file__).parent.parent)
    ready = {"port": server.port, "sync": sync, "sessions": len(agenda), "code": code}
    print(json.dumps(ready), flush=True)
    await _until_terminated()
    await server.stop()
    await storage.close()


async def serve_floor(directory: Path, bodies: dict[str, bytes]) -> None:
    """`/f/<name>`: the files by `FileResponse` (the floor); `/m/<name>`: the same bytes
    from memory by a bare handler with its own ETag (aiohttp's cost alone, for scale)."""
    import hashlib

    from aiohttp import web

    etags = {
        name: f'"{hashlib.blake2b(body, digest_size=12).hexdigest()}"'
        for name, body in bodies.items()
    }
    kinds = {".ics": "text/calendar", ".html": "text/html"}

    async def bare(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        headers = {"ETag": etags[name]}
        if request.headers.get("If-None-Match") == etags[name]:
            return web.Response(status=304, headers=headers)
        kind = kinds[Path(name).suffix]
        return web.Response(body=bodies[name], content_type=kind, charset="utf-8", headers=headers)

    app = web.Application()
    app.router.add_static("/f/", directory)
    app.router.add_get("/m/{name}", bare)
    runner = web.AppRunner(app, access_log=None)  # as WebServer
    await runner.setup()
    await web.TCPSite(runner, HOST, 0).start()
    print(json.dumps({"port": int(runner.addresses[0][1])}), flush=True)
    await _until_terminated()
    await runner.cleanup()


class Server:
    """A server process of this script; `info` is the JSON line it printed once ready."""

    def __init__(self, args: list[str], cpu: int | None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, *args],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        if cpu is not None:
            os.sched_setaffinity(self.proc.pid, {cpu})
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"server {args[:2]} died before it was ready")
        self.info = json.loads(line)
        self.base = f"http://{HOST}:{self.info['port']}"

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- load generators -------------------------------------------------------------------


@dataclass
class Load:
    rps: float
    p50_ms: float
    errors: str = ""


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def run_wrk(url: str, headers: dict[str, str], connections: int, duration: int) -> Load:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency"]
    for name, value in headers.items():
        cmd += ["-H", f"{name}: {value}"]
    done = subprocess.run([*cmd, url], capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr}")
    out = done.stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
    if rps is None or p50 is None:
        raise SystemExit(f"unexpected wrk output:\n{out}")
    errors = " ".join(
        line.strip() for line in out.splitlines() if "errors" in line or "Non-2xx" in line
    )
    return Load(float(rps[1]), float(p50[1]) * _UNITS[p50[2]], errors)


async def _aiohttp_load(
    url: str, headers: dict[str, str], connections: int, duration: float
) -> dict[str, float]:
    import aiohttp

    latencies: list[float] = []
    failures = 0
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as http:
        deadline = time.perf_counter() + duration

        async def worker() -> None:
            nonlocal failures
            while (start := time.perf_counter()) < deadline:
                async with http.get(url, headers=headers) as response:
                    await response.read()
                    if response.status not in (200, 304):
                        failures += 1
                latencies.append(time.perf_counter() - start)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        took = time.perf_counter() - t0
    return {
        "rps": len(latencies) / took,
        "p50_ms": statistics.median(latencies) * 1000 if latencies else float("nan"),
        "failures": failures,
    }


def run_aiohttp(url: str, headers: dict[str, str], connections: int, duration: int) -> Load:
    """The fallback generator, in its own process like wrk."""
    args = ["--load", url, "--connections", str(connections), "--duration", str(duration)]
    for name, value in headers.items():
        args += ["--header", f"{name}: {value}"]
    out = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=True
    ).stdout
    data = json.loads(out)
    errors = f"{data['failures']} answers not 200/304" if data["failures"] else ""
    return Load(data["rps"], data["p50_ms"], errors)


# -- the benchmark ---------------------------------------------------------------------


WHO = ("bot", "floor", "bare")  # the bot; FileResponse; the same bytes from memory


@dataclass
class Case:
    label: str
    path: str  # on the bot
    file: str  # the name of its bytes on the floor (/f/<file>) and the bare handler (/m/<file>)
    conditional: bool = False  # sent with If-None-Match: each server's own ETag
    goal: float | None = None  # floor/bot requests/s at most
    size: int = 0
    loads: dict[str, list[Load]] = field(default_factory=lambda: {w: [] for w in WHO})

    def url(self, who: str, base: str) -> str:
        return base + {"bot": self.path, "floor": f"/f/{self.file}", "bare": f"/m/{self.file}"}[who]

    def rps(self, who: str) -> float:
        return median([x.rps for x in self.loads[who]])

    def p50(self, who: str) -> float:
        return median([x.p50_ms for x in self.loads[who]])


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, Message, bytes]:
    import urllib.request

    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:  # 304 comes as an "error"
        return exc.code, exc.headers, exc.read()


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def one_run(
    args: argparse.Namespace,
    cases: list[Case],
    load: Callable[[str, dict[str, str], int, int], Load],
    run: int,
    work: Path,
) -> tuple[dict[str, float], dict[str, float | int | str]]:
    """Fresh servers; the cold answers; then each case under load. The cold times back."""
    cpu = 0 if args.pin else None
    code = ["--code", str(args.code)] if args.code else []
    bot = Server(["--serve", "bot", "--sessions", str(args.sessions), *code, str(work)], cpu)
    floor: Server | None = None
    cold: dict[str, float] = {}
    try:
        files: dict[str, bytes] = {}
        for case in cases:
            if case.conditional:
                continue
            t0 = time.perf_counter()
            status, _, body = fetch(bot.base + case.path)
            cold[case.path] = time.perf_counter() - t0
            assert status == 200, (case.path, status)
            files[case.file] = body
        (work / "static").mkdir()
        for name, body in files.items():
            (work / "static" / name).write_bytes(body)
        for case in cases:
            case.size = len(files[case.file])
        floor = Server(["--serve", "floor", str(work / "static")], cpu)
        servers = {"bot": bot, "floor": floor, "bare": floor}
        # Flipped at every run: slow drift of the machine's load falls on both sides.
        order = WHO if run % 2 == 0 else WHO[::-1]
        for case in cases:
            for who in order:
                url = case.url(who, servers[who].base)
                status, got, body = fetch(url)
                assert status == 200 and body == files[case.file], (url, status, len(body))
                headers = {}
                if case.conditional:
                    headers["If-None-Match"] = got["ETag"]
                    status, _, body = fetch(url, headers)
                    assert status == 304 and body == b"", (url, status)
                load(url, headers, args.connections, args.warmup)
                result = load(url, headers, args.connections, args.duration)
                if result.errors:
                    print(f"  ! {who} {case.label}: {result.errors}")
                case.loads[who].append(result)
    finally:
        if floor is not None:
            floor.stop()
        bot.stop()
    return cold, bot.info


def bench(args: argparse.Namespace, client: str) -> None:
    cases = [
        Case("/", "/", "index.html"),
        Case("/agenda.ics", "/agenda.ics", "agenda.ics", goal=2.0),
        Case(
            f"/agenda.ics?periode=semaine&q={RARE.lower()}",
            f"/agenda.ics?periode=semaine&q={RARE.lower()}",
            "filtered.ics",
            goal=2.0,
        ),
        Case("/agenda.ics 304", "/agenda.ics", "agenda.ics", conditional=True, goal=1.2),
    ]
    load = run_wrk if client == "wrk" else run_aiohttp
    if args.pin:
        os.sched_setaffinity(0, {1})  # this process and the load generators it spawns
    colds: dict[str, list[float]] = {}
    info: dict[str, float | int | str] = {}
    syncs: list[float] = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            cold, info = one_run(args, cases, load, run, Path(tmp))
        syncs.append(float(info["sync"]))
        for path, took in cold.items():
            colds.setdefault(path, []).append(took)
        print(
            f"run {run + 1}/{args.runs} req/s bot/floor/bare: "
            + ", ".join(
                f"{c.label} " + "/".join(f"{c.loads[w][-1].rps:.0f}" for w in WHO) for c in cases
            ),
            flush=True,
        )

    print(
        f"\nbot web server vs aiohttp FileResponse (floor) and a bare in-memory handler, "
        f"{info['sessions']} sessions; medians of {args.runs} runs of {args.duration} s; "
        f"load: {client}, {args.connections} keep-alive connections; "
        f"1 server process + 1 load-generator process"
        + (" (pinned to CPUs 0 and 1)" if args.pin else "")
    )
    print(f"bot code from {info['code']}")
    print(f"published ledger sync before serving: {median(syncs) * 1000:.0f} ms")
    print(
        "cold (first request after start, client-side): "
        + ", ".join(f"{path} {median(v) * 1000:.0f} ms" for path, v in colds.items())
    )
    header = (
        f"{'path':<40} {'bot req/s':>9} {'floor':>7} {'floor/bot':>9} {'goal':>5}"
        f" {'bare':>7} {'bare/bot':>8} {'bot p50':>9} {'floor p50':>9} {'bare p50':>9}"
        f" {'bytes':>8}"
    )
    print("\n" + header + "\n" + "-" * len(header))
    for c in cases:
        bot_rps = c.rps("bot")
        ratio = c.rps("floor") / bot_rps
        goal = "" if c.goal is None else f"<={c.goal:g}"
        verdict = "" if c.goal is None else (" ok" if ratio <= c.goal else " MISSED")
        print(
            f"{c.label:<40} {bot_rps:>9.0f} {c.rps('floor'):>7.0f} {ratio:>9.2f} {goal:>5}"
            f" {c.rps('bare'):>7.0f} {c.rps('bare') / bot_rps:>8.2f}"
            + "".join(f" {c.p50(w):>7.2f}ms" for w in WHO)
            + f" {0 if c.conditional else c.size:>8}{verdict}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--duration", type=int, default=5, help="seconds measured per path")
    parser.add_argument("--warmup", type=int, default=1, help="seconds before each measure")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--client", choices=("auto", "wrk", "aiohttp"), default="auto")
    parser.add_argument("--pin", action="store_true", help="server on CPU 0, load on CPU 1")
    parser.add_argument("--code", type=Path, help="serve the bot package found in this directory")
    # Internal: the server and fallback-client processes this script spawns.
    parser.add_argument("--serve", choices=("bot", "floor"), help=argparse.SUPPRESS)
    parser.add_argument("--load", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--header", action="append", default=[], help=argparse.SUPPRESS)
    parser.add_argument("directory", nargs="?", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.serve == "bot":
        if args.code:
            sys.path.insert(0, str(args.code.resolve()))
        asyncio.run(serve_bot(args.sessions, args.directory))
    elif args.serve == "floor":
        bodies = {f.name: f.read_bytes() for f in args.directory.iterdir()}
        asyncio.run(serve_floor(args.directory, bodies))
    elif args.load:
        headers = dict(h.split(": ", 1) for h in args.header)
        result = asyncio.run(_aiohttp_load(args.load, headers, args.connections, args.duration))
        print(json.dumps(result))
    else:
        client = args.client
        if client == "auto":
            client = "wrk" if shutil.which("wrk") else "aiohttp"
            if client == "aiohttp":
                print(
                    "wrk not found (apt-get install -y wrk): falling back to an aiohttp client,"
                    " whose own cost flattens the ratios",
                    file=sys.stderr,
                )
        elif client == "wrk" and not shutil.which("wrk"):
            raise SystemExit("wrk not found: apt-get install -y wrk, or --client aiohttp")
        bench(args, client)


if __name__ == "__main__":
    main()
