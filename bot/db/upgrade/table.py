"""The migration machinery: steps registered with their version, applied in order.

Each step is a function registered with its version and what it does;
`UpgradeTable.upgrade` applies the missing ones in order, each in its own
transaction together with its `PRAGMA user_version` bump, so that a crash
leaves the database at a known version. A database newer than the code is
refused and left untouched.

Never edit a released step (databases in the wild went through it): append
a new one. The SQL of steps 1-9 is the text they were released with.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass

from bot.db.database import Database, Queries, StorageError, Transaction

log = logging.getLogger(__name__)

Upgrade = Callable[[Transaction], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Step:
    version: int  # the schema version this step brings the database to
    description: str
    apply: Upgrade


class UpgradeTable:
    def __init__(self, steps: Iterable[Step] = ()) -> None:
        self._steps: list[Step] = []
        for step in steps:
            self._add(step)

    def _add(self, step: Step) -> None:
        if step.version != len(self._steps) + 1:
            raise ValueError(f"migration {step.version} registered after {len(self._steps)}")
        self._steps.append(step)

    def register(self, version: int, description: str) -> Callable[[Upgrade], Upgrade]:
        """Decorator: the function brings the schema from `version - 1` to `version`."""

        def add(fn: Upgrade) -> Upgrade:
            self._add(Step(version, description, fn))
            return fn

        return add

    def __iter__(self) -> Iterator[Step]:
        return iter(self._steps)

    @property
    def latest(self) -> int:
        return len(self._steps)

    async def upgrade(self, db: Database) -> None:
        current = await schema_version(db)
        if current > self.latest:
            raise StorageError(
                f"the database was written by a newer version of the bot (schema {current}, "
                f"this version knows up to {self.latest}); upgrade the bot or restore a "
                "backup, the database was left untouched"
            )
        for step in self._steps[current:]:
            log.info("storage: applying migration %d (%s)", step.version, step.description)
            async with db.transaction() as tx:
                await step.apply(tx)
                # PRAGMA takes no parameter; the version is our own integer.
                await tx.execute(f"PRAGMA user_version = {int(step.version)}")


async def schema_version(db: Queries) -> int:
    return int(await db.fetchval("PRAGMA user_version") or 0)


async def run_script(tx: Transaction, script: str) -> None:
    """A migration's statements in order (ours hold no ';' inside literals)."""
    lines = [ln for ln in script.splitlines() if not ln.strip().startswith("--")]
    for statement in "\n".join(lines).split(";"):
        if statement.strip():
            await tx.execute(statement.strip())


upgrades = UpgradeTable()
