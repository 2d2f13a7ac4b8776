"""What /healthz and the session's metric say, and the device checked again
once the session is usable after an expiry or a new login."""

from __future__ import annotations

import logging
from datetime import timedelta

from bot.db.storage import Storage
from bot.matrix.client import MatrixChat
from bot.matrix.identity import IdentityState
from bot.matrix.session_state import State, Status
from bot.ops import Metrics

log = logging.getLogger(__name__)


class Health:
    def __init__(self, *, metrics: Metrics, stuck_after: timedelta) -> None:
        self._metrics = metrics
        self._stuck_after = stuck_after.total_seconds()
        self.chat: MatrixChat | None = None
        # The bot's cross-signing state, as last checked (None before the first check).
        self.identity: IdentityState | None = None

    def watch(self, chat: MatrixChat) -> None:
        """Follow this client's session from now on (before it connects)."""
        self.chat = chat
        chat.states.on_change(self._on_session_state)

    def session_state(self) -> tuple[State, str]:
        """The session's state and why, for /healthz and the metric."""
        if self.chat is not None and (status := self.chat.states.status).state is not State.OK:
            return status.state, status.reason
        return State.OK, "ok"

    def check(self) -> tuple[bool, str]:
        """/healthz: healthy or not, and one short line saying why."""
        state, reason = self.session_state()
        if state is not State.OK:
            return False, f"{state.value}: {reason}"
        chat = self.chat
        if chat is None:
            return False, "starting: connecting to the homeserver"
        if not chat.synced.is_set():
            return False, "starting: not synced yet"
        if chat.syncing_recently(self._stuck_after):
            # Still 200: the bot answers in unencrypted rooms and legacy
            # clients, and a restart cannot bring a recovery key.
            if self.identity is not None and not self.identity.trusted:
                return True, f"degraded: device {chat.device_id} is not cross-signed (see the log)"
            return True, "ok"
        return False, f"stuck: no successful sync for more than {self._stuck_after:.0f}s"

    async def refresh_metrics(self, storage: Storage) -> None:
        """The values read when /metrics is scraped."""
        self._metrics.broadcasts_pending.set(await storage.outbox.count("pending"))
        self._metrics.set_session_state(self.session_state()[0])
        if (chat := self.chat) is not None:
            self._metrics.sync_lag.set(chat.seconds_since_sync())
            self._metrics.rate_limited.set(chat.rate_limited)

    async def check_identity(self) -> None:
        """Check (create, sign again) the device's cross-signing identity."""
        assert self.chat is not None
        self.identity = identity = await self.chat.identity().ensure()
        self._metrics.cross_signed.set(int(identity.trusted))
        if identity.problem:
            log.error("%s", identity.problem)

    async def _on_session_state(self, before: Status, after: Status) -> None:
        self._metrics.set_session_state(after.state)
        if after.state is State.OK and self.identity is not None and self.chat is not None:
            # Back after an expiry or a new login: the homeserver may have
            # forgotten the device (its keys are uploaded again), which must
            # be signed again.
            await self.check_identity()
            if self.identity.problem is None:
                log.info("device %s checked again after %s", self.chat.device_id, before.state)
