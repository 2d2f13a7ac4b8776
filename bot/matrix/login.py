"""Login: the saved session (same device at every start), an access token or a
password, and Tchap's directory for the homeserver of an e-mail account.

A password login names the account by its Matrix ID (`m.id.user`) whenever it
is known: it is the only identifier MAS takes. An e-mail account's Matrix ID is
unknown at its first login: on a classic homeserver the e-mail itself is the
identifier (`m.id.thirdparty`); under MAS the bot uses the ID that Tchap derives
from the address (`tchap.user_id`)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from nio import AsyncClient, AsyncClientConfig, ErrorResponse, LoginResponse, WhoamiResponse
from pydantic import SecretStr

from bot.config import ENV_STORE_KEY, MatrixConfig, is_email
from bot.matrix import mas, recovery, store_key, tchap
from bot.matrix.files import write_private
from bot.matrix.identity import Identity, warn_if_recovery_key_file
from bot.matrix.responses import describe
from bot.matrix.session_state import UNKNOWN_TOKEN, SessionStates, State
from bot.matrix.state import StateClient

log = logging.getLogger(__name__)

SESSION_FILE = "session.json"
# Longest wait between two attempts to reach an unreachable homeserver.
RECONNECT_MAX_WAIT_S = 10


class LoginFailed(Exception):
    pass


class LoginRefused(LoginFailed):
    """The homeserver refused the credentials (not a network failure)."""


class SessionRevoked(LoginFailed):
    """The configured token is revoked and there is no password: the bot stays up
    in the revoked state (`states`) until the operator gives a new token."""


@dataclass(frozen=True)
class SavedSession:
    homeserver: str
    user_id: str
    device_id: str
    access_token: str
    # What matrix.user_id says: the Matrix ID, or the account's e-mail.
    login: str = ""

    @classmethod
    def load(cls, path: Path) -> SavedSession | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            fields = ("homeserver", "user_id", "device_id", "access_token")
            saved = cls(**{k: str(data[k]) for k in fields})
            return replace(saved, login=str(data.get("login") or saved.user_id))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable saved session %s (%s)", path, type(exc).__name__)
            return None

    def save(self, path: Path) -> None:
        """Readable by the bot's user only: it holds a token."""
        write_private(path, json.dumps(self.__dict__))


class Session:
    """The bot's logged-in nio client; the other parts reach it through `client`.

    `client` is a placeholder until `connect()` makes the real one, once the
    homeserver is known (maybe discovered), and is replaced if the homeserver
    refuses the saved session.
    """

    def __init__(
        self,
        config: MatrixConfig,
        storage_dir: Path,
        *,
        on_error: Callable[[ErrorResponse], Awaitable[None]],
        store_key: SecretStr | None = None,
    ) -> None:
        self._config = config
        self._dir = storage_dir
        # The secret nio's crypto store is pickled with (storage.key), and the key
        # derived from it, once the store is checked (`store_key`).
        self._store_key = store_key
        self._pickle_key: str | None = None
        # Registered on every client made: sees each error response (429s).
        self._on_error = on_error
        self.client: AsyncClient = StateClient("http://unconfigured.invalid")
        # Expired, revoked: what the homeserver last said of the session.
        self.states = SessionStates()
        self._wait_while_expired = True
        # An e-mail account's Matrix ID, from a session the homeserver refused.
        self._known_user_id = ""
        # An e-mail account's server name, once the directory told it.
        self._server_name: str | None = None

    @property
    def can_log_in(self) -> bool:
        """Whether the bot can log in again by itself (it has the password)."""
        return self._config.password is not None

    @property
    def user_id(self) -> str:
        """The bot's Matrix ID (once connected: also with an e-mail login)."""
        return str(self.client.user_id or self._config.user_id)

    @property
    def device_id(self) -> str:
        return str(self.client.device_id)

    async def _new_client(self, homeserver: str) -> None:
        await self.client.close()  # the placeholder, or a session the server refused
        crypto = self._dir / "crypto"
        if self._pickle_key is None:
            self._pickle_key = await asyncio.to_thread(self._open_store, crypto)
        self.client = StateClient(
            homeserver,
            self._config.user_id if not is_email(self._config.user_id) else "",
            store_path=str(crypto),
            config=AsyncClientConfig(
                # We save the token ourselves, after the commands are recorded;
                # nio saves it before running callbacks.
                store_sync_tokens=False,
                encryption_enabled=True,
                # When the homeserver is unreachable nio retries with a growing
                # wait; capped so that the bot is back soon after it is.
                max_timeout_retry_wait_time=RECONNECT_MAX_WAIT_S,
                pickle_key=self._pickle_key,
            ),
        )
        self.client.add_response_callback(self._on_error, ErrorResponse)

    def _open_store(self, crypto: Path) -> str:
        """Once per start, before nio opens its store: the key it is pickled with (a
        wrong one is a `LoginFailed`, the start's end), and what is kept too broadly."""
        try:
            key = store_key.pickle_key(crypto, self._store_key)
        except store_key.StoreKeyError as exc:
            raise LoginFailed(str(exc)) from None
        if self._store_key is None:
            log.warning(
                "the crypto store is protected with nio's default key: set %s (or storage.key) "
                "to a secret of your own",
                ENV_STORE_KEY,
            )
        warn_if_recovery_key_file(self._dir)
        return key

    async def connect(self, *, wait_while_expired: bool = True) -> None:
        """Reuse the saved session (same device), or log in once and save it.

        An expired account is waited out (checked every minute), or with
        `wait_while_expired=False` (a command that must not hang) a `LoginFailed`."""
        self._wait_while_expired = wait_while_expired
        path = self._dir / SESSION_FILE
        saved = SavedSession.load(path)
        login = self._config.user_id
        if saved and saved.login == login and self._config.homeserver in (None, saved.homeserver):
            # An e-mail's homeserver, discovered once, is kept with the session.
            await self._new_client(saved.homeserver)
            self.client.restore_login(saved.user_id, saved.device_id, saved.access_token)
            who = await self._whoami()
            if isinstance(who, WhoamiResponse):
                log.info("restored session of %s, device %s", saved.user_id, saved.device_id)
                return
            if who.status_code == UNKNOWN_TOKEN and self.can_log_in:
                # Revoked while the bot was away: the same device again, not a new one.
                log.warning(
                    "saved session rejected by the homeserver (%s); logging in again as device %s",
                    describe(who),
                    saved.device_id,
                )
                await self.password_login(saved.device_id)
                return
            log.warning(
                "saved session rejected by the homeserver (%s); logging in again", describe(who)
            )
            self.client.access_token = ""
            self._known_user_id = saved.user_id
        elif saved:
            log.info("saved session is for another account or server: not reused")

        homeserver = self._config.homeserver or await self._discover(login)
        await self._new_client(homeserver)
        token = self._config.access_token
        if token is not None:
            self.client.access_token = token.get_secret_value()
            who = await self._whoami()
            if isinstance(who, ErrorResponse) and who.status_code == UNKNOWN_TOKEN:
                await self.states.enter(
                    State.REVOKED,
                    f"the homeserver does not know matrix.access_token ({describe(who)})",
                    advice=recovery.REVOKED_ADVICE,
                )
                raise SessionRevoked("the access token is revoked")
            if not isinstance(who, WhoamiResponse):
                raise LoginFailed(f"the access token was refused: {describe(who)}")
            if not is_email(login) and who.user_id != login:
                raise LoginFailed(
                    f"the access token belongs to {who.user_id}, not to matrix.user_id {login}"
                )
            if not who.device_id:
                raise LoginFailed("the homeserver did not tell the access token's device")
            self.client.restore_login(who.user_id, who.device_id, token.get_secret_value())
            self._save()
        else:
            await self.password_login()

    async def password_login(self, device_id: str | None = None) -> None:
        """Log in with the password and save the session: a new device, or
        `device_id` again (its session replaced, the device kept: same ID, same
        keys here). Raises `LoginRefused` when the homeserver refuses the
        credentials, `LoginFailed` otherwise, with what the operator should do."""
        if self._config.password is None:  # config validation: then a token is given
            raise LoginRefused(
                "no password to log in with: give a new matrix.access_token, or matrix.password"
            )
        login = self._config.user_id
        homeserver = str(self.client.homeserver)
        modes = await mas.detect(homeserver)
        if not modes.password:
            raise LoginRefused(
                f"{homeserver} takes no password (its accounts are MAS's): give "
                "matrix.access_token, a compatibility token that a MAS administrator issues "
                "with `mas-cli manage issue-compatibility-token`"
            )
        # Logged in before (a re-login), a refused saved session, or configured.
        known = self.client.user_id or self._known_user_id or ("" if is_email(login) else login)
        if known:
            resp = await self._login({"type": "m.id.user", "user": known}, device_id)
        elif modes.delegated:
            resp = await self._login_as_derived(login, device_id)
        else:
            # Tchap accounts on a classic homeserver: the e-mail is the identifier.
            email = {"type": "m.id.thirdparty", "medium": "email", "address": login}
            resp = await self._login(email, device_id)
            if mas.unsupported_identifier(resp):
                log.info("%s refuses e-mail identifiers (%s)", homeserver, describe(resp))
                resp = await self._login_as_derived(login, device_id)
        if not isinstance(resp, LoginResponse):
            refused = isinstance(resp, ErrorResponse) and resp.status_code not in (
                None,
                "M_LIMIT_EXCEEDED",
            )
            raise (LoginRefused if refused else LoginFailed)(f"login refused: {describe(resp)}")
        kept = device_id is not None and resp.device_id == device_id
        log.info(
            "logged in as %s, %s device %s", resp.user_id, "same" if kept else "new", resp.device_id
        )
        self._save()

    async def _login(self, identifier: dict[str, str], device_id: str | None) -> Any:
        assert self._config.password is not None
        body: dict[str, Any] = {
            "type": "m.login.password",
            "identifier": identifier,
            "password": self._config.password.get_secret_value(),
            "initial_device_display_name": self._config.device_name,
        }
        if device_id is not None:
            body["device_id"] = device_id
        return await self.client.login_raw(body)

    async def _login_as_derived(self, email: str, device_id: str | None) -> LoginResponse:
        """Log in as the Matrix ID Tchap derives from `email`, or say to configure it."""
        advice = "put the bot's Matrix ID (@name:server, not its e-mail) in matrix.user_id"
        try:
            server = self._server_name or await self._directory(email)
        except tchap.DirectoryError as exc:
            raise LoginFailed(f"the homeserver takes no e-mail at login; {exc}: {advice}") from None
        user = tchap.user_id(email, server)
        log.info("logging in as %s, the Matrix ID Tchap derives from %s", user, email)
        resp = await self._login({"type": "m.id.user", "user": user}, device_id)
        if not isinstance(resp, LoginResponse):
            raise LoginRefused(
                f"the homeserver takes no e-mail at login and refused {user}, the Matrix ID "
                f"Tchap derives from {email} ({describe(resp)}): {advice} (or check the password)"
            )
        return resp

    async def _whoami(self) -> WhoamiResponse | ErrorResponse:
        """Who the token is, waiting while the account is expired (checked every minute)."""
        while True:
            who = await self.client.whoami()
            if not recovery.is_expired(who):
                await self.states.ok()
                return who
            if not self._wait_while_expired:
                raise LoginFailed(f"the account has expired: {recovery.EXPIRED_ADVICE}")
            await recovery.expired(self)

    def _save(self) -> None:
        SavedSession(
            str(self.client.homeserver),
            self.user_id,
            self.device_id,
            str(self.client.access_token),
            self._config.user_id,
        ).save(self._dir / SESSION_FILE)

    async def _directory(self, email: str) -> str:
        """The server name of an e-mail account, as Tchap's directory tells it."""
        self._server_name = await tchap.server_name(
            self._config.identity_server, email, self._config.homeserver
        )
        return self._server_name

    async def _discover(self, email: str) -> str:
        """The homeserver URL of an e-mail account, from its server name."""
        try:
            hs = await self._directory(email)
        except tchap.DirectoryError as exc:
            raise LoginFailed(str(exc)) from None
        url = self._config.homeserver_template.format(hs=hs)
        log.info("homeserver of %s: %s (from %s)", email, url, self._config.identity_server)
        return url

    def identity(self) -> Identity:
        """The cross-signing identity of the connected device."""
        return Identity(
            self.client,
            self._dir,
            password=self._config.password,
            recovery_key=self._config.recovery_key,
        )

    async def close(self) -> None:
        await self.client.close()
