"""Great Expectations, imported once, lazily and quietly (it takes seconds and talks a lot).

Its own module so the suites and the gates both use it without importing each other.
"""

from __future__ import annotations

import logging
import threading
import warnings
from typing import Any

_LOCK = threading.Lock()
_GX: Any = None


def import_gx():
    """Import great_expectations quietly (loggers at WARNING) and return it.

    Analytics are off where the context is made (``DataContextConfig(analytics_enabled=False)``
    in gates.py); GX 1.24 reads no ``GX_ANALYTICS_ENABLED`` variable, so none is set here.
    """
    global _GX
    with _LOCK:
        if _GX is None:
            gx_logger = logging.getLogger("great_expectations")
            if gx_logger.level == logging.NOTSET:
                gx_logger.setLevel(logging.WARNING)
            with warnings.catch_warnings():
                # GX's own imports of deprecated stdlib modules (sre_constants, ...).
                warnings.simplefilter("ignore", DeprecationWarning)
                import great_expectations as gx
                from great_expectations.execution_engine import pandas_execution_engine as engine
            # GX fingerprints every in-memory frame under 1 GB (md5 of pandas' row hashes) only
            # to label the batch; on a 3M-line extract that alone takes seconds. Unused here.
            if getattr(engine, "HASH_THRESHOLD", 0) > 0:
                engine.HASH_THRESHOLD = 0
            _GX = gx
        return _GX
