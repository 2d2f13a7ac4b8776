"""The whole configuration: the root model, environment overrides, relative paths,
checks that look outside the file, warnings, and reading the file.

Every problem is reported at once, each with its dotted key, so that an
operator fixes a broken file in one pass instead of one error per restart.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml
from pydantic import ValidationError

from bot.config.agenda import AgendaConfig, BroadcastConfig, RemindersConfig
from bot.config.base import ConfigError, _Model
from bot.config.core import ENV_STORE_KEY, BotConfig, StorageConfig
from bot.config.gazette import GazetteConfig
from bot.config.matrix import ENV_ACCESS_TOKEN, ENV_PASSWORD, ENV_RECOVERY_KEY, MatrixConfig
from bot.config.ops import ENV_OPS_HTTP, OpsConfig
from bot.config.web import WebConfig
from bot.web.assets import DIST_ENV, dsfr_dist


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
    if env.get(ENV_STORE_KEY):
        storage = raw.get("storage")
        raw["storage"] = {
            **(storage if isinstance(storage, dict) else {}),
            "key": env[ENV_STORE_KEY],
        }
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
        s
        if urlparse(s.url).scheme in ("http", "https")
        else s.model_copy(update={"url": str(rel(Path(s.url.removeprefix("file://"))))})
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
    first: dict[str, int] = {}
    for i, src in enumerate(config.agenda.sources):
        if urlparse(src.url).scheme not in ("http", "https") and not Path(src.url).is_file():
            problems.append((f"agenda.sources.{i}", f"file not found: {src.url}"))
        j = first.setdefault(src.url, i)
        if config.agenda.sources[j].kind != src.kind:
            # One source, one copy in the database: it cannot be read two ways.
            problems.append(
                (f"agenda.sources.{i}", f"agenda.sources.{j} is the same source with another kind")
            )
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
    if config.web.in_clear:
        found.append(
            (
                "web.public_url",
                f"{config.web.public_url} is plain http: the secret addresses of personal "
                "calendars (!mon-agenda) would cross the network in clear; give the https:// "
                "address of the TLS proxy in front of web.http",
            )
        )
    if not config.bot.moderators and not config.bot.moderator_rooms:
        found.append(
            (
                "bot",
                "neither moderators nor moderator_rooms is set: nobody can change the agenda, "
                "the mentor directory or the gazette",
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
