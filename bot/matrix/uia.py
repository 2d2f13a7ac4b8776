"""User-interactive auth (UIA) to publish cross-signing keys, and the wait for a person.

A homeserver lets the first upload of an account's cross-signing keys through
(MSC3967) and asks for one user-interactive stage to replace them:

- `m.login.password` on a homeserver that keeps its own passwords: the bot
  answers with the account's password;
- `m.oauth` (spec v1.17, "OAuth authentication"; MSC4312, unstable name
  `org.matrix.cross_signing_reset`) on a homeserver whose logins MAS handles,
  as Tchap's now are. There is no password stage. Synapse answers 401 with
  `{"session": "dummy", "flows": [{"stages": ["m.oauth"]}, {"stages":
  ["org.matrix.cross_signing_reset"]}], "params": {"m.oauth": {"url": …}, …},
  "msg": …}` (synapse/rest/client/keys.py, `SigningKeyUploadServlet`); the URL
  is MAS's account page with `?action=org.matrix.cross_signing_reset`. A person
  logged in there as the bot approves; MAS then calls Synapse's admin API
  `/_synapse/admin/v1/users/<user_id>/_allow_cross_signing_replacement_without_uia`
  (MAS crates/matrix-synapse, `allow_cross_signing_reset`), which lets the
  account replace its master key without UIA for 10 minutes
  (synapse/rest/admin/users.py, `REPLACEMENT_PERIOD_MS`). The client retries
  the same upload with an `auth` dict holding just the `session` (the spec);
  until approval the answer is the same 401.

Only `bluehats-bot identity --reset` waits for that person (`Approval`): it
prints the URL once and retries until approved or its wait is over. It never
runs beside the bot (one process per store, bot/store_lock.py), so nothing
else needs to know that a reset is pending.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import SecretStr

from bot.matrix.keys_api import IdentityError, error_text

log = logging.getLogger(__name__)

PASSWORD_STAGE = "m.login.password"  # noqa: S105 - a stage name
# The stable name first; Synapse offers both (one flow each).
OAUTH_STAGES = ("m.oauth", "org.matrix.cross_signing_reset")
# Synapse's window once approved (UserReplaceMasterCrossSigningKeyRestServlet).
APPROVAL_WINDOW = timedelta(minutes=10)
RETRY_EVERY = timedelta(seconds=2)

# One POST of the keys (with `auth` when given): (HTTP status, JSON answer).
Post = Callable[[dict[str, Any]], Awaitable[tuple[int, dict[str, Any]]]]


class ApprovalExpired(IdentityError):
    """Nobody approved the replacement before the deadline: the keys were not replaced."""


@dataclass(frozen=True)
class PendingApproval:
    """A replacement waiting for a person to approve it at `url` until `deadline`."""

    url: str
    deadline: datetime


@dataclass(frozen=True)
class Approval:
    """A person may approve here (`identity --reset`): how the URL is told, how long
    to wait for the approval."""

    announce: Callable[[PendingApproval], None]
    wait: timedelta = APPROVAL_WINDOW
    retry_every: timedelta = RETRY_EVERY


@dataclass(frozen=True)
class UploadAuth:
    """How this process answers the homeserver's stages."""

    # The account, for the password stage.
    identifier: dict[str, str]
    # Called only when the homeserver offers the password stage.
    password: Callable[[], SecretStr | None]
    # None: nobody can approve here (the bot's own start).
    approval: Approval | None = None


async def upload_keys(post: Post, body: dict[str, Any], auth: UploadAuth) -> None:
    """Publish the keys of `body`, completing the stage the homeserver asks for."""
    status, answer = await post(body)
    if status == 401 and "flows" in answer:
        flows = [list(f.get("stages") or []) for f in answer.get("flows") or []]
        oauth = next((s for s in OAUTH_STAGES if [s] in flows), None)
        if [PASSWORD_STAGE] in flows:
            status, answer = await _with_password(post, body, answer, auth)
        elif oauth is not None:
            status, answer = await _approved(post, body, answer, oauth, auth.approval)
        else:
            raise IdentityError(
                "the homeserver asks for authentication stages this bot cannot complete to "
                f"publish cross-signing keys: {flows} (it knows {PASSWORD_STAGE} and "
                f"{OAUTH_STAGES[0]})"
            )
    if status != 200:
        raise IdentityError(f"cross-signing keys refused (HTTP {status}): {error_text(answer)}")


async def _with_password(
    post: Post, body: dict[str, Any], challenge: dict[str, Any], auth: UploadAuth
) -> tuple[int, dict[str, Any]]:
    password = auth.password()
    if password is None:
        raise IdentityError(
            "the homeserver asks for the account's password to publish cross-signing "
            "keys: set matrix.password or BLUEHATS_MATRIX_PASSWORD"
        )
    return await post(
        {
            **body,
            "auth": {
                "type": PASSWORD_STAGE,
                "identifier": auth.identifier,
                "password": password.get_secret_value(),
                "session": challenge.get("session"),
            },
        }
    )


async def _approved(
    post: Post,
    body: dict[str, Any],
    challenge: dict[str, Any],
    stage: str,
    approval: Approval | None,
) -> tuple[int, dict[str, Any]]:
    """Tell the approval URL, then retry the upload until the homeserver takes it or
    the wait is over."""
    url = ((challenge.get("params") or {}).get(stage) or {}).get("url")
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise IdentityError(f"the homeserver asks for {stage} without an approval URL")
    if approval is None:
        raise IdentityError(
            f"the homeserver asks a person to approve replacing the cross-signing keys "
            f"({stage}): run `bluehats-bot identity --config … --reset`, which prints the URL"
        )
    pending = PendingApproval(url, datetime.now(UTC).replace(microsecond=0) + approval.wait)
    approval.announce(pending)
    log.info("waiting for approval of the identity reset until %s", pending.deadline)
    session = challenge.get("session")
    retry = {**body, "auth": {"session": session}} if isinstance(session, str) else body
    end = time.monotonic() + approval.wait.total_seconds()
    while True:
        left = end - time.monotonic()
        await asyncio.sleep(max(0.0, min(approval.retry_every.total_seconds(), left)))
        status, answer = await post(retry)
        still_asked = status == 401 and any(
            [s] in [f.get("stages") for f in answer.get("flows") or []] for s in OAUTH_STAGES
        )
        if not still_asked:
            return status, answer
        if time.monotonic() >= end:
            raise ApprovalExpired(
                f"nobody approved the reset at {url} within {_duration(approval.wait)}: "
                "the identity was not replaced; run `identity --reset` again and approve "
                "sooner (or give --wait a longer time)"
            )


def _duration(value: timedelta) -> str:
    minutes, seconds = divmod(int(value.total_seconds()), 60)
    parts = [f"{minutes} min"] * bool(minutes) + [f"{seconds} s"] * bool(seconds)
    return " ".join(parts) or "0 s"
