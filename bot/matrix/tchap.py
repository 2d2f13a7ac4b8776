"""Tchap's conventions for e-mail accounts: the directory that tells an
address's homeserver, and the Matrix ID Tchap gives an address."""

from __future__ import annotations

import string

import aiohttp
from aiohttp import ClientError

# What Tchap keeps of an address in a localpart. Both places that create
# accounts apply the same rule: tchapgouv/synapse-sso-proconnect
# (synapse_sso_proconnect/proconnect_mapping.py, `mxid_localpart_allowed_characters`)
# and Tchap's MAS (tchapgouv/matrix-authentication-service, branch main_tchap,
# crates/tchap/src/lib.rs, `email_to_mxid_localpart`).
LOCALPART_CHARACTERS = frozenset("_-./=" + string.ascii_lowercase + string.digits)

DIRECTORY_PATH = "/_matrix/identity/api/v1/info"


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


async def server_name(identity_server: str, email: str) -> str:
    """The server name of the address's homeserver, as Tchap's directory answers it
    (`{"hs": "agent.dinum.tchap.gouv.fr"}`)."""
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
    if not isinstance(hs, str) or not hs or "/" in hs:
        raise DirectoryError(f"{identity_server} knows no homeserver for {email}")
    return hs
