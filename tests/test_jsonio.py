import json

import numpy as np
import pytest

from accelnas.core import jsonio


def _strict_loads(text: str):
    """Parse as an RFC 8259 reader does: bare NaN / Infinity are errors."""

    def refuse(token: str):
        raise ValueError(f"non-standard JSON number {token}")

    return json.loads(text, parse_constant=refuse)


def test_undefined_numbers_become_null_and_numpy_values_plain():
    value = {
        "tau": float("nan"),
        "hi": float("inf"),
        "lo": -np.inf,
        "r2": np.float32(0.5),
        "n": np.int64(3),
        "ok": np.bool_(True),
        "rows": np.array([[1.0, np.nan], [2.0, 3.0]]),
        "pair": (1, float("nan")),
        "nested": [{"x": np.float64("nan")}],
    }
    data = _strict_loads(jsonio.dumps(value))
    assert data == {
        "tau": None,
        "hi": None,
        "lo": None,
        "r2": 0.5,
        "n": 3,
        "ok": True,
        "rows": [[1.0, None], [2.0, 3.0]],
        "pair": [1, None],
        "nested": [{"x": None}],
    }
    with pytest.raises(ValueError, match="NaN"):  # what the plain writer would have produced
        _strict_loads(json.dumps({"tau": float("nan")}))


def test_objects_go_through_default_and_are_made_plain_too():
    class Odd:
        def __str__(self) -> str:
            return "odd"

    assert _strict_loads(jsonio.dumps({"p": Odd()})) == {"p": "odd"}
    assert _strict_loads(jsonio.dumps({"s": frozenset({2})}, default=list)) == {"s": [2]}
    assert _strict_loads(jsonio.dumps({"v": Odd()}, default=lambda _: float("nan"))) == {"v": None}
