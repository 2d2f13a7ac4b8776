"""Sending: messages (quiet notices, or calls that ring) and files with the
caller's transaction id, direct rooms, and pacing after 429s.

The transaction id comes from the caller (the outbox, the inbox): sent again
after a crash, the same id makes the homeserver give back the same event
instead of posting twice. Each message carries it in its content too
(`bot.matrix.sent.MARKER`), for when the homeserver has forgotten it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import ClientError
from nio import (
    EnableEncryptionBuilder,
    ErrorResponse,
    LocalProtocolError,
    RoomCreateResponse,
    RoomPreset,
    RoomSendError,
    SendRetryError,
    UploadResponse,
)
from nio.exceptions import OlmUnverifiedDeviceError

from bot.chat import FileUpload, SendError
from bot.matrix.login import Session
from bot.matrix.responses import describe
from bot.matrix.sent import MARKER
from bot.render import Message

log = logging.getLogger(__name__)

# Errors after which resending the same message cannot succeed.
_PERMANENT = frozenset(
    # Not M_UNKNOWN_TOKEN: the bot logs in again (recovery.py) and the post waits.
    {"M_FORBIDDEN", "M_NOT_FOUND", "M_TOO_LARGE", "M_BAD_JSON", "M_NOT_JSON"}
)
# How long a new direct room may take to show up in the sync.
NEW_ROOM_WAIT_S = 30.0
# Sends go one at a time until this long after the last 429's wait ended.
RATE_CALM_S = 30.0
# At most one "rate limited" log line per this many seconds.
RATE_LOG_EVERY_S = 60.0
# A file posted again, the same bytes, in an unencrypted room reuses its
# upload for this long (the homeserver's media retention may drop it later);
# at most this many are remembered.
UPLOAD_REUSE_S = 3600.0
UPLOADS_KEPT = 16


class _QuietRateLimit(logging.Filter):
    """nio logs every 429 it waits out; `RatePacer` logs them once a minute."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Got 429")


logging.getLogger("nio.client.async_client").addFilter(_QuietRateLimit())


class RatePacer:
    """429s: nio waits `retry_after_ms` and retries the request itself; the
    other sends wait the same (the limit is per account), not pile up."""

    def __init__(self) -> None:
        self.rate_limited = 0
        self._not_before = -RATE_CALM_S
        self._one_at_a_time = asyncio.Lock()
        self._rate_logged_at = -RATE_LOG_EVERY_S

    async def on_error(self, response: ErrorResponse) -> None:
        if response.status_code != "M_LIMIT_EXCEEDED":
            return
        wait = (getattr(response, "retry_after_ms", None) or 5000) / 1000
        now = time.monotonic()
        self.rate_limited += 1
        self._not_before = max(self._not_before, now + wait)
        if now - self._rate_logged_at >= RATE_LOG_EVERY_S:
            self._rate_logged_at = now
            log.info(
                "rate limited by the homeserver (%d time(s) so far): waiting %.1fs as told",
                self.rate_limited,
                wait,
            )

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Wait out a 429; while they keep coming, one send at a time.

        Parallel sends would each get their own 429 and retry together (about
        four refused requests per message at Synapse's default limit, measured
        with bench/fanout.py); one at a time, about one.
        """
        if time.monotonic() - self._not_before > RATE_CALM_S:
            yield  # no recent 429
            return
        async with self._one_at_a_time:
            delay = self._not_before - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            yield


# The word the legacy `.m.rule.roomnotif` looks for in `body`.
ROOM_MENTION = "@room"


def message_content(message: Message) -> dict[str, Any]:
    """The `m.room.message` content of `message`: a quiet notice, or a call.

    `m.notice` never notifies, mention or not: the default override rule
    `.m.rule.suppress_notices` comes before the mention rules (matrix-spec
    PR 2186; the order of element-hq/synapse `rust/src/push/base_rules.rs`).
    A message that calls someone is therefore `m.text`, its `m.mentions`
    naming them (`.m.rule.is_user_mention`) or the room (`room: true`,
    `.m.rule.is_room_mention`, which the homeserver honours only when the
    sender's power level reaches the room's `notifications.room`: the caller
    checks it first). "@room" is written in the body too, as the legacy
    `.m.rule.roomnotif` expects. Anything else is a notice with an empty
    `m.mentions`, which also turns off the legacy rules that ping the display
    names and IDs found in its body (MSC3952).
    """
    mentions: dict[str, Any] = {}
    body, html = message.body, message.html
    if message.mentions:
        mentions["user_ids"] = list(message.mentions)
    if message.mentions_room:
        mentions["room"] = True
        if ROOM_MENTION not in body:
            body = f"{ROOM_MENTION} {body}"
        if ROOM_MENTION not in html:
            inside = html.startswith("<p>")
            html = f"<p>{ROOM_MENTION} {html[3:]}" if inside else f"{ROOM_MENTION} {html}"
    return {
        "msgtype": "m.text" if message.rings else "m.notice",
        "body": body,
        "format": "org.matrix.custom.html",
        "formatted_body": html,
        "m.mentions": mentions,
    }


def replacement(content: dict[str, Any], replaces: str) -> dict[str, Any]:
    """An edit of the event `replaces` to `content`, as the spec words it.

    Clients show `m.new_content`; the "* " fallback is for those that do not
    know edits. The top-level `m.mentions` is empty: the people called were
    notified by the message edited, an edit must not ring again (nor does it
    on servers with `.m.rule.suppress_edits`). Its msgtype is the edited
    message's: the edit calls the same people, by the same rule
    (`message_content`), so it stays `m.text` or `m.notice` as that was.
    Encrypted rooms need nothing more: the whole content is encrypted, and
    the relation copied outside by nio (it does so for every `m.relates_to`).
    """
    return {
        "msgtype": content["msgtype"],
        "body": "* " + content["body"],
        "format": content["format"],
        "formatted_body": "* " + content["formatted_body"],
        "m.mentions": {},
        "m.new_content": content,
        "m.relates_to": {"rel_type": "m.replace", "event_id": replaces},
    }


class RoomPoster:
    """What the bot posts, and the direct rooms it opens to post there."""

    def __init__(
        self,
        session: Session,
        pacer: RatePacer,
        *,
        room_shown: Callable[[str, str | None], Awaitable[None]],
    ) -> None:
        self._session = session
        self._pacer = pacer
        # Returns once a sync has shown the room (and the member given in it).
        self._room_shown = room_shown
        # Unencrypted uploads: (sha256, mimetype, filename) → (mxc URI, when).
        self._uploads: OrderedDict[tuple[str, str, str], tuple[str, float]] = OrderedDict()

    async def send_message(
        self,
        room_id: str,
        message: Message,
        *,
        txn_id: str,
        reply_to: str | None = None,
        thread_root: str | None = None,
        replaces: str | None = None,
    ) -> str | None:
        content = message_content(message)
        if replaces is not None:
            return await self._send(room_id, replacement(content, replaces), txn_id, None, None)
        return await self._send(room_id, content, txn_id, reply_to, thread_root)

    async def redact(self, room_id: str, event_id: str, *, reason: str, txn_id: str) -> None:
        """Redactions are never encrypted; the transaction id makes a resend harmless."""
        try:
            async with self._pacer.turn():
                resp = await self._session.client.room_redact(
                    room_id, event_id, reason=reason or None, tx_id=txn_id
                )
        except (ClientError, TimeoutError) as exc:
            raise SendError(f"redaction failed: {type(exc).__name__}", permanent=False) from None
        if isinstance(resp, ErrorResponse):
            raise SendError(describe(resp), permanent=resp.status_code in _PERMANENT)

    async def open_direct_room(self, user_id: str) -> str:
        # Encrypted, as Tchap's direct rooms are. The room key is shared with
        # the invitee's devices too, so what is sent before they join (the
        # confirmation of a 🔔) is readable once they do.
        resp = await self._session.client.room_create(
            is_direct=True,
            invite=[user_id],
            preset=RoomPreset.trusted_private_chat,
            initial_state=[EnableEncryptionBuilder().as_dict()],
        )
        if not isinstance(resp, RoomCreateResponse):
            raise SendError(f"cannot open a direct room: {describe(resp)}", permanent=False)
        room_id = str(resp.room_id)
        # nio sends only to rooms its sync has shown; the next sync will. It
        # must show the invite too: Synapse sends the invites after the room's
        # first events (`create_room` in synapse/handlers/room.py), so a sync
        # may show the room without them. Sent then, the room key would be
        # shared with no one and the invitee could never read the message.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(NEW_ROOM_WAIT_S):
                await self._room_shown(room_id, user_id)
        return room_id

    async def send_file(
        self,
        room_id: str,
        upload: FileUpload,
        *,
        txn_id: str,
        reply_to: str | None = None,
        thread_root: str | None = None,
    ) -> None:
        client = self._session.client
        room = client.rooms.get(room_id)
        encrypt = bool(room and room.encrypted)
        # In an encrypted room each upload has its own key: never reused.
        # Elsewhere the same bytes (the same `!agenda ics` asked again) need
        # not travel again: media there is readable by its address anyway.
        key = None if encrypt else self._upload_key(upload)
        keys = None
        content_uri = self._uploaded(key) if key is not None else None
        if content_uri is None:
            try:
                resp, keys = await client.upload(
                    lambda _limited, _timeouts: io.BytesIO(upload.data),
                    content_type=upload.mimetype,
                    filename=upload.filename,
                    encrypt=encrypt,
                    filesize=len(upload.data),
                )
            except (ClientError, TimeoutError) as exc:
                raise SendError(f"upload failed: {type(exc).__name__}", permanent=False) from None
            if not isinstance(resp, UploadResponse):
                status = getattr(resp, "status_code", None)
                raise SendError(
                    f"upload failed: {describe(resp)}", permanent=status == "M_TOO_LARGE"
                )
            content_uri = resp.content_uri
            if key is not None:
                self._remember_upload(key, content_uri)
        content: dict[str, Any] = {
            "msgtype": "m.file",
            "body": upload.filename,
            "filename": upload.filename,
            "info": {"mimetype": upload.mimetype, "size": len(upload.data)},
            "m.mentions": {},
        }
        if encrypt and keys is not None:
            content["file"] = {**keys, "url": content_uri, "mimetype": upload.mimetype}
        else:
            content["url"] = content_uri
        await self._send(room_id, content, txn_id, reply_to, thread_root)

    @staticmethod
    def _upload_key(upload: FileUpload) -> tuple[str, str, str]:
        return hashlib.sha256(upload.data).hexdigest(), upload.mimetype, upload.filename

    def _uploaded(self, key: tuple[str, str, str]) -> str | None:
        """The mxc URI of the same file uploaded unencrypted lately, if any."""
        found = self._uploads.get(key)
        if found is None or time.monotonic() - found[1] > UPLOAD_REUSE_S:
            return None
        return found[0]

    def _remember_upload(self, key: tuple[str, str, str], content_uri: str) -> None:
        self._uploads.pop(key, None)
        self._uploads[key] = (content_uri, time.monotonic())
        while len(self._uploads) > UPLOADS_KEPT:
            self._uploads.popitem(last=False)

    async def _send(
        self,
        room_id: str,
        content: dict[str, Any],
        txn_id: str,
        reply_to: str | None,
        thread_root: str | None,
    ) -> str:
        # What finds the message again when its transaction id is forgotten
        # (`bot.matrix.sent`); encrypted with the rest in an encrypted room.
        content[MARKER] = txn_id
        if thread_root:
            content["m.relates_to"] = {
                "rel_type": "m.thread",
                "event_id": thread_root,
                "is_falling_back": reply_to is None,
                "m.in_reply_to": {"event_id": reply_to or thread_root},
            }
        elif reply_to:
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
        try:
            async with self._pacer.turn():
                resp = await self._session.client.room_send(
                    room_id,
                    "m.room.message",
                    content,
                    tx_id=txn_id,
                    # Members' devices need not be verified to read the bot.
                    ignore_unverified_devices=True,
                )
        except (SendRetryError, LocalProtocolError, OlmUnverifiedDeviceError) as exc:
            raise SendError(f"{type(exc).__name__}: {exc}", permanent=False) from None
        if isinstance(resp, RoomSendError):
            raise SendError(describe(resp), permanent=resp.status_code in _PERMANENT)
        return str(resp.event_id)
