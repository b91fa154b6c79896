"""`finance-pipeline check FROM TO`: every gate for the days, through Dagster, and never a
signature or a publication; and the demo's sandbox ports, which never change silently."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import click
import pytest

from finance_pipeline.sandboxes import start_payout_sandbox, start_stripe_sandbox

pytestmark = pytest.mark.slow
FP = [sys.executable, "-m", "finance_pipeline.cli"]


def _cli(args, env):
    return subprocess.run(FP + args, env=env, capture_output=True, text=True, timeout=600)


def _env(tmp_path: Path) -> dict:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("FP_", "STRIPE_", "PAYOUT_", "S3_", "KMS_"))}
    e.update({"FP_VAR_DIR": str(tmp_path / "var"), "DAGSTER_HOME": str(tmp_path / "dagster_home"),
              "FP_PARTITIONS_START": "2026-11-01"})
    e.pop("DATABASE_URL", None)
    (tmp_path / "dagster_home").mkdir()
    (tmp_path / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return e


def test_check_passes_a_clean_day_fails_a_blocked_one_listing_expectations_and_publishes_nothing(tmp_path):
    env = _env(tmp_path)
    var = Path(env["FP_VAR_DIR"])
    # Two days; --inject 1 spreads one discrepancy of every class over them, so both block.
    # A third seed without injections gives a clean world to compare.
    seeded = _cli(["demo", "seed", "--days", "2", "--start", "2026-11-01"], env)
    assert seeded.returncode == 0, seeded.stderr
    stripe = start_stripe_sandbox(var / "sandboxes" / "stripe.json")
    payout = start_payout_sandbox(var / "sandboxes" / "payouts.json")
    try:
        env.update({"STRIPE_API_BASE": stripe.url, "PAYOUT_API_BASE": payout.url})
        blocked = _cli(["check", "2026-11-01", "2026-11-02"], env)
    finally:
        stripe.stop()
        payout.stop()
    assert blocked.returncode == 1, blocked.stdout + blocked.stderr
    assert "2026-11-01  BLOCKED by parity" in blocked.stdout
    assert "  - parity: " in blocked.stdout and "LEDGER_MISSING" in blocked.stdout
    assert "gates did not pass: 2026-11-01, 2026-11-02" in blocked.stderr
    structured = [json.loads(line) for line in blocked.stderr.splitlines() if line.startswith("{")]
    assert [o["status"] for o in structured] == ["blocked", "blocked"]
    assert all(o["failed_expectations"] for o in structured)
    assert not (var / "published").exists()

    clean_tmp = tmp_path / "clean"
    clean_tmp.mkdir()
    env = _env(clean_tmp)
    var = Path(env["FP_VAR_DIR"])
    seeded = _cli(["demo", "seed", "--days", "1", "--start", "2026-11-01", "--inject", "0"], env)
    assert seeded.returncode == 0, seeded.stderr
    stripe = start_stripe_sandbox(var / "sandboxes" / "stripe.json")
    payout = start_payout_sandbox(var / "sandboxes" / "payouts.json")
    try:
        env.update({"STRIPE_API_BASE": stripe.url, "PAYOUT_API_BASE": payout.url})
        passed = _cli(["check", "2026-11-01", "2026-11-01"], env)
    finally:
        stripe.stop()
        payout.stop()
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "2026-11-01  PASSED  ledger_suite, provider_suites, parity" in passed.stdout
    # Nothing signed or published, not even a key made for it.
    assert not (var / "published").exists()
    assert not (var / "keys").exists()


def _busy_port() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    return s


def test_demo_ports_come_from_the_flag_the_variable_or_the_default_and_never_move_silently(monkeypatch):
    from finance_pipeline.cli.demo import sandbox_port

    monkeypatch.delenv("STRIPE_API_BASE", raising=False)
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    assert sandbox_port(port, "STRIPE_API_BASE", 12111) == port
    monkeypatch.setenv("STRIPE_API_BASE", f"http://127.0.0.1:{port}")
    assert sandbox_port(None, "STRIPE_API_BASE", 12111) == port

    busy = _busy_port()
    try:
        taken = busy.getsockname()[1]
        with pytest.raises(click.UsageError, match=f"port {taken} \\(the flag\\) is in use.*--stripe-port"):
            sandbox_port(taken, "STRIPE_API_BASE", 12111)
        monkeypatch.setenv("PAYOUT_API_BASE", f"http://localhost:{taken}")
        with pytest.raises(click.UsageError, match=f"port {taken} \\(PAYOUT_API_BASE\\) is in use.*--payout-port"):
            sandbox_port(None, "PAYOUT_API_BASE", 12112)
    finally:
        busy.close()
    monkeypatch.setenv("STRIPE_API_BASE", "https://api.stripe.com")
    with pytest.raises(click.UsageError, match="not a local sandbox address"):
        sandbox_port(None, "STRIPE_API_BASE", 12111)


def test_demo_run_refuses_a_busy_port_before_touching_anything(tmp_path):
    env = _env(tmp_path)
    busy = _busy_port()
    try:
        taken = busy.getsockname()[1]
        result = _cli(["demo", "run", "--days", "1", "--stripe-port", str(taken)], env)
    finally:
        busy.close()
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"port {taken} (the flag) is in use" in result.stderr
    assert not (Path(env["FP_VAR_DIR"]) / "ledger.sqlite3").exists()
