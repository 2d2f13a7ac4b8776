"""Whether a message went out: the marker each message of the bot carries, and
the look back at the bot's own recent events that finds it.

A transaction id makes a resend harmless only while the homeserver remembers
it, and only for the device that used it: Synapse's `HttpTransactionCache`
(synapse/rest/client/transactions.py: keyed by path, user and device,
`CLEANUP_PERIOD` 30 minutes, so kept 30 to 60 minutes, in memory) and its
`event_txn_id_device_id` table (synapse/storage/databases/main/
events_worker.py, `_cleanup_old_transaction_ids`: rows older than 24 hours
deleted). Past that, `bot.delivery` asks the room itself: every message the
bot sends carries its transaction id in its content (`MARKER`, inside the
encrypted payload in an encrypted room), and `find_sent` reads the bot's own
events back from the end of the room until the item's creation.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import ClientError
from nio import AsyncClient, MegolmEvent, RedactedEvent, RoomMessagesResponse

from bot.chat import SentCheck
from bot.matrix.responses import describe

log = logging.getLogger(__name__)

# The content field holding the transaction id the message was sent with.
MARKER = "org.bluehats.txn"
# The bot's own events read back at most, and per request: the look back is
# bounded, beyond it nothing is concluded.
LOOK_BACK_EVENTS = 100
PAGE = 50
# The homeserver's clock may be this far behind the bot's.
CLOCK_SKEW_S = 300


async def find_sent(client: AsyncClient, room_id: str, txn_id: str, since: float) -> SentCheck:
    """The bot's event carrying `txn_id`, if any since `since` (epoch seconds).

    Absent (conclusive) only when every own event back to `since`, or to the
    start of the room, was read: one that cannot be decrypted (sent by
    another device, whose room keys this one lacks) or that was redacted
    (its content is gone) could be the message itself.
    """
    own = {"types": ["m.room.message", "m.room.encrypted"], "senders": [client.user_id]}
    since_ms = (since - CLOCK_SKEW_S) * 1000
    start: str | None = None
    read, unreadable = 0, 0
    while read < LOOK_BACK_EVENTS:
        try:
            # nio decrypts what it can of the chunk (its own outbound sessions
            # included: nio keeps an inbound copy of each).
            resp = await client.room_messages(room_id, start=start, limit=PAGE, message_filter=own)
        except (ClientError, TimeoutError) as exc:
            log.info("cannot read back %s: %s", room_id, type(exc).__name__)
            return SentCheck(None, conclusive=False)
        if not isinstance(resp, RoomMessagesResponse):
            log.info("cannot read back %s: %s", room_id, describe(resp))
            return SentCheck(None, conclusive=False)
        for event in resp.chunk:
            read += 1
            if event.server_timestamp < since_ms:
                return SentCheck(None, conclusive=unreadable == 0)
            if _marker(event) == txn_id:
                return SentCheck(str(event.event_id))
            if isinstance(event, MegolmEvent | RedactedEvent) or _redacted(event):
                unreadable += 1
        if not resp.chunk or not resp.end or resp.end == start:
            return SentCheck(None, conclusive=unreadable == 0)  # the start of the room
        start = resp.end
    return SentCheck(None, conclusive=False)


def _marker(event: Any) -> object:
    content = (getattr(event, "source", None) or {}).get("content")
    return content.get(MARKER) if isinstance(content, dict) else None


def _redacted(event: Any) -> bool:
    unsigned = (getattr(event, "source", None) or {}).get("unsigned")
    return isinstance(unsigned, dict) and "redacted_because" in unsigned
