"""The runbook through the command line only, as on-call would run it."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from finance_pipeline.demo.corrections import corrections
from finance_pipeline.demo.scenario import build_scenario
from finance_pipeline.sandboxes import start_payout_sandbox, start_stripe_sandbox

pytestmark = pytest.mark.slow
FP = [sys.executable, "-m", "finance_pipeline.cli"]
DAY = "2026-11-01"


def _cli(args, env, stdin=None):
    return subprocess.run(FP + args, env=env, input=stdin, capture_output=True, text=True, timeout=300)


@pytest.fixture
def env(tmp_path):
    var = tmp_path / "var"
    e = {k: v for k, v in os.environ.items() if not k.startswith(("FP_", "STRIPE_", "PAYOUT_", "S3_", "KMS_"))}
    e.update({"FP_VAR_DIR": str(var), "DAGSTER_HOME": str(tmp_path / "dagster_home"),
              "FP_PARTITIONS_START": DAY})
    e.pop("DATABASE_URL", None)
    (tmp_path / "dagster_home").mkdir()
    (tmp_path / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return e


def test_blocked_day_fixed_with_reviewed_entries_then_published_and_verified(env, tmp_path):
    var = Path(env["FP_VAR_DIR"])
    seeded = _cli(["demo", "seed", "--days", "1", "--start", DAY], env)
    assert seeded.returncode == 0, seeded.stderr
    assert _cli(["keys", "init", "--dir", str(var / "keys")], env).returncode == 0
    stripe = start_stripe_sandbox(var / "sandboxes" / "stripe.json")
    payout = start_payout_sandbox(var / "sandboxes" / "payouts.json")
    try:
        env.update({"STRIPE_API_BASE": stripe.url, "PAYOUT_API_BASE": payout.url})
        blocked = _cli(["export", DAY, DAY, "--no-progress"], env)
        assert blocked.returncode == 1
        assert "BLOCKED by parity" in blocked.stdout
        assert '"LEDGER_MISSING": 1' in blocked.stdout

        # Each correction: the operator submits it on stdin with their token, a finance lead
        # approves it with theirs (two-person review; the names come from the tokens).
        tokens = {}
        for actor, roles in (("ops:ana", "operator"), ("fin:lena", "finance-lead")):
            added = _cli(["tokens", "add", "--actor", actor, "--roles", roles], env)
            assert added.returncode == 0, added.stderr
            tokens[actor] = added.stdout.strip()
        scenario = build_scenario(build_date(DAY), 1, 7)
        for fix in corrections(scenario):
            for entry in fix.entries:
                body = {k: v for k, v in entry.items() if k not in ("posted_by", "reviewed_by")}
                submitted = _cli(["journal", "post", "-", "--token", tokens["ops:ana"]], env, stdin=json.dumps(body))
                assert submitted.returncode == 0, submitted.stdout + submitted.stderr
                approved = _cli(["journal", "review", entry["journal_id"], "--approve",
                                 "--token", tokens["fin:lena"]], env)
                assert approved.returncode == 0, approved.stdout + approved.stderr
                assert approved.stdout.startswith(f"posted {entry['journal_id']}")
            if fix.settle_payout:  # the stuck payout: the provider settles it once re-triggered
                payout.mark_stuck([fix.settle_payout], stuck=False)
                httpx.post(f"{payout.url}/payouts/{fix.settle_payout}/settle", json={"settled_at": fix.settle_at},
                           headers={"Authorization": f"Bearer {payout.token}"}).raise_for_status()

        published = _cli(["export", DAY, DAY, "--no-progress"], env)
        assert published.returncode == 0, published.stdout + published.stderr
        line = next(l for l in published.stdout.splitlines() if l.startswith(DAY))
        assert "proofId=fp1-20261101-" in line and "exports.duration_ms=" in line
        structured = [json.loads(l) for l in published.stderr.splitlines() if l.startswith("{")]
        assert structured[-1]["status"] == "published" and structured[-1]["exports.duration_ms"] > 0
        location = line.split("location=")[1].split()[0]
    finally:
        stripe.stop()
        payout.stop()

    keyring = str(var / "keys" / "keyring.json")
    ok = _cli(["verify", location, "--keyring", keyring], env)
    assert ok.returncode == 0, ok.stdout
    replay = _cli(["reconcile", "--replay", location], env)
    assert replay.returncode == 0 and "identical" in replay.stdout

    tampered = tmp_path / "tampered"
    shutil.copytree(location, tampered)
    target = tampered / "reconciliation_report.json"
    target.chmod(0o644)
    data = bytearray(target.read_bytes())
    data[-5] ^= 0x01
    target.write_bytes(bytes(data))
    bad = _cli(["verify", str(tampered), "--keyring", keyring], env)
    assert bad.returncode == 1
    assert "reconciliation.report_sha256" in bad.stdout
    missing = _cli(["verify", str(tmp_path / "nowhere"), "--keyring", keyring], env)
    assert missing.returncode == 2


def build_date(day):
    from datetime import date

    return date.fromisoformat(day)
