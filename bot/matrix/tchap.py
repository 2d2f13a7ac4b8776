"""Tchap's conventions for e-mail accounts: the directory that tells an
address's homeserver, and the Matrix ID Tchap gives an address."""

from __future__ import annotations

import re
import string
from urllib.parse import urlsplit

import aiohttp
from aiohttp import ClientError

from bot.config.web import is_loopback
from bot.logsafe import printable

# What Tchap keeps of an address in a localpart. Both places that create
# accounts apply the same rule: tchapgouv/synapse-sso-proconnect
# (synapse_sso_proconnect/proconnect_mapping.py, `mxid_localpart_allowed_characters`)
# and Tchap's MAS (tchapgouv/matrix-authentication-service, branch main_tchap,
# crates/tchap/src/lib.rs, `email_to_mxid_localpart`).
LOCALPART_CHARACTERS = frozenset("_-./=" + string.ascii_lowercase + string.digits)

DIRECTORY_PATH = "/_matrix/identity/api/v1/info"

# Every Tchap homeserver is named under this domain (agent.dinum.tchap.gouv.fr,
# agent.externe.tchap.gouv.fr…), and the directory answers one of those names:
# Tchap's web client then talks to "https://matrix." + the answer
# (tchapgouv/tchap-web-v4, src/tchap/util/TchapUtils.ts, fetchHomeserverForEmail).
TCHAP_DOMAIN = "tchap.gouv.fr"
# A server name (spec, appendices, "Server Name"): a DNS name, an IPv4 address or
# a bracketed IPv6 one, and an optional port. Nothing else may reach a URL.
_SERVER_NAME = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::[0-9]{1,5})?")


class DirectoryError(Exception):
    """The directory could not tell the address's homeserver (the message says why)."""


def localpart(email: str) -> str:
    """The localpart Tchap derives from an e-mail address: `@` becomes `-`, lower
    case, and every character a localpart may not hold is dropped (accents, `+`).

    An account created after an earlier one of the same address was deactivated
    gets a digit suffix (`…-gouv.fr1`): that one is not derivable, its Matrix ID
    must be configured."""
    return "".join(c for c in email.replace("@", "-").lower() if c in LOCALPART_CHARACTERS)


def user_id(email: str, server_name: str) -> str:
    return f"@{localpart(email)}:{server_name}"


def _host(url: str | None) -> str:
    return (urlsplit(url).hostname or "") if url else ""


def trusted(host: str, *, identity_server: str, homeserver: str | None = None) -> bool:
    """Whether the directory may send the bot (its password, its token) to `host`:
    a Tchap homeserver (`tchap.gouv.fr` or under it), or the host of the configured
    homeserver or directory itself (loopback names being one host: a local
    stand-in of the directory, in tests or a demo)."""
    host = host.lower().rstrip(".")
    if host == TCHAP_DOMAIN or host.endswith(f".{TCHAP_DOMAIN}"):
        return True
    for configured in (_host(homeserver), _host(identity_server)):
        if host == configured or (is_loopback(host) and is_loopback(configured)):
            return True
    return False


async def server_name(identity_server: str, email: str, homeserver: str | None = None) -> str:
    """The server name of the address's homeserver, as Tchap's directory answers it
    (`{"hs": "agent.dinum.tchap.gouv.fr"}`); `DirectoryError` for an answer that is
    not a server name, or names a server that is not Tchap's (see `trusted`)."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
            http.get(
                f"{identity_server}{DIRECTORY_PATH}",
                params={"medium": "email", "address": email},
            ) as resp,
        ):
            if resp.status != 200:
                raise DirectoryError(
                    f"{identity_server} answered HTTP {resp.status} for the e-mail's server"
                )
            data = await resp.json(content_type=None)
    except (ClientError, TimeoutError, ValueError) as exc:
        raise DirectoryError(
            f"cannot ask {identity_server} for the e-mail's server: {exc!r}"
        ) from None
    hs = data.get("hs") if isinstance(data, dict) else None
    if not isinstance(hs, str) or not hs:
        raise DirectoryError(f"{identity_server} knows no homeserver for {email}")
    found = _SERVER_NAME.fullmatch(hs)
    if found is None or not trusted(
        found["host"].strip("[]"), identity_server=identity_server, homeserver=homeserver
    ):
        raise DirectoryError(
            f"{identity_server} names {printable(hs, 100)} as the homeserver of {email}, "
            f"which is not a Tchap homeserver (neither {TCHAP_DOMAIN} nor under it, nor the "
            "host of matrix.homeserver or matrix.identity_server): not used; check "
            "matrix.identity_server, or give matrix.homeserver and matrix.user_id as a "
            "Matrix ID"
        )
    return hs
