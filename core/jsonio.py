"""JSON that every reader accepts.

Python's ``json`` writes NaN and ±inf as bare ``NaN``/``Infinity``, which RFC 8259 parsers (JavaScript,
Go, jq, DuckDB) refuse. Files and ``--json`` output meant for users go through :func:`dumps`, which
writes an undefined number (a Kendall τ of one row, a metric of a failed fit) as ``null`` and numpy
scalars and arrays as plain numbers and lists.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np


def plain(value: Any) -> Any:
    """``value`` with non-finite floats as None, numpy scalars/arrays as Python numbers/lists, tuples as lists."""
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer | np.bool_):
        return value.item()
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def dumps(value: Any, *, default: Any = str, **kwargs: Any) -> str:
    """Strict JSON text of ``value`` (see :func:`plain`); other objects are written via ``default`` (``str``)."""
    return json.dumps(plain(value), allow_nan=False, default=lambda obj: plain(default(obj)), **kwargs)
