"""Configuration: pydantic models, YAML/JSON loading, secrets from the environment.

Every problem is reported at once, each with its dotted key, so that an
operator fixes a broken file in one pass instead of one error per restart.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from bot.permissions import EXCLUDE, check_server_pattern, default_allowed_servers
from bot.web.assets import DIST_ENV, dsfr_dist

ENV_PASSWORD = "BLUEHATS_MATRIX_PASSWORD"  # noqa: S105 - a variable name, not a secret
ENV_ACCESS_TOKEN = "BLUEHATS_MATRIX_ACCESS_TOKEN"  # noqa: S105 - a variable name
ENV_RECOVERY_KEY = "BLUEHATS_MATRIX_RECOVERY_KEY"
ENV_OPS_HTTP = "BLUEHATS_OPS_HTTP"

MXID_RE = re.compile(r"^@[a-z0-9._=\-/+]+:[A-Za-z0-9.\-]+(:\d{1,5})?$")
_DURATION_RE = re.compile(
    r"^\s*(?:(\d+)\s*d)?\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m)?\s*(?:(\d+)\s*s)?\s*$"
)


class ConfigError(Exception):
    """The configuration cannot be used; `problems` lists (dotted key, message)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("\n".join(f"{key}: {msg}" for key, msg in problems))


def parse_duration(value: Any) -> timedelta:
    """Accept `1h`, `30m`, `1d`, `1h30m`, `45s`, a number of seconds or a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str):
        match = _DURATION_RE.match(value)
        if match and any(match.groups()):
            days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
            return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    raise ValueError(f"not a duration: {value!r} (examples: 15m, 1h, 1d, 1h30m)")


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def server_name(user_id: str) -> str:
    return user_id.split(":", 1)[1]


def _check_mxid(value: str) -> str:
    if not MXID_RE.match(value):
        raise ValueError(f"not a Matrix user ID: {value!r} (expected @name:server)")
    return value


MatrixId = Annotated[str, BeforeValidator(lambda v: _check_mxid(str(v).strip()))]
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


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


class StorageConfig(_Model):
    path: Path = Path("data")


class BotConfig(_Model):
    prefix: str = "!"
    language: Literal["fr", "en"] = "fr"
    timezone: str = "Europe/Paris"
    moderators: list[MatrixId] = Field(default_factory=list)
    templates: Path | None = None
    # An edited command edits the answer when the edit comes this soon after
    # the command (0 = edits are ignored).
    edit_window: Duration = timedelta(minutes=10)
    # A room where no one but the bot has been joined or invited for this long
    # is left (its subscriptions end). The operators' error room is never left.
    leave_empty_after: Duration = timedelta(days=1)

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not value or any(c.isspace() for c in value) or len(value) > 5:
            raise ValueError("must be 1 to 5 characters without spaces, such as '!'")
        return value

    @field_validator("edit_window")
    @classmethod
    def _edit_window(cls, value: timedelta) -> timedelta:
        # Answered commands are forgotten after a week (bot.db.inbox): an
        # edit of one no longer recorded could not be told from conversation.
        if not timedelta(0) <= value <= timedelta(days=1):
            raise ValueError("must be between 0s and 1d, such as 10m")
        return value

    @field_validator("leave_empty_after")
    @classmethod
    def _leave_empty_after(cls, value: timedelta) -> timedelta:
        if value < timedelta(minutes=1):
            raise ValueError("must be at least 1m")
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone: {value!r} (example: Europe/Paris)") from None
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class AgendaConfig(_Model):
    sources: list[str] = Field(default_factory=list)
    refresh: Duration = timedelta(hours=1)
    max_items: int = Field(default=10, ge=1, le=50)
    horizon: Duration = timedelta(days=366)

    @field_validator("sources")
    @classmethod
    def _sources(cls, value: list[str]) -> list[str]:
        for src in value:
            scheme = urlparse(src).scheme
            if scheme not in ("", "file", "http", "https") and len(scheme) > 1:
                raise ValueError(f"unsupported source {src!r}: use a file path or an http(s) URL")
        return value

    @field_validator("refresh")
    @classmethod
    def _refresh(cls, value: timedelta) -> timedelta:
        if value < timedelta(minutes=1):
            raise ValueError("must be at least 1m")
        return value


class RemindersConfig(_Model):
    # One reminder per offset before each session, in rooms subscribed to `rappels`.
    offsets: list[Duration] = Field(
        default_factory=lambda: [timedelta(days=1), timedelta(hours=1)], max_length=10
    )
    # A reminder due while the bot was down is still sent this late, never after the start.
    grace: Duration = timedelta(minutes=15)
    # Personal reminders (!rappelle-moi <id>): a direct message this long before.
    personal: Duration = timedelta(minutes=15)

    @field_validator("offsets")
    @classmethod
    def _offsets(cls, value: list[timedelta]) -> list[timedelta]:
        if any(v <= timedelta(0) or v > timedelta(days=30) for v in value):
            raise ValueError("each offset must be between 1s and 30d")
        return sorted(set(value), reverse=True)


DEFAULT_SECTIONS = ["À la une", "Sur le SILL", "Appels à contribution"]


def _check_room_id(value: str | None) -> str | None:
    # Room v12 IDs have no server part: "!" and an opaque string.
    if value is not None and not (value.startswith("!") and len(value) > 1):
        raise ValueError(f"expected a room ID such as !abc:server, not {value!r}")
    return value


RoomId = Annotated[str, BeforeValidator(lambda v: _check_room_id(str(v).strip()))]


class GazetteConfig(_Model):
    # Cron expression in bot.timezone of each issue's publication, e.g.
    # "0 10 15 */2 *" (the 15th of every other month, 10:00). None: issues
    # are published only with `!gazette publier`. Needs `editors_room`.
    schedule: str | None = None
    # The room (ID) where moderators write, preview and approve each issue;
    # the bot must be invited there. None: no editorial gazette.
    editors_room: RoomId | None = None
    # The draft of an issue is built this long before its publication.
    draft_ahead: Duration = timedelta(days=3)
    # The number of the next issue (then +1 at each publication; a higher
    # number set here later makes the numbering jump forward).
    number: int = Field(default=1, ge=1, le=100_000)
    # An issue lists the sessions of this many days from its publication.
    agenda_days: int = Field(default=15, ge=1, le=90)
    # The sections moderators write in (`!gazette ajouter <section> <texte>`).
    sections: list[str] = Field(default_factory=lambda: list(DEFAULT_SECTIONS))
    # Moderators, other than the last one who changed it, who must approve
    # an issue (and a correction or a retraction) before it goes out.
    approvals: int = Field(default=1, ge=1, le=5)
    # RSS/Atom feed whose new entries are posted to `gazette` rooms.
    feed: str | None = None
    # Only entries whose title matches this regular expression are posted.
    title_filter: str | None = None
    poll: Duration = timedelta(minutes=30)

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        if value is not None:
            from apscheduler.triggers.cron import CronTrigger

            try:
                CronTrigger.from_crontab(value)
            except ValueError as exc:
                raise ValueError(f"not a cron expression ({exc})") from None
        return value

    @field_validator("feed")
    @classmethod
    def _feed(cls, value: str | None) -> str | None:
        if value is not None and urlparse(value).scheme not in ("http", "https"):
            raise ValueError("must be an http(s) URL")
        return value

    @field_validator("title_filter")
    @classmethod
    def _filter(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression ({exc})") from None
        return value

    @field_validator("poll")
    @classmethod
    def _poll(cls, value: timedelta) -> timedelta:
        if value < timedelta(minutes=1):
            raise ValueError("must be at least 1m")
        return value

    @field_validator("draft_ahead")
    @classmethod
    def _draft_ahead(cls, value: timedelta) -> timedelta:
        if not timedelta(0) <= value <= timedelta(days=60):
            raise ValueError("must be between 0s and 60d")
        return value

    @field_validator("sections")
    @classmethod
    def _sections(cls, value: list[str]) -> list[str]:
        from bot.textnorm import fold

        names = [" ".join(v.split()) for v in value]
        if not 1 <= len(names) <= 12:
            raise ValueError("give between 1 and 12 sections")
        if any(not n or len(n) > 60 or n[0].isdigit() for n in names):
            raise ValueError("each section needs a name of 1 to 60 characters, not a number")
        if len({fold(n) for n in names}) != len(names):
            raise ValueError("two sections have the same name")
        return names

    @model_validator(mode="after")
    def _editors(self) -> GazetteConfig:
        if self.schedule is not None and self.editors_room is None:
            raise ValueError(
                "gazette.schedule needs gazette.editors_room: the room where moderators "
                "approve each issue before it is published"
            )
        return self


class BroadcastConfig(_Model):
    # Pause between two posts to rooms (Tchap asks bots for about 1 message/s).
    pace: Duration = timedelta(seconds=1)


class OpsConfig(_Model):
    # `host:port` of the health and metrics endpoint (/healthz, /metrics); off
    # when unset. Keep it on loopback or a private network.
    http: str | None = None
    # /healthz answers 503 when no sync succeeded for this long (a sync
    # long-poll lasts 30 s when nothing happens).
    stuck_after: Duration = timedelta(seconds=90)
    # A room (ID) where unexpected errors and failing sources are posted (the
    # bot must be invited there), at most one post per `error_room_every`.
    error_room: str | None = None
    error_room_every: Duration = timedelta(minutes=1)
    # Logs: "text" (one line per event) or "json" (one JSON object per line).
    log_format: Literal["text", "json"] = "text"

    @field_validator("http")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        return _host_port(value, "127.0.0.1:9108")

    @field_validator("error_room")
    @classmethod
    def _room_id(cls, value: str | None) -> str | None:
        return _check_room_id(value)

    @property
    def http_host_port(self) -> tuple[str, int] | None:
        return _split_host_port(self.http)


def _host_port(value: str | None, example: str) -> str | None:
    if value is None:
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected host:port, e.g. {example}, not {value!r}")
    return value


def _split_host_port(value: str | None) -> tuple[str, int] | None:
    if value is None:
        return None
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


class WebConfig(_Model):
    # `host:port` where the public agenda (pages and calendars) is served; off
    # when unset. Put a TLS reverse proxy in front of it.
    http: str | None = None
    # The address people see (https://agenda.example.gouv.fr): links in the
    # bot's answers, in pages and calendars. Links are left out when unset.
    public_url: str | None = None
    # "simple" (default), or "dsfr": the State design system, whose brand and
    # Marianne font are reserved for State services.
    theme: Literal["simple", "dsfr"] = "simple"
    # A cancelled or vanished session stays in the calendars, marked
    # cancelled, this long (subscribed apps then strike it out), then goes.
    cancelled_kept: Duration = timedelta(days=7)
    # How long calendar apps and proxies may keep a page or calendar.
    max_age: Duration = timedelta(minutes=15)

    @field_validator("http")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        return _host_port(value, "127.0.0.1:8080")

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        url = urlparse(value)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise ValueError(
                f"expected an http(s) address, e.g. https://agenda.example.org, not {value!r}"
            )
        if url.query or url.fragment:
            raise ValueError("expected an address without ?query or #fragment")
        return value.rstrip("/")

    @property
    def http_host_port(self) -> tuple[str, int] | None:
        return _split_host_port(self.http)


class Config(_Model):
    matrix: MatrixConfig
    storage: StorageConfig = StorageConfig()
    bot: BotConfig = BotConfig()
    agenda: AgendaConfig = AgendaConfig()
    broadcasts: BroadcastConfig = BroadcastConfig()
    reminders: RemindersConfig = RemindersConfig()
    gazette: GazetteConfig = GazetteConfig()
    ops: OpsConfig = OpsConfig()
    web: WebConfig = WebConfig()


def _apply_env(raw: dict[str, Any], env: dict[str, str]) -> None:
    if env.get(ENV_OPS_HTTP):
        # The container image's health check needs the endpoint whatever the file says.
        ops = raw.get("ops")
        raw["ops"] = {**(ops if isinstance(ops, dict) else {}), "http": env[ENV_OPS_HTTP]}
    matrix = raw.get("matrix")
    if not isinstance(matrix, dict):
        return
    if env.get(ENV_PASSWORD):
        matrix["password"] = env[ENV_PASSWORD]
    if env.get(ENV_ACCESS_TOKEN):
        matrix["access_token"] = env[ENV_ACCESS_TOKEN]
    if env.get(ENV_RECOVERY_KEY):
        matrix["recovery_key"] = env[ENV_RECOVERY_KEY]


def _resolve_paths(config: Config, base: Path) -> Config:
    """Relative paths in the file are relative to the file, not to the working directory."""

    def rel(p: Path) -> Path:
        return p if p.is_absolute() else (base / p).resolve()

    sources = [
        s if urlparse(s).scheme in ("http", "https") else str(rel(Path(s.removeprefix("file://"))))
        for s in config.agenda.sources
    ]
    return config.model_copy(
        update={
            "storage": config.storage.model_copy(update={"path": rel(config.storage.path)}),
            "bot": config.bot.model_copy(
                update={"templates": rel(config.bot.templates) if config.bot.templates else None}
            ),
            "agenda": config.agenda.model_copy(update={"sources": sources}),
        }
    )


def _semantic_problems(config: Config) -> list[tuple[str, str]]:
    problems = []
    if config.bot.templates is not None and not config.bot.templates.is_dir():
        problems.append(("bot.templates", f"not a directory: {config.bot.templates}"))
    for i, src in enumerate(config.agenda.sources):
        if urlparse(src).scheme not in ("http", "https") and not Path(src).is_file():
            problems.append((f"agenda.sources.{i}", f"file not found: {src}"))
    if config.web.theme == "dsfr" and dsfr_dist() is None:
        problems.append(
            (
                "web.theme",
                f"dsfr: its files are not installed (bash .ci/setup-web, or set {DIST_ENV})",
            )
        )
    return problems


# The password written in config.example.yaml: a copy left as is.
PLACEHOLDER_PASSWORD = "change-me"  # noqa: S105 - the example's placeholder, not a secret


def warnings(config: Config) -> list[tuple[str, str]]:
    """What is allowed but probably a mistake, by key (never the secrets themselves)."""
    found = []
    password = config.matrix.password
    if password is not None and password.get_secret_value() == PLACEHOLDER_PASSWORD:
        found.append(
            (
                "matrix.password",
                f"still the example's placeholder {PLACEHOLDER_PASSWORD!r}: give the bot "
                f"account's password, preferably in {ENV_PASSWORD}",
            )
        )
    return found


def _loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def from_dict(raw: Any, *, base: Path | None = None, env: dict[str, str] | None = None) -> Config:
    if not isinstance(raw, dict):
        raise ConfigError([("(top level)", "the file must hold a mapping of sections")])
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    _apply_env(raw, dict(os.environ) if env is None else env)
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key (check the spelling against config.example.yaml)"
            problems.append((_loc(err["loc"]), msg))
        raise ConfigError(problems) from None
    config = _resolve_paths(config, base or Path.cwd())
    problems = _semantic_problems(config)
    if problems:
        raise ConfigError(problems)
    return config


def load(path: Path, env: dict[str, str] | None = None) -> Config:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([("(file)", f"cannot read {path}: {exc.strerror}")]) from None
    try:
        # YAML is a superset of JSON: a JSON config loads through the same path.
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError([("(file)", f"not valid YAML/JSON{where}")]) from None
    return from_dict(raw, base=path.resolve().parent, env=env)
