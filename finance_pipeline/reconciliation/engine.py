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
import pyarrow as pa
import pyarrow.compute as pc

from finance_pipeline.domain.timeutil import DAY_US
from finance_pipeline.reconciliation.stripe_types import BALANCE_ROLES, DEFAULT_BALANCE_TYPE, FEE_ROLE_NAMES, NET_ROLES

CLASSES = (
    "LEDGER_MISSING", "PROVIDER_MISSING", "AMOUNT_MISMATCH", "FEE_MISMATCH", "CURRENCY_MISMATCH",
    "DUPLICATE_PROVIDER", "DUPLICATE_LEDGER", "STATUS_MISMATCH", "TIMING_WINDOW",
)
PROVIDERS = ("stripe", "payout_sandbox")
_US = 1_000_000

DISCREPANCY_COLUMNS = [
    "class", "provider", "provider_id", "journal_id", "currency",
    "provider_amount_minor", "ledger_amount_minor", "detail",
]
MATCH_COLUMNS = ["provider", "provider_id", "journal_id", "currency", "amount_minor", "matched_by"]
# A Stripe claim's net per Stripe balance role (stripe_types.NET_ROLES, in that order).
NET_COLUMNS = tuple(f"net_{role}" for role in NET_ROLES)
_ROLE_INDEX = {role: i for i, role in enumerate(NET_ROLES)}
# The extract's columns the reconciliation reads (``ledger_claims``, the day's entry count and
# counterparts.open_references): a day too large to hold whole is read with these only.
CLAIM_COLUMNS = ("journal_id", "ts_us", "kind", "provider", "provider_reference", "reverses", "line_no",
                 "direction", "amount_minor", "currency", "account_role")


def claim_mask(lines: pd.DataFrame) -> np.ndarray:
    """The lines the reconciliation's matching reads: those of entries naming a provider or a
    reference. Given only these (and the day's entry count, ``reconcile``'s
    ``entries_in_day``) it reconciles as it does given every line."""
    return (lines["provider"].notna() | lines["provider_reference"].notna()).to_numpy(dtype=bool)


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

    Stripe (reconciliation/stripe_types.py): the net is read per Stripe balance role
    (``NET_COLUMNS``: stripe_clearing, stripe_reserve, stripe_issuing), ``net`` is the first
    that moved; fee = movement of the fee roles together; gross = net + fee (signed
    debit-positive, as Stripe signs its balance transactions). A paired record compares with
    the net of its own ``balance_type``'s role. Payouts: amount = what left payout_clearing.
    """
    cols = ["journal_id", "journals", "ts_us", "provider", "ref", "currency", "gross", "fee", "net",
            "ledger_status", "live", *NET_COLUMNS]
    has_provider = lines["provider"].notna().to_numpy(dtype=bool)
    if not has_provider.any():
        return _empty(cols, ints=("ts_us", "gross", "fee", "net", "live", *NET_COLUMNS))
    df = lines.loc[has_provider, ["journal_id", "ts_us", "currency", "amount_minor", "direction", "account_role"]]
    if df[["journal_id", "currency"]].isna().any().any():
        return _ledger_claims_by_name(
            lines.loc[has_provider, ["journal_id", "ts_us", "kind", "provider", "provider_reference", "reverses",
                                     "currency", "amount_minor", "direction", "account_role"]], cols)

    # Everything below works on integer codes; strings are only hashed once and sorted once.
    # Entries: the first line of each journal id (in frame order), as drop_duplicates keeps.
    # The ids the reversals name are coded in the same pass, so they need no lookup table.
    is_rev_line = (lines["kind"] == "reversal").fillna(False).to_numpy(dtype=bool) & has_provider
    named = lines.loc[is_rev_line, "reverses"]
    codes, _ = pd.factorize(pd.concat([df["journal_id"], named], ignore_index=True))
    jcodes, named_codes = codes[:len(df)], codes[len(df):]
    first = np.flatnonzero(~pd.Series(jcodes).duplicated().to_numpy())  # entry k is code k
    entries = lines[["journal_id", "ts_us", "kind", "provider", "provider_reference", "reverses", "currency"]].iloc[
        np.flatnonzero(has_provider)[first]]
    n = len(entries)
    kind = entries["kind"].to_numpy(dtype=object, na_value=None)
    is_rev = kind == "reversal"
    # Claim key: (provider, reference), or the entry alone when it has no reference. Claims are
    # ranked by the key's text (code point order) as the reference sorted them.
    has_ref = entries["provider_reference"].notna().to_numpy(dtype=bool)
    pa_provider = _arrow(entries["provider"])
    pa_ref = _arrow(entries["provider_reference"])
    pa_jid = _arrow(entries["journal_id"])
    ls = pa.large_string()
    gkey = pc.if_else(
        pa.array(has_ref),
        pc.binary_join_element_wise(pa_provider, pc.fill_null(pa_ref, pa.scalar("", ls)), pa.scalar("\x1f", ls)),
        pc.binary_join_element_wise(pa.scalar("\x1e", ls), pa_jid, pa.scalar("", ls)),
    )
    gcode = pc.rank(gkey, sort_keys="ascending", tiebreaker="dense").to_numpy().astype(np.int64)
    # A reversal inside its own claim cancels the entry it reverses.
    target = np.full(n, -1, dtype=np.int64)
    if is_rev.any():
        # The reversal's first line names what it reverses; codes past the entries name none here.
        line_target = np.full(len(df), -1, dtype=np.int64)
        line_target[np.flatnonzero(is_rev_line[has_provider])] = np.where(named_codes < n, named_codes, -1)
        target[np.flatnonzero(is_rev)] = line_target[first[is_rev]]
    internal = is_rev & (target >= 0) & (gcode[np.maximum(target, 0)] == gcode)
    reversed_mask = np.zeros(n, dtype=bool)
    reversed_mask[target[internal]] = True
    live = (((kind == "standard") & ~reversed_mask) | (is_rev & ~internal)).astype(np.int64)
    adjust = (kind == "adjustment").astype(np.int64)
    ts = entries["ts_us"].to_numpy(dtype=np.int64)
    # Representative entry of a claim: its first standing booking, else its first entry.
    order = pc.sort_indices(
        pa.table({"g": gcode, "l": -live, "t": ts, "j": pa_jid}),
        sort_keys=[("g", "ascending"), ("l", "ascending"), ("t", "ascending"), ("j", "ascending")],
    ).to_numpy()
    g_sorted = gcode[order]
    starts = np.flatnonzero(np.r_[True, g_sorted[1:] != g_sorted[:-1]])
    rep = order[starts]
    def first_of(source: str) -> pd.Series:  # in the column's own dtype, as groupby-first keeps it
        return entries[source].iloc[rep].reset_index(drop=True)

    groups = pd.DataFrame({
        "journal_id": first_of("journal_id"),
        "ts_us": ts[rep],
        "provider": first_of("provider"),
        "ref": first_of("provider_reference"),
        "first_currency": first_of("currency"),
        "live": np.add.reduceat(live[order], starts),
        "adjust": np.add.reduceat(adjust[order], starts),
    })
    # Standing bookings of each claim, in journal id order, joined. The representative comes
    # first among a claim's standing bookings, so with one (or none) it is the representative.
    live_sorted = live[order] == 1
    live_count = np.add.reduceat(live_sorted.astype(np.int64), starts)
    group_of_sorted = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(order)]))
    journals = groups["journal_id"].copy()
    several = np.flatnonzero(live_count > 1)
    if len(several):
        ids = entries["journal_id"]
        joined = []
        for g in several.tolist():
            lo, hi = starts[g], (starts[g + 1] if g + 1 < len(starts) else len(order))
            rows = order[lo:hi][live_sorted[lo:hi]]
            joined.append(", ".join(sorted(ids.iloc[rows].tolist())))
        journals = journals.astype(object)
        journals.iloc[several] = joined
    jid_dtype = entries["journal_id"].dtype
    groups["journals"] = journals.astype(jid_dtype) if isinstance(jid_dtype, pd.StringDtype) \
        else pd.Series(journals.to_numpy(dtype=object))  # the dtypes the reference's fillna gave

    # Money per (claim, currency) read off the account roles.
    group_of_entry = np.empty(n, dtype=np.int64)
    group_of_entry[order] = group_of_sorted
    line_group = group_of_entry[jcodes]
    ccode, currencies = pd.factorize(df["currency"], sort=True)
    amount = df["amount_minor"].to_numpy(dtype=np.int64)
    def where(column: str, value: str) -> np.ndarray:
        return (df[column] == value).fillna(False).to_numpy(dtype=bool)

    signed = np.where(where("direction", "debit"), amount, -amount)
    is_fee = df["account_role"].isin(FEE_ROLE_NAMES).fillna(False).to_numpy(dtype=bool)
    moves = pd.DataFrame({
        **{col: np.where(where("account_role", role), signed, 0) for col, role in zip(NET_COLUMNS, NET_ROLES)},
        "fee": np.where(is_fee, signed, 0),
        "payout_out": np.where(where("account_role", "payout_clearing"), -signed, 0),
    }).groupby(line_group * len(currencies) + ccode, sort=True).sum()
    moves = moves[(moves != 0).any(axis=1)]
    mkey = moves.index.to_numpy(dtype=np.int64)
    m_group, m_cur = mkey // len(currencies), mkey % len(currencies)
    # A claim moves money in one currency; where corrections leave several, the representative's wins.
    first_cur = pd.Index(currencies).get_indexer(groups["first_currency"])
    pref = (m_cur != first_cur[m_group]).astype(np.int64)
    pick = np.lexsort((m_cur, pref, m_group))
    pick = pick[np.r_[True, m_group[pick][1:] != m_group[pick][:-1]]] if len(pick) else pick
    chosen = np.full(len(groups), -1, dtype=np.int64)
    chosen[m_group[pick]] = pick
    has_move = chosen >= 0
    values = moves.to_numpy(dtype=np.int64)
    sums = np.zeros((len(groups), values.shape[1]), dtype=np.int64)
    sums[has_move] = values[chosen[has_move]]
    currency = groups["first_currency"].to_numpy(dtype=object, copy=True)
    currency[has_move] = np.asarray(currencies, dtype=object)[m_cur[chosen[has_move]]]
    out = groups
    out["currency"] = pd.Series(currency)
    is_stripe = (out["provider"] == "stripe").to_numpy(dtype=bool)
    k = len(NET_COLUMNS)
    for i, col in enumerate(NET_COLUMNS):
        out[col] = np.where(is_stripe, sums[:, i], 0).astype(np.int64)
    out["net"] = np.where(is_stripe, _first_moved(sums[:, :k]), sums[:, k + 1]).astype(np.int64)
    out["fee"] = np.where(is_stripe, sums[:, k], 0).astype(np.int64)
    out["gross"] = (out["net"] + out["fee"]).astype(np.int64)
    out["ledger_status"] = np.where((out["live"] + out["adjust"]) > 0, "settled", "reversed")
    return out.reset_index(drop=True)[cols]


def _first_moved(nets: np.ndarray) -> np.ndarray:
    """Per row, the first nonzero column of ``nets`` (0 when none moved)."""
    if not len(nets):
        return np.zeros(0, dtype=np.int64)
    moved = nets != 0
    first = np.where(moved.any(axis=1), moved.argmax(axis=1), 0)
    return nets[np.arange(len(nets)), first]


def _arrow(series: pd.Series) -> pa.Array:
    """A text column as one Arrow large_string array."""
    arr = pa.array(series)
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    return arr.cast(pa.large_string())


def _ledger_claims_by_name(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """``ledger_claims`` on string keys, one pandas operation after another: the path for frames
    with missing ids, providers or currencies (never a ledger extract)."""
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
        "fee": np.where(np.isin(role, FEE_ROLE_NAMES), signed, 0),
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
    out["net"] = np.where(is_stripe, _first_moved(out[list(NET_COLUMNS)].to_numpy(dtype=np.int64)),
                          out["payout_out"]).astype(np.int64)
    out["fee"] = np.where(is_stripe, out["fee"], 0).astype(np.int64)
    out["gross"] = (out["net"] + out["fee"]).astype(np.int64)
    out["ledger_status"] = np.where((out["live"] + out["adjust"]) > 0, "settled", "reversed")
    return out.reset_index(drop=True)[cols]


def provider_records(stripe: pd.DataFrame, payouts: pd.DataFrame,
                     stripe_payouts: pd.DataFrame | None = None) -> pd.DataFrame:
    """Stripe balance transactions and payout records in one comparable frame.

    ``arrival_us``: for the balance transaction of a Stripe payout, the payout's
    ``arrival_date`` (a ledger may book the payout on the day it reaches the bank); -1 else."""
    cols = ["provider", "id", "key_source", "ts_us", "currency", "gross", "fee", "net",
            "status", "category", "net_role", "rate", "arrival_us"]
    parts = []
    if len(stripe):
        arrival = np.full(len(stripe), -1, dtype=np.int64)
        status = np.full(len(stripe), "settled", dtype=object)
        if stripe_payouts is not None and len(stripe_payouts):
            known = stripe_payouts.dropna(subset=["balance_transaction"])
            at = dict(zip(known["balance_transaction"].tolist(), (known["arrival_date"] * _US).tolist()))
            arrival = np.asarray([at.get(t, -1) for t in stripe["id"].tolist()], dtype=np.int64)
            # A payout Stripe failed or cancelled: its money came back (payout_failure/cancel).
            failed = set(known.loc[known["status"].isin(["failed", "canceled"]), "balance_transaction"].tolist())
            status = np.where(stripe["id"].isin(failed).to_numpy(dtype=bool), "failed", "settled").astype(object)
        # The balance a record moved decides which ledger role its net meets (-1: unknown
        # balance_type, the gate names it; compared as payments).
        balance = (stripe["balance_type"].fillna(DEFAULT_BALANCE_TYPE) if "balance_type" in stripe.columns
                   else pd.Series(DEFAULT_BALANCE_TYPE, index=stripe.index))
        # Per distinct balance type (a handful), not per record.
        codes, kinds = pd.factorize(balance, use_na_sentinel=False)
        role_of = np.array([_ROLE_INDEX.get(BALANCE_ROLES.get(b, ""), 0) for b in kinds], dtype=np.int64)
        net_role = role_of[codes]
        parts.append(pd.DataFrame({
            "provider": "stripe", "id": stripe["id"].to_numpy(), "key_source": stripe["source"].to_numpy(),
            "ts_us": stripe["created"].to_numpy(dtype=np.int64) * _US,
            "currency": stripe["currency"].str.upper().to_numpy(),
            "gross": stripe["amount"].to_numpy(dtype=np.int64), "fee": stripe["fee"].to_numpy(dtype=np.int64),
            "net": stripe["net"].to_numpy(dtype=np.int64), "status": status,
            "category": stripe["reporting_category"].to_numpy(), "net_role": net_role,
            "rate": (stripe["exchange_rate"].to_numpy(dtype=object, na_value=None) if "exchange_rate" in stripe.columns
                     else None),
            "arrival_us": arrival,
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
              tol: Tolerances = Tolerances(), stripe_payouts: pd.DataFrame | None = None,
              entries_in_day: int | None = None) -> Reconciliation:
    """Reconcile the day [lo_us, hi_us) and return its matches and discrepancies.
    ``stripe_payouts``: the day's Stripe payout objects (stripe_payouts.PAYOUT_COLUMNS).
    ``entries_in_day``: the day's entry count when ``lines`` holds only the claims' lines
    (``claim_mask``); else it is counted from ``lines``."""
    claims = ledger_claims(lines).reset_index(drop=True)
    recs = provider_records(stripe, payouts, stripe_payouts).reset_index(drop=True)
    claims["c"] = np.arange(len(claims))
    recs["r"] = np.arange(len(recs))

    # 1. By reference. A Stripe record answers to its source and to its own id; where some
    #    claim names a record by its own id, that claim is the record's and source claims yield.
    # (A record whose own id is its source is one key, not two: the by-source row stays.)
    by_id = (recs["provider"] == "stripe").to_numpy(dtype=bool) & ~(recs["id"] == recs["key_source"]).fillna(
        False).to_numpy(dtype=bool)
    keys = pd.concat([
        recs[["provider", "key_source", "r"]].rename(columns={"key_source": "key"}).assign(by_id=False),
        recs.loc[by_id, ["provider", "id", "r"]].rename(columns={"id": "key"}).assign(by_id=True),
    ]).dropna(subset=["key"])
    named = claims[claims["ref"].notna()][["c", "provider", "ref"]]
    # Join on one integer per (provider, key) instead of two text columns.
    lk, rk = _key_codes([named["provider"], keys["provider"]], [named["ref"], keys["key"]])
    pairs = pd.DataFrame({"c": named["c"].to_numpy(), "k": lk}).merge(
        pd.DataFrame({"k": rk, "r": keys["r"].to_numpy(), "by_id": keys["by_id"].to_numpy()}), on="k",
    )[["c", "r", "by_id"]]
    named_by_id = set(pairs.loc[pairs["by_id"], "r"])
    keep = pairs["by_id"] | ~pairs["r"].isin(named_by_id)
    # A source claim yields only where its source has a record of its own left (a payout and its
    # failure); a source booked a second time by the record's id keeps its pair: DUPLICATE_LEDGER.
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

    pairs["anchor"] = pair_anchors(pairs, claims, recs, tol)
    n_r = pairs.groupby("c")["r"].transform("size")
    n_c = pairs.groupby("r")["c"].transform("size")
    multi_live = pairs["c"].map(claims["live"]) > 1
    one_to_one = pairs[(n_r == 1) & (n_c == 1) & ~multi_live]
    # Several claims on one record, or one claim standing on several bookings of it.
    dup_ledger = pairs[(n_c > 1) | ((n_r == 1) & multi_live)]
    dup_provider = pairs[(n_r > 1) & (n_c == 1) & ~multi_live]
    # A payout and its failure (or cancellation) under one source, against a booking the
    # ledger reversed: both sides say no money moved; each record is matched, not a duplicate.
    netted = _netted_payouts(dup_provider, claims, recs)
    dup_provider = dup_provider[~dup_provider["c"].isin(netted["c"])]
    _net_of_record_balance(one_to_one, claims, recs)

    found = []
    found.append(_compare(one_to_one, claims, recs, lo_us, hi_us, tol))
    found.append(_duplicates(dup_ledger, claims, recs, lo_us, hi_us, "DUPLICATE_LEDGER"))
    found.append(_duplicates(dup_provider, claims, recs, lo_us, hi_us, "DUPLICATE_PROVIDER"))

    # 3. Leftovers, each on its own day.
    paired_c = np.zeros(len(claims), dtype=bool)
    paired_c[pairs["c"].to_numpy(dtype=np.int64)] = True
    paired_r = np.zeros(len(recs), dtype=bool)
    paired_r[pairs["r"].to_numpy(dtype=np.int64)] = True
    # A claim whose bookings were all reversed says nothing happened: nothing to miss.
    void = (claims["live"] == 0) & (claims["ledger_status"] == "reversed")
    lc = claims[~paired_c & ~void & _inside(claims["ts_us"], lo_us, hi_us)]
    found.append(pd.DataFrame({
        "class": "PROVIDER_MISSING", "provider": lc["provider"], "provider_id": None,
        "journal_id": lc["journal_id"], "currency": lc["currency"], "provider_amount_minor": None,
        "ledger_amount_minor": lc["gross"],
        "detail": ("ledger entry names " + lc["provider"] + " record "
                   + lc["ref"].fillna("(no reference)") + " but the provider has no such record"),
    }))
    # A pending or failed payout nobody booked is consistent; only money that moved must be booked.
    # (A Stripe balance transaction moved money whatever its payout's status.)
    lr = recs[~paired_r & _inside(recs["ts_us"], lo_us, hi_us)
              & ((recs["status"] == "settled") | (recs["provider"] == "stripe"))]
    found.append(pd.DataFrame({
        "class": "LEDGER_MISSING", "provider": lr["provider"], "provider_id": lr["id"], "journal_id": None,
        "currency": lr["currency"], "provider_amount_minor": lr["gross"], "ledger_amount_minor": None,
        # (a record without a reporting_category is named "record": a null would void the text)
        "detail": (lr["provider"] + " " + lr["category"].fillna("record") + " " + lr["id"] + " ("
                   + lr["key_source"].fillna("") + ") has no ledger entry: post one with provider_reference "
                   + lr["key_source"].fillna(lr["id"])),
    }))
    disc = pd.concat([f for f in found if len(f)], ignore_index=True) if any(len(f) for f in found) else None
    disc = finish_discrepancies(disc)

    matches = _matches(pd.concat([one_to_one, netted], ignore_index=True), claims, recs, lo_us, hi_us, disc)
    if entries_in_day is None:
        entries_in_day = count_entries_in_day(lines, lo_us, hi_us)
    counts = {p: 0 for p in PROVIDERS}
    for p, n in recs["provider"].value_counts().items():
        counts[str(p)] = int(n)
    return Reconciliation(lo_us, hi_us, matches, disc, entries_in_day, counts)


def count_entries_in_day(lines: pd.DataFrame, lo_us: int, hi_us: int) -> int:
    """The number of distinct entries among ``lines`` dated in [lo_us, hi_us)."""
    in_day = lines.loc[_inside(lines["ts_us"], lo_us, hi_us), "journal_id"] if len(lines) else lines
    return int(in_day.nunique()) if len(in_day) else 0


_PAYOUT_CATEGORIES = ("payout", "payout_reversal")


def _netted_payouts(pairs: pd.DataFrame, claims: pd.DataFrame, recs: pd.DataFrame) -> pd.DataFrame:
    """The pairs of claims with no standing booking whose records are all Stripe payout or
    payout-reversal records netting to zero (a payout the provider failed, reversed in the ledger)."""
    if pairs.empty:
        return pairs
    j = pairs.assign(provider=recs["provider"].to_numpy()[pairs["r"].to_numpy(dtype=np.int64)],
                     category=recs["category"].to_numpy()[pairs["r"].to_numpy(dtype=np.int64)],
                     gross=recs["gross"].to_numpy(dtype=np.int64)[pairs["r"].to_numpy(dtype=np.int64)])
    g = j.groupby("c").agg(stripe=("provider", lambda s: bool((s == "stripe").all())),
                           payouts=("category", lambda s: bool(s.isin(_PAYOUT_CATEGORIES).all())),
                           total=("gross", "sum"))
    c = g.index.to_numpy(dtype=np.int64)
    void = (claims["live"].to_numpy()[c] == 0) & (claims["ledger_status"].to_numpy()[c] == "reversed")
    ok = g.index[(g["stripe"] & g["payouts"] & (g["total"] == 0)).to_numpy(dtype=bool) & void]
    return pairs[pairs["c"].isin(ok)]


def _net_of_record_balance(pairs: pd.DataFrame, claims: pd.DataFrame, recs: pd.DataFrame) -> None:
    """A Stripe claim paired with one record compares the net of that record's balance role
    (an Issuing record meets stripe_issuing, not the clearing account); in place."""
    if pairs.empty:
        return
    c = pairs["c"].to_numpy(dtype=np.int64)
    role = recs["net_role"].to_numpy(dtype=np.int64)[pairs["r"].to_numpy(dtype=np.int64)]
    nets = claims[list(NET_COLUMNS)].to_numpy(dtype=np.int64)
    stripe = role >= 0
    if not stripe.any():
        return
    c, role = c[stripe], role[stripe]
    net = claims["net"].to_numpy(dtype=np.int64, copy=True)
    net[c] = nets[c, role]
    claims["net"] = net
    claims["gross"] = (claims["net"] + claims["fee"]).astype(np.int64)


def key_texts(provider: pd.Series, key: pd.Series) -> pa.Array:
    """The text a (provider, key) pair is matched by (null where either is missing)."""
    return pc.binary_join_element_wise(_arrow(provider), _arrow(key), pa.scalar("\x1f", pa.large_string()))


def _key_codes(providers: list[pd.Series], keys: list[pd.Series]) -> list[np.ndarray]:
    """One integer per distinct (provider, key) text pair, the same across the given columns."""
    texts = [key_texts(p, k) for p, k in zip(providers, keys)]
    codes = pc.dictionary_encode(pa.concat_arrays(texts)).indices
    codes = codes.to_numpy(zero_copy_only=False).astype(np.int64)
    out, at = [], 0
    for t in texts:
        out.append(codes[at:at + len(t)])
        at += len(t)
    return out


def _inside(ts: pd.Series, lo: int, hi: int) -> pd.Series:
    return (ts >= lo) & (ts < hi)


def _joined(pairs: pd.DataFrame, claims: pd.DataFrame, recs: pd.DataFrame,
            only: set[str] | None = None) -> pd.DataFrame:
    """``pairs.merge(claims without provider, on="c").merge(recs, on="r", suffixes=("_l", "_p"))``
    by position: ``c`` and ``r`` are the row numbers of claims and recs, each pair finds exactly
    one row on both sides, and the merges keep the pairs' order. ``only``: the result columns
    the caller reads (the others are left out)."""
    left = claims.drop(columns=["provider"])
    c = pairs["c"].to_numpy(dtype=np.int64)
    r = pairs["r"].to_numpy(dtype=np.int64)
    if not (np.array_equal(claims["c"].to_numpy(), np.arange(len(claims)))
            and np.array_equal(recs["r"].to_numpy(), np.arange(len(recs)))):
        joined = pairs.merge(left, on="c").merge(recs, on="r", suffixes=("_l", "_p"))
        return joined if only is None else joined[[k for k in joined.columns if k in only]]
    both = set(left.columns) & set(recs.columns) - {"c", "r"}
    out: dict[str, pd.Series] = {}
    for col in pairs.columns:
        if only is None or col in only:
            out[col] = pairs[col].reset_index(drop=True)
    for frame, rows, suffix, key in ((left, c, "_l", "c"), (recs, r, "_p", "r")):
        for col in frame.columns:
            name = col + suffix if col in both else col
            if col != key and (only is None or name in only):
                out[name] = frame[col].iloc[rows].reset_index(drop=True)
    return pd.DataFrame(out)


def _may_differ(j: pd.DataFrame, lo_us: int, hi_us: int) -> np.ndarray:
    """Joined pairs that could get a class in ``_compare``: currencies, gross, fee or net differ,
    a payout (status), or the provider side outside the day (timing)."""
    return ((j["currency_l"] != j["currency_p"]).to_numpy(dtype=bool)
            | (j["provider"] == "payout_sandbox").to_numpy(dtype=bool)
            | (j["gross_l"] != j["gross_p"]).to_numpy(dtype=bool)
            | (j["fee_l"] != j["fee_p"]).to_numpy(dtype=bool)
            | (j["net_l"] != j["net_p"]).to_numpy(dtype=bool)
            | ~_inside(j["ts_us_p"], lo_us, hi_us).to_numpy(dtype=bool))


def _in_day_pairs(pairs: pd.DataFrame, lo_us: int, hi_us: int) -> pd.DataFrame:
    """The pairs anchored in the day (``pair_anchors``), selected before joining."""
    ts = pairs["anchor"].to_numpy(dtype=np.int64)
    return pairs[(ts >= lo_us) & (ts < hi_us)]


def pair_anchors(pairs: pd.DataFrame, claims: pd.DataFrame, recs: pd.DataFrame, tol: Tolerances) -> np.ndarray:
    """The instant that decides which day reports each pair: its ledger entry's, when that
    entry's day can see the record (the record lies within that day's read window, or is a
    payout arriving on it); else the record's, since no reconciliation of the ledger's day
    ever read that record (a payout failure returned days after the payout was booked)."""
    c = pairs["c"].to_numpy(dtype=np.int64)
    r = pairs["r"].to_numpy(dtype=np.int64)
    ledger_ts = claims["ts_us"].to_numpy(dtype=np.int64)[c]
    rec_ts = recs["ts_us"].to_numpy(dtype=np.int64)[r]
    arrival = recs["arrival_us"].to_numpy(dtype=np.int64)[r]
    day_lo = ledger_ts - np.mod(ledger_ts, DAY_US)  # day_bounds_us of each entry's day
    day_hi = day_lo + DAY_US
    margin = tol.time_s * _US
    seen = ((rec_ts >= day_lo - margin) & (rec_ts <= day_hi + margin)) | ((arrival >= day_lo) & (arrival < day_hi))
    return np.where(seen, ledger_ts, rec_ts)


def _compare(pairs, claims, recs, lo_us, hi_us, tol: Tolerances) -> pd.DataFrame:
    if pairs.empty:
        return pairs.iloc[0:0]
    j = _joined(_in_day_pairs(pairs, lo_us, hi_us), claims, recs,
                only={"journal_id", "ts_us_l", "currency_l", "gross_l", "fee_l", "net_l", "ledger_status",
                      "provider", "id", "ts_us_p", "currency_p", "gross_p", "fee_p", "net_p", "status", "rate",
                      "arrival_us", "category"})
    # Pairs that agree on everything below get no class (with tolerances >= 0): keep only the
    # others before any text is written.
    if min(tol.amount_for("AMOUNT_MISMATCH"), tol.amount_for("FEE_MISMATCH")) >= 0:
        j = j[_may_differ(j, lo_us, hi_us)]
    cls = pd.Series(None, index=j.index, dtype=object)
    p_amt = j["gross_p"].copy()
    l_amt = j["gross_l"].copy()
    detail = pd.Series("", index=j.index, dtype=object)
    ref_text = j["provider"] + " " + j["id"] + " / ledger " + j["journal_id"]

    cur = j["currency_l"] != j["currency_p"]
    # A converted record (exchange_rate) agrees with a booking in the presentment currency
    # whose amounts convert to its own within the rounding of one conversion.
    converted = pd.Series(False, index=j.index)
    for i in j.index[cur & j["rate"].notna()]:
        row = j.loc[i]
        agrees, note = converted_agrees(row, tol)
        converted[i] = agrees
        if not agrees:
            detail[i] = note
    cur_off = cur & ~converted
    cls[cur_off] = "CURRENCY_MISMATCH"
    plain = cur_off & (detail == "")
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

    # A Stripe payout's return (payout_failure/payout_cancel) against the payout's own booking
    # still standing: the ledger has the money at the bank, Stripe has it back.
    stripe = j["provider"] == "stripe"
    returned = stripe & (j["category"] == "payout_reversal")
    stripe_status_off = cls.isna() & returned & (j["ledger_status"] == "settled") & (
        np.sign(j["gross_l"]) == -np.sign(j["gross_p"])) & (j["gross_p"] != 0)
    cls[stripe_status_off] = "STATUS_MISMATCH"
    detail[stripe_status_off] = ref_text + ": ledger books the payout as settled, Stripe returned it (" \
        + j["category"] + "); reverse the payout's booking"

    # Both sides agree no money moved (reversed in the ledger, failed or pending at the
    # provider, a Stripe payout failed or returned): the amounts have nothing left to agree on.
    no_money = (j["provider"] == "payout_sandbox") & (j["ledger_status"] == "reversed") & (j["status"] != "settled")
    no_money = no_money | (stripe & (j["ledger_status"] == "reversed")
                           & (returned | ((j["category"] == "payout") & (j["status"] == "failed"))))
    no_money = no_money | converted  # compared above, in the record's currency
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

    # A Stripe payout booked on the day it arrives at the bank is on time (docs/stripe-mapping.md).
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


def converted_agrees(row, tol: Tolerances) -> tuple[bool, str]:
    """Whether a booking in the presentment currency agrees with a converted Stripe record:
    gross and fee, each converted at the record's ``exchange_rate`` (presentment amount times
    rate is the settlement amount), equal the record's within the rounding of one conversion
    (half the rate in the record's minor units, at least one) plus the amount tolerance. The
    net is gross - fee on both sides (the ledger balances, the Stripe gate checks the record),
    so it agrees within the sum of those two roundings and is not compared again. Returns the
    verdict and, when it disagrees, the report's detail."""
    from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal

    from finance_pipeline.domain.money import is_currency, minor_exponent

    cur_l, cur_p = str(row["currency_l"]), str(row["currency_p"])
    if not (is_currency(cur_l) and is_currency(cur_p)):
        return False, ""
    rate = Decimal(str(row["rate"])).scaleb(minor_exponent(cur_p) - minor_exponent(cur_l))
    bound = max(1, int((rate / 2).to_integral_value(ROUND_CEILING))) + tol.amount_for("AMOUNT_MISMATCH")
    off = []
    for what in ("gross", "fee"):
        ledger, provider = int(row[f"{what}_l"]), int(row[f"{what}_p"])
        as_provider = int((Decimal(ledger) * rate).to_integral_value(ROUND_HALF_EVEN))
        if abs(as_provider - provider) > bound:
            off.append(f"{what} {cur_l} {ledger} converts to {cur_p} {as_provider}, provider says {provider}")
    if not off:
        return True, ""
    return False, (f"{row['provider']} {row['id']} / ledger {row['journal_id']}: converted at the record's "
                   f"exchange_rate {row['rate']} ({cur_l} to {cur_p}): " + "; ".join(off)
                   + f" (within {bound} allowed); book the settlement amounts in {cur_p}, or adjust")


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


def finish_discrepancies(disc: pd.DataFrame | None) -> pd.DataFrame:
    """The discrepancy rows in the report's columns and order (none: an empty frame)."""
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
    j = _joined(_in_day_pairs(pairs, lo_us, hi_us), claims, recs,
                only={"provider", "id", "journal_id", "currency_p", "gross_p", "by"})
    j = j[~j["journal_id"].isin(disc["journal_id"].dropna())]
    out = pd.DataFrame({
        "provider": j["provider"], "provider_id": j["id"], "journal_id": j["journal_id"],
        "currency": j["currency_p"], "amount_minor": j["gross_p"].astype(np.int64), "matched_by": j["by"],
    })
    return in_match_order(out)


def in_match_order(matches: pd.DataFrame) -> pd.DataFrame:
    """Matches sorted as sort_values(["provider", "provider_id", "journal_id"]) sorts them (the
    keys are unique), by Arrow: text keys compare in code point order there too."""
    by = ["provider", "provider_id", "journal_id"]
    order = pc.sort_indices(pa.table({k: _arrow(matches[k]) for k in by}),
                            sort_keys=[(k, "ascending") for k in by])  # nulls last, as pandas
    return matches.iloc[order.to_numpy()].reset_index(drop=True)
