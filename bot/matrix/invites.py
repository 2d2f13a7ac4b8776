"""Invites to the bot: joined when the inviter's server is allowed, declined otherwise."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from nio import InviteMemberEvent, JoinError

from bot import permissions
from bot.matrix.login import Session
from bot.matrix.responses import describe

log = logging.getLogger(__name__)


class Invites:
    def __init__(self, session: Session, allowed_servers: list[str]) -> None:
        self._session = session
        # Empty for an e-mail login without `allowed_servers`: then, once
        # connected, `MatrixChat` sets the bot's own server.
        self.allowed = list(allowed_servers)

    async def on_invite(self, room_id: str, invite_state: Iterable[Any]) -> None:
        """An invite in a sync; nio lists one invite event per member invited."""
        user_id = self._session.user_id
        inviter = next(
            (
                e.sender
                for e in invite_state
                if isinstance(e, InviteMemberEvent)
                and e.state_key == user_id
                and e.membership == "invite"
            ),
            None,
        )
        if inviter is None:
            return
        client = self._session.client
        if not permissions.invite_allowed(inviter, self.allowed):
            log.info("declining invite to %s from %s (server not allowed)", room_id, inviter)
            await client.room_leave(room_id)
            return
        resp = await client.join(room_id)
        if isinstance(resp, JoinError):
            log.warning("could not join %s (invited by %s): %s", room_id, inviter, describe(resp))
        else:
            log.info("joined %s, invited by %s", room_id, inviter)
