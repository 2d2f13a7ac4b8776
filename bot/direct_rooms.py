"""The direct room the bot keeps with each person (private answers, personal reminders)."""

from __future__ import annotations

import asyncio
import logging

from bot.chat import ChatClient, SendError
from bot.db.storage import Storage

log = logging.getLogger(__name__)

# One opening per person at a time (two private answers at once would open two
# rooms): by storage (one per bot) and person, the lock and how many use it.
_opening: dict[tuple[int, str], tuple[asyncio.Lock, int]] = {}


async def ensure_direct_room(chat: ChatClient, storage: Storage, user_id: str) -> str | None:
    """The direct room with `user_id`, opened and remembered when there is none.

    None when it cannot be opened now (the caller says so, in words, where
    the person asked). A second caller for the same person while the room is
    being opened waits for it, and gets that room.
    """
    room_id = await storage.personal.direct_room(user_id)
    if room_id is not None:
        return room_id
    key = (id(storage), user_id)
    lock, users = _opening.get(key) or (asyncio.Lock(), 0)
    _opening[key] = (lock, users + 1)
    try:
        async with lock:
            return await _open(chat, storage, user_id)
    finally:
        lock, users = _opening[key]
        if users == 1:
            del _opening[key]
        else:
            _opening[key] = (lock, users - 1)


async def _open(chat: ChatClient, storage: Storage, user_id: str) -> str | None:
    room_id = await storage.personal.direct_room(user_id)
    if room_id is not None:  # opened while this caller waited
        return room_id
    try:
        room_id = await chat.open_direct_room(user_id)
    except SendError as exc:
        log.warning("cannot open a direct room with %s: %s", user_id, exc)
        return None
    await storage.personal.set_direct_room(user_id, room_id)
    log.info("opened a direct room with %s", user_id)
    return room_id
