"""Unit tests: the Matrix ID Tchap derives from an e-mail, and how a homeserver
tells that its accounts are MAS's (loopback servers, no Synapse)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bot import config as configuration
from bot.matrix import mas, tchap
from bot.matrix.login import LoginFailed, Session
from tests.helpers import loopback_http

CLASSIC_FLOWS = {"flows": [{"type": "m.login.password"}, {"type": "m.login.application_service"}]}
MAS_SSO = {
    "type": "m.login.sso",
    "oauth_aware_preferred": True,
    "org.matrix.msc3824.delegated_oidc_compatibility": True,
}


@pytest.mark.parametrize(
    ("email", "localpart"),
    [
        ("jean.dupont@numerique.gouv.fr", "jean.dupont-numerique.gouv.fr"),
        # Upper case is lowered.
        ("Jean.DUPONT@Numerique.Gouv.FR", "jean.dupont-numerique.gouv.fr"),
        # `+` is not a character Tchap keeps: dropped, not replaced.
        ("bluehats+bot@numerique.gouv.fr", "bluehatsbot-numerique.gouv.fr"),
        # Accented letters are dropped too (no transliteration), as are quotes.
        ("Hélène.O'Brien@intérieur.gouv.fr", "hlne.obrien-intrieur.gouv.fr"),
        # What a localpart may hold stays: digits, `_-./=`.
        ("a_b=c/d-9@x.fr", "a_b=c/d-9-x.fr"),
    ],
)
def test_localpart_as_tchap_derives_it(email: str, localpart: str) -> None:
    assert tchap.localpart(email) == localpart


def test_user_id_on_the_directory_server_name() -> None:
    assert (
        tchap.user_id("Agent.Public@Finances.Gouv.fr", "agent.finances.tchap.gouv.fr")
        == "@agent.public-finances.gouv.fr:agent.finances.tchap.gouv.fr"
    )


@pytest.mark.parametrize(
    ("answer", "homeserver", "used"),
    [
        ("agent.dinum.tchap.gouv.fr", None, True),
        ("agent.externe.tchap.gouv.fr:443", None, True),
        ("tchap.gouv.fr", None, True),
        ("evil.example", None, False),
        ("agent.tchap.gouv.fr.evil.example", None, False),
        ("eviltchap.gouv.fr", None, False),
        # Not a server name: nothing of it may reach a URL.
        ("evil.example/agent.tchap.gouv.fr", None, False),
        ("evil.example@agent.tchap.gouv.fr", None, False),
        ("evil.example#.tchap.gouv.fr", None, False),
        # The configured homeserver's own host; the directory stand-in's (loopback).
        ("matrix.example.org", "https://matrix.example.org", True),
        ("other.example.org", "https://matrix.example.org", False),
        ("localhost:8448", None, True),
        ("[::1]:8448", None, True),
    ],
)
async def test_the_directory_may_only_name_a_tchap_homeserver(
    answer: str, homeserver: str | None, used: bool
) -> None:
    email = "agent@numerique.gouv.fr"
    routes = {tchap.DIRECTORY_PATH: json_route({"hs": answer})}
    async with loopback_http(routes) as directory:
        if used:
            assert await tchap.server_name(directory, email, homeserver) == answer
            return
        with pytest.raises(tchap.DirectoryError) as refused:
            await tchap.server_name(directory, email, homeserver)
    assert str(refused.value).startswith(
        f"{directory} names {answer} as the homeserver of {email}, which is not a Tchap "
        "homeserver (neither tchap.gouv.fr nor under it"
    )


async def test_an_e_mail_login_stops_when_the_directory_names_another_host(
    tmp_path: Path,
) -> None:
    routes = {tchap.DIRECTORY_PATH: json_route({"hs": "matrix.evil.example"})}
    async with loopback_http(routes) as directory:
        matrix = {
            "user_id": "bluehats@numerique.gouv.fr",
            "password": "pw",
            "identity_server": directory,
        }
        await login_fails(matrix, tmp_path, r"names matrix\.evil\.example as the homeserver")


async def login_fails(matrix: dict[str, Any], tmp_path: Path, message: str) -> None:
    """A session with this `matrix` configuration fails to log in, saying `message`."""
    cfg = configuration.from_dict({"matrix": matrix, "storage": {"path": str(tmp_path)}}, env={})

    async def on_error(resp: Any) -> None:
        pass

    session = Session(cfg.matrix, tmp_path, on_error=on_error)
    try:
        with pytest.raises(LoginFailed, match=message):
            await session.connect()
    finally:
        await session.close()


def json_route(document: Any, status: int = 200) -> Any:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(document, status=status)

    return handler


METADATA = {"issuer": "https://auth.example.gouv.fr/", "token_endpoint": "https://auth/t"}


async def test_classic_homeserver_is_not_delegated() -> None:
    # Synapse without MAS has no auth_metadata route: 404 on both paths.
    async with loopback_http({mas.LOGIN_PATH: json_route(CLASSIC_FLOWS)}) as url:
        assert await mas.detect(url) == mas.LoginModes(delegated=False, password=True)


async def test_stable_auth_metadata_means_mas() -> None:
    routes = {
        mas.AUTH_METADATA_PATHS[0]: json_route(METADATA),
        mas.LOGIN_PATH: json_route({"flows": [{"type": "m.login.password"}, MAS_SSO]}),
    }
    async with loopback_http(routes) as url:
        modes = await mas.detect(url)
    assert modes == mas.LoginModes(delegated=True, issuer=METADATA["issuer"], password=True)


async def test_unstable_auth_metadata_means_mas() -> None:
    # An older deployment: only MSC2965's unstable path, classic-looking flows.
    routes = {
        mas.AUTH_METADATA_PATHS[1]: json_route(METADATA),
        mas.LOGIN_PATH: json_route(CLASSIC_FLOWS),
    }
    async with loopback_http(routes) as url:
        modes = await mas.detect(url)
    assert (modes.delegated, modes.issuer) == (True, METADATA["issuer"])


async def test_oauth_aware_login_flow_means_mas_without_metadata() -> None:
    # auth_metadata not routed to the homeserver (404), the flows still say MAS.
    routes = {
        mas.AUTH_METADATA_PATHS[0]: json_route({"errcode": "M_UNRECOGNIZED"}, 404),
        mas.LOGIN_PATH: json_route({"flows": [MAS_SSO, {"type": "m.login.token"}]}),
    }
    async with loopback_http(routes) as url:
        modes = await mas.detect(url)
    assert modes == mas.LoginModes(delegated=True, issuer=None, password=False)


async def test_unreachable_homeserver_counts_as_classic() -> None:
    async with loopback_http({}) as url:
        pass  # closed: nothing listens there any more
    assert await mas.detect(url) == mas.LoginModes()


async def test_no_password_flow_asks_for_a_compatibility_token(tmp_path: Path) -> None:
    """MAS with passwords disabled (ProConnect only): the bot says how to get a token."""
    routes = {
        mas.AUTH_METADATA_PATHS[0]: json_route(METADATA),
        mas.LOGIN_PATH: json_route({"flows": [MAS_SSO, {"type": "m.login.token"}]}),
    }
    async with loopback_http(routes) as url:
        matrix = {"homeserver": url, "user_id": "@bot:example.org", "password": "pw"}
        await login_fails(matrix, tmp_path, "mas-cli manage issue-compatibility-token")
