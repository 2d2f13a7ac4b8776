"""Configuration: pydantic models, YAML/JSON loading, secrets from the environment.

One module per concern: `base` (the error, the strict model, durations, IDs,
host:port), one module per section or small group of sections (`matrix`,
`core` for bot and storage, `agenda` with reminders and broadcasts, `gazette`,
`ops`, `web`), and `loading` (the root model, environment overrides, relative
paths, checks outside the file, warnings, reading the file).

Every problem is reported at once, each with its dotted key, so that an
operator fixes a broken file in one pass instead of one error per restart.
The rest of the bot imports from `bot.config` only: the split is internal.
"""

from __future__ import annotations

from bot.config.agenda import AgendaConfig, AgendaSource, BroadcastConfig, RemindersConfig
from bot.config.base import (
    MXID_RE,
    ConfigError,
    Duration,
    MatrixId,
    RoomId,
    RoomRef,
    parse_duration,
    server_name,
)
from bot.config.core import ENV_STORE_KEY, BotConfig, LimitsConfig, RateConfig, StorageConfig
from bot.config.gazette import DEFAULT_SECTIONS, GazetteConfig
from bot.config.loading import PLACEHOLDER_PASSWORD, Config, from_dict, load, warnings
from bot.config.matrix import (
    EMAIL_RE,
    ENV_ACCESS_TOKEN,
    ENV_PASSWORD,
    ENV_RECOVERY_KEY,
    MatrixConfig,
    is_email,
)
from bot.config.ops import ENV_OPS_HTTP, OpsConfig
from bot.config.web import WebConfig

__all__ = [
    "DEFAULT_SECTIONS",
    "EMAIL_RE",
    "ENV_ACCESS_TOKEN",
    "ENV_OPS_HTTP",
    "ENV_PASSWORD",
    "ENV_RECOVERY_KEY",
    "ENV_STORE_KEY",
    "MXID_RE",
    "PLACEHOLDER_PASSWORD",
    "AgendaConfig",
    "AgendaSource",
    "BotConfig",
    "BroadcastConfig",
    "Config",
    "ConfigError",
    "Duration",
    "GazetteConfig",
    "LimitsConfig",
    "MatrixConfig",
    "MatrixId",
    "OpsConfig",
    "RateConfig",
    "RemindersConfig",
    "RoomId",
    "RoomRef",
    "StorageConfig",
    "WebConfig",
    "from_dict",
    "is_email",
    "load",
    "parse_duration",
    "server_name",
    "warnings",
]
