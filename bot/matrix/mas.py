"""What a homeserver publishes about its logins: whether its accounts live in MAS
(matrix-authentication-service: OAuth 2.0, as Tchap's homeservers move to), and
whether it still takes passwords.

Under MAS, `/login` is MAS's compatibility layer: `m.login.password` with an
`m.id.user` identifier (and `m.login.token`), nothing else. An e-mail
(`m.id.thirdparty`) gets 400 M_UNKNOWN "Unsupported login identifier"
(element-hq/matrix-authentication-service, crates/handlers/src/compat/login.rs,
`RouteError::UnsupportedIdentifier`; its test `test_unsupported_login_identifier`,
the same in Tchap's fork, branch main_tchap).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import ClientError
from nio import ErrorResponse

log = logging.getLogger(__name__)

# MSC2965, stable since spec v1.15, and its unstable name (Synapse serves both
# when MAS is enabled, and no such route otherwise).
AUTH_METADATA_PATHS = (
    "/_matrix/client/v1/auth_metadata",
    "/_matrix/client/unstable/org.matrix.msc2965/auth_metadata",
)
LOGIN_PATH = "/_matrix/client/v3/login"
# In the `m.login.sso` flow of a homeserver under MAS (MSC3824; the unstable
# name is still sent next to the stable one).
OAUTH_AWARE_KEYS = ("oauth_aware_preferred", "org.matrix.msc3824.delegated_oidc_compatibility")
UNSUPPORTED_IDENTIFIER = "Unsupported login identifier"
TIMEOUT_S = 15


@dataclass(frozen=True)
class LoginModes:
    # Its accounts are MAS's: `auth_metadata` names an issuer, or the login
    # flows say that OAuth is preferred.
    delegated: bool = False
    # The OAuth 2.0 issuer that `auth_metadata` names (MAS's public URL).
    issuer: str | None = None
    # `m.login.password` is among the login flows (True when they are unknown:
    # the login itself will tell).
    password: bool = True


async def detect(homeserver: str) -> LoginModes:
    """Read `auth_metadata` (stable, then unstable) and the login flows. What
    cannot be read counts as a classic homeserver, whose login then says more."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as http:
        issuer = None
        for path in AUTH_METADATA_PATHS:
            metadata = await _get_json(http, homeserver + path)
            if isinstance(metadata, dict) and isinstance(metadata.get("issuer"), str):
                issuer = metadata["issuer"]
                break
        flows = await _get_json(http, homeserver + LOGIN_PATH)
    modes = _from_flows(flows)
    if issuer is not None:
        modes = LoginModes(delegated=True, issuer=issuer, password=modes.password)
    if modes.delegated:
        log.info(
            "%s delegates its accounts to MAS (issuer %s); password login %s",
            homeserver,
            modes.issuer or "not published",
            "offered" if modes.password else "not offered",
        )
    return modes


def _from_flows(flows: Any) -> LoginModes:
    if not isinstance(flows, dict) or not isinstance(flows.get("flows"), list):
        return LoginModes()
    kinds = [f for f in flows["flows"] if isinstance(f, dict)]
    return LoginModes(
        delegated=any(
            f.get("type") == "m.login.sso" and any(f.get(k) is True for k in OAUTH_AWARE_KEYS)
            for f in kinds
        ),
        password=any(f.get("type") == "m.login.password" for f in kinds),
    )


async def _get_json(http: aiohttp.ClientSession, url: str) -> Any:
    """The JSON body of a 200 answer; None for anything else."""
    try:
        async with http.get(url) as resp:
            if resp.status != 200:
                log.debug("GET %s: HTTP %s", url, resp.status)
                return None
            return await resp.json(content_type=None)
    except (ClientError, TimeoutError, ValueError) as exc:
        log.debug("GET %s: %r", url, exc)
        return None


def unsupported_identifier(resp: Any) -> bool:
    """The login was refused for its identifier's type, as MAS refuses an e-mail."""
    if not isinstance(resp, ErrorResponse) or resp.status_code != "M_UNKNOWN":
        return False
    return UNSUPPORTED_IDENTIFIER.lower() in (resp.message or "").lower()
