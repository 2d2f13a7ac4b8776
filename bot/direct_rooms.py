"""The direct room the bot keeps with each person (private answers, personal reminders)."""

from __future__ import annotations

import logging

from bot.chat import ChatClient, SendError
from bot.db.storage import Storage

log = logging.getLogger(__name__)


async def ensure_direct_room(chat: ChatClient, storage: Storage, user_id: str) -> str | None:
    """The direct room with `user_id`, opened and remembered when there is none.

    None when it cannot be opened now (the caller says so, in words, where
    the person asked).
    """
    room_id = await storage.personal.direct_room(user_id)
    if room_id is not None:
        return room_id
    try:
        room_id = await chat.open_direct_room(user_id)
    except SendError as exc:
        log.warning("cannot open a direct room with %s: %s", user_id, exc)
        return None
    await storage.personal.set_direct_room(user_id, room_id)
    log.info("opened a direct room with %s", user_id)
    return room_id
