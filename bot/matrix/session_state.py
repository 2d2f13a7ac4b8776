"""The state of the bot's session with its homeserver, named and survived.

Tchap's accounts expire (tchapgouv/synapse-email-account-validity: HTTP 403
`ORG_MATRIX_EXPIRED_ACCOUNT` once the renewal e-mails went unanswered) and
tokens get revoked (`M_UNKNOWN_TOKEN`: a device logged out, a soft logout, a
MAS session ended). Neither is a crash: the bot stays up, says which state it
is in (one ERROR line when it enters it, /healthz, the
`bluehats_session_state` metric) and leaves it by itself when it can.
Sends wait while the session is not usable instead of using up their
attempts (`until_usable`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

log = logging.getLogger(__name__)

# The errcodes, as Synapse (synapse/api/errors.py `Codes`) and the spec name them.
EXPIRED_ACCOUNT = "ORG_MATRIX_EXPIRED_ACCOUNT"
UNKNOWN_TOKEN = "M_UNKNOWN_TOKEN"  # noqa: S105 - an errcode, not a secret


class State(StrEnum):
    OK = "ok"
    # The account expired (renewal e-mails unanswered): checked again every minute.
    EXPIRED = "expired"
    # The access token was revoked and the bot cannot log in again by itself.
    REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class Status:
    state: State
    # One short line for /healthz and the log.
    reason: str
    since: float


Listener = Callable[[Status, Status], Awaitable[None]]


class SessionStates:
    """The current state; each change logged once and told to the listeners."""

    def __init__(self) -> None:
        self.status = Status(State.OK, "ok", time.monotonic())
        self._usable = asyncio.Event()
        self._usable.set()
        self._listeners: list[Listener] = []

    @property
    def state(self) -> State:
        return self.status.state

    def on_change(self, listener: Listener) -> None:
        """`listener(before, after)` runs after each change of state."""
        self._listeners.append(listener)

    async def enter(self, state: State, reason: str, *, advice: str) -> None:
        """Now in `state` (not OK): logged at ERROR once, with what to do."""
        if self.status.state is state:
            return
        log.error("session %s: %s; %s", state.value, reason, advice)
        self._usable.clear()
        await self._change(Status(state, reason, time.monotonic()))

    async def ok(self) -> None:
        """The homeserver answers again: back to OK (logged when it was not)."""
        if self.status.state is State.OK:
            return
        away = time.monotonic() - self.status.since
        log.info("session usable again after %.0fs %s", away, self.status.state.value)
        self._usable.set()
        await self._change(Status(State.OK, "ok", time.monotonic()))

    async def until_usable(self) -> None:
        """Returns at once while OK; otherwise once the session is usable again."""
        await self._usable.wait()

    async def _change(self, after: Status) -> None:
        before, self.status = self.status, after
        for listener in self._listeners:
            try:
                await listener(before, after)
            except Exception:  # a listener must not stop the session's recovery
                log.exception("session state listener failed")
