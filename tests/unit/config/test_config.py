"""Configuration: every problem listed with its key, before connecting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from bot import config as configuration
from bot.config import ConfigError

ROOT = Path(__file__).resolve().parent.parent.parent.parent


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )


def test_example_config_is_valid(tmp_path: Path) -> None:
    raw = yaml.safe_load((ROOT / "config.example.yaml").read_text())
    cfg = configuration.from_dict(raw, base=ROOT, env={})
    assert cfg.bot.prefix == "!" and cfg.bot.timezone == "Europe/Paris"
    assert cfg.agenda.refresh == timedelta(hours=1)


def test_check_config_warns_about_the_example_placeholder_password(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text((ROOT / "config.example.yaml").read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLUEHATS_")}
    result = cli("check-config", "--config", str(path), env=env)
    assert result.returncode == 0  # valid, but most probably not what was meant
    assert "warning: matrix.password: still the example's placeholder 'change-me'" in (
        result.stderr
    )
    assert configuration.ENV_PASSWORD in result.stderr
    # The password given in the environment, as advised: no warning.
    result = cli(
        "check-config",
        "--config",
        str(path),
        env={**env, configuration.ENV_PASSWORD: "s3cret-from-the-vault"},
    )
    assert result.returncode == 0 and "warning" not in result.stderr
    assert "s3cret" not in result.stdout + result.stderr


def test_check_config_warns_when_nobody_may_change_shared_data(tmp_path: Path) -> None:
    raw = yaml.safe_load((ROOT / "config.example.yaml").read_text())
    raw["bot"]["moderator_rooms"] = []
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLUEHATS_")}
    env[configuration.ENV_PASSWORD] = "s3cret-from-the-vault"
    result = cli("check-config", "--config", str(path), env=env)
    assert result.returncode == 0
    assert "warning: bot: neither moderators nor moderator_rooms is set" in result.stderr
    raw["bot"]["moderator_rooms"] = ["not a room", "#ok:agent.dinum.tchap.gouv.fr", "!id:x"]
    path.write_text(yaml.safe_dump(raw))
    result = cli("check-config", "--config", str(path), env=env)
    assert result.returncode != 0
    assert "bot.moderator_rooms.0: expected a room ID (!abc:server) or alias" in result.stderr
    assert "moderator_rooms.1" not in result.stderr and "moderator_rooms.2" not in result.stderr


@pytest.mark.parametrize(
    ("public_url", "warned"),
    [
        ("http://agenda.example.gouv.fr", True),
        ("http://10.0.0.5:8080", True),
        ("https://agenda.example.gouv.fr", False),
        # This machine only: nothing crosses the network.
        ("http://127.0.0.1:8080", False),
        ("http://localhost:8080", False),
        ("http://[::1]:8080", False),
    ],
)
def test_a_plain_http_public_url_is_warned_about(public_url: str, warned: bool) -> None:
    cfg = configuration.from_dict(
        {
            "matrix": {"homeserver": "https://hs", "user_id": "@bot:hs", "password": "x"},
            "bot": {"moderators": ["@mod:hs"]},
            "web": {"http": "127.0.0.1:8080", "public_url": public_url},
        },
        env={},
    )
    found = dict(configuration.warnings(cfg))
    assert ("web.public_url" in found) == warned
    if warned:
        assert found["web.public_url"].startswith(f"{public_url} is plain http")
        assert "secret addresses of personal calendars" in found["web.public_url"]


def test_broken_config_lists_every_problem_with_its_key(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "matrix": {"homeserver": "matrix.example.org", "user_id": "bot"},
                "bot": {
                    "timezone": "Europe/Pariss",
                    "language": "de",
                    "prefix": "",
                    "moderators": ["alice"],
                    "colour": "blue",
                },
                "agenda": {"refresh": "soon", "sources": ["/nowhere/agenda.ics"]},
                "ops": {"http": "9108", "error_room": "#errors:example.org", "log_format": "xml"},
            }
        )
    )
    result = cli("check-config", "--config", str(path))
    assert result.returncode == 2
    for key in (
        "matrix.homeserver",
        "matrix.user_id",
        "bot.timezone",
        "bot.language",
        "bot.prefix",
        "bot.moderators.0",
        "bot.colour",
        "agenda.refresh",
        "ops.http",
        "ops.error_room",
        "ops.log_format",
    ):
        assert f"- {key}:" in result.stderr, key
    assert "Traceback" not in result.stderr


def test_run_with_broken_config_exits_2_before_connecting(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    # A homeserver that would hang if contacted: the run must not get that far.
    path.write_text("matrix:\n  homeserver: http://10.255.255.1\n  user_id: '@bot:x.org'\n")
    result = cli("run", "--config", str(path), env={"PATH": "/usr/bin"})
    assert result.returncode == 2
    assert "matrix: give matrix.password or matrix.access_token" in result.stderr


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        configuration.load(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("matrix: [unclosed\n")
    with pytest.raises(ConfigError, match="line 2"):
        configuration.load(bad)


def test_json_loads_and_secrets_come_from_env(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(
        json.dumps(
            {
                "matrix": {
                    "homeserver": "https://matrix.example.org/",
                    "user_id": "@bot:example.org",
                },
                "storage": {"path": "state"},
            }
        )
    )
    with pytest.raises(ConfigError):
        configuration.load(path, env={})
    cfg = configuration.load(path, env={"BLUEHATS_MATRIX_PASSWORD": "s3cret"})
    assert cfg.matrix.password is not None
    assert cfg.matrix.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(cfg) and "s3cret" not in str(cfg)
    assert cfg.matrix.homeserver == "https://matrix.example.org"
    assert cfg.matrix.allowed_servers == ["example.org"]  # default: the bot's own server
    assert cfg.storage.path == tmp_path / "state"  # relative to the file


def test_durations() -> None:
    parse = configuration.parse_duration
    assert parse("1h30m") == timedelta(hours=1, minutes=30)
    assert parse("2d") == timedelta(days=2) and parse("45s") == timedelta(seconds=45)
    assert parse(90) == timedelta(seconds=90)
    for bad in ("", "1x", "h", "-1h"):
        with pytest.raises(ValueError, match="duration"):
            parse(bad)


def test_check_config_reads_local_agenda_sources(tmp_path: Path) -> None:
    programme = tmp_path / "programme.yaml"
    programme.write_text(
        "events:\n  - title: E\n    dates: 2027-01-05\n    sessions:\n"
        "      - {time: 11h-10h, title: Atelier}\n"
    )
    calendar = tmp_path / "agenda.ics"
    calendar.write_text("<html>not a calendar</html>")
    path = tmp_path / "config.yaml"
    path.write_text(
        "matrix: {homeserver: 'http://127.0.0.1:1', user_id: '@bot:x.org', password: x}\n"
        "agenda: {sources: [programme.yaml, agenda.ics]}\n"
    )
    result = cli("check-config", "--config", str(path))
    assert result.returncode == 2
    assert "- agenda.sources.0:" in result.stderr
    assert "events.0.sessions.0: end 10:00 is not after start 11:00" in result.stderr
    assert "- agenda.sources.1:" in result.stderr and "not an iCalendar file" in result.stderr
    programme.write_text(programme.read_text().replace("11h-10h", "10h-11h"))
    calendar.write_text("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//FR\r\nEND:VCALENDAR\r\n")
    assert cli("check-config", "--config", str(path)).returncode == 0
    # A declared kind is the one read, whatever the name; check-config says how each is read.
    (tmp_path / "export").write_text('{"events": [{"title": "E", "dates": "2027-01-05"}]}')
    path.write_text(
        path.read_text().replace(
            "agenda.ics]", "agenda.ics, {url: export, kind: json}, https://x.example/e]"
        )
    )
    result = cli("check-config", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert f"- agenda.sources.0: {programme}: programme (guessed)" in result.stdout
    assert f"- agenda.sources.2: {tmp_path / 'export'}: json (declared)" in result.stdout
    assert "- agenda.sources.3: https://x.example/e: guessed from the name or content" in (
        result.stdout
    )
    path.write_text(path.read_text().replace("kind: json", "kind: ics"))
    result = cli("check-config", "--config", str(path))
    assert result.returncode == 2
    assert "- agenda.sources.2:" in result.stderr and "not an iCalendar file" in result.stderr


def test_sources_are_paths_urls_or_declare_their_kind(tmp_path: Path) -> None:
    (tmp_path / "agenda.ics").touch()
    (tmp_path / "export").touch()
    matrix = {"homeserver": "https://hs", "user_id": "@bot:hs", "password": "x"}
    sources = ["agenda.ics", {"url": "export", "kind": "json"}, {"url": "https://x.example/e"}]
    cfg = configuration.from_dict(
        {"matrix": matrix, "agenda": {"sources": sources}}, base=tmp_path, env={}
    )
    assert [(s.url, s.kind) for s in cfg.agenda.sources] == [
        (str(tmp_path / "agenda.ics"), None),  # a bare path: guessed, as before
        (str(tmp_path / "export"), "json"),  # relative to the file too
        ("https://x.example/e", None),
    ]

    sources = [
        {"url": "https://x.example/e", "kind": "pretalx"},
        {"kind": "ics"},
        {"url": "https://x.example/f", "knd": "ics"},
        5,
        "ftp://x.example/a.ics",
        {"url": "gopher://x.example/a.ics", "kind": "ics"},
    ]
    with pytest.raises(ConfigError) as err:
        configuration.from_dict({"matrix": matrix, "agenda": {"sources": sources}}, env={})
    assert err.value.problems == [
        ("agenda.sources.0.kind", "unknown kind 'pretalx': the kinds are ics, programme, json"),
        ("agenda.sources.1.url", "Field required"),
        (
            "agenda.sources.2.knd",
            "unknown key (check the spelling against config.example.yaml)",
        ),
        ("agenda.sources.3", "expected a file path, an http(s) URL, or {url: …, kind: …}"),
        (
            "agenda.sources.4",
            "unsupported source 'ftp://x.example/a.ics': use a file path or an http(s) URL",
        ),
        (
            "agenda.sources.5.url",
            "unsupported source 'gopher://x.example/a.ics': use a file path or an http(s) URL",
        ),
    ]

    # One source is one copy in the database: it cannot be read two ways.
    twice = ["https://x.example/e", {"url": "https://x.example/e", "kind": "json"}]
    with pytest.raises(ConfigError) as err:
        configuration.from_dict({"matrix": matrix, "agenda": {"sources": twice}}, env={})
    assert err.value.problems == [
        ("agenda.sources.1", "agenda.sources.0 is the same source with another kind")
    ]


def test_the_example_config_documents_every_source_kind() -> None:
    from bot.agenda.kinds import KINDS

    example = (ROOT / "config.example.yaml").read_text(encoding="utf-8")
    for name, kind in KINDS.items():
        assert f"#   {name:<10} {kind.about}" in example, name


def test_check_config_says_what_the_configured_caps_would_cut(tmp_path: Path) -> None:
    start = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (tmp_path / "agenda.ics").write_text(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//FR\r\n"
        f"BEGIN:VEVENT\r\nUID:daily@t\r\nDTSTAMP:{start}\r\nDTSTART:{start}\r\n"
        "SUMMARY:Permanence\r\nRRULE:FREQ=DAILY\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    path = tmp_path / "config.yaml"
    path.write_text(
        "matrix: {homeserver: 'http://127.0.0.1:1', user_id: '@bot:x.org', password: x}\n"
        "agenda: {sources: [agenda.ics], max_per_series: 50}\n"
    )
    result = cli("check-config", "--config", str(path))
    assert result.returncode == 0
    assert "warning: agenda.sources.0:" in result.stderr and "Permanence" in result.stderr


def test_tchap_e_mail_login_may_omit_the_homeserver() -> None:
    cfg = configuration.from_dict(
        {"matrix": {"user_id": "bluehats@numerique.gouv.fr", "password": "x"}}, env={}
    )
    assert cfg.matrix.homeserver is None  # discovered at the first start
    assert cfg.matrix.identity_server == "https://matrix.agent.tchap.gouv.fr"
    assert cfg.matrix.homeserver_template.format(hs="agent.dinum.tchap.gouv.fr") == (
        "https://matrix.agent.dinum.tchap.gouv.fr"
    )
    with pytest.raises(ConfigError) as missing:
        configuration.from_dict({"matrix": {"user_id": "@bot:example.org", "password": "x"}})
    assert missing.value.problems[0][0] == "matrix"
    assert "give matrix.homeserver" in missing.value.problems[0][1]
    with pytest.raises(ConfigError) as bad:
        configuration.from_dict(
            {"matrix": {"user_id": "bluehats", "password": "x", "homeserver_template": "x"}}
        )
    assert [key for key, _ in bad.value.problems] == [
        "matrix.user_id",
        "matrix.homeserver_template",
    ]


def test_recovery_key_comes_from_env_and_a_mistyped_one_is_reported(tmp_path: Path) -> None:
    good = "EsTE s92N EtaX s2h6 VQYF 9Kao tHYL mkyL GKMh isZb KJ4E tvoC"
    typo = good[:-1] + "D"
    raw = {
        "matrix": {
            "homeserver": "https://matrix.example.org",
            "user_id": "@bot:example.org",
            "password": "p",
        }
    }
    cfg = configuration.from_dict(raw, env={"BLUEHATS_MATRIX_RECOVERY_KEY": good})
    assert cfg.matrix.recovery_key is not None
    assert cfg.matrix.recovery_key.get_secret_value() == good
    assert "EsTE" not in repr(cfg)

    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump({"matrix": {**raw["matrix"], "recovery_key": typo, "user_id": "bot"}})
    )
    result = cli("check-config", "--config", str(path))
    assert result.returncode == 2
    assert "matrix.recovery_key: not a recovery key (parity check failed" in result.stderr
    assert "matrix.user_id" in result.stderr  # listed with the other problems
    assert typo not in result.stderr and "EsTE" not in result.stderr


def test_allowed_servers_default_and_validation() -> None:
    def matrix(**extra: object) -> configuration.MatrixConfig:
        raw = {"homeserver": "https://h.example", "user_id": "@bot:x.example", "password": "x"}
        return configuration.from_dict({"matrix": {**raw, **extra}}, env={}).matrix

    tchap = matrix(user_id="@bot:agent.dinum.tchap.gouv.fr")
    assert tchap.allowed_servers == [
        "agent.*.tchap.gouv.fr",
        "!agent.externe.tchap.gouv.fr",
        "agent.dinum.tchap.gouv.fr",
    ]
    assert matrix().allowed_servers == ["x.example"]
    given = ["agent.*.tchap.gouv.fr", "localhost:*", " !agent.externe.tchap.gouv.fr"]
    assert matrix(allowed_servers=given).allowed_servers == [s.strip() for s in given]
    with pytest.raises(ConfigError) as bad:
        matrix(allowed_servers=["@alice:example.org", "https://example.org", "a b"])
    [(key, message)] = bad.value.problems
    assert key == "matrix.allowed_servers"
    assert "'@alice:example.org'" in message and "'https://example.org'" in message
    assert "'a b'" in message
    with pytest.raises(ConfigError, match="only exclusions"):
        matrix(allowed_servers=["!agent.externe.tchap.gouv.fr"])


MATRIX = {"homeserver": "https://h.example", "user_id": "@bot:x.example", "password": "x"}


def gazette_problems(gazette: dict[str, object], **sections: object) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as bad:
        configuration.from_dict({"matrix": MATRIX, "gazette": gazette, **sections}, env={})
    return bad.value.problems


def test_gazette_defaults_and_the_example_documents_every_key() -> None:
    gazette = configuration.from_dict({"matrix": MATRIX}, env={}).gazette
    assert gazette.editors_room is None and gazette.schedule is None  # no editorial gazette
    assert gazette.draft_ahead == timedelta(days=3)
    assert gazette.number == 1 and gazette.agenda_days == 15 and gazette.approvals == 1
    assert gazette.sections == ["À la une", "Sur le SILL", "Appels à contribution"]
    # The example shows the defaults as they are, and names every key (set or commented).
    example_text = (ROOT / "config.example.yaml").read_text(encoding="utf-8")
    example = configuration.from_dict(yaml.safe_load(example_text), base=ROOT, env={})
    assert example.gazette == gazette
    section = example_text.split("\ngazette:\n", 1)[1].split("\n\n", 1)[0]
    for key in configuration.GazetteConfig.model_fields:
        assert f"  {key}:" in section or f"  # {key}:" in section, key


def test_gazette_with_its_editors_room() -> None:
    cfg = configuration.from_dict(
        {
            "matrix": MATRIX,
            "gazette": {
                "schedule": "0 10 15 */2 *",
                "editors_room": " !redaction:x.example ",
                "draft_ahead": "2d12h",
                "number": 42,
                "sections": ["  Brèves   du mois ", "Sur le SILL"],
                "approvals": 2,
            },
        },
        env={},
    )
    assert cfg.gazette.editors_room == "!redaction:x.example"
    assert cfg.gazette.draft_ahead == timedelta(days=2, hours=12)
    assert cfg.gazette.number == 42 and cfg.gazette.approvals == 2
    assert cfg.gazette.sections == ["Brèves du mois", "Sur le SILL"]  # spaces tidied


def test_gazette_schedule_needs_an_editors_room() -> None:
    [(key, message)] = gazette_problems({"schedule": "0 10 15 */2 *"})
    assert key == "gazette"
    assert "editors_room" in message
    # Listed with the problems of other sections, not instead of them.
    problems = gazette_problems({"schedule": "0 10 15 */2 *"}, bot={"prefix": ""})
    assert [key for key, _ in problems] == ["bot.prefix", "gazette"]


@pytest.mark.parametrize(
    ("gazette", "key", "message"),
    [
        ({"editors_room": "#redaction:x.example"}, "gazette.editors_room", "room ID"),
        ({"editors_room": "redaction"}, "gazette.editors_room", "room ID"),
        ({"sections": ["À la une", "a la une"]}, "gazette.sections", "same name"),
        ({"sections": []}, "gazette.sections", "between 1 and 12"),
        ({"sections": ["2024"]}, "gazette.sections", "not a number"),
        ({"approvals": 0}, "gazette.approvals", "greater than or equal to 1"),
        ({"number": 0}, "gazette.number", "greater than or equal to 1"),
        ({"agenda_days": 91}, "gazette.agenda_days", "less than or equal to 90"),
        ({"draft_ahead": "61d"}, "gazette.draft_ahead", "between 0s and 60d"),
    ],
)
def test_gazette_problem_is_reported_with_its_key(
    gazette: dict[str, object], key: str, message: str
) -> None:
    [(found, text)] = gazette_problems(gazette)
    assert found == key
    assert message in text


def test_gazette_problems_are_listed_together(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "matrix": MATRIX,
                "gazette": {
                    "editors_room": "#redaction:x.example",
                    "sections": ["À la une", "a la une"],
                    "approvals": 0,
                    "number": 0,
                },
            },
            allow_unicode=True,
        ),
        encoding="utf-8",
    )
    result = cli("check-config", "--config", str(path))
    assert result.returncode == 2
    assert "4 problem(s)" in result.stderr
    for key in ("gazette.editors_room", "gazette.sections", "gazette.approvals", "gazette.number"):
        assert f"- {key}:" in result.stderr, key
    assert "Traceback" not in result.stderr


def test_limits_defaults_overrides_and_problems() -> None:
    limits = configuration.from_dict({"matrix": MATRIX}, env={}).bot.limits
    assert (limits.per_sender.burst, limits.per_sender.every) == (5, timedelta(seconds=3))
    assert (limits.per_room.burst, limits.per_room.every) == (20, timedelta(seconds=1))
    assert limits.answers_at_once == 4
    # The example shows the defaults as they are.
    example = yaml.safe_load((ROOT / "config.example.yaml").read_text(encoding="utf-8"))
    assert configuration.from_dict(example, base=ROOT, env={}).bot.limits == limits

    given = {"per_sender": {"burst": 3, "every": "10s"}, "answers_at_once": 2}
    limits = configuration.from_dict({"matrix": MATRIX, "bot": {"limits": given}}, env={})
    assert limits.bot.limits.per_sender.rate.every == 10.0
    assert limits.bot.limits.per_room.burst == 20 and limits.bot.limits.answers_at_once == 2

    bad = {
        "per_sender": {"burst": 0, "every": "2h"},
        "per_room": {"burst": 5},
        "answers_at_once": 0,
        "per_person": {},
    }
    with pytest.raises(ConfigError) as raised:
        configuration.from_dict({"matrix": MATRIX, "bot": {"limits": bad}}, env={})
    assert sorted(key for key, _ in raised.value.problems) == [
        "bot.limits.answers_at_once",
        "bot.limits.per_person",
        "bot.limits.per_room.every",
        "bot.limits.per_sender.burst",
        "bot.limits.per_sender.every",
    ]
