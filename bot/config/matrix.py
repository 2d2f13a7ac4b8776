"""The `matrix:` section: the bot's account, its secrets, who may invite it."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated
from urllib.parse import urlparse

from pydantic import BeforeValidator, Field, SecretStr, field_validator, model_validator

from bot.config.base import MXID_RE, Duration, _Model, server_name
from bot.permissions import EXCLUDE, check_server_pattern, default_allowed_servers

# Secrets are better kept out of the file: these variables override it (see loading).
ENV_PASSWORD = "BLUEHATS_MATRIX_PASSWORD"  # noqa: S105 - a variable name, not a secret
ENV_ACCESS_TOKEN = "BLUEHATS_MATRIX_ACCESS_TOKEN"  # noqa: S105 - a variable name
ENV_RECOVERY_KEY = "BLUEHATS_MATRIX_RECOVERY_KEY"

EMAIL_RE = re.compile(r"^[^@\s:]+@[^@\s:]+\.[^@\s:]+$")


def _check_login(value: str) -> str:
    """A Matrix ID, or an e-mail address (Tchap accounts log in with their e-mail)."""
    if EMAIL_RE.match(value):
        return value
    if not MXID_RE.match(value):
        raise ValueError(
            f"not a Matrix user ID nor an e-mail address: {value!r} "
            "(expected @name:server or name@example.gouv.fr)"
        )
    return value


def is_email(login: str) -> bool:
    return not login.startswith("@")


class MatrixConfig(_Model):
    # Omitted with an e-mail login: discovered through `identity_server`.
    homeserver: str | None = None
    # The bot's Matrix ID, or the e-mail address of its (Tchap) account.
    user_id: Annotated[str, BeforeValidator(lambda v: _check_login(str(v).strip()))]
    # Where an e-mail's homeserver is found (Tchap's directory), and how the
    # server name it answers becomes the homeserver's URL.
    identity_server: str = "https://matrix.agent.tchap.gouv.fr"
    homeserver_template: str = "https://matrix.{hs}"
    password: SecretStr | None = None
    access_token: SecretStr | None = None
    # The recovery key of the bot's cross-signing identity (written to
    # storage.path/recovery-key.txt at the first start): lets a new device
    # (lost volume) sign itself with the same identity.
    recovery_key: SecretStr | None = None
    device_name: str = "BlueHats bot"
    # Servers (or patterns) whose users may invite the bot: see
    # `bot.permissions.invite_allowed`. Empty: `default_allowed_servers`.
    allowed_servers: list[str] = Field(default_factory=list)
    # An encrypted message still unreadable after this long (its room key
    # never came) gets one "could not decrypt" answer.
    undecryptable_after: Duration = timedelta(minutes=1)

    @field_validator("homeserver_template")
    @classmethod
    def _template(cls, value: str) -> str:
        if "{hs}" not in value:
            raise ValueError(f"must contain {{hs}} (the server name found), not {value!r}")
        return value

    @field_validator("allowed_servers")
    @classmethod
    def _allowed_servers(cls, value: list[str]) -> list[str]:
        value = [str(v).strip() for v in value]
        problems = [p for p in map(check_server_pattern, value) if p is not None]
        if problems:
            raise ValueError("; ".join(problems))
        if value and all(v.startswith(EXCLUDE) for v in value):
            raise ValueError(
                "only exclusions (!…): no server would be allowed; list the servers to allow "
                "first, e.g. [agent.*.tchap.gouv.fr, !agent.externe.tchap.gouv.fr]"
            )
        return value

    @field_validator("recovery_key")
    @classmethod
    def _recovery_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            # Only the cryptography module: no nio to load for a configuration check.
            from bot.matrix.secret_storage import decode_recovery_key

            decode_recovery_key(value.get_secret_value())  # its message never shows the key
        return value

    @field_validator("homeserver", "identity_server")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"not an http(s) URL: {value!r}")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _credentials_and_defaults(self) -> MatrixConfig:
        if self.password is None and self.access_token is None:
            raise ValueError(
                f"give matrix.password or matrix.access_token (or set {ENV_PASSWORD} / "
                f"{ENV_ACCESS_TOKEN})"
            )
        if self.homeserver is None and not is_email(self.user_id):
            raise ValueError(
                "give matrix.homeserver (it may be omitted only when matrix.user_id is an "
                "e-mail address, whose homeserver is then discovered)"
            )
        if not self.allowed_servers and not is_email(self.user_id):
            # Frozen model: the default depends on another field. (With an
            # e-mail login, on the server of the account, known once logged in.)
            default = default_allowed_servers(server_name(self.user_id))
            object.__setattr__(self, "allowed_servers", default)
        return self
