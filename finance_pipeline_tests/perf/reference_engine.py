"""Vectorised matching of ledger entries against provider records for one day.

Inputs are the ledger lines of the day widened by the time tolerance on both sides, and the
provider records pulled for the same window. Every pair or leftover is *anchored* to one day
(the ledger entry's day when there is one, else the provider record's), and only what is
anchored in the interval is reported, so neighbouring days never report a record twice.

Order of matching:
1. by reference: the entry's ``provider_reference`` against a Stripe balance transaction's
   ``source`` or ``id`` / a payout record's ``payout_id``. A reference is authoritative: an
   entry whose reference matches nothing is PROVIDER_MISSING, it is never re-paired by amount.
2. what is left of the provider records, against entries that name a provider but no
   reference, by provider, currency and gross amount within the time tolerance. Exactly one
   candidate on both sides is a match; several are duplicates, never a guess.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from finance_pipeline.reconciliation.stripe_types import BALANCE_ROLES, NET_ROLES
from finance_pipeline.reconciliation.engine import converted_agrees
from finance_pipeline.reconciliation.stripe_types import FEE_ROLE_NAMES as FEE_ROLES

CLASSES = (
    "LEDGER_MISSING", "PROVIDER_MISSING", "AMOUNT_MISMATCH", "FEE_MISMATCH", "CURRENCY_MISMATCH",
    "DUPLICATE_PROVIDER", "DUPLICATE_LEDGER", "STATUS_MISMATCH", "TIMING_WINDOW",
)
PROVIDERS = ("stripe", "payout_sandbox")
_US = 1_000_000
NET_COLUMNS = tuple(f"net_{role}" for role in NET_ROLES)

DISCREPANCY_COLUMNS = [
    "class", "provider", "provider_id", "journal_id", "currency",
    "provider_amount_minor", "ledger_amount_minor", "detail",
]
MATCH_COLUMNS = ["provider", "provider_id", "journal_id", "currency", "amount_minor", "matched_by"]


@dataclass(frozen=True)
class Tolerances:
    """How far apart two sides may be and still agree."""

    time_s: int = 3600
    amount_minor: int = 0
    # Per-class amount tolerances override ``amount_minor`` (e.g. {"FEE_MISMATCH": 1}).
    per_class_minor: dict[str, int] = field(default_factory=dict)

    def amount_for(self, cls: str) -> int:
        return int(self.per_class_minor.get(cls, self.amount_minor))


@dataclass
class Reconciliation:
    lo_us: int
    hi_us: int
    matches: pd.DataFrame
    discrepancies: pd.DataFrame
    ledger_entries: int
    provider_records: dict[str, int]

    @property
    def counts(self) -> dict[str, int]:
        counts = self.discrepancies["class"].value_counts()
        return {cls: int(counts.get(cls, 0)) for cls in CLASSES}


# ---------------------------------------------------------------------------------------------
# Normalisation: one row per ledger claim and per provider record, comparable columns.


def ledger_claims(lines: pd.DataFrame) -> pd.DataFrame:
    """One row per ledger *claim* on a provider record, with amounts read off account roles.

    Entries naming the same (provider, provider_reference) form one claim, so corrections add
    up: an adjustment with the record's reference amends it, and a reversal of an entry with
    the same reference cancels that entry. ``live`` counts the standing bookings in the claim
    (standard entries not reversed, plus reversals of entries outside the claim, such as a
    refund reversing its charge); two or more is a DUPLICATE_LEDGER. Entries with a provider
    but no reference are claims of their own, matched later by amount.

    Stripe: the net per Stripe balance role (stripe_clearing, stripe_reserve, stripe_issuing),
    ``net`` the first that moved; fee = movement of the fee roles (stripe_fees,
    stripe_application_fees, stripe_fee_taxes); gross = net + fee (signed debit-positive, as
    Stripe signs its balance transactions). Payouts: amount = what left payout_clearing.
    """
    cols = ["journal_id", "journals", "ts_us", "provider", "ref", "currency", "gross", "fee", "net",
            "ledger_status", "live", *NET_COLUMNS]
    df = lines[lines["provider"].notna()]
    if df.empty:
        return _empty(cols, ints=("ts_us", "gross", "fee", "net", "live", *NET_COLUMNS))
    entries = df.drop_duplicates("journal_id")[
        ["journal_id", "ts_us", "kind", "provider", "provider_reference", "reverses", "currency"]
    ].rename(columns={"provider_reference": "ref", "currency": "first_currency"})
    has_ref = entries["ref"].notna()
    # \x1f cannot occur in ids we accept, so keys never collide.
    entries["gkey"] = np.where(has_ref, entries["provider"] + "\x1f" + entries["ref"].fillna(""),
                               "\x1e" + entries["journal_id"])
    gkey_of = entries.set_index("journal_id")["gkey"]
    is_rev = entries["kind"] == "reversal"
    internal_rev = is_rev & (entries["reverses"].map(gkey_of) == entries["gkey"])
    reversed_ids = set(entries.loc[internal_rev, "reverses"])
    entries["live"] = (((entries["kind"] == "standard") & ~entries["journal_id"].isin(reversed_ids))
                       | (is_rev & ~internal_rev)).astype(np.int64)
    entries["adjust"] = (entries["kind"] == "adjustment").astype(np.int64)
    # Representative entry of a claim: its first standing booking, else its first entry.
    entries = entries.sort_values(["gkey", "live", "ts_us", "journal_id"], ascending=[True, False, True, True])
    live_ids = entries[entries["live"] == 1].groupby("gkey", sort=False)["journal_id"].agg(
        lambda s: ", ".join(sorted(s)))
    groups = entries.groupby("gkey", sort=False).agg(
        journal_id=("journal_id", "first"), ts_us=("ts_us", "first"), provider=("provider", "first"),
        ref=("ref", "first"), first_currency=("first_currency", "first"), live=("live", "sum"),
        adjust=("adjust", "sum"),
    )
    groups["journals"] = live_ids.reindex(groups.index).fillna(groups["journal_id"])

    amount = df["amount_minor"].to_numpy(dtype=np.int64)
    signed = np.where(df["direction"].to_numpy() == "debit", amount, -amount)
    role = df["account_role"].fillna("").to_numpy()
    moves = pd.DataFrame({
        "gkey": df["journal_id"].map(gkey_of).to_numpy(),
        "currency": df["currency"].to_numpy(),
        **{col: np.where(role == r, signed, 0) for col, r in zip(NET_COLUMNS, NET_ROLES)},
        "fee": np.where(np.isin(role, FEE_ROLES), signed, 0),
        "payout_out": np.where(role == "payout_clearing", -signed, 0),
    }).groupby(["gkey", "currency"], sort=True).sum()
    moves = moves[(moves != 0).any(axis=1)].reset_index()
    # A claim moves money in one currency; where corrections leave several, the representative's wins.
    # (reset: on an empty left, merge names the result's index after the key, which sort_values refuses)
    moves = moves.merge(groups[["first_currency"]], left_on="gkey", right_index=True).reset_index(drop=True)
    moves["pref"] = (moves["currency"] != moves["first_currency"]).astype(np.int64)
    moves = moves.sort_values(["gkey", "pref", "currency"]).drop_duplicates("gkey")
    out = groups.join(moves.set_index("gkey")[["currency", *NET_COLUMNS, "fee", "payout_out"]])
    out["currency"] = out["currency"].fillna(out["first_currency"])
    for c in (*NET_COLUMNS, "fee", "payout_out"):
        out[c] = out[c].fillna(0).astype(np.int64)
    is_stripe = out["provider"] == "stripe"
    for c in NET_COLUMNS:
        out[c] = np.where(is_stripe, out[c], 0).astype(np.int64)
    first_moved = [next((int(v) for v in row if v != 0), 0) for row in out[list(NET_COLUMNS)].itertuples(index=False)]
    out["net"] = np.where(is_stripe, np.asarray(first_moved, dtype=np.int64), out["payout_out"]).astype(np.int64)
    out["fee"] = np.where(is_stripe, out["fee"], 0).astype(np.int64)
    out["gross"] = (out["net"] + out["fee"]).astype(np.int64)
    out["ledger_status"] = np.where((out["live"] + out["adjust"]) > 0, "settled", "reversed")
    return out.reset_index(drop=True)[cols]


def provider_records(stripe: pd.DataFrame, payouts: pd.DataFrame, stripe_payouts=None) -> pd.DataFrame:
    """Stripe balance transactions and payout records in one comparable frame."""
    cols = ["provider", "id", "key_source", "ts_us", "currency", "gross", "fee", "net",
            "status", "category", "net_role", "rate", "arrival_us"]
    parts = []
    if len(stripe):
        arrival_of, failed = {}, set()
        for p in ([] if stripe_payouts is None else stripe_payouts.to_dict("records")):
            if p["balance_transaction"] is not None and not pd.isna(p["balance_transaction"]):
                arrival_of[p["balance_transaction"]] = int(p["arrival_date"]) * _US
                if p["status"] in ("failed", "canceled"):
                    failed.add(p["balance_transaction"])
        balance = stripe["balance_type"] if "balance_type" in stripe.columns else pd.Series(None, index=stripe.index)
        net_role = [NET_ROLES.index(BALANCE_ROLES.get(b if isinstance(b, str) else "payments", "stripe_clearing"))
                    for b in balance]
        parts.append(pd.DataFrame({
            "provider": "stripe", "id": stripe["id"].to_numpy(), "key_source": stripe["source"].to_numpy(),
            "ts_us": stripe["created"].to_numpy(dtype=np.int64) * _US,
            "currency": stripe["currency"].str.upper().to_numpy(),
            "gross": stripe["amount"].to_numpy(dtype=np.int64), "fee": stripe["fee"].to_numpy(dtype=np.int64),
            "net": stripe["net"].to_numpy(dtype=np.int64),
            "status": ["failed" if t in failed else "settled" for t in stripe["id"]],
            "category": stripe["reporting_category"].to_numpy(), "net_role": np.asarray(net_role, dtype=np.int64),
            "arrival_us": np.asarray([arrival_of.get(t, -1) for t in stripe["id"]], dtype=np.int64),
            "rate": (stripe["exchange_rate"].astype(object).where(stripe["exchange_rate"].notna(), None).to_numpy()
                     if "exchange_rate" in stripe.columns else None),
        }))
    if len(payouts):
        amount = payouts["amount_minor"].to_numpy(dtype=np.int64)
        parts.append(pd.DataFrame({
            "provider": "payout_sandbox", "id": payouts["id"].to_numpy(),
            "key_source": payouts["payout_id"].to_numpy(), "ts_us": payouts["ts_us"].to_numpy(dtype=np.int64),
            "currency": payouts["currency"].to_numpy(), "gross": amount, "fee": np.zeros_like(amount),
            "net": amount, "status": payouts["status"].to_numpy(), "category": "payout", "net_role": -1,
            "rate": None, "arrival_us": -1,
        }))
    if not parts:
        return _empty(cols, ints=("ts_us", "gross", "fee", "net", "net_role", "arrival_us"))
    return pd.concat(parts, ignore_index=True)[cols]


def _empty(cols, ints=()) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype="int64" if c in ints else object) for c in cols})


# ---------------------------------------------------------------------------------------------


def reconcile(lines: pd.DataFrame, stripe: pd.DataFrame, payouts: pd.DataFrame, lo_us: int, hi_us: int,
              tol: Tolerances = Tolerances(), stripe_payouts=None) -> Reconciliation:
    """Reconcile the day [lo_us, hi_us) and return its matches and discrepancies."""
    claims = ledger_claims(lines).reset_index(drop=True)
    recs = provider_records(stripe, payouts, stripe_payouts).reset_index(drop=True)
    claims["c"] = np.arange(len(claims))
    recs["r"] = np.arange(len(recs))

    # 1. By reference. A Stripe record answers to its source and to its own id; where some
    #    claim names a record by its own id, that claim is the record's and source claims yield.
    keys = pd.concat([
        recs[["provider", "key_source", "r"]].rename(columns={"key_source": "key"}).assign(by_id=False),
        recs.loc[recs["provider"] == "stripe", ["provider", "id", "r"]].rename(columns={"id": "key"})
        .assign(by_id=True),
    ]).dropna(subset=["key"]).drop_duplicates(["provider", "key", "r"])
    pairs = claims[claims["ref"].notna()][["c", "provider", "ref"]].merge(
        keys, left_on=["provider", "ref"], right_on=["provider", "key"])[["c", "r", "by_id"]]
    named_by_id = set(pairs.loc[pairs["by_id"], "r"])
    keep = pairs["by_id"] | ~pairs["r"].isin(named_by_id)
    # A source claim yields only where its source has a record of its own left; a source booked
    # again by the record's id keeps its pair (DUPLICATE_LEDGER).
    keep |= ~pairs["c"].isin(pairs.loc[keep, "c"])
    pairs = pairs[keep][["c", "r"]].drop_duplicates()
    pairs["by"] = "reference"

    # 2. By amount, for what reference matching left.
    left_c = claims[claims["ref"].isna() & ~claims["c"].isin(pairs["c"])]
    left_r = recs[~recs["r"].isin(pairs["r"])]
    cand = left_c[["c", "provider", "currency", "gross", "ts_us"]].merge(
        left_r[["r", "provider", "currency", "gross", "ts_us"]], on=["provider", "currency", "gross"],
        suffixes=("_c", "_r"))
    cand = cand[(cand["ts_us_c"] - cand["ts_us_r"]).abs() <= tol.time_s * _US][["c", "r"]]
    cand["by"] = "amount"
    pairs = pd.concat([pairs, cand], ignore_index=True)

    # Which day reports a pair: the ledger entry's, when that day's window reads the record (or
    # the record is a payout arriving that day); else the record's.
    anchors = []
    for c, r in zip(pairs["c"].tolist(), pairs["r"].tolist()):
        ledger_ts, rec_ts, arrival = int(claims.at[c, "ts_us"]), int(recs.at[r, "ts_us"]), int(recs.at[r, "arrival_us"])
        day_lo = ledger_ts // (86_400 * _US) * 86_400 * _US
        day_hi = day_lo + 86_400 * _US
        seen = day_lo - tol.time_s * _US <= rec_ts <= day_hi + tol.time_s * _US or day_lo <= arrival < day_hi
        anchors.append(ledger_ts if seen else rec_ts)
    pairs["anchor"] = np.asarray(anchors, dtype=np.int64)
    n_r = pairs.groupby("c")["r"].transform("size")
    n_c = pairs.groupby("r")["c"].transform("size")
    multi_live = pairs["c"].map(claims["live"]) > 1
    one_to_one = pairs[(n_r == 1) & (n_c == 1) & ~multi_live]
    # A Stripe claim paired with one record compares the net of that record's balance role.
    for c, r in zip(one_to_one["c"].tolist(), one_to_one["r"].tolist()):
        role = int(recs.at[r, "net_role"])
        if role >= 0:
            claims.at[c, "net"] = claims.at[c, NET_COLUMNS[role]]
            claims.at[c, "gross"] = claims.at[c, "net"] + claims.at[c, "fee"]
    # Several claims on one record, or one claim standing on several bookings of it.
    dup_ledger = pairs[(n_c > 1) | ((n_r == 1) & multi_live)]
    dup_provider = pairs[(n_r > 1) & (n_c == 1) & ~multi_live]
    # A reversed booking against Stripe payout records that net to zero (a failed payout): matched.
    netted_c = []
    for c, group in dup_provider.groupby("c"):
        rows = recs.loc[group["r"].tolist()]
        if ((rows["provider"] == "stripe").all() and rows["category"].isin(["payout", "payout_reversal"]).all()
                and int(rows["gross"].sum()) == 0 and claims.at[c, "live"] == 0
                and claims.at[c, "ledger_status"] == "reversed"):
            netted_c.append(c)
    netted = dup_provider[dup_provider["c"].isin(netted_c)]
    dup_provider = dup_provider[~dup_provider["c"].isin(netted_c)]

    found = []
    found.append(_compare(one_to_one, claims, recs, lo_us, hi_us, tol))
    found.append(_duplicates(dup_ledger, claims, recs, lo_us, hi_us, "DUPLICATE_LEDGER"))
    found.append(_duplicates(dup_provider, claims, recs, lo_us, hi_us, "DUPLICATE_PROVIDER"))

    # 3. Leftovers, each on its own day.
    paired_c, paired_r = set(pairs["c"]), set(pairs["r"])
    # A claim whose bookings were all reversed says nothing happened: nothing to miss.
    void = (claims["live"] == 0) & (claims["ledger_status"] == "reversed")
    lc = claims[~claims["c"].isin(paired_c) & ~void & _inside(claims["ts_us"], lo_us, hi_us)]
    found.append(pd.DataFrame({
        "class": "PROVIDER_MISSING", "provider": lc["provider"], "provider_id": None,
        "journal_id": lc["journal_id"], "currency": lc["currency"], "provider_amount_minor": None,
        "ledger_amount_minor": lc["gross"],
        "detail": ("ledger entry names " + lc["provider"] + " record "
                   + lc["ref"].fillna("(no reference)") + " but the provider has no such record"),
    }))
    # A pending or failed payout nobody booked is consistent; only money that moved must be booked.
    lr = recs[~recs["r"].isin(paired_r) & _inside(recs["ts_us"], lo_us, hi_us)
              & ((recs["status"] == "settled") | (recs["provider"] == "stripe"))]
    found.append(pd.DataFrame({
        "class": "LEDGER_MISSING", "provider": lr["provider"], "provider_id": lr["id"], "journal_id": None,
        "currency": lr["currency"], "provider_amount_minor": lr["gross"], "ledger_amount_minor": None,
        "detail": (lr["provider"] + " " + lr["category"] + " " + lr["id"] + " ("
                   + lr["key_source"].fillna("") + ") has no ledger entry: post one with provider_reference "
                   + lr["key_source"].fillna(lr["id"])),
    }))
    disc = pd.concat([f for f in found if len(f)], ignore_index=True) if any(len(f) for f in found) else None
    disc = _finish_discrepancies(disc)

    matches = _matches(pd.concat([one_to_one, netted], ignore_index=True), claims, recs, lo_us, hi_us, disc)
    in_day = lines[_inside(lines["ts_us"], lo_us, hi_us)] if len(lines) else lines
    counts = {p: 0 for p in PROVIDERS}
    for p, n in recs["provider"].value_counts().items():
        counts[str(p)] = int(n)
    return Reconciliation(lo_us, hi_us, matches, disc, int(in_day["journal_id"].nunique()) if len(in_day) else 0,
                          counts)


def _inside(ts: pd.Series, lo: int, hi: int) -> pd.Series:
    return (ts >= lo) & (ts < hi)


def _joined(pairs: pd.DataFrame, claims: pd.DataFrame, recs: pd.DataFrame) -> pd.DataFrame:
    return (pairs.merge(claims.drop(columns=["provider"]), on="c")
            .merge(recs, on="r", suffixes=("_l", "_p")))


def _compare(pairs, claims, recs, lo_us, hi_us, tol: Tolerances) -> pd.DataFrame:
    if pairs.empty:
        return pairs.iloc[0:0]
    j = _joined(pairs, claims, recs)
    j = j[_inside(j["anchor"], lo_us, hi_us)]
    cls = pd.Series(None, index=j.index, dtype=object)
    p_amt = j["gross_p"].copy()
    l_amt = j["gross_l"].copy()
    detail = pd.Series("", index=j.index, dtype=object)
    ref_text = j["provider"] + " " + j["id"] + " / ledger " + j["journal_id"]

    cur = j["currency_l"] != j["currency_p"]
    converted = pd.Series(False, index=j.index)
    for i in j.index[cur]:
        if j.at[i, "rate"] is not None and not pd.isna(j.at[i, "rate"]):
            converted[i], detail[i] = converted_agrees(j.loc[i], tol)
    cls[cur & ~converted] = "CURRENCY_MISMATCH"
    plain = cur & ~converted & (detail == "")
    detail[plain] = ref_text + ": provider currency " + j["currency_p"] + ", ledger booked " + j["currency_l"] \
        + "; post an adjustment moving it to the right currency's accounts"

    # Only payouts have a settlement status to disagree on; a Stripe refund is its own record.
    status_off = cls.isna() & (j["provider"] == "payout_sandbox") & (
        ((j["ledger_status"] == "settled") & (j["status"] != "settled"))
        | ((j["ledger_status"] == "reversed") & (j["status"] == "settled"))
    )
    cls[status_off] = "STATUS_MISMATCH"
    detail[status_off] = ref_text + ": ledger books it " + j["ledger_status"] + ", provider says " + j["status"] \
        + "; settle or re-trigger the payout, or reverse the ledger entry"

    # A Stripe payout's return against the payout's own booking still standing.
    stripe = j["provider"] == "stripe"
    returned = stripe & (j["category"] == "payout_reversal")
    off = cls.isna() & returned & (j["ledger_status"] == "settled") & (j["gross_p"] != 0) & (
        np.sign(j["gross_l"]) == -np.sign(j["gross_p"]))
    cls[off] = "STATUS_MISMATCH"
    detail[off] = ref_text + ": ledger books the payout as settled, Stripe returned it (" + j["category"] \
        + "); reverse the payout's booking"

    # Both sides agree no money moved (reversed in the ledger, failed or pending at the
    # provider, a Stripe payout failed or returned): the amounts have nothing left to agree on.
    no_money = (j["provider"] == "payout_sandbox") & (j["ledger_status"] == "reversed") & (j["status"] != "settled")
    no_money = no_money | (stripe & (j["ledger_status"] == "reversed")
                           & (returned | ((j["category"] == "payout") & (j["status"] == "failed"))))
    no_money = no_money | converted
    gross_off = cls.isna() & ~no_money & ((j["gross_l"] - j["gross_p"]).abs() > tol.amount_for("AMOUNT_MISMATCH"))
    cls[gross_off] = "AMOUNT_MISMATCH"
    detail[gross_off] = ref_text + ": gross differs by " + (j["gross_l"] - j["gross_p"]).astype(str) \
        + " minor units (ledger minus provider); post an adjusting entry for the difference"

    fee_off = cls.isna() & ~no_money & ((j["fee_l"] - j["fee_p"]).abs() > tol.amount_for("FEE_MISMATCH"))
    cls[fee_off] = "FEE_MISMATCH"
    p_amt[fee_off], l_amt[fee_off] = j["fee_p"][fee_off], j["fee_l"][fee_off]
    detail[fee_off] = ref_text + ": fee differs by " + (j["fee_l"] - j["fee_p"]).astype(str) \
        + " minor units (ledger minus provider); adjust the fee and clearing lines"

    # Net = gross - fee on both sides, so a tolerated fee difference may show in the net too.
    net_tol = tol.amount_for("AMOUNT_MISMATCH") + tol.amount_for("FEE_MISMATCH")
    net_off = cls.isna() & ~no_money & ((j["net_l"] - j["net_p"]).abs() > net_tol)
    cls[net_off] = "AMOUNT_MISMATCH"
    p_amt[net_off], l_amt[net_off] = j["net_p"][net_off], j["net_l"][net_off]
    detail[net_off] = ref_text + ": net differs by " + (j["net_l"] - j["net_p"]).astype(str) \
        + " minor units (ledger minus provider); post an adjusting entry for the difference"

    timing = cls.isna() & ~_inside(j["ts_us_p"], lo_us, hi_us) & ~_inside(j["arrival_us"], lo_us, hi_us)
    cls[timing] = "TIMING_WINDOW"
    detail[timing] = ref_text + ": provider record is on the other side of the day's boundary ("\
        + ((j["ts_us_l"] - j["ts_us_p"]) // _US).astype(str) + " s apart, within the tolerance)"

    hit = cls.notna()
    j = j[hit]
    return pd.DataFrame({
        "class": cls[hit], "provider": j["provider"], "provider_id": j["id"], "journal_id": j["journal_id"],
        "currency": j["currency_p"], "provider_amount_minor": p_amt[hit], "ledger_amount_minor": l_amt[hit],
        "detail": detail[hit],
    })


def _duplicates(pairs, claims, recs, lo_us, hi_us, cls: str) -> pd.DataFrame:
    """One discrepancy per duplicated side: the record (DUPLICATE_LEDGER) or entry (DUPLICATE_PROVIDER)."""
    if pairs.empty:
        return pairs.iloc[0:0]
    j = _joined(pairs, claims, recs)
    group = "r" if cls == "DUPLICATE_LEDGER" else "c"
    # Anchor: the group's earliest ledger entry; report only when that is in the interval.
    j = j.sort_values(["ts_us_l", "journal_id", "id"])
    g = j.groupby(group, sort=False).agg(
        provider=("provider", "first"), provider_id=("id", "first"), journal_id=("journal_id", "first"),
        currency=("currency_p", "first"), provider_amount_minor=("gross_p", "first"),
        ledger_amount_minor=("gross_l", "first"), anchor=("anchor", "min"),
        journals=("journals", lambda s: ", ".join(sorted({j for v in s for j in v.split(", ")}))),
        records=("id", lambda s: ", ".join(sorted(set(s)))),
    )
    g = g[_inside(g["anchor"], lo_us, hi_us)]
    if cls == "DUPLICATE_LEDGER":
        detail = "ledger entries " + g["journals"] + " all claim " + g["provider"] + " record " + g["records"] \
            + "; reverse all but one"
    else:
        detail = g["provider"] + " records " + g["records"] + " all claim ledger entry " + g["journals"] \
            + "; ask the provider which is real, book the other or have it voided"
    g["provider_id"] = g["records"].str.split(", ").str[0]
    g["journal_id"] = g["journals"].str.split(", ").str[0]
    return pd.DataFrame({"class": cls, **{c: g[c] for c in DISCREPANCY_COLUMNS[1:-1]}, "detail": detail})


def _finish_discrepancies(disc: pd.DataFrame | None) -> pd.DataFrame:
    if disc is None or disc.empty:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in DISCREPANCY_COLUMNS})
    disc = disc[DISCREPANCY_COLUMNS].copy()
    for c in ("provider_amount_minor", "ledger_amount_minor"):
        disc[c] = disc[c].astype("Int64")
    # Spec order: class, provider, provider_id, journal_id; classes by name (code point order).
    disc = disc.sort_values(
        ["class", "provider", "provider_id", "journal_id"], na_position="first", kind="mergesort"
    )
    return disc.reset_index(drop=True)


def _matches(pairs, claims, recs, lo_us, hi_us, disc) -> pd.DataFrame:
    if pairs.empty:
        return _empty(MATCH_COLUMNS, ints=("amount_minor",))
    j = _joined(pairs, claims, recs)
    j = j[_inside(j["anchor"], lo_us, hi_us) & ~j["journal_id"].isin(disc["journal_id"].dropna())]
    out = pd.DataFrame({
        "provider": j["provider"], "provider_id": j["id"], "journal_id": j["journal_id"],
        "currency": j["currency_p"], "amount_minor": j["gross_p"].astype(np.int64), "matched_by": j["by"],
    })
    return out.sort_values(["provider", "provider_id", "journal_id"]).reset_index(drop=True)
