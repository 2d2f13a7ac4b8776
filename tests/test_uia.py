"""The stages a homeserver asks for to replace cross-signing keys, answered by `uia`
(a fake homeserver: the answers of Synapse 1.163, synapse/rest/client/keys.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from bot.__main__ import build_parser
from bot.matrix.keys_api import IdentityError
from bot.matrix.uia import (
    MARKER_FILE,
    Approval,
    ApprovalExpired,
    PendingReset,
    UploadAuth,
    pending_reset,
    upload_keys,
)
from tests.mas_reset import oauth_challenge

KEYS = {"master_key": {"user_id": "@bot:hs", "usage": ["master"], "keys": {"ed25519:K": "K"}}}
USER = {"type": "m.id.user", "user": "@bot:hs"}
URL = "https://auth.example/account/?action=org.matrix.cross_signing_reset"
PASSWORD_CHALLENGE = {"session": "s1", "flows": [{"stages": ["m.login.password"]}], "params": {}}


class Homeserver:
    """Answers the uploads in turn; keeps what was sent."""

    def __init__(self, *answers: tuple[int, dict[str, Any]]) -> None:
        self.answers = list(answers)
        self.sent: list[dict[str, Any]] = []

    async def post(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.sent.append(body)
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def no_password() -> SecretStr | None:
    raise AssertionError("the password is asked for only when the homeserver offers that stage")


def approval(tmp_path: Path, seen: list[PendingReset], wait: float = 5) -> Approval:
    def announce(pending: PendingReset) -> None:
        assert (tmp_path / MARKER_FILE).stat().st_mode & 0o777 == 0o600
        seen.append(pending)

    return Approval(
        tmp_path, announce, wait=timedelta(seconds=wait), retry_every=timedelta(seconds=0.01)
    )


async def test_password_stage_sends_the_password_with_the_session() -> None:
    hs = Homeserver((401, PASSWORD_CHALLENGE), (200, {}))
    await upload_keys(hs.post, KEYS, UploadAuth(USER, lambda: SecretStr("pw")))
    assert hs.sent[0] == KEYS
    assert hs.sent[1] == {
        **KEYS,
        "auth": {"type": "m.login.password", "identifier": USER, "password": "pw", "session": "s1"},
    }


async def test_password_stage_without_a_password_says_which_setting() -> None:
    hs = Homeserver((401, PASSWORD_CHALLENGE))
    with pytest.raises(IdentityError, match=r"matrix\.password or BLUEHATS_MATRIX_PASSWORD"):
        await upload_keys(hs.post, KEYS, UploadAuth(USER, lambda: None))
    assert len(hs.sent) == 1


async def test_first_upload_asks_nothing() -> None:
    hs = Homeserver((200, {}))
    await upload_keys(hs.post, KEYS, UploadAuth(USER, no_password))
    assert hs.sent == [KEYS]


@pytest.mark.parametrize("stage", ["m.oauth", "org.matrix.cross_signing_reset"])
async def test_oauth_stage_tells_the_url_then_retries_with_the_session(
    tmp_path: Path, stage: str
) -> None:
    challenge = oauth_challenge(URL)
    if stage != "m.oauth":  # a homeserver that knows the unstable name only
        challenge["flows"] = [{"stages": [stage]}]
        del challenge["params"]["m.oauth"]
    hs = Homeserver((401, challenge), (401, challenge), (401, challenge), (200, {}))
    seen: list[PendingReset] = []
    before = datetime.now(UTC)
    await upload_keys(hs.post, KEYS, UploadAuth(USER, no_password, approval(tmp_path, seen)))
    assert [p.url for p in seen] == [URL]
    assert before + timedelta(seconds=4) <= seen[0].deadline <= before + timedelta(seconds=6)
    # The spec: after approval, the same request with an `auth` of just the session.
    assert hs.sent == [KEYS] + [{**KEYS, "auth": {"session": "dummy"}}] * 3
    assert not (tmp_path / MARKER_FILE).exists()


async def test_oauth_stage_never_approved_expires_and_removes_the_marker(tmp_path: Path) -> None:
    hs = Homeserver((401, oauth_challenge(URL)))
    seen: list[PendingReset] = []
    auth = UploadAuth(USER, no_password, approval(tmp_path, seen, wait=0.3))
    with pytest.raises(ApprovalExpired, match=r"nobody approved the reset at .* within 0 s"):
        await upload_keys(hs.post, KEYS, auth)
    assert len(seen) == 1 and len(hs.sent) > 2
    assert not (tmp_path / MARKER_FILE).exists()


async def test_oauth_stage_at_the_bots_start_says_to_run_the_reset() -> None:
    hs = Homeserver((401, oauth_challenge(URL)))
    with pytest.raises(IdentityError, match=r"approve .*identity --config … --reset"):
        await upload_keys(hs.post, KEYS, UploadAuth(USER, no_password))


async def test_oauth_stage_without_an_http_url_is_refused(tmp_path: Path) -> None:
    hs = Homeserver((401, oauth_challenge("javascript:alert(1)")))
    with pytest.raises(IdentityError, match="without an approval URL"):
        await upload_keys(hs.post, KEYS, UploadAuth(USER, no_password, approval(tmp_path, [])))
    assert not (tmp_path / MARKER_FILE).exists()


async def test_other_stages_are_named_in_the_error() -> None:
    challenge = {
        "session": "s",
        "flows": [{"stages": ["m.login.recaptcha"]}, {"stages": ["m.login.email.identity"]}],
    }
    hs = Homeserver((401, challenge))
    with pytest.raises(IdentityError) as err:
        await upload_keys(hs.post, KEYS, UploadAuth(USER, no_password))
    assert "['m.login.recaptcha'], ['m.login.email.identity']" in str(err.value)


async def test_a_refusal_is_not_taken_for_a_stage() -> None:
    hs = Homeserver((401, {"errcode": "M_UNKNOWN_TOKEN", "error": "Invalid access token"}))
    with pytest.raises(IdentityError, match="refused \\(HTTP 401\\): M_UNKNOWN_TOKEN"):
        await upload_keys(hs.post, KEYS, UploadAuth(USER, no_password))


def test_pending_reset_reads_the_marker_until_its_deadline(tmp_path: Path) -> None:
    now = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    assert pending_reset(tmp_path, now) is None
    marker = tmp_path / MARKER_FILE
    deadline = now + timedelta(minutes=10)
    marker.write_text(json.dumps({"url": URL, "deadline": deadline.isoformat()}))
    assert pending_reset(tmp_path, now) == PendingReset(URL, deadline)
    assert pending_reset(tmp_path, deadline) is None  # left by a killed process
    for broken in ("{", '{"url": 1}', '{"url": "u", "deadline": "2026-12-01T10:20:00"}'):
        marker.write_text(broken)  # unreadable, or a deadline without its time zone
        assert pending_reset(tmp_path, now) is None


@pytest.mark.parametrize("wait", ["0s", "soon"])
def test_wait_must_be_a_duration(wait: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["identity", "--config", "c.yaml", "--reset", "--wait", wait])
    assert exit_.value.code == 2
    assert "--wait" in capsys.readouterr().err
