import dagster as dg

from finance_pipeline.definitions import build_definitions, defs

EXPECTED_ASSETS = {
    "ledger_extract", "stripe_balance_transactions", "payout_settlements", "reconciliation",
    "reconciliation_report", "ledger_counterparts", "stripe_payouts",
}


def test_code_location_loads_with_one_lineage_graph():
    d = defs()
    graph = d.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert EXPECTED_ASSETS <= keys
    report = dg.AssetKey("reconciliation_report")
    parents = {k.to_user_string() for k in graph.get(dg.AssetKey("reconciliation")).parent_keys}
    assert parents == {"ledger_extract", "stripe_balance_transactions", "stripe_payouts", "payout_settlements"}
    checks = {c.name for c in graph.get(report).check_keys}
    assert checks == {"ledger_suite", "provider_suites", "parity"}


def test_every_asset_is_daily_partitioned_in_utc_from_the_configured_start(monkeypatch):
    monkeypatch.setenv("FP_PARTITIONS_START", "2026-10-15")
    d = build_definitions()
    for key in EXPECTED_ASSETS:
        pd = d.resolve_assets_def(key).partitions_def
        assert isinstance(pd, dg.DailyPartitionsDefinition)
        assert pd.timezone == "UTC"
        assert pd.get_first_partition_key() == "2026-10-15"


def test_unset_environment_means_embedded_defaults_and_set_means_envvar(monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("FP_VAR_DIR", raising=False)
    ledger = build_definitions().resources["ledger"]
    assert ledger.database_url == "sqlite:///var/ledger.sqlite3"  # the default, a plain value
    assert ledger.url.startswith("sqlite:///") and ledger.url.endswith("ledger.sqlite3")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/db")
    ledger = build_definitions().resources["ledger"]
    assert isinstance(ledger.database_url, dg.EnvVar)


def test_bad_partition_start_is_a_clear_error(monkeypatch):
    import pytest

    monkeypatch.setenv("FP_PARTITIONS_START", "01/11/2026")
    with pytest.raises(ValueError):
        build_definitions()


def test_parity_policy_and_tolerances_come_from_the_environment(monkeypatch):
    import pytest

    monkeypatch.setenv("RECON_BLOCKING_CLASSES", "LEDGER_MISSING, PROVIDER_MISSING")
    monkeypatch.setenv("RECON_MAX_ALLOWED", '{"LEDGER_MISSING": 2}')
    monkeypatch.setenv("RECON_CLASS_TOLERANCE_MINOR", '{"FEE_MISMATCH": 1}')
    recon = build_definitions().resources["recon"]
    assert recon.tolerances().amount_for("FEE_MISMATCH") == 1
    policy = recon.parity_policy()
    assert set(policy.blocking_classes) == {"LEDGER_MISSING", "PROVIDER_MISSING"}
    assert policy.max_allowed["LEDGER_MISSING"] == 2
    monkeypatch.setenv("RECON_MAX_ALLOWED", "[1]")
    with pytest.raises(ValueError, match="RECON_MAX_ALLOWED must be a JSON object"):
        build_definitions()
    monkeypatch.setenv("RECON_MAX_ALLOWED", "{}")
    monkeypatch.setenv("RECON_BLOCKING_CLASSES", "LEDGER_MISING")
    with pytest.raises(ValueError, match="did you mean 'LEDGER_MISSING'"):
        build_definitions().resources["recon"].parity_policy()


def test_the_uis_resource_config_shows_variable_names_not_secrets(monkeypatch):
    """What the UI shows of a resource is its field values: a set variable is an EnvVar, whose
    value is the variable's name, so no key, token or password reaches the instance."""
    secrets = {"STRIPE_API_KEY": "sk_test_SECRETstripe123", "PAYOUT_API_TOKEN": "tok-SECRET-payout",
               "DATABASE_URL": "postgresql://fp:SECRETpw@db.internal/ledger"}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    shown = []
    for key, resource in build_definitions().resources.items():
        fields = getattr(type(resource), "model_fields", {})
        for field_name in fields:
            value = getattr(resource, field_name, None)
            # An EnvVar refuses to be read as text outside a run: what the UI shows is its name.
            text = f"EnvVar({value.env_var_name})" if isinstance(value, dg.EnvVar) else repr(value)
            shown.append(text)
            assert "SECRET" not in text, (key, field_name, text)
    assert {f"EnvVar({name})" for name in secrets} <= set(shown), shown
