"""Command line: `bluehats-bot run|check-config|identity|backup|demo`.

Exit codes: 0 stopped normally, 1 runtime failure (login refused, newer
database…), 2 configuration errors (every one listed, before connecting).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO, TypeVar

from bot import __version__, config
from bot.config.base import parse_duration

T = TypeVar("T")

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2


def _private_files() -> None:
    """Whatever the command creates (database, crypto store, backup) is the user's alone."""
    os.umask(0o077)


def _setup_logging(
    verbose: bool, log_format: str = "text", *, stream: TextIO | None = None
) -> None:
    """One line per event on stderr (or written to `stream`): text, or one JSON
    object (`ops.log_format: json`)."""
    handler: logging.Handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    if log_format == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                datefmt="%Y-%m-%dT%H:%M:%S%z",
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, handlers=[handler], force=True
    )
    # Library chatter (nio logs every request at INFO) is not for operators.
    for noisy in ("nio", "peewee", "apscheduler", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _load_config(path: Path) -> config.Config | None:
    try:
        return config.load(path)
    except config.ConfigError as exc:
        print(f"{path}: {len(exc.problems)} problem(s) in the configuration:", file=sys.stderr)
        for key, msg in exc.problems:
            print(f"  - {key}: {msg}", file=sys.stderr)
        return None


def _source_problems(
    cfg: config.Config,
) -> tuple[list[tuple[str, str]], list[tuple[str, str]], list[tuple[str, str]]]:
    """Local agenda files that would not load, what the configured caps
    (`agenda.max_sessions`, `agenda.max_per_series`) would cut from the others,
    and the kind each source is read as (URLs are not fetched here)."""
    from bot.agenda import kinds
    from bot.agenda.bounds import Bounds
    from bot.agenda.sources import LOOKBEHIND
    from bot.agenda.worker import parse_source
    from bot.fetch import SourceError, describe, is_url

    now = datetime.now(UTC)
    problems, cut, read_as = [], [], []
    for i, source in enumerate(cfg.agenda.sources):
        key, how = f"agenda.sources.{i}", "declared" if source.kind else "guessed"
        if is_url(source.url):
            kind = source.kind or "guessed from the name or content once fetched"
            read_as.append((key, f"{describe(source.url)}: {kind}"))
            continue
        bounds = Bounds(cfg.agenda.max_sessions, cfg.agenda.max_per_series)
        try:
            body = Path(source.url).read_bytes()
            read_as.append(
                (key, f"{source.url}: {kinds.of(source.url, body, source.kind).name} ({how})")
            )
            parse_source(
                body,
                source.url,
                kind=source.kind,
                tz=cfg.bot.tz,
                window_start=now - LOOKBEHIND,
                window_end=now + cfg.agenda.horizon,
                bounds=bounds,
            )
        except (SourceError, OSError) as exc:
            problems.append((key, f"{source.url}: {exc}"))
        cut += [(key, note) for note in bounds.notes]
    return problems, cut, read_as


def cmd_check_config(args: argparse.Namespace) -> int:
    cfg = _load_config(args.config)
    if cfg is None:
        return EXIT_CONFIG
    problems, cut, read_as = _source_problems(cfg)
    if problems:
        print(f"{args.config}: {len(problems)} agenda source(s) unusable:", file=sys.stderr)
        for key, msg in problems:
            print(f"  - {key}: {msg}", file=sys.stderr)
        return EXIT_CONFIG
    for key, msg in [*config.warnings(cfg), *cut]:
        print(f"{args.config}: warning: {key}: {msg}", file=sys.stderr)
    print(
        f"{args.config}: OK ({cfg.matrix.user_id} on {cfg.matrix.homeserver}, "
        f"{len(cfg.agenda.sources)} agenda source(s))"
    )
    for key, msg in read_as:
        print(f"  - {key}: {msg}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    _private_files()
    cfg = _load_config(args.config)
    if cfg is None:
        return EXIT_CONFIG
    _setup_logging(args.verbose, cfg.ops.log_format)
    for key, msg in config.warnings(cfg):
        logging.getLogger("bot").warning("configuration: %s: %s", key, msg)
    from bot.app import BotApp, StartupError  # heavy imports only when running

    try:
        asyncio.run(BotApp(cfg).run())
    except StartupError as exc:
        logging.getLogger("bot").error("cannot run: %s", exc)
        return EXIT_FAILURE
    except KeyboardInterrupt:  # Ctrl-C before the signal handlers were installed
        return EXIT_OK
    return EXIT_OK


async def _cancelled_by_sigterm(work: Coroutine[Any, Any, T]) -> T:
    """`work`, cancelled by SIGTERM as asyncio.run cancels it on Ctrl-C: its `finally`
    blocks run (the client and the store closed, no traceback)."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await work


def cmd_identity(args: argparse.Namespace) -> int:
    """Print the bot's cross-signing state (exit 0 when its device is signed), or
    replace its identity (`--reset`) and print the new recovery key once.

    To replace keys, a homeserver asks for the password (prompted in a terminal
    when none is configured) or, under MAS, for a person to approve at a URL:
    printed at once, then the upload is retried until approved or `--wait` is over."""
    _private_files()
    cfg = _load_config(args.config)
    if cfg is None:
        return EXIT_CONFIG
    _setup_logging(args.verbose, cfg.ops.log_format)
    from pydantic import SecretStr

    from bot.app import StartupError, manage_identity
    from bot.matrix.identity import group
    from bot.matrix.uia import APPROVAL_WINDOW, Approval, PendingApproval

    def ask_password() -> SecretStr | None:
        """Only when the homeserver offers the password stage and none is configured."""
        if not sys.stdin.isatty():
            return None
        return SecretStr(getpass.getpass(f"Password of {cfg.matrix.user_id}: "))

    def announce(pending: PendingApproval) -> None:
        print(
            "The homeserver asks a person to approve this reset. Open this URL in a browser, "
            f"logged in as {cfg.matrix.user_id}, and approve it:\n\n    {pending.url}\n\n"
            f"Waiting for the approval until {pending.deadline.astimezone():%H:%M:%S %Z} "
            "(Ctrl-C gives up)...",
            flush=True,
        )

    approval = Approval(announce, wait=args.wait or APPROVAL_WINDOW)
    try:
        state, recovery_key = asyncio.run(
            _cancelled_by_sigterm(
                manage_identity(cfg, reset=args.reset, approval=approval, ask_password=ask_password)
            )
        )
    except StartupError as exc:
        print(f"identity: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except (KeyboardInterrupt, asyncio.CancelledError):
        print(
            "identity: interrupted before the end; `identity` shows what is published",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    yes_no = {True: "yes", False: "no"}
    print(f"account:            {state.user_id}")
    print(f"device:             {state.device_id}")
    print(f"device fingerprint: {group(state.device_key)}")
    print(f"master key:         {group(state.master_key)}")
    print(f"device signed:      {yes_no[state.device_signed]}")
    print(f"signing key here:   {yes_no[state.keys_here]}")
    print(f"in secret storage:  {yes_no[state.in_secret_storage]}")
    if recovery_key is not None:
        print(
            "\nNew identity. Its recovery key, shown this once: keep it in your secret store "
            f"and give it in matrix.recovery_key or {config.ENV_RECOVERY_KEY} after a lost "
            f"volume:\n\n    {recovery_key}\n"
        )
    elif state.master_key is None:
        print("\nNo identity yet: the bot creates it at its first start.")
    elif not state.device_signed:
        print(
            "\nThe device is not signed: start the bot with the recovery key "
            f"(matrix.recovery_key or {config.ENV_RECOVERY_KEY}), or replace the identity "
            "with --reset (people who verified the bot then verify it again)."
        )
    return EXIT_OK if state.device_signed else EXIT_FAILURE


def cmd_backup(args: argparse.Namespace) -> int:
    """A consistent copy of the database, made while the bot may run, checked, then
    described (path, size, schema, rows of the key tables)."""
    _private_files()
    cfg = _load_config(args.config)
    if cfg is None:
        return EXIT_CONFIG
    from bot.db.backup import BackupError, backup
    from bot.db.storage import DB_FILE

    try:
        done = backup(cfg.storage.path / DB_FILE, args.dest, force=args.force)
    except BackupError as exc:
        print(f"backup: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"backup: OK {done.path} ({done.size:,} bytes, schema {done.schema})")
    for table, count in done.rows.items():
        print(f"  {table + ':':20} {count}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    # What the newcomer reads is the demo's own text; the bot's log lines go
    # to a file, or (--verbose) to the terminal.
    log_file, stream = (None, None) if args.verbose else demo_log_file()
    _setup_logging(args.verbose, stream=stream)
    from bot.demo import run_demo

    return run_demo(once=args.once, log_file=log_file)


def demo_log_file() -> tuple[Path, TextIO]:
    """A new file for the demo's log lines in the shared temp directory, and the
    stream that writes it.

    Its name is unpredictable and `mkstemp` creates it (O_CREAT | O_EXCL, mode
    0600): never a file or a symlink someone planted at a name known in advance
    (the old `bluehats-demo-<user>.log`, opened for writing, followed one). It is
    written through the descriptor that created it, never reopened by name."""
    fd, name = tempfile.mkstemp(prefix="bluehats-demo-", suffix=".log")
    return Path(name), os.fdopen(fd, "w", encoding="utf-8")


def _duration(text: str) -> timedelta:
    try:
        value = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value <= timedelta(0):
        raise argparse.ArgumentTypeError("must be more than 0s")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bluehats-bot", description="Tchap/Matrix bot for the BlueHats community."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="connect and answer in the rooms the bot is invited to")
    run.add_argument("--config", type=Path, required=True, help="YAML or JSON configuration")
    run.add_argument("-v", "--verbose", action="store_true", help="debug logs")
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check-config", help="list every problem of a configuration")
    check.add_argument("--config", type=Path, required=True)
    check.set_defaults(func=cmd_check_config)

    ident = sub.add_parser("identity", help="the bot's cross-signing identity; --reset replaces it")
    ident.add_argument("--config", type=Path, required=True)
    ident.add_argument(
        "--reset",
        action="store_true",
        help="create a new identity (new master key and recovery key); the homeserver asks "
        "for the password, or under MAS for a person's approval in a browser",
    )
    ident.add_argument(
        "--wait",
        type=_duration,
        help="when the homeserver asks a person to approve the reset (MAS): how long to wait "
        "for it, e.g. 5m (default 10m, the window Synapse opens once approved)",
    )
    ident.add_argument("-v", "--verbose", action="store_true", help="debug logs")
    ident.set_defaults(func=cmd_identity)

    back = sub.add_parser(
        "backup",
        help="a consistent copy of the database, while the bot runs",
        description="Copy storage.path/bluehats.db to DEST through SQLite's backup API (a "
        "consistent copy, even while the bot writes), check it and print what it holds. Only "
        "the database: nio's crypto store and the session are not copied and must never be "
        "restored (an old crypto store rolls the encryption ratchets back: members' clients "
        "reject what the bot then sends). A bot restored from this copy starts on an empty "
        "storage.path and comes back as a new device, signed with the recovery key.",
    )
    back.add_argument("--config", type=Path, required=True)
    back.add_argument("dest", metavar="DEST", type=Path, help="the backup file to write")
    back.add_argument("--force", action="store_true", help="replace DEST if it exists")
    back.set_defaults(func=cmd_backup)

    demo = sub.add_parser(
        "demo", help="start a local homeserver, a demo room and the bot with a sample agenda"
    )
    demo.add_argument("--once", action="store_true", help="exit after the first answer")
    demo.add_argument(
        "-v", "--verbose", action="store_true", help="debug logs in the terminal, not in a file"
    )
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
