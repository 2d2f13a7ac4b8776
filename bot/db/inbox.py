"""The inbox: each command received, so that each is answered exactly once."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Self

from bot.chat import Triggered
from bot.db.database import Database, Row

# Answered commands are kept (without their text) this long to drop redeliveries.
INBOX_RETENTION_S = 7 * 24 * 3600


@dataclass(frozen=True, slots=True)
class InboxItem:
    event_id: str
    room_id: str
    sender: str
    body: str
    thread_root: str | None
    received_at: int
    attempts: int
    direct: bool = False
    # Set for a command no one typed (run by a reaction): its registered name.
    command: str | None = None
    # When it was sent (origin_server_ts, ms; None for rows of older versions).
    sent_ms: int | None = None
    # The bot's answer that an edit replaces (a notice; None: none, or a file).
    answer_id: str | None = None
    # On an edit: the command it edits.
    replaces: str | None = None
    # The bot's device when it was last attempted (None: not known).
    device_id: str | None = None
    # A reaction taken back before its answer: that reaction's row, answered
    # first (what it gave is known once it is answered).
    follows: str | None = None
    # Run by a reaction (or by taking one back): what it resolved to.
    trigger: Triggered | None = None

    @classmethod
    def from_row(cls, row: Row) -> Self:
        return cls(
            row["event_id"],
            row["room_id"],
            row["sender"],
            row["body"] or "",
            row["thread_root"],
            int(row["received_at"]),
            int(row["attempts"]),
            bool(row["direct"]),
            row["command"],
            row["sent_ms"],
            row["answer_id"],
            row["replaces"],
            row["device_id"],
            row["follows"],
            None if row["trigger"] is None else Triggered.loads(row["trigger"]),
        )


# Queries are literal strings (no formatting): what InboxItem.from_row reads.
_SELECT = (
    "SELECT event_id, room_id, sender, body, thread_root, received_at, attempts, direct, "
    "command, sent_ms, answer_id, replaces, device_id, follows, trigger FROM inbox "
)


class Inbox:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(
        self,
        event_id: str,
        room_id: str,
        sender: str,
        body: str,
        thread_root: str | None,
        now: float | None = None,
        *,
        direct: bool = False,
        command: str | None = None,
        sent_ms: int | None = None,
        replaces: str | None = None,
        device_id: str | None = None,
        follows: str | None = None,
        trigger: Triggered | None = None,
    ) -> bool:
        """Record a command (or an edit of one, `replaces` naming the command);
        False when this event was already recorded (redelivery).

        The row counts one attempt already, by the bot's device `device_id`:
        the caller answers at once, and a crash during that first send must
        count like any other. `follows`: the row to answer first. `trigger`:
        what the reaction that runs it resolved to (stored with it: answered
        after a crash, it runs the same).
        """
        result = await self._db.execute(
            "INSERT OR IGNORE INTO inbox (event_id, room_id, sender, body, thread_root, "
            "received_at, attempts, direct, command, sent_ms, replaces, device_id, follows, "
            "trigger) VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $8, $9, $10, $11, $12, $13)",
            event_id,
            room_id,
            sender,
            body,
            thread_root,
            int(now or time.time()),
            direct,
            command,
            sent_ms,
            replaces,
            device_id,
            follows,
            None if trigger is None else trigger.dumps(),
        )
        return result.rowcount == 1

    async def get(self, event_id: str) -> InboxItem | None:
        row = await self._db.fetchrow(_SELECT + "WHERE event_id = $1", event_id)
        return None if row is None else InboxItem.from_row(row)

    async def pending(self) -> list[InboxItem]:
        # rowid: rows of one second in the order received (a command before its edit).
        rows = await self._db.fetch(
            _SELECT + "WHERE status = 'pending' ORDER BY received_at, rowid"
        )
        return [InboxItem.from_row(r) for r in rows]

    async def latest_edit(self, command_id: str) -> str | None:
        """The event id of the newest edit recorded for this command, if any.

        Newest as the spec orders replacements: by origin_server_ts, then by
        event id.
        """
        value = await self._db.fetchval(
            "SELECT event_id FROM inbox WHERE replaces = $1 "
            "ORDER BY sent_ms DESC, event_id DESC LIMIT 1",
            command_id,
        )
        return None if value is None else str(value)

    async def attempt(self, event_id: str, device_id: str) -> None:
        """One more attempt, about to be made by the bot's device `device_id`."""
        await self._db.execute(
            "UPDATE inbox SET attempts = attempts + 1, device_id = $1 WHERE event_id = $2",
            device_id,
            event_id,
        )

    async def finish(
        self,
        event_id: str,
        *,
        failed: bool = False,
        answered: str | None = None,
        answer_id: str | None = None,
    ) -> None:
        """Mark a command (or an edit) handled, forgetting its text.

        `answered`: the command that has a new answer, `answer_id` (None for a
        file): the command itself, or the one this edit edits. Stored in the
        same transaction, so that a later edit finds the answer to replace.
        """
        done = (
            "UPDATE inbox SET status = $1, body = NULL, finished_at = $2 WHERE event_id = $3",
            "failed" if failed else "done",
            int(time.time()),
            event_id,
        )
        if answered is None:
            await self._db.execute(*done)
            return
        async with self._db.transaction() as tx:
            await tx.execute(*done)
            await tx.execute(
                "UPDATE inbox SET answer_id = $1 WHERE event_id = $2", answer_id, answered
            )

    async def status(self, event_id: str) -> str | None:
        status = await self._db.fetchval("SELECT status FROM inbox WHERE event_id = $1", event_id)
        return None if status is None else str(status)

    async def prune(self, now: float | None = None) -> int:
        cutoff = int((now or time.time()) - INBOX_RETENTION_S)
        result = await self._db.execute(
            "DELETE FROM inbox WHERE status != 'pending' AND finished_at < $1", cutoff
        )
        return result.rowcount
