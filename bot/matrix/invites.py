"""Invites to the bot: queued by the sync, joined (or declined) in the background.

The sync callback only notes an invite (in memory and in storage, before the
sync token moves on) and returns: commands keep being answered while a
background task joins the rooms one at a time, `JOIN_PACE_S` apart. Past
Synapse's join burst (`rc_joins`, 10 then one every 10 s by default) the
homeserver answers 429: nio waits the `retry_after_ms` it gives and retries
by itself, so the queue simply advances at the pace the server allows. Those
429s are counted here, not by `sending.RatePacer`: the join limit is not the
message limit, and a join waiting its turn must not hold back answers.

Invites not yet handled survive a restart: Synapse lists an invite again only
in a sync without a token (a restart with a saved token, even with
`full_state`, shows only invites newer than the token), so the queue is kept
in storage (`kv`) and reloaded at start.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import ClientError
from nio import ErrorResponse, InviteMemberEvent, JoinError, RoomLeaveError

from bot import permissions
from bot.db.storage import Storage
from bot.matrix.login import Session
from bot.matrix.responses import describe
from bot.matrix.session_state import EXPIRED_ACCOUNT, UNKNOWN_TOKEN

log = logging.getLogger(__name__)

# Between two joins (or declines): Tchap asks bots to keep bulk work around
# one call per second. The homeserver's own limit is honoured on top (429).
JOIN_PACE_S = 1.0
# After a transport error, the same invite is tried again this much later.
RETRY_AFTER_ERROR_S = 10.0
# At most one "rate limited" log line per this many seconds.
RATE_LOG_EVERY_S = 60.0


class Invites:
    def __init__(self, session: Session, storage: Storage, allowed_servers: list[str]) -> None:
        self._session = session
        self._storage = storage
        # Empty for an e-mail login without `allowed_servers`: then, once
        # connected, `MatrixChat` sets the default for the account's server.
        self.allowed = list(allowed_servers)
        # Room id → inviter, in arrival order; the head is being handled.
        self._pending: dict[str, str] = {}
        self._wake = asyncio.Event()
        self._last_done = -JOIN_PACE_S
        self.rate_limited = 0
        self._rate_logged_at = -RATE_LOG_EVERY_S

    @property
    def _key(self) -> str:
        return f"pending_invites:{self._session.user_id}"

    @property
    def waiting(self) -> int:
        """Invites noted and not handled yet."""
        return len(self._pending)

    async def note(self, invites: Mapping[str, Any], left: Iterable[str] = ()) -> None:
        """A sync's invites (room id → nio `InviteInfo`) and left rooms.

        Quick: only queues. A room left (an invite withdrawn, or declined from
        another device) leaves the queue.
        """
        changed = False
        for room_id in left:
            if self._pending.pop(room_id, None) is not None:
                log.info("invite to %s withdrawn before it was handled", room_id)
                changed = True
        for room_id, info in invites.items():
            if room_id in self._pending:
                continue  # shown again (a sync without a token): already queued
            inviter = self._inviter(getattr(info, "invite_state", ()))
            if inviter is None:
                continue
            self._pending[room_id] = inviter
            changed = True
        if changed:
            await self._save()
            self._wake.set()

    async def on_error(self, response: ErrorResponse) -> None:
        """Error responses to joins and leaves (the 429s nio is about to wait out)."""
        if response.status_code != "M_LIMIT_EXCEEDED":
            return
        self.rate_limited += 1
        now = time.monotonic()
        if now - self._rate_logged_at >= RATE_LOG_EVERY_S:
            self._rate_logged_at = now
            wait = (getattr(response, "retry_after_ms", None) or 5000) / 1000
            log.info(
                "joining or leaving rooms: rate limited by the homeserver (%d time(s) so far), "
                "waiting %.1fs as told; %d invite(s) waiting",
                self.rate_limited,
                wait,
                len(self._pending),
            )

    async def run(self) -> None:
        """Join or decline the queued invites, one at a time, until cancelled."""
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            delay = self._last_done + JOIN_PACE_S - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
                continue  # the queue may have changed meanwhile (a withdrawn invite)
            # Expired account, revoked token: the invites wait with everything else.
            await self._session.states.until_usable()
            room_id, inviter = next(iter(self._pending.items()))
            try:
                done = await self._handle(room_id, inviter)
            except (ClientError, TimeoutError) as exc:
                log.warning("invite to %s: %s; trying again later", room_id, type(exc).__name__)
                done = False
            except Exception:
                # Never let one invite stop the queue.
                log.exception("invite to %s (from %s) failed; dropped", room_id, inviter)
                done = True
            self._last_done = time.monotonic()
            if done:
                if self._pending.pop(room_id, None) is not None:
                    await self._save()
            elif room_id in self._pending:
                # Behind the others; the homeserver may be back by then.
                self._pending[room_id] = self._pending.pop(room_id)
                await asyncio.sleep(RETRY_AFTER_ERROR_S)

    async def _handle(self, room_id: str, inviter: str) -> bool:
        """Join or decline; False to try again later."""
        client = self._session.client
        if not permissions.invite_allowed(inviter, self.allowed):
            log.info("declining invite to %s from %s (server not allowed)", room_id, inviter)
            left = await client.room_leave(room_id)
            if isinstance(left, RoomLeaveError):
                log.warning("could not decline the invite to %s: %s", room_id, describe(left))
            return True
        resp = await client.join(room_id)
        if isinstance(resp, JoinError) and resp.status_code in (EXPIRED_ACCOUNT, UNKNOWN_TOKEN):
            return False  # the session's trouble, not the room's: joined once it is usable
        if isinstance(resp, JoinError):
            # Withdrawn, room gone, server refusing: the inviter can invite again.
            log.warning("could not join %s (invited by %s): %s", room_id, inviter, describe(resp))
        else:
            log.info(
                "joined %s, invited by %s (%d more invite(s) waiting)",
                room_id,
                inviter,
                len(self._pending) - 1,
            )
        return True

    def _inviter(self, invite_state: Iterable[Any]) -> str | None:
        """Who invited the bot; nio lists one invite event per member invited."""
        user_id = self._session.user_id
        return next(
            (
                str(e.sender)
                for e in invite_state
                if isinstance(e, InviteMemberEvent)
                and e.state_key == user_id
                and e.membership == "invite"
            ),
            None,
        )

    async def load(self) -> None:
        """The invites queued before a restart; before the first sync."""
        raw = await self._storage.kv.get(self._key)
        try:
            saved = json.loads(raw) if raw else {}
        except ValueError:
            log.warning("ignoring unreadable saved invites")
            saved = {}
        if isinstance(saved, dict):
            for room_id, inviter in saved.items():
                self._pending.setdefault(str(room_id), str(inviter))
        if self._pending:
            log.info("%d invite(s) from before the restart to handle", len(self._pending))

    async def _save(self) -> None:
        await self._storage.kv.put(self._key, json.dumps(self._pending))
