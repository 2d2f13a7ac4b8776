"""A stand-in for MAS (matrix-authentication-service) in front of a real Synapse.

MAS is not installable here. What a client sees of a homeserver under MAS is
reproduced on a loopback port: `auth_metadata` (MSC2965) names an issuer, the
login flows are MAS's, and `/login` is MAS's compatibility layer, which takes
no identifier but `m.id.user`. Everything else goes to Synapse unchanged
(method, path and query, headers, body, status; streamed, so `/sync` long-polls
pass too).

Other MAS behaviours go in `routes`: `(method, path) -> handler`, consulted
before the pass-through (`MasStandIn.forward` passes a request on from a
handler that only looks at it).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, Self

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

STABLE_METADATA = "/_matrix/client/v1/auth_metadata"
UNSTABLE_METADATA = "/_matrix/client/unstable/org.matrix.msc2965/auth_metadata"
LOGIN_PATHS = ("/_matrix/client/v3/login", "/_matrix/client/r0/login")

# Not passed on either way (RFC 9110 §7.6.1), or set again by aiohttp.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
    }
)


def matrix_error(status: int, errcode: str, error: str) -> web.Response:
    return web.json_response({"errcode": errcode, "error": error}, status=status)


class MasStandIn:
    """`async with MasStandIn(synapse.url) as mas:` then use `mas.url` as the homeserver."""

    def __init__(self, upstream: str, *, stable_metadata: bool = True) -> None:
        self.upstream = upstream.rstrip("/")
        self.url = ""  # set once listening
        # The identifiers of the password logins asked for, in order.
        self.login_identifiers: list[dict[str, Any]] = []
        self.routes: dict[tuple[str, str], Handler] = {
            ("GET", UNSTABLE_METADATA): self.auth_metadata,
        }
        if stable_metadata:  # MAS before the stable name: the unstable path only
            self.routes["GET", STABLE_METADATA] = self.auth_metadata
        for path in LOGIN_PATHS:
            self.routes["GET", path] = self.login_flows
            self.routes["POST", path] = self.login
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        # No decompression: bodies pass as Synapse sent them, with their headers.
        self._http = aiohttp.ClientSession(
            auto_decompress=False, timeout=aiohttp.ClientTimeout(total=None)
        )
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        # A client that hangs up (a /sync cut short) cancels its pass-through.
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._http is not None:
            await self._http.close()

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        handler = self.routes.get((request.method, request.path))
        return await (handler or self.forward)(request)

    # -- MAS's answers -----------------------------------------------------------------------------

    async def auth_metadata(self, request: web.Request) -> web.Response:
        """A plausible OAuth 2.0 server metadata document, as MAS publishes it."""
        issuer = f"{self.url}/"
        return web.json_response(
            {
                "issuer": issuer,
                "authorization_endpoint": f"{issuer}authorize",
                "token_endpoint": f"{issuer}oauth2/token",
                "jwks_uri": f"{issuer}oauth2/keys.json",
                "registration_endpoint": f"{issuer}oauth2/registration",
                "revocation_endpoint": f"{issuer}oauth2/revoke",
                "introspection_endpoint": f"{issuer}oauth2/introspect",
                "userinfo_endpoint": f"{issuer}oauth2/userinfo",
                "device_authorization_endpoint": f"{issuer}oauth2/device",
                "account_management_uri": f"{issuer}account/",
                "scopes_supported": ["openid", "email"],
                "response_types_supported": ["code", "id_token", "code id_token"],
                "response_modes_supported": ["form_post", "query", "fragment"],
                "grant_types_supported": [
                    "authorization_code",
                    "refresh_token",
                    "client_credentials",
                    "urn:ietf:params:oauth:grant-type:device_code",
                ],
                "code_challenge_methods_supported": ["plain", "S256"],
                "prompt_values_supported": ["none", "login", "create"],
            },
            headers={"Cache-Control": "public, max-age=600"},
        )

    async def login_flows(self, request: web.Request) -> web.Response:
        """MAS's `GET /login` with passwords enabled (compat/login.rs, `get`)."""
        return web.json_response(
            {
                "flows": [
                    {"type": "m.login.password"},
                    {
                        "type": "m.login.sso",
                        "oauth_aware_preferred": True,
                        "org.matrix.msc3824.delegated_oidc_compatibility": True,
                    },
                    {"type": "m.login.token"},
                ]
            }
        )

    async def login(self, request: web.Request) -> web.StreamResponse:
        """MAS's compatibility `POST /login` (element-hq/matrix-authentication-service,
        crates/handlers/src/compat/login.rs): a password with `m.id.user` (or the
        old `user` field), or a token; any other identifier or login type is
        refused with its status, errcode and message. What it takes goes to Synapse."""
        try:
            body = json.loads(await request.read())
        except ValueError:
            return matrix_error(400, "M_NOT_JSON", "Body is not a valid JSON document")
        kind = body.get("type") if isinstance(body, dict) else None
        if kind == "m.login.password":
            identifier = body.get("identifier")
            self.login_identifiers.append(identifier)
            if body.get("user") is None:
                if identifier is None:
                    return matrix_error(400, "M_BAD_JSON", "Missing property 'identifier")
                if not isinstance(identifier, dict) or identifier.get("type") != "m.id.user":
                    return matrix_error(400, "M_UNKNOWN", "Unsupported login identifier")
        elif kind != "m.login.token":
            return matrix_error(400, "M_UNKNOWN", "Invalid login type")
        return await self.forward(request)

    # -- the pass-through --------------------------------------------------------------------------

    async def call(
        self, method: str, path_qs: str, headers: Any, body: bytes
    ) -> tuple[int, str, bytes]:
        """A request of the stand-in's own to Synapse (its authorization and content
        type only): status, content type and body, read whole."""
        assert self._http is not None
        sent = {k: v for k, v in headers.items() if k.lower() in ("authorization", "content-type")}
        async with self._http.request(
            method, self.upstream + path_qs, data=body or None, headers=sent
        ) as resp:
            return resp.status, resp.content_type, await resp.read()

    async def forward(self, request: web.Request) -> web.StreamResponse:
        """The request as it came, to Synapse; its answer, streamed back as it comes."""
        assert self._http is not None
        headers = CIMultiDict(
            (k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP
        )
        async with self._http.request(
            request.method,
            URL(self.upstream + request.raw_path, encoded=True),
            headers=headers,
            data=await request.read() if request.body_exists else None,
            allow_redirects=False,
        ) as upstream:
            response = web.StreamResponse(
                status=upstream.status,
                reason=upstream.reason,
                headers=CIMultiDict(
                    (k, v) for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP
                ),
            )
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response
