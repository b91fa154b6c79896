"""API tokens: hashed at rest, revocable, re-read while serving; the `tokens` and `serve` commands."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
from click.testing import CliRunner

from finance_pipeline.api.tokens import PREFIX, TokenError, TokenStore
from finance_pipeline.cli.serve import COMMANDS
from finance_pipeline.ledger.audit import list_events
from finance_pipeline_tests.api.helpers import bearer
from finance_pipeline_tests.ledger.helpers import make_ledger

TOKENS = next(c for c in COMMANDS if c.name == "tokens")


def test_only_a_salted_hash_is_stored_and_the_token_authenticates(tmp_path):
    store = TokenStore(tmp_path / "t.json")
    token, record = store.add("ops:ana", ["operator", "finance-lead"])
    text = (tmp_path / "t.json").read_text()
    prefix = f"{PREFIX}_{record.token_id}_"
    assert token.startswith(prefix)
    secret = token[len(prefix):]  # urlsafe base64: it may itself hold '_'
    assert len(secret) == 43
    assert secret not in text and record.hash in text
    assert oct((tmp_path / "t.json").stat().st_mode & 0o777) == "0o600"

    principal = TokenStore(tmp_path / "t.json").authenticate(token)  # a fresh reader, as a server would be
    assert (principal.actor, principal.roles) == ("ops:ana", frozenset({"operator", "finance-lead"}))
    # Same secret under another salt hashes differently, so equal secrets are not visible as equal.
    other_token, other = store.add("ops:omar", ["operator"])
    assert other.salt != record.salt and other.hash != record.hash
    assert store.authenticate(token[:-1] + ("x" if token[-1] != "x" else "y")) is None
    assert store.authenticate(f"fpt_{other.token_id}_{secret}") is None  # right id, wrong secret


def test_a_pepper_is_needed_to_use_tokens_hashed_with_it(tmp_path):
    peppered = TokenStore(tmp_path / "t.json", pepper="s3cret-pepper")
    token, _ = peppered.add("ops:ana", ["operator"])
    assert peppered.authenticate(token) is not None
    assert TokenStore(tmp_path / "t.json").authenticate(token) is None
    assert TokenStore(tmp_path / "t.json", pepper="another").authenticate(token) is None


def test_revoked_tokens_fail_and_a_running_store_sees_file_changes(tmp_path):
    serving = TokenStore(tmp_path / "t.json")
    cli_side = TokenStore(tmp_path / "t.json")
    token, record = cli_side.add("fin:lena", ["finance-lead"])
    assert serving.authenticate(token) is not None          # added after the server loaded the file
    assert serving.actor_roles("fin:lena") == {"finance-lead"}
    cli_side.revoke(record.token_id)
    assert serving.authenticate(token) is None
    assert serving.actor_roles("fin:lena") == frozenset()
    assert [r.active for r in serving.records()] == [False]
    with pytest.raises(TokenError, match="no token 'nope'"):
        cli_side.revoke("nope")


@pytest.mark.parametrize(("actor", "roles", "says"), [
    ("ops:ana", ["auditor", "operator"], "auditor is read-only"),
    ("ops:ana", [], "at least one role"),
    ("ops:ana", ["admin"], "unknown role 'admin'"),
    ("ops ana", ["operator"], "actor must be"),
])
def test_bad_grants_are_refused(tmp_path, actor, roles, says):
    store = TokenStore(tmp_path / "t.json")
    with pytest.raises(TokenError, match=says):
        store.add(actor, roles)
    assert not (tmp_path / "t.json").exists()


def test_a_corrupt_file_is_refused_at_start_and_survived_while_serving(tmp_path):
    path = tmp_path / "t.json"
    store = TokenStore(path)
    token, _ = store.add("ops:ana", ["operator"])
    path.write_text("{not json")
    assert store.authenticate(token) is not None  # keeps the last good set
    with pytest.raises(TokenError, match="unreadable"):
        TokenStore(path)


def test_tokens_cli_prints_the_token_once_and_audits_add_and_revoke(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    engine = make_ledger(url, with_accounts=False)
    tokens_file = tmp_path / "tokens.json"
    runner = CliRunner()
    common = ["--tokens-file", str(tokens_file), "--database-url", url]

    added = runner.invoke(TOKENS, ["add", "--actor", "ops:ana", "--roles", "operator", "--by", "sec:sam", *common])
    assert added.exit_code == 0, added.output
    token = added.stdout.strip()
    principal = TokenStore(tokens_file).authenticate(token)
    assert principal.actor == "ops:ana"

    listed = runner.invoke(TOKENS, ["list", "--json", "--tokens-file", str(tokens_file)])
    record = json.loads(listed.stdout)
    assert token not in listed.stdout and "hash" not in record
    assert (record["actor"], record["roles"], record["revoked_at_us"]) == ("ops:ana", ["operator"], None)

    revoked = runner.invoke(TOKENS, ["revoke", record["token_id"], "--by", "sec:sam", *common])
    assert revoked.exit_code == 0, revoked.output
    assert TokenStore(tokens_file).authenticate(token) is None
    events = list_events(engine, subject_type="api_token", subject_id=record["token_id"])
    assert [(e.actor, e.action) for e in events] == [("sec:sam", "api_token.add"), ("sec:sam", "api_token.revoke")]

    bad = runner.invoke(TOKENS, ["add", "--actor", "aud:alex", "--roles", "auditor,operator", *common])
    assert bad.exit_code == 1 and "read-only" in bad.output
    assert len(TokenStore(tokens_file).records()) == 1
    engine.dispose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_runs_the_api_on_the_configured_ledger(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    make_ledger(url).dispose()
    store = TokenStore(tmp_path / "tokens.json")
    token, _ = store.add("aud:alex", ["auditor"])
    port = _free_port()
    env = {**os.environ, "FP_API_TOKENS_FILE": str(store.path), "DATABASE_URL": url}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from finance_pipeline.cli.serve import serve_cmd; serve_cmd()",
         "--port", str(port), "--log-level", "warning"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/openapi.json", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"serve did not come up: {proc.communicate(timeout=5)}")
            time.sleep(0.1)
        listed = httpx.get(f"{base}/finance/journal", params={"from": "2026-11-02"}, headers=bearer(token))
        assert (listed.status_code, listed.json()["entries"]) == (200, [])
        assert httpx.get(f"{base}/finance/journal", params={"from": "2026-11-02"}).status_code == 401
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
