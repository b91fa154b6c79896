import copy

import pytest

from finance_pipeline.domain.journal import JournalValidationError, parse_entry


def entry(**over):
    base = {
        "journal_id": "je-1", "ts": "2026-11-02T10:15:00Z", "kind": "standard", "memo": "Charge ch_1",
        "batch_id": None, "provider": "stripe", "provider_reference": "ch_1", "reverses": None,
        "posted_by": "ops:ana", "reviewed_by": None,
        "lines": [
            {"account_id": "stripe_clearing_usd", "direction": "debit", "amount_minor": 970, "currency": "USD"},
            {"account_id": "stripe_fees_usd", "direction": "debit", "amount_minor": 30, "currency": "USD"},
            {"account_id": "revenue_usd", "direction": "credit", "amount_minor": 1000, "currency": "USD"},
        ],
    }
    base.update(over)
    return base


def line(i, **over):
    e = entry()
    e["lines"][i].update(over)
    return e


def errors_of(obj):
    with pytest.raises(JournalValidationError) as info:
        parse_entry(obj)
    out = {}
    for e in info.value.errors:
        out[e.field] = out.get(e.field, "") + e.message + " | "
    return out


def test_valid_entry_gives_the_eleven_member_leaf():
    e = parse_entry(entry())
    leaf = e.to_leaf()
    assert list(leaf) == ["journal_id", "ts", "kind", "memo", "batch_id", "provider",
                          "provider_reference", "reverses", "posted_by", "reviewed_by", "lines"]
    assert e.leaf_bytes().startswith(b'{"batch_id":null,"journal_id":"je-1","kind":"standard"')
    assert [list(x) for x in leaf["lines"]] == [["account_id", "direction", "amount_minor", "currency"]] * 3


def test_leaf_is_the_same_whatever_the_input_offset_or_member_order():
    a = parse_entry(entry(ts="2026-11-02T11:15:00+01:00"))
    b = parse_entry(dict(reversed(list(entry().items()))))
    assert a.leaf_bytes() == b.leaf_bytes() == parse_entry(entry()).leaf_bytes()


def test_lines_keep_posted_order():
    e = entry()
    e["lines"].reverse()
    assert parse_entry(e).to_leaf()["lines"][0]["account_id"] == "revenue_usd"


@pytest.mark.parametrize(
    "obj, field, text",
    [
        (line(2, amount_minor=999), "lines", "unbalanced in USD"),
        (line(0, amount_minor=970.0), "lines[0].amount_minor", "integer"),
        (line(0, amount_minor=True), "lines[0].amount_minor", "integer"),
        (line(0, amount_minor="970"), "lines[0].amount_minor", "integer"),
        (line(1, amount_minor=-30), "lines[1].amount_minor", "> 0"),
        (line(1, amount_minor=0), "lines[1].amount_minor", "> 0"),
        (line(0, currency="usd"), "lines[0].currency", "in capitals"),
        (line(0, currency="XXY"), "lines[0].currency", "ISO 4217"),
        (line(0, direction="dr"), "lines[0].direction", "'debit' or 'credit'"),
        (line(0, account_id=""), "lines[0].account_id", "required"),
        (entry(ts="2026-11-02T10:15:00"), "ts", "UTC timestamp"),
        (entry(ts=None), "ts", "required"),
        (entry(kind="correction"), "kind", "standard, adjustment, reversal"),
        (entry(kind="reversal"), "reverses", "required for kind=reversal"),
        (entry(reverses="je-0"), "reverses", "only allowed"),
        (entry(kind="adjustment"), "reviewed_by", "two-person review"),
        (entry(kind="adjustment", reviewed_by="ops:ana"), "reviewed_by", "different person"),
        (entry(lines=entry()["lines"][:1]), "lines", "at least two lines"),
        (entry(journal_id="j" * 65), "journal_id", "at most 64"),
        (entry(provider="paypal"), "provider", "stripe, payout_sandbox"),
        (entry(provider=None), "provider", "required when provider_reference"),
        (entry(extra=1), "extra", "not a member"),
        (entry(posted_by=None), "posted_by", "required"),
    ],
)
def test_each_rule_rejects_naming_the_field(obj, field, text):
    errors = errors_of(obj)
    assert field in errors, errors
    assert text in errors[field]


def test_currencies_balance_separately():
    e = entry(lines=[
        {"account_id": "a", "direction": "debit", "amount_minor": 100, "currency": "USD"},
        {"account_id": "b", "direction": "credit", "amount_minor": 100, "currency": "EUR"},
    ])
    errors = errors_of(e)
    assert "unbalanced in EUR" in errors["lines"]


def test_all_problems_are_reported_at_once_with_a_prefix():
    bad = copy.deepcopy(entry(kind="adjustment", ts="2026-11-02"))
    bad["lines"][0]["amount_minor"] = 1.5
    with pytest.raises(JournalValidationError) as info:
        parse_entry(bad, index="entries[3].")
    fields = {e.field for e in info.value.errors}
    assert {"entries[3].ts", "entries[3].reviewed_by", "entries[3].lines[0].amount_minor"} <= fields


def test_not_an_object():
    with pytest.raises(JournalValidationError, match="JSON object"):
        parse_entry([1, 2])


@pytest.mark.parametrize("bad", ["a\x00b", "a\ud800b"])
@pytest.mark.parametrize("field", ["memo", "journal_id", "posted_by"])
def test_text_a_database_cannot_store_is_rejected(field, bad):
    errors = errors_of(entry(**{field: bad}))
    assert field in errors


def test_line_account_id_with_nul_is_rejected():
    assert "lines[0].account_id" in errors_of(line(0, account_id="bank\x00"))


@pytest.mark.parametrize("bad", ["２０２６-11-02T10:15:00Z", "2026-11-02T10:15:00Z\n"])
def test_only_ascii_timestamps_without_trailing_text(bad):
    assert "ts" in errors_of(entry(ts=bad))
