"""The stages a homeserver asks for to replace cross-signing keys, answered by `uia`
(a fake homeserver: the answers of Synapse 1.163, synapse/rest/client/keys.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from bot.__main__ import build_parser
from bot.matrix.keys_api import IdentityError
from bot.matrix.uia import (
    Approval,
    ApprovalExpired,
    PendingApproval,
    UploadAuth,
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


def approval(seen: list[PendingApproval], wait: float = 5) -> Approval:
    return Approval(seen.append, wait=timedelta(seconds=wait), retry_every=timedelta(seconds=0.01))


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
async def test_oauth_stage_tells_the_url_once_then_retries_with_the_session(stage: str) -> None:
    challenge = oauth_challenge(URL)
    if stage != "m.oauth":  # a homeserver that knows the unstable name only
        challenge["flows"] = [{"stages": [stage]}]
        del challenge["params"]["m.oauth"]
    hs = Homeserver((401, challenge), (401, challenge), (401, challenge), (200, {}))
    seen: list[PendingApproval] = []
    before = datetime.now(UTC)
    await upload_keys(hs.post, KEYS, UploadAuth(USER, no_password, approval(seen)))
    assert [p.url for p in seen] == [URL]
    assert before + timedelta(seconds=4) <= seen[0].deadline <= before + timedelta(seconds=6)
    # The spec: after approval, the same request with an `auth` of just the session.
    assert hs.sent == [KEYS] + [{**KEYS, "auth": {"session": "dummy"}}] * 3


async def test_oauth_stage_never_approved_expires_with_the_url_told_once() -> None:
    hs = Homeserver((401, oauth_challenge(URL)))
    seen: list[PendingApproval] = []
    auth = UploadAuth(USER, no_password, approval(seen, wait=0.3))
    with pytest.raises(ApprovalExpired, match=r"nobody approved the reset at .* within 0 s"):
        await upload_keys(hs.post, KEYS, auth)
    assert len(seen) == 1 and len(hs.sent) > 2


async def test_oauth_stage_at_the_bots_start_says_to_run_the_reset() -> None:
    hs = Homeserver((401, oauth_challenge(URL)))
    with pytest.raises(IdentityError, match=r"approve .*identity --config … --reset"):
        await upload_keys(hs.post, KEYS, UploadAuth(USER, no_password))


async def test_oauth_stage_without_an_http_url_is_refused() -> None:
    hs = Homeserver((401, oauth_challenge("javascript:alert(1)")))
    seen: list[PendingApproval] = []
    with pytest.raises(IdentityError, match="without an approval URL"):
        await upload_keys(hs.post, KEYS, UploadAuth(USER, no_password, approval(seen)))
    assert seen == [] and len(hs.sent) == 1


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


@pytest.mark.parametrize("wait", ["0s", "soon"])
def test_wait_must_be_a_duration(wait: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["identity", "--config", "c.yaml", "--reset", "--wait", wait])
    assert exit_.value.code == 2
    assert "--wait" in capsys.readouterr().err
