"""Key/value pairs: the sync token, a feed's conditional GET state."""

from __future__ import annotations

from bot.db.database import Database


class KeyValues:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, key: str) -> str | None:
        value = await self._db.fetchval("SELECT value FROM kv WHERE key = $1", key)
        return None if value is None else str(value)

    async def put(self, key: str, value: str) -> None:
        await self._db.execute(
            "INSERT INTO kv (key, value) VALUES ($1, $2) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            key,
            value,
        )
