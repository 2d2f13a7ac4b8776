"""What MAS changes, in front of the test's Synapse, for replacing cross-signing keys.

MAS is not installable here. This stand-in (`tests.mas.MasStandIn`, whose
pass-through, auth_metadata and compatibility login it keeps) passes every
request through to Synapse except `POST /_matrix/client/v3/keys/
device_signing/upload` when Synapse asks for user-interactive auth (a
replacement: first uploads and the same keys again go through, MSC3967). There
it answers as a MAS-backed Synapse does (synapse/rest/client/keys.py,
`SigningKeyUploadServlet`, the `mas.enabled` branch): 401, the `m.oauth` stage
and its unstable twin `org.matrix.cross_signing_reset`, each with the approval
URL in `params` (here, this stand-in's account page with
`?action=org.matrix.cross_signing_reset`, as MAS's), the session "dummy" and
Synapse's `msg`.

Opening the approval URL (the test does, as the person in a browser would)
calls Synapse's real admin API `_allow_cross_signing_replacement_without_uia`
for the account, with an admin's token, as MAS does; Synapse answers with the
end of the window it opened (`updatable_without_uia_before_ms`, 10 minutes).
Synapse without MAS does not look at that window (it asks for the password in
any case), so within it the stand-in completes Synapse's password stage with
the account's password: what a MAS-backed Synapse does is to skip the stage.
One account only: the bot's.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from typing import Any

from aiohttp import web

from bot.devserver import DevHomeserver
from tests.helpers import PASSWORD, unique
from tests.mas import MasStandIn

UPLOAD = "/_matrix/client/v3/keys/device_signing/upload"
ACTION = "org.matrix.cross_signing_reset"


def oauth_challenge(url: str) -> dict[str, Any]:
    """The 401 body of a MAS-backed Synapse (1.163, synapse/rest/client/keys.py)."""
    return {
        "session": "dummy",
        "flows": [{"stages": ["m.oauth"]}, {"stages": [ACTION]}],
        "params": {"m.oauth": {"url": url}, ACTION: {"url": url}},
        "msg": "To reset your end-to-end encryption cross-signing identity, you first need "
        f"to approve it at {url} and then try again.",
    }


class MasResetStandIn(MasStandIn):
    """`async with MasResetStandIn(synapse, user_id, password) as mas:` the bot's
    homeserver is `mas.url`; `mas.approval_url` is what the 401 carries."""

    def __init__(self, synapse: DevHomeserver, user_id: str, password: str) -> None:
        super().__init__(synapse.url)
        self.user_id = user_id
        self._password = password
        admin = synapse.register(unique("mas"), PASSWORD, admin=True)
        self._admin_token = synapse.login(admin, PASSWORD)
        # The end of the window Synapse opened, in ms since the epoch.
        self.approved_until_ms: int | None = None
        # How many times the stage was asked for (each retry of the client too).
        self.challenges = 0
        self.routes["GET", "/account/"] = self._approve
        self.routes["POST", UPLOAD] = self._upload

    @property
    def approval_url(self) -> str:
        return f"{self.url}/account/?action={ACTION}"

    # -- the person's approval, as MAS's account page -------------------------------------

    async def _approve(self, request: web.Request) -> web.Response:
        if request.query.get("action") != ACTION:
            return web.Response(status=400, text="unknown action")
        path = (
            f"/_synapse/admin/v1/users/{urllib.parse.quote(self.user_id, safe='')}"
            "/_allow_cross_signing_replacement_without_uia"
        )
        status, _, data = await self.call(
            "POST", path, {"Authorization": f"Bearer {self._admin_token}"}, b"{}"
        )
        if status != 200:
            return web.Response(status=502, text=f"Synapse answered {status}: {data[:200]!r}")
        self.approved_until_ms = int(json.loads(data)["updatable_without_uia_before_ms"])
        return web.Response(text="<p>Identity reset approved.</p>", content_type="text/html")

    def window_open(self) -> bool:
        return self.approved_until_ms is not None and time.time() * 1000 < self.approved_until_ms

    # -- the key upload ---------------------------------------------------------------------

    async def _upload(self, request: web.Request) -> web.Response:
        keys = json.loads(await request.read() or b"{}")
        keys.pop("auth", None)  # a MAS-backed Synapse does not look at it
        status, ctype, data = await self.call(
            "POST", UPLOAD, request.headers, json.dumps(keys).encode()
        )
        answer = json.loads(data or b"{}")
        if status != 401 or "flows" not in answer:
            return web.Response(status=status, body=data, content_type=ctype)
        if not self.window_open():
            self.challenges += 1
            return web.json_response(oauth_challenge(self.approval_url), status=401)
        auth = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": self.user_id},
            "password": self._password,
            "session": answer.get("session"),
        }
        status, ctype, data = await self.call(
            "POST", UPLOAD, request.headers, json.dumps({**keys, "auth": auth}).encode()
        )
        return web.Response(status=status, body=data, content_type=ctype)
