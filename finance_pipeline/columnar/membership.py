"""``Series.isin`` for string columns, in Arrow.

pandas 3 answers ``isin`` on an Arrow-backed string column by turning every member into a
Python scalar first: 1.3 s for the 300k journal ids of a 100k-entry day, 13 s at 1M. Arrow's
``is_in`` takes the members as an array. Same answer, nulls included (a missing value is in a
member set that holds one); other dtypes go to pandas.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


def _strings(values: Any) -> pa.Array | pa.ChunkedArray | None:
    """The Arrow string array behind ``values``, or None when it is not one."""
    if not isinstance(values, pd.Series | pd.Index) or not isinstance(values.dtype, pd.StringDtype) \
            or values.dtype.storage != "pyarrow":
        return None
    arr = pa.array(values.array)
    return arr if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type) else None


def isin(values: pd.Series, members: Any) -> pd.Series:
    """``values.isin(members)``, computed in Arrow when both are Arrow-backed string columns."""
    arr, value_set = _strings(values), _strings(members)
    if arr is None or value_set is None:
        return values.isin(members)
    if isinstance(value_set, pa.ChunkedArray):
        value_set = value_set.combine_chunks()
    found = pc.is_in(arr, value_set=value_set.cast(arr.type))
    out = np.asarray(found.fill_null(False).to_numpy(zero_copy_only=False), dtype=np.bool_)
    return pd.Series(out, index=values.index, name=values.name)
