"""The SQLite connection: pragmas, the one writer lock, transactions, fetch helpers.

The query API follows asyncpg's (`execute`, `fetch`, `fetchrow`, `fetchval`,
`$1`-style positional parameters, rows readable by position and by column
name), so that another engine could be put behind the same methods without
touching the table modules. Only SQLite is implemented: `$N` becomes
SQLite's numbered `?N` (a value may be used twice, as in PostgreSQL).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Self

import aiosqlite

# Readable by position (row[0]) and by column name (row["event_id"]), like asyncpg's Record.
Row = sqlite3.Row

# Our queries hold no '$' inside literals, so every $N is a parameter.
_PARAMETER = re.compile(r"\$(\d+)")


class StorageError(Exception):
    """The database cannot be used by this version of the bot (the message says why)."""


def is_damaged(exc: sqlite3.Error) -> bool:
    """SQLite says the file is not a database, or a damaged one ("malformed")."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


@dataclass(frozen=True, slots=True)
class Result:
    """What a write did: rows changed, and the rowid of the row an INSERT added."""

    rowcount: int
    lastrowid: int | None


class Queries(Protocol):
    """What the table modules need: a `Database`, or a `Transaction` in progress."""

    async def execute(self, query: str, *args: Any) -> Result: ...

    async def fetch(self, query: str, *args: Any) -> list[Row]: ...

    async def fetchrow(self, query: str, *args: Any) -> Row | None: ...

    async def fetchval(self, query: str, *args: Any, column: int = 0) -> Any: ...


@functools.lru_cache(maxsize=256)
def _sqlite(query: str) -> str:
    return _PARAMETER.sub(r"?\1", query)


class _Reader:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def fetch(self, query: str, *args: Any) -> list[Row]:
        async with self._conn.execute(_sqlite(query), args) as cur:
            return list(await cur.fetchall())

    async def fetchrow(self, query: str, *args: Any) -> Row | None:
        async with self._conn.execute(_sqlite(query), args) as cur:
            row: Row | None = await cur.fetchone()
            return row

    async def fetchval(self, query: str, *args: Any, column: int = 0) -> Any:
        """One value of the first row (None without a row)."""
        row = await self.fetchrow(query, *args)
        return None if row is None else row[column]

    async def _execute(self, query: str, args: Sequence[Any]) -> Result:
        async with self._conn.execute(_sqlite(query), args) as cur:
            return Result(cur.rowcount, cur.lastrowid)


class Transaction(_Reader):
    """Statements inside `Database.transaction()`: committed together or not at all."""

    async def execute(self, query: str, *args: Any) -> Result:
        return await self._execute(query, args)

    async def executemany(self, query: str, rows: Iterable[Sequence[Any]]) -> None:
        """One statement for many rows: one trip to SQLite's thread, not one per row."""
        await self._conn.executemany(_sqlite(query), rows)


class Database(_Reader):
    """Two connections in autocommit mode, in WAL: one writes (under one lock), one reads.

    The writer: a statement issued while a transaction is open would join it
    (and be rolled back with it), so every write, single statement or
    transaction, takes the writer lock. The reader: `fetch`, `fetchrow` and
    `fetchval` on the `Database` go through a second connection, so that a
    read never sees another task's uncommitted transaction (with one shared
    connection it did), and never waits for the writer: in WAL a reader sees
    the last committed state, and a write committed before the read was
    issued is seen (read-your-writes holds across the two connections). A
    `Transaction` reads on the writer's connection: it sees its own writes.
    """

    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        super().__init__(reader)
        self._writer = writer
        self._writes = Transaction(writer)  # single statements, under the lock
        self._write = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> Self:
        """The database at `path` (created 0600 if missing), both connections open."""
        path.parent.mkdir(parents=True, exist_ok=True)
        # Created private: SQLite gives its -wal and -shm files the database's mode.
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so that a
        # migration and its version bump share one transaction.
        writer = await aiosqlite.connect(path, isolation_level=None)
        try:
            writer.row_factory = Row
            await writer.execute("PRAGMA journal_mode=WAL")
            await writer.execute("PRAGMA foreign_keys=ON")
            await writer.execute("PRAGMA busy_timeout=5000")
            await writer.execute("PRAGMA synchronous=NORMAL")
            # After the writer put the file in WAL mode: readers never block it.
            reader = await aiosqlite.connect(path, isolation_level=None)
        except BaseException:
            await writer.close()
            raise
        try:
            reader.row_factory = Row
            await reader.execute("PRAGMA busy_timeout=5000")
            await reader.execute("PRAGMA query_only=ON")  # every write goes through the lock
        except BaseException:
            await reader.close()
            await writer.close()
            raise
        return cls(writer, reader)

    async def close(self) -> None:
        try:
            await self._conn.close()
        finally:
            # The last connection closed checkpoints the WAL into the file.
            await self._writer.close()

    async def execute(self, query: str, *args: Any) -> Result:
        """One write statement, alone (atomic by itself)."""
        async with self._write:
            return await self._writes.execute(query, *args)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """One write transaction (under the writer lock): all or nothing.

        A cancellation (SIGTERM) stays a cancellation: the statement already
        handed to SQLite's thread runs anyway, so a COMMIT under way is
        finished, not answered by a ROLLBACK that would fail ("no transaction
        is active") and turn the cancellation into an error the caller
        swallows (the bot then never stopped).
        """
        async with self._write:
            await self._writer.execute("BEGIN IMMEDIATE")
            try:
                yield Transaction(self._writer)
            except BaseException:
                if self._writer.in_transaction:  # SQLite may have rolled back itself
                    await asyncio.shield(self._writer.execute("ROLLBACK"))
                raise
            commit = asyncio.ensure_future(self._writer.execute("COMMIT"))
            try:
                await asyncio.shield(commit)
            except asyncio.CancelledError:
                await commit  # committed: the cancellation goes on from here
                raise
