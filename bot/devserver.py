"""A real, throw-away Synapse on loopback, for the demo, the tests and the benchmarks.

Needs the `demo` extra (PyPI `matrix-synapse`). Everything lives in one
directory; the server listens on 127.0.0.1 only, on a free port.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.util
import json
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import yaml

RAISED = {"per_second": 1000, "burst_count": 1000}


class DevServerError(Exception):
    pass


def synapse_available() -> bool:
    return importlib.util.find_spec("synapse") is not None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_free(port: int) -> bool:
    """Nothing listens on loopback `port` (a moment ago)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class DevHomeserver:
    def __init__(
        self,
        directory: Path,
        *,
        server_name: str = "localhost",
        raised_limits: bool = True,
        limits: dict[str, Any] | None = None,
    ) -> None:
        """`raised_limits=False` keeps Synapse's defaults; `limits` sets some `rc_*` keys."""
        self.dir = directory
        self.server_name = server_name
        self.raised_limits = raised_limits
        self.limits = dict(limits or {})
        self.port = 0
        self.secret = secrets.token_hex(16)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _write_config(self) -> Path:
        d = self.dir
        d.mkdir(parents=True, exist_ok=True)
        (d / "media").mkdir(exist_ok=True)
        log_config = d / "log.yaml"
        log_config.write_text(
            yaml.safe_dump(
                {
                    "version": 1,
                    "formatters": {
                        "f": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}
                    },
                    "handlers": {
                        "file": {
                            "class": "logging.FileHandler",
                            "filename": str(d / "homeserver.log"),
                            "formatter": "f",
                        }
                    },
                    "root": {"level": "WARNING", "handlers": ["file"]},
                    "disable_existing_loggers": False,
                }
            )
        )
        config: dict[str, Any] = {
            "server_name": self.server_name,
            "pid_file": str(d / "homeserver.pid"),
            "listeners": [
                {
                    "port": self.port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": False,
                    "x_forwarded": False,
                    "resources": [{"names": ["client"], "compress": False}],
                }
            ],
            "database": {"name": "sqlite3", "args": {"database": str(d / "homeserver.db")}},
            "log_config": str(log_config),
            "media_store_path": str(d / "media"),
            "signing_key_path": str(d / "signing.key"),
            "registration_shared_secret": self.secret,
            "macaroon_secret_key": secrets.token_hex(16),
            "form_secret": secrets.token_hex(16),
            "report_stats": False,
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "bcrypt_rounds": 4,
            "enable_registration": False,
            "presence": {"enabled": False},
        }
        if self.raised_limits:
            config.update(
                {
                    "rc_message": RAISED,
                    "rc_login": {"address": RAISED, "account": RAISED, "failed_attempts": RAISED},
                    "rc_registration": RAISED,
                    "rc_joins": {"local": RAISED, "remote": RAISED},
                    "rc_joins_per_room": RAISED,
                    "rc_invites": {"per_room": RAISED, "per_user": RAISED, "per_issuer": RAISED},
                    "rc_admin_redaction": RAISED,
                    "rc_room_creation": RAISED,
                }
            )
        config.update(self.limits)
        path = d / "homeserver.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    def start(self, timeout: float = 60.0) -> None:
        if not synapse_available():
            raise DevServerError(
                "Synapse is not installed: pip install 'bluehats-bot[demo]' (matrix-synapse)"
            )
        if not self.port:
            self.port = free_port()
        config = self._write_config()
        if not (self.dir / "signing.key").exists():
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "synapse.app.homeserver",
                    "--config-path",
                    str(config),
                    "--generate-keys",
                ],
                check=True,
                capture_output=True,
            )
        out = (self.dir / "stdout.log").open("ab")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "synapse.app.homeserver", "--config-path", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=self.dir,
        )
        out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise DevServerError(
                    f"Synapse exited with {self._proc.returncode}; see {self.dir}/stdout.log "
                    f"and homeserver.log"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/_matrix/client/versions", timeout=2):
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        self.stop()
        raise DevServerError(f"Synapse did not answer within {timeout:.0f}s")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        token: str | None = None,
    ) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise DevServerError(f"{method} {path}: {exc.code} {exc.read()[:200]!r}") from None

    def register(self, localpart: str, password: str, *, admin: bool = False) -> str:
        """Create a user with the shared-secret admin API; returns the Matrix ID."""
        nonce = self.call("GET", "/_synapse/admin/v1/register")["nonce"]
        kind = "admin" if admin else "notadmin"
        mac = hmac.new(
            self.secret.encode(),
            b"\x00".join(p.encode() for p in (nonce, localpart, password, kind)),
            hashlib.sha1,
        )
        digest = mac.hexdigest()
        result = self.call(
            "POST",
            "/_synapse/admin/v1/register",
            {
                "nonce": nonce,
                "username": localpart,
                "password": password,
                "admin": admin,
                "mac": digest,
            },
        )
        return str(result["user_id"])

    def login(self, user_id: str, password: str) -> str:
        """An access token for this user (a new device)."""
        result = self.call(
            "POST",
            "/_matrix/client/v3/login",
            {
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": user_id},
                "password": password,
            },
        )
        return str(result["access_token"])

    def override_ratelimit(self, admin_token: str, user_id: str, *, unlimited: bool) -> None:
        """Lift a user's message/room/join limits (admin API), or restore the defaults."""
        path = f"/_synapse/admin/v1/users/{urllib.parse.quote(user_id)}/override_ratelimit"
        if unlimited:
            self.call("POST", path, {"messages_per_second": 0, "burst_count": 0}, token=admin_token)
        else:
            self.call("DELETE", path, token=admin_token)
