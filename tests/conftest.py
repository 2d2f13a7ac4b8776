"""Fixtures shared by the test files: a real Synapse for the session, real Matrix
users (nio, and matrix-js-sdk through `js_user`), the unit tests' broadcast
`world`, Chromium for browser tests (`browser`, `page`: browser.py). What tests
import is in helpers.py and fakes.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.devserver import DevHomeserver
from tests.browser import browser, page  # noqa: F401 - fixtures, found by pytest here
from tests.fakes import world  # noqa: F401 - a fixture, found by pytest here
from tests.helpers import CryptoUser, User, unique
from tests.js_client import js_user  # noqa: F401 - a fixture, found by pytest here


@pytest.fixture(scope="session")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevHomeserver]:
    with DevHomeserver(tmp_path_factory.mktemp("synapse")) as hs:
        yield hs


@pytest.fixture
async def make_user(synapse: DevHomeserver) -> AsyncIterator[Callable[..., Any]]:
    users: list[User] = []

    async def make(prefix: str = "agent") -> User:
        user = await User(synapse, unique(prefix)).login()
        users.append(user)
        return user

    yield make
    for user in users:
        await user.close()


@pytest.fixture
async def crypto_user(synapse: DevHomeserver, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    users: list[CryptoUser] = []

    async def make() -> CryptoUser:
        user = await CryptoUser(synapse, tmp_path / f"crypto-{len(users)}").start()
        users.append(user)
        return user

    yield make
    for user in users:
        await user.close()


E2E = Path(__file__).resolve().parent / "e2e"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test under tests/e2e/ is marked `e2e` (`-m e2e`, `-m "not e2e"`); the
    files marked `long(seconds)` run first, longest first. pytest-xdist
    (`--dist loadfile`) hands out files in this order: a long file handed out
    last would end the run alone."""
    for item in items:
        if E2E in item.path.parents:
            item.add_marker(pytest.mark.e2e)

    def seconds(item: pytest.Item) -> float:
        mark = item.get_closest_marker("long")
        return float(mark.args[0]) if mark is not None else 0.0

    # A stable sort: each file's tests stay together and in their order.
    items.sort(key=seconds, reverse=True)
