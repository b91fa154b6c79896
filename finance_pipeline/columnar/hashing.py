"""64-bit hashes of Arrow texts, for grouping and distinctness tests on millions of keys
without a hash table of the strings themselves (Arrow's holds a copy of every distinct text:
0.7 GB to count five million journal ids). Equal texts hash equal; callers check equal
hashes exactly, since different texts may collide."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

# Texts are turned into Python objects this many at a time (pandas hashes object arrays).
PIECE = 1 << 20


def text_hashes(texts: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """64-bit hashes of ``texts`` (a missing text hashes as the empty one; callers mask it)."""
    out = np.empty(len(texts), dtype=np.uint64)
    for at in range(0, len(texts), PIECE):
        piece = texts.slice(at, PIECE).to_numpy(zero_copy_only=False)
        piece[pd.isna(piece)] = ""
        out[at:at + len(piece)] = pd.util.hash_array(piece.astype(object), categorize=False)
    return out


def all_distinct(hashes: np.ndarray) -> bool:
    """Whether the 64-bit ``hashes`` are pairwise different (then so are the texts they hash)."""
    ordered = np.sort(hashes)
    return not bool((ordered[1:] == ordered[:-1]).any())
