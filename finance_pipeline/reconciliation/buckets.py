"""A large day's reconciliation, one bucket of claims and records at a time.

``engine.reconcile`` holds every claim and record of the day at once, and its working frames
are several times the size of its input. A day of more claims' lines than ``BUCKET_LINES`` is
cut into buckets that never part what the engine relates to each other:
- the lines of one entry, and the entries of one claim (same provider and reference);
- a claim and every record its reference can name. A Stripe record answers to its source and
  to its own id, so a record links its two keys and the bucket is chosen per record;
- the claims without a reference, with every record that can be left for matching by amount.
  Those are the records no claim names, and they join the claims of their provider.
Each bucket is reconciled by the engine on its own. The rows are then put in the engine's
order, so the result is the whole day's, row for row (tests/reconciliation/test_buckets.py).

Keys are grouped by 64-bit hashes of their texts, so two keys that collide only share a
bucket. One collision could change a result: a record taken for named by a claim when no
claim names it would be kept from the claims without a reference. Each bucket checks that
exactly, and a day where it happens is reconciled whole.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from finance_pipeline.columnar.hashing import text_hashes
from finance_pipeline.reconciliation import engine
from finance_pipeline.reconciliation.engine import Reconciliation, Tolerances

log = logging.getLogger(__name__)

# A day of at most this many claims' lines is reconciled whole (a 1M-entry day has about 2.8M);
# a larger one in buckets of about BUCKET_LINES (a 5M-entry day: 14M lines, 9 buckets).
WHOLE_UP_TO = 4 << 20
BUCKET_LINES = 3 << 19
# The node of a provider's claims without a reference (not a key text: keys never hold \x1e).
_POOL = "\x1e"


def reconcile(lines: pd.DataFrame, stripe: pd.DataFrame, payouts: pd.DataFrame, lo_us: int, hi_us: int,
              tol: Tolerances = Tolerances(), stripe_payouts: pd.DataFrame | None = None,
              entries_in_day: int | None = None, bucket_lines: int | None = None,
              whole_up_to: int | None = None) -> Reconciliation:
    """``engine.reconcile`` (same arguments, same result), in buckets of about ``bucket_lines``
    (``BUCKET_LINES``) claims' lines when ``lines`` holds more than ``whole_up_to`` (``WHOLE_UP_TO``)."""
    bucket_lines = BUCKET_LINES if bucket_lines is None else bucket_lines
    whole_up_to = WHOLE_UP_TO if whole_up_to is None else whole_up_to
    buckets = -(-len(lines) // bucket_lines)
    if len(lines) <= whole_up_to or buckets <= 1 or _missing_ids(lines, stripe, payouts):
        return engine.reconcile(lines, stripe, payouts, lo_us, hi_us, tol, stripe_payouts, entries_in_day)
    if entries_in_day is None:
        entries_in_day = engine.count_entries_in_day(lines, lo_us, hi_us)
    matches, discrepancies = [], []
    counts = {p: 0 for p in engine.PROVIDERS}
    for part in _parts(lines, stripe, payouts, buckets):
        if part is None:
            matches.clear()
            discrepancies.clear()
            log.warning("two reference keys of the day share a 64-bit hash; reconciling the day whole")
            return engine.reconcile(lines, stripe, payouts, lo_us, hi_us, tol, stripe_payouts, entries_in_day)
        b_lines, b_stripe, b_payouts = part
        rec = engine.reconcile(b_lines, b_stripe, b_payouts, lo_us, hi_us, tol, stripe_payouts, entries_in_day=0)
        matches.append(rec.matches)
        discrepancies.append(rec.discrepancies)
        for provider, n in rec.provider_records.items():
            counts[provider] = counts.get(provider, 0) + n
        del rec, part, b_lines, b_stripe, b_payouts
    found = [d for d in discrepancies if len(d)]
    disc = engine.finish_discrepancies(pd.concat(found, ignore_index=True) if found else None)
    matches = _joined_matches(matches)
    # The engine leaves out the matches of a journal a discrepancy row names. Which journal a
    # DUPLICATE_LEDGER row names is its joined text cut at ", ", and a journal id may hold ", ",
    # so the row may name a journal of another bucket: filtered again over the whole day.
    named = matches["journal_id"].isin(disc["journal_id"].dropna())
    if named.any():
        matches = matches[~named.to_numpy(dtype=bool)].reset_index(drop=True)
    return Reconciliation(lo_us, hi_us, matches, disc, entries_in_day, counts)


def _missing_ids(lines: pd.DataFrame, stripe: pd.DataFrame, payouts: pd.DataFrame) -> bool:
    """Whether a line naming a provider lacks its journal id or currency, or a record its id:
    the gates refuse such a day, and the engine's text columns would take another dtype in a
    bucket without any of them; such a day is reconciled whole."""
    claims = lines.loc[lines["provider"].notna(), ["journal_id", "currency"]]
    return bool(claims.isna().any().any() or stripe["id"].isna().any() or payouts["id"].isna().any())


def _joined_matches(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """The buckets' matches in the engine's order. With none, the empty frame of a bucket that
    had pairs to look at (in its inputs' dtypes, as the whole day's would be), if any."""
    found = [m for m in parts if len(m)]
    if found:
        return engine.in_match_order(pd.concat(found, ignore_index=True))
    none = engine._empty(engine.MATCH_COLUMNS, ints=("amount_minor",)).dtypes.tolist()
    return next((m for m in parts if m.dtypes.tolist() != none), parts[0])


def _hashes(texts: pa.Array | pd.Series) -> np.ndarray:
    """64-bit hashes of texts (a missing text hashes as the empty one; callers mask it)."""
    return text_hashes(texts if isinstance(texts, pa.Array) else engine._arrow(texts))


def _parts(lines: pd.DataFrame, stripe: pd.DataFrame, payouts: pd.DataFrame,
           buckets: int) -> Iterator[tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame] | None]:
    """Each bucket's (lines, Stripe records, payout records), in the inputs' order; None when
    a bucket finds a record taken for named that no claim of it names (a hash collision)."""
    plan = _plan(lines, stripe, payouts, buckets)
    s_len = len(stripe)
    # Rows are picked by masks: Arrow filters a column chunk by chunk, several times faster
    # than it takes rows by position.
    for k in range(buckets):
        in_s, in_p = plan.record_bucket[:s_len] == k, plan.record_bucket[s_len:] == k
        b_stripe, b_payouts = stripe[in_s], payouts[in_p]
        s_named, p_named = plan.named[:s_len][in_s], plan.named[s_len:][in_p]
        if s_named.any() or p_named.any():
            keyed = plan.first[(plan.entry_bucket == k) & plan.has_ref]
            if not _named_exactly(lines["provider"].iloc[keyed], lines["provider_reference"].iloc[keyed],
                                  b_stripe[s_named], b_payouts[p_named]):
                yield None
                return
        in_l = np.zeros(len(lines), dtype=bool)
        in_l[plan.at[plan.line_bucket == k]] = True
        yield lines[in_l], b_stripe, b_payouts
        del b_stripe, b_payouts, in_l  # not held while the next bucket is cut


@dataclass
class _Plan:
    """Which bucket each claim line, entry and record goes to."""

    at: np.ndarray  # the lines naming a provider (positions in ``lines``)
    line_bucket: np.ndarray  # per line of ``at``
    first: np.ndarray  # per entry, its first line naming a provider (position in ``lines``)
    has_ref: np.ndarray  # per entry: does it name a reference
    entry_bucket: np.ndarray
    record_bucket: np.ndarray  # per record, Stripe's then the payout provider's
    named: np.ndarray  # per record: named by some claim's key, as far as hashes tell


def _plan(lines: pd.DataFrame, stripe: pd.DataFrame, payouts: pd.DataFrame, buckets: int) -> _Plan:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    # Only lines naming a provider make claims; an entry is its first such line (engine.ledger_claims).
    at = np.flatnonzero(lines["provider"].notna().to_numpy(dtype=bool))
    jcodes, _ = pd.factorize(lines["journal_id"].iloc[at], use_na_sentinel=False)
    jcodes = np.asarray(jcodes, dtype=np.int64)
    # Codes are given in order of first appearance: a line is its entry's first where its code
    # exceeds every earlier one.
    seen = np.maximum.accumulate(jcodes) if len(jcodes) else jcodes
    first = at[np.flatnonzero(jcodes > np.r_[-1, seen[:-1]])]
    del seen
    e_provider = lines["provider"].iloc[first]
    e_ref = lines["provider_reference"].iloc[first]
    has_ref = e_ref.notna().to_numpy(dtype=bool)
    e_node = _hashes(engine.key_texts(e_provider, e_ref))
    # A provider's claims without a reference share one node.
    pooled = np.flatnonzero(~has_ref)
    pool_codes, pooled_providers = pd.factorize(e_provider.iloc[pooled])
    pool_of = dict(zip(pooled_providers.tolist(), pooled[np.unique(pool_codes, return_index=True)[1]].tolist()))
    e_node[pooled] = _pool_hashes(pooled_providers.tolist())[pool_codes]
    del e_provider, e_ref, pool_codes
    named_keys = e_node[has_ref]

    # Records: (provider, key_source) and (provider, id), as engine.provider_records names them.
    src, rid, has_src, has_id, named = [], [], [], [], []
    for provider, frame, source in _pulls(stripe, payouts):
        prov = pd.Series(provider, index=frame.index, dtype=object)
        src.append(_hashes(engine.key_texts(prov, frame[source])))
        rid.append(_hashes(engine.key_texts(prov, frame["id"])))
        has_src.append(frame[source].notna().to_numpy(dtype=bool))
        has_id.append(frame["id"].notna().to_numpy(dtype=bool))
        # Named: by its source, or a Stripe record by its own id.
        hit = has_src[-1] & _isin(src[-1], named_keys)
        if provider == "stripe":
            hit |= has_id[-1] & _isin(rid[-1], named_keys)
        named.append(hit)
    src, rid = np.concatenate(src), np.concatenate(rid)
    has_src, has_id, named = np.concatenate(has_src), np.concatenate(has_id), np.concatenate(named)
    del named_keys

    # Nodes: each distinct hash, then one of its own for a record with neither key.
    n_e, n_s = len(e_node), int(has_src.sum())
    codes, uniq = pd.factorize(np.concatenate([e_node, src[has_src], rid[has_id]]))
    n_nodes = len(uniq)
    del uniq, src, rid, e_node
    e_code = codes[:n_e]
    src_code = np.full(len(has_src), -1, dtype=np.int64)
    src_code[has_src] = codes[n_e:n_e + n_s]
    id_code = np.full(len(has_src), -1, dtype=np.int64)
    id_code[has_id] = codes[n_e + n_s:]
    del codes
    r_node = np.where(has_src, src_code, id_code)
    orphan = np.flatnonzero(r_node < 0)
    r_node[orphan] = n_nodes + np.arange(len(orphan))
    n_nodes += len(orphan)
    # A record links its two keys; what no claim names may be matched by amount, so it joins
    # its provider's claims without a reference.
    both = has_src & has_id
    edges_a, edges_b = [r_node[both]], [id_code[both]]
    offset = 0
    for provider, frame, _ in _pulls(stripe, payouts):
        if provider in pool_of:
            free = np.flatnonzero(~named[offset:offset + len(frame)]) + offset
            edges_a.append(r_node[free])
            edges_b.append(np.full(len(free), e_code[pool_of[provider]], dtype=np.int64))
        offset += len(frame)
    del src_code, id_code, has_src, has_id
    a, b = np.concatenate(edges_a), np.concatenate(edges_b)
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n_nodes, n_nodes))
    del a, b, edges_a, edges_b
    _, label = connected_components(graph, directed=False)
    del graph
    # Components are numbered in the order their hashes first came: spread over the buckets.
    entry_bucket = (label[e_code] % buckets).astype(np.int32)
    record_bucket = (label[r_node] % buckets).astype(np.int32)
    return _Plan(at=at, line_bucket=entry_bucket[jcodes], first=first, has_ref=has_ref,
                 entry_bucket=entry_bucket, record_bucket=record_bucket, named=named)


def _pulls(stripe: pd.DataFrame, payouts: pd.DataFrame) -> tuple:
    """(provider, frame, the column of its source key) for each pull."""
    return (("stripe", stripe, "source"), ("payout_sandbox", payouts, "payout_id"))


def _isin(values: np.ndarray, among: np.ndarray) -> np.ndarray:
    """``np.isin`` by a hash table (numpy sorts both: about 5 s a call at 5M records)."""
    return pd.Series(values, copy=False).isin(among).to_numpy(dtype=bool)


def _pool_hashes(providers: list) -> np.ndarray:
    """The nodes of these providers' claims without a reference."""
    return _hashes(pd.Series([_POOL + str(p) for p in providers], dtype=object))


def _named_exactly(provider: pd.Series, ref: pd.Series, stripe: pd.DataFrame, payouts: pd.DataFrame) -> bool:
    """Whether every one of these records is named by one of these claim keys, compared as
    texts (a Stripe record by its source or id, a payout record by its payout id)."""
    keys = engine.key_texts(provider, ref)
    found = []
    for name, frame, source in _pulls(stripe, payouts):
        if not len(frame):
            continue
        prov = pd.Series(name, index=frame.index, dtype=object)
        hit = pc.fill_null(pc.is_in(engine.key_texts(prov, frame[source]), value_set=keys), False)
        if name == "stripe":
            hit = pc.or_(hit, pc.fill_null(pc.is_in(engine.key_texts(prov, frame["id"]), value_set=keys), False))
        found.append(pc.all(hit).as_py())
    return all(found)
