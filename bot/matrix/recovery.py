"""What the bot does when the homeserver stops accepting its session.

- *Expired* account (`ORG_MATRIX_EXPIRED_ACCOUNT`): nothing the bot can do,
  the account's owner renews it (the renewal e-mail's link, or the server's
  administrators). The bot keeps running and asks again every minute; the
  first answer that is not "expired" ends the state.
- *Revoked* token (`M_UNKNOWN_TOKEN`, soft logout or not): with a password,
  log in again with the same device ID (the server keeps or recreates that
  device: the device keys and room keys kept here stay valid; `Identity.ensure`
  re-uploads the device keys if the server forgot them and signs the device
  again); without one, stay in this state until the operator gives a new
  token, without asking again in a loop.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from nio import ErrorResponse

from bot.matrix.session_state import EXPIRED_ACCOUNT, State

if TYPE_CHECKING:
    from bot.matrix.login import Session

log = logging.getLogger(__name__)

# How often an expired account is checked again.
EXPIRED_CHECK_S = 60.0
# After a failed attempt to log in again (the homeserver unreachable).
RELOGIN_RETRY_S = 30.0

EXPIRED_ADVICE = (
    "the bot keeps running and checks again every minute; renew the account (the link in "
    "the renewal e-mail sent to the account's address, or ask the homeserver's administrators)"
)
REVOKED_ADVICE = (
    "give the bot a new token (matrix.access_token or BLUEHATS_MATRIX_ACCESS_TOKEN) and restart "
    "it, or give it its password (matrix.password or BLUEHATS_MATRIX_PASSWORD) so that it logs "
    "in again by itself"
)


def is_expired(resp: object) -> bool:
    return isinstance(resp, ErrorResponse) and resp.status_code == EXPIRED_ACCOUNT


async def expired(session: Session) -> None:
    """The account is expired: say so (once) and wait before the next check."""
    await session.states.enter(
        State.EXPIRED,
        f"the homeserver says the account {session.user_id} has expired",
        advice=EXPIRED_ADVICE,
    )
    log.debug("account still expired; next check in %.0fs", EXPIRED_CHECK_S)
    await asyncio.sleep(EXPIRED_CHECK_S)


async def token_refused(session: Session, resp: ErrorResponse) -> None:
    """The homeserver no longer knows the token: log in again on the same device,
    or (no password) wait in the revoked state until stopped."""
    kind = "ended by a soft logout" if resp.soft_logout else "revoked"
    device = session.device_id
    await session.states.enter(
        State.REVOKED,
        f"the access token of {session.user_id} (device {device}) was {kind}",
        advice=(
            f"logging in again with the password, same device {device}"
            if session.can_log_in
            else REVOKED_ADVICE
        ),
    )
    if not session.can_log_in:
        await asyncio.Event().wait()  # until the bot is stopped
    await relogin(session, device)


async def relogin(session: Session, device_id: str) -> None:
    """Log in again as `device_id` until it works; a refused password ends the
    attempts (the state stays revoked, one ERROR line says what to do)."""
    from bot.matrix.login import LoginFailed, LoginRefused

    while True:
        try:
            await session.password_login(device_id)
        except LoginRefused as exc:
            log.error(
                "cannot log in again: %s; check matrix.password (or BLUEHATS_MATRIX_PASSWORD) "
                "and restart the bot",
                exc,
            )
            await asyncio.Event().wait()  # until the bot is stopped
        except LoginFailed as exc:
            log.warning("cannot log in again yet (%s); retrying in %.0fs", exc, RELOGIN_RETRY_S)
            await asyncio.sleep(RELOGIN_RETRY_S)
            continue
        log.info("logged in again as %s, device %s", session.user_id, session.device_id)
        return
