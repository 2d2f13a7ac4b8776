"""Composition root: builds every part, runs them, stops them in order."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
from collections.abc import Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import aiohttp
from pydantic import SecretStr

from bot.agenda.sources import AgendaService
from bot.agenda.worker import MIB, ParserLimits, ProcessParser
from bot.broadcast import Broadcaster
from bot.chat import RoomUpgraded
from bot.commands import build_registry
from bot.commands.core import Services
from bot.config import Config
from bot.db.database import StorageError
from bot.db.storage import DB_FILE, Storage
from bot.dispatch import Dispatcher
from bot.feeds import FeedWatcher
from bot.gazette.desk import Desk
from bot.gazette.schedule import GazetteSchedule
from bot.health import Health
from bot.matrix.client import LoginFailed, MatrixChat
from bot.matrix.identity import IdentityState
from bot.matrix.keys_api import IdentityError
from bot.matrix.login import SessionRevoked
from bot.matrix.recovery import REVOKED_ADVICE
from bot.matrix.uia import Approval
from bot.ops import ErrorRoom, Metrics, OpsServer
from bot.permissions import ModeratorRooms
from bot.render import Renderer
from bot.rooms import RoomLifecycle
from bot.scheduling import STOP_WITHIN, Scheduler, new_scheduler
from bot.store_lock import StoreUnavailable, lock_store, tighten_modes

if TYPE_CHECKING:  # imported when configured (the first answer needs neither web nor feed)
    from bot.web.server import WebServer

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


class StartupError(Exception):
    """The bot cannot start; the message says why, for the operator."""


class BotApp:
    """The running bot; `run()` returns when stopped (signal or `stop()`)."""

    def __init__(self, config: Config, *, now: Callable[[], datetime] = utc_now) -> None:
        self.config = config
        self.now = now
        self._stop = asyncio.Event()
        self.chat: MatrixChat | None = None
        self.metrics = Metrics()
        self.scheduler: Scheduler | None = None
        self.ready = asyncio.Event()
        # /healthz, the session's metric, and the device checked again after a recovery.
        self.health = Health(metrics=self.metrics, stuck_after=config.ops.stuck_after)
        self.web: WebServer | None = None  # the public agenda, when `web.http` is set
        # Sends what is due; `broadcaster.wake` makes it look again at once (tests
        # that move `now` forward use it).
        self.broadcaster: Broadcaster | None = None

    def stop(self) -> None:
        self._stop.set()

    @property
    def identity(self) -> IdentityState | None:
        """The bot's cross-signing state, as last checked."""
        return self.health.identity

    async def run(self, *, handle_signals: bool = True) -> None:
        cfg = self.config
        async with AsyncExitStack() as stack:
            storage = await open_storage(stack, cfg)

            http = aiohttp.ClientSession()
            stack.push_async_callback(http.close)

            renderer = Renderer(cfg.bot.language, cfg.bot.tz, cfg.bot.templates)
            metrics = self.metrics
            # Parsing never runs on the event loop; the process exists only
            # while a refresh needs it, under limits, and is stopped with the bot.
            limits = ParserLimits(
                cfg.agenda.parse_timeout.total_seconds(), cfg.agenda.parse_memory * MIB
            )
            parser = ProcessParser(limits)
            stack.callback(parser.close)
            agenda = AgendaService(
                cfg.agenda.sources,
                storage,
                http,
                cfg.bot.tz,
                cfg.agenda.horizon,
                self.now,
                metrics=metrics,
                parser=parser,
                max_sessions=cfg.agenda.max_sessions,
                max_per_series=cfg.agenda.max_per_series,
            )
            # The sessions of the last good refresh: no parsing, no network.
            await agenda.start()
            # Free of Matrix: the public agenda is up even before the bot connects.
            self.web = await open_web(stack, cfg, storage, renderer, agenda, self.now)
            ledger = self.web.site.ledger if self.web is not None else None

            if handle_signals:
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.add_signal_handler(sig, self.stop)
                    stack.callback(loop.remove_signal_handler, sig)

            if (where := cfg.ops.http_host_port) is not None:
                ops = OpsServer(
                    metrics,
                    healthy=self.health.check,
                    refresh=lambda: self.health.refresh_metrics(storage),
                )
                try:
                    await ops.start(*where)
                except OSError as exc:
                    raise StartupError(f"ops.http {cfg.ops.http}: {exc.strerror or exc}") from None
                stack.push_async_callback(ops.close)

            self.chat = chat = open_chat(stack, cfg, storage)
            self.health.watch(chat)
            try:
                await log_in(chat)
            except SessionRevoked:
                # No password to log in again: up (health, web) until stopped.
                await self._stop.wait()
                log.info("stopping")
                return
            broadcaster = Broadcaster(
                storage,
                chat,
                renderer,
                agenda,
                prefix=cfg.bot.prefix,
                now=self.now,
                pace=cfg.broadcasts.pace,
                offsets=cfg.reminders.offsets,
                grace=cfg.reminders.grace,
                gazette=gazette_schedule(cfg, storage, renderer, agenda, self.now),
                gazette_feed=cfg.gazette.feed is not None,
                personal=cfg.reminders.personal,
                notify=cfg.broadcasts.notify,
                metrics=metrics,
            )
            self.broadcaster = broadcaster
            moderator_rooms = ModeratorRooms(cfg.bot.moderator_rooms)

            async def refresh_moderator_rooms() -> None:
                await moderator_rooms.refresh(chat, await storage.rooms.moved_upgrades())

            services = Services(
                config=cfg,
                renderer=renderer,
                agenda=agenda,
                now=self.now,
                wake=broadcaster.wake.set,
                moderator_rooms=moderator_rooms,
            )
            dispatcher = Dispatcher(build_registry(), services, chat, storage, metrics=metrics)
            agenda.on_recorded = broadcaster.wake.set
            chat.handlers.on_message = dispatcher.accept
            chat.handlers.on_reaction = dispatcher.accept_reaction
            chat.handlers.on_redaction = dispatcher.accept_redaction
            chat.handlers.on_undecryptable = dispatcher.undecryptable
            chat.handlers.on_batch_end = dispatcher.settle
            rooms = RoomLifecycle(
                storage,
                chat,
                now=self.now,
                leave_empty_after=cfg.bot.leave_empty_after,
                keep=[cfg.ops.error_room] if cfg.ops.error_room else [],
                metrics=metrics,
                wake=broadcaster.wake.set,
            )
            chat.handlers.on_left = rooms.on_left
            chat.handlers.on_members = rooms.on_members

            async def on_upgrade(upgraded: RoomUpgraded) -> None:
                await rooms.on_upgrade(upgraded)
                # A moderators' room upgraded: its replacement counts from now on.
                if upgraded.old_room in moderator_rooms.room_ids:
                    await refresh_moderator_rooms()

            chat.handlers.on_upgrade = on_upgrade
            stack.push_async_callback(dispatcher.drain)

            # Every job: coalesced, one run at a time, run however late (bot.scheduling).
            self.scheduler = scheduler = new_scheduler(cfg.bot.tz)
            refresh_s = cfg.agenda.refresh.total_seconds()

            async def refresh() -> None:
                await agenda.refresh()
                if ledger is not None:
                    # Published at once: DTSTAMPs and cancellations dated when found.
                    await ledger.sync(agenda.agenda)

            scheduler.add_job(
                refresh,
                "interval",
                seconds=refresh_s,
                id="agenda-refresh",
                # At once, in the background: picks up what changed while down.
                next_run_time=datetime.now(UTC),
            )
            if cfg.gazette.feed:
                # Its own parser process: a feed poll never waits for a refresh.
                feed_parser = ProcessParser(limits)
                stack.callback(feed_parser.close)
                watcher = FeedWatcher(
                    cfg.gazette.feed,
                    storage,
                    http,
                    title_filter=cfg.gazette.title_filter,
                    burst=cfg.gazette.feed_burst,
                    parser=feed_parser,
                    metrics=metrics,
                )

                async def poll_feed() -> None:
                    if await watcher.poll():
                        broadcaster.wake.set()

                scheduler.add_job(
                    poll_feed,
                    "interval",
                    seconds=cfg.gazette.poll.total_seconds(),
                    id="feed-poll",
                    next_run_time=datetime.now(UTC),
                )

            async def prune() -> None:
                if pruned := await storage.prune():
                    log.info("pruned old rows: %s", pruned)

            scheduler.add_job(
                prune,
                "interval",
                hours=6,
                id="prune",
                next_run_time=datetime.now(UTC),
            )

            async def check_rooms() -> None:
                await chat.synced.wait()  # before that, no room is known
                await rooms.forget_rooms_left()
                await rooms.leave_empty_rooms()

            scheduler.add_job(
                check_rooms,
                "interval",
                seconds=min(3600.0, max(60.0, cfg.bot.leave_empty_after.total_seconds() / 4)),
                id="check-rooms",
                next_run_time=datetime.now(UTC),
            )
            # Aliases may be moved to another room: looked up again regularly.
            scheduler.add_job(
                refresh_moderator_rooms,
                "interval",
                minutes=5,
                id="moderator-rooms",
            )
            scheduler.start()
            # Running jobs cancelled and awaited (a refresh kills its parser process).
            stack.push_async_callback(scheduler.stop, STOP_WITHIN)

            alerts = None
            if cfg.ops.error_room is not None:
                alerts = ErrorRoom(
                    cfg.ops.error_room, chat, renderer, cfg.ops.error_room_every.total_seconds()
                )
                logging.getLogger("bot").addHandler(alerts)
                stack.callback(logging.getLogger("bot").removeHandler, alerts)

            # Before the first sync: a new device is signed before anyone sees it.
            await self.health.check_identity()

            # Before any command is answered (those left pending included).
            await refresh_moderator_rooms()
            await dispatcher.resume_pending()
            # What start-up built lives as long as the bot: full garbage
            # collections stop walking it (one took ~45 ms of the event loop
            # during a 10,000-session refresh).
            gc.freeze()
            sync = asyncio.create_task(chat.run(), name="matrix-sync")
            stopper = asyncio.create_task(self._stop.wait(), name="stop")
            ready = asyncio.create_task(self._mark_ready(chat))
            posting = asyncio.create_task(self._broadcast(chat, broadcaster), name="broadcasts")
            alerting = asyncio.create_task(self._alert(chat, alerts), name="alerts")
            try:
                await asyncio.wait({sync, stopper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (sync, stopper, ready, posting, alerting):
                    if not task.done():
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await task
            if not sync.cancelled() and (failure := sync.exception()) is not None:
                raise failure
            log.info("stopping")

    async def _alert(self, chat: MatrixChat, alerts: ErrorRoom | None) -> None:
        if alerts is not None:
            await chat.synced.wait()
            await alerts.run()

    async def _broadcast(self, chat: MatrixChat, broadcaster: Broadcaster) -> None:
        # Resumes what a crash left pending once the client is in sync.
        await chat.synced.wait()
        await broadcaster.run()

    async def _mark_ready(self, chat: MatrixChat) -> None:
        await chat.synced.wait()
        log.info("ready: %s (device %s) answers in its rooms", chat.user_id, chat.device_id)
        self.ready.set()


async def open_storage(stack: AsyncExitStack, config: Config) -> Storage:
    """`storage.path` locked for this process (`StartupError` at once if another holds
    it), its files made private, then the database, checked and upgraded: all closed
    and released with `stack`. Called before anything else in the directory is opened."""
    # Every file the process creates from here on is private (nio's crypto
    # store, SQLite's files, the session); `bluehats-bot` sets it at start too.
    os.umask(0o077)
    try:
        lock = lock_store(config.storage.path)
    except StoreUnavailable as exc:
        raise StartupError(str(exc)) from None
    stack.callback(lock.release)  # last: after everything below is closed
    tighten_modes(config.storage.path)
    try:
        storage = await Storage.open(config.storage.path / DB_FILE)
    except StorageError as exc:
        raise StartupError(str(exc)) from None
    stack.push_async_callback(storage.close)
    return storage


async def open_web(
    stack: AsyncExitStack,
    config: Config,
    storage: Storage,
    renderer: Renderer,
    agenda: AgendaService,
    now: Callable[[], datetime],
) -> WebServer | None:
    """The public agenda on `web.http` (None when off), stopped with `stack`."""
    where = config.web.http_host_port
    if where is None:
        return None
    from bot.web.server import public_agenda  # aiohttp's server side: only with web.http

    server = await public_agenda(config, storage, renderer, agenda, now)
    try:
        await server.start(*where)
    except OSError as exc:
        raise StartupError(f"web.http {config.web.http}: {exc.strerror or exc}") from None
    stack.push_async_callback(server.stop)
    return server


def gazette_schedule(
    config: Config,
    storage: Storage,
    renderer: Renderer,
    agenda: AgendaService,
    now: Callable[[], datetime],
) -> GazetteSchedule | None:
    """The editorial gazette's schedule and posts (None without `gazette.editors_room`)."""
    if config.gazette.editors_room is None:
        return None
    desk = Desk(storage, renderer, agenda, config.gazette, prefix=config.bot.prefix, now=now)
    return GazetteSchedule(desk, config.gazette.editors_room)


def open_chat(stack: AsyncExitStack, config: Config, storage: Storage) -> MatrixChat:
    """The Matrix adapter, not connected yet, closed with `stack`."""
    chat = MatrixChat(config.matrix, config.storage.path, storage, store_key=config.storage.key)
    stack.push_async_callback(chat.close)
    return chat


async def log_in(chat: MatrixChat, *, wait_while_expired: bool = True) -> None:
    """Saved session or new login; waits while the account is expired (unless told not to).

    `SessionRevoked` (the configured token is revoked, no password) is raised
    as is; every other login failure is a `StartupError`."""
    try:
        await chat.connect(wait_while_expired=wait_while_expired)
    except SessionRevoked:
        raise
    except LoginFailed as exc:
        raise StartupError(str(exc)) from None


async def connect(stack: AsyncExitStack, config: Config, storage: Storage) -> MatrixChat:
    """The Matrix adapter, logged in, closed with `stack` (for commands: an expired
    account or a revoked token is an error, not a state to wait in)."""
    chat = open_chat(stack, config, storage)
    try:
        await log_in(chat, wait_while_expired=False)
    except SessionRevoked as exc:
        raise StartupError(f"{exc}: {REVOKED_ADVICE}") from None
    return chat


async def manage_identity(
    config: Config,
    *,
    reset: bool,
    approval: Approval | None = None,
    ask_password: Callable[[], SecretStr | None] | None = None,
) -> tuple[IdentityState, str | None]:
    """`bluehats-bot identity`: the state of the bot's identity, or (`reset`) a new one
    and its recovery key (the homeserver may ask for the password, or under MAS for a
    person's `approval`). Uses the saved session (same device); never syncs."""
    async with AsyncExitStack() as stack:
        identity = (await connect(stack, config, await open_storage(stack, config))).identity()
        try:
            if reset:
                return await identity.reset(approval, ask_password)
            return await identity.state(), None
        except IdentityError as exc:
            raise StartupError(str(exc)) from None
