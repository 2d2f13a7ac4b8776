"""What the cross-signing identity adds to a start, on a real Synapse.

    .venv/bin/python bench/identity.py --runs 7

For each run, a fresh bot account on a throw-away Synapse (loopback, raised
limits), then the identity step (`Identity.ensure`) as the bot runs it at
start, timed in three situations:
- created: first start (keys generated and published, device and master key
  signed, three secrets in secret storage, recovery key written);
- checked: a restart on the same storage (nothing to publish);
- recovered: a new device (lost volume) signing itself from secret storage
  with the recovery key.
Beside each, the login (or session restore) that any start pays anyway, as
the ratio's denominator. Prints medians over the runs.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


from bot import config as configuration  # noqa: E402
from bot.db.storage import Storage  # noqa: E402
from bot.devserver import DevHomeserver  # noqa: E402
from bot.matrix.client import MatrixChat  # noqa: E402
from bot.matrix.identity import IdentityState  # noqa: E402


async def start(
    cfg: configuration.Config, step: Callable[[MatrixChat], Awaitable[IdentityState]]
) -> tuple[float, float, IdentityState]:
    """(connect seconds, identity seconds, state) for one start on `cfg`'s storage."""
    cfg.storage.path.mkdir(parents=True, exist_ok=True)
    storage = await Storage.open(cfg.storage.path / "bluehats.db")
    chat = MatrixChat(cfg.matrix, cfg.storage.path, storage)
    try:
        t0 = time.perf_counter()
        await chat.connect()
        t1 = time.perf_counter()
        state = await step(chat)
        t2 = time.perf_counter()
    finally:
        await chat.close()
        await storage.close()
    return t1 - t0, t2 - t1, state


async def one_run(hs: DevHomeserver, work: Path, i: int) -> dict[str, tuple[float, float]]:
    password = f"bench-password-{i}"
    user_id = hs.register(f"benchbot{i}", password)

    def cfg(storage: Path, recovery_key: str | None = None) -> configuration.Config:
        matrix: dict[str, object] = {"homeserver": hs.url, "user_id": user_id, "password": password}
        if recovery_key:
            matrix["recovery_key"] = recovery_key
        return configuration.from_dict(
            {"matrix": matrix, "storage": {"path": str(storage)}}, env={}
        )

    def ensure(chat: MatrixChat) -> Awaitable[IdentityState]:
        return chat.identity().ensure()

    first = cfg(work / f"bot{i}")
    timings = {}
    c, d, state = await start(first, ensure)
    assert state.action == "created" and state.trusted, state
    timings["created"] = (c, d)
    c, d, state = await start(first, ensure)
    assert state.action == "checked" and state.trusted, state
    timings["checked"] = (c, d)
    key = (first.storage.path / "recovery-key.txt").read_text().strip()
    c, d, state = await start(cfg(work / f"bot{i}-lost", key), ensure)
    assert state.action == "recovered" and state.trusted, state
    timings["recovered"] = (c, d)
    return timings


async def main(runs: int) -> None:
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("bot.matrix.identity").setLevel(logging.ERROR)  # the recovery-key notice
    with tempfile.TemporaryDirectory(prefix="bench-identity-") as tmp:
        work = Path(tmp)
        with DevHomeserver(work / "synapse", raised_limits=True) as hs:
            results = [await one_run(hs, work, i) for i in range(runs)]
    print(f"identity step at start, median of {runs} runs (Synapse on loopback):")
    print(f"{'situation':<10} {'connect ms':>11} {'identity ms':>12} {'identity/connect':>17}")
    for situation in ("created", "checked", "recovered"):
        connect = statistics.median(r[situation][0] for r in results) * 1000
        identity = statistics.median(r[situation][1] for r in results) * 1000
        print(f"{situation:<10} {connect:>11.1f} {identity:>12.1f} {identity / connect:>17.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    asyncio.run(main(parser.parse_args().runs))
