"""The estimator interface every surrogate family implements (scikit-learn style).

``fit(X, y)`` and ``predict(X)`` take architectures (encoded with ``encoding``) or ready feature
rows (as :meth:`Surrogate.features` makes them); ``get_params``/``set_params`` expose the constructor
parameters, and ``set_params`` refuses what the constructor refuses, changing nothing then; predicting
before ``fit`` raises scikit-learn's ``NotFittedError``.
``transform`` fits the model on ``log(y)`` or ``1/y`` and maps predictions back. ``to_state``
returns a JSON-able dict plus named native model files (no pickle); ``from_state`` rebuilds a
fitted model from them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np

from accelnas.core.records import is_real, is_whole
from accelnas.core.space import EFFICIENTNET_B0, Architecture
from accelnas.surrogates.features import ENCODINGS, encode

TRANSFORMS = ("none", "log", "inverse")
Files = dict[str, bytes]


def check_targets(y: Sequence[float] | np.ndarray) -> np.ndarray:
    """``y`` as a 1-D float array of at least one finite number; ``ValueError`` naming the first bad one."""
    try:
        values = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("targets must be numbers") from None
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(f"targets must be a non-empty list of numbers, got shape {values.shape}")
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        raise ValueError(f"targets must be finite numbers, got y[{bad[0]}] = {values[bad[0]]}")
    return values


def model_input(X: Any) -> list[Any] | np.ndarray:
    """``X`` as a list (of architectures, or of rows) or as an array of rows: a DataFrame or another
    array-like becomes an array, architectures in a pandas Series or a 1-D object array a list."""
    if not isinstance(X, np.ndarray) and hasattr(X, "__array__"):
        X = np.asarray(X)
    if isinstance(X, np.ndarray) and not (X.dtype == object and X.ndim == 1):
        return X
    return list(X)


def same(a: Any, b: Any) -> bool:
    """Whether two parameter values are equal (as a bool, whatever their types)."""
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def not_fitted(what: str) -> Exception:
    """The error of predicting before fitting: scikit-learn's ``NotFittedError`` (a ``ValueError``)."""
    from sklearn.exceptions import NotFittedError

    return NotFittedError(f"fit the {what} before predicting")


def _count(v: Any) -> bool:
    return is_whole(v) and v >= 1


def _share(v: Any) -> bool:
    """A share of the rows or columns as scikit-learn takes it: a float (Python's or numpy's float64) in (0, 1]."""
    return isinstance(v, float) and 0 < v <= 1


# what a hyperparameter must be, by the rule its family gives it: (test, wording); a value that is a
# number must also be finite
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "positive": (lambda v: is_real(v) and v > 0, "a number > 0"),
    "non_negative": (lambda v: is_real(v) and v >= 0, "a number >= 0"),
    "fraction": (lambda v: is_real(v) and 0 < v <= 1, "a number in (0, 1]"),
    "count": (_count, "a whole number >= 1"),
    "whole": (lambda v: is_whole(v) and v >= 0, "a whole number >= 0"),
    "at_least_two": (lambda v: is_whole(v) and v >= 2, "a whole number >= 2"),
    "count_or_none": (lambda v: v is None or _count(v), "None or a whole number >= 1"),
    # threads as scikit-learn counts them: -1 every core, -2 all but one; 0 means nothing
    "threads": (lambda v: v is None or (is_whole(v) and v != 0), "None or a whole number other than 0"),
    "gamma": (lambda v: v in ("scale", "auto") or (is_real(v) and v >= 0), "'scale', 'auto' or a number >= 0"),
    "count_or_share": (lambda v: _count(v) or (_share(v) and v < 1), "a whole number >= 1 or a number in (0, 1)"),
    "features": (
        lambda v: v in (None, "sqrt", "log2") or _count(v) or _share(v),
        "None, 'sqrt', 'log2', a whole number >= 1 or a number in (0, 1]",
    ),
}


def _check_param(owner: str, name: str, value: Any, rule: str | None) -> None:
    """``ValueError`` for a hyperparameter no fit can use: not finite, or outside its ``rule``."""
    if is_real(value) and not math.isfinite(value):
        raise ValueError(f"{owner} parameter {name}={value!r} is not a finite number")
    if rule is not None and not RULES[rule][0](value):
        raise ValueError(f"{owner} parameter {name} must be {RULES[rule][1]}, got {value!r}")


def check_seed(owner: str, seed: Any) -> None:
    """``ValueError`` unless ``seed`` is a whole number that every library takes (0 to 2**32 - 1)."""
    if not is_whole(seed) or not 0 <= seed < 2**32:
        raise ValueError(f"{owner} seed must be a whole number from 0 to 2**32 - 1, got {seed!r}")


class Regressor:
    """What scikit-learn's model selection asks of a regressor (``cross_val_score``, ``GridSearchCV``)."""

    _estimator_type: ClassVar[str] = "regressor"  # read by scikit-learn before 1.6

    def __sklearn_tags__(self) -> Any:  # scikit-learn 1.6 and later
        from sklearn.utils import RegressorTags, Tags, TargetTags

        return Tags(estimator_type="regressor", target_tags=TargetTags(required=True), regressor_tags=RegressorTags())

    def __sklearn_is_fitted__(self) -> bool:  # read by scikit-learn's check_is_fitted
        return bool(self.fitted_)  # type: ignore[attr-defined]

    def score(self, X: Any, y: Sequence[float], sample_weight: Sequence[float] | None = None) -> float:
        """R² of the predictions of ``X`` against ``y``, as scikit-learn's regressors score."""
        from sklearn.metrics import r2_score

        return float(r2_score(y, self.predict(X), sample_weight=sample_weight))  # type: ignore[attr-defined]


class Surrogate(Regressor):
    """Base class: parameter handling, feature encoding and target transforms."""

    family: ClassVar[str] = ""
    _own_params: ClassVar[dict[str, Any]] = {}  # family hyperparameters and their defaults
    # whether fits with different seeds differ (row or column sampling, a random subset): a seed
    # ensemble of a family that does not gives identical members and no spread
    seeded: ClassVar[bool] = True
    # the rule (a key of RULES) of each hyperparameter that has one ("auto"-style strings are checked
    # by their family)
    _rules: ClassVar[dict[str, str]] = {}

    def __init__(self, *, encoding: str = "raw", transform: str = "log", seed: int = 0, **params: Any) -> None:
        if transform not in TRANSFORMS:
            raise ValueError(f"transform must be one of {TRANSFORMS}, got {transform!r}")
        if not isinstance(encoding, str) or encoding not in ENCODINGS:
            raise ValueError(f"unknown feature encoding {encoding!r} (known: {', '.join(ENCODINGS)})")
        unknown = sorted(set(params) - set(self._own_params))
        if unknown:
            raise ValueError(f"unknown parameter {unknown[0]!r} for {type(self).__name__}")
        check_seed(type(self).__name__, seed)
        for name, value in params.items():
            _check_param(type(self).__name__, name, value, self._rules.get(name))
        self.encoding = encoding
        self.transform = transform
        self.seed = seed
        for name, default in self._own_params.items():
            setattr(self, name, params.get(name, default))
        self.fitted_ = False

    # -- scikit-learn protocol -------------------------------------------------------------------
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {"encoding": self.encoding, "transform": self.transform, "seed": self.seed} | {
            name: getattr(self, name) for name in self._own_params
        }

    def set_params(self, **params: Any) -> Surrogate:
        """Change parameters; values the constructor refuses raise its error and change nothing. A fitted
        model whose parameters change is no longer fitted: its state was made with the old ones (an
        encoding or transform changed under it would make predictions silently wrong)."""
        type(self)(**(self.get_params(deep=False) | params))  # validates all of them first
        current = self.get_params(deep=False)
        if any(not same(current[name], value) for name, value in params.items()):
            self.fitted_ = False
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def uses_seed(self, n_rows: int) -> bool:
        """Whether fits on ``n_rows`` rows with different seeds give different models."""
        return self.seeded

    def feature_layout(self) -> tuple[int, str]:
        """Columns of the model's feature rows, and what they hold."""
        return encode([EFFICIENTNET_B0], self.encoding).shape[1], f"{self.encoding} encoding"

    def encode(self, archs: list[Architecture]) -> np.ndarray:
        """The feature rows of ``archs``."""
        return encode(archs, self.encoding)

    def features(self, X: Sequence[Architecture] | np.ndarray) -> np.ndarray:
        """The model's input rows: ``X`` encoded with ``encoding``, or ``X`` itself if it is rows of numbers
        (as many columns as :meth:`feature_layout` says, all finite: an array, nested lists, a DataFrame)."""
        X = model_input(X)
        if isinstance(X, list):
            if not X or isinstance(X[0], Architecture):
                other = next((x for x in X if not isinstance(x, Architecture)), None)
                if other is not None:
                    raise TypeError(f"the {self.family} surrogate takes a list of architectures, got a "
                                    f"{type(other).__name__} among them ({str(other)[:40]!r})")  # fmt: skip
                return self.encode(X)
            try:
                X = np.asarray(X, dtype=np.float64)
            except (TypeError, ValueError):
                raise ValueError(
                    f"the {self.family} surrogate takes architectures or rows of numbers, got {type(X[0]).__name__}"
                ) from None
        if X.ndim != 2:
            raise ValueError(f"feature rows must form a 2-D array (one row per architecture), got {X.ndim}-D")
        width, holds = self.feature_layout()
        if X.shape[1] != width:
            raise ValueError(f"{self.family} feature rows have {width} columns ({holds}), got {X.shape[1]}")
        X = X.astype(np.float64, copy=False)
        if not np.all(np.isfinite(X)):
            raise ValueError(f"{self.family} feature rows must be finite numbers")
        return X

    def _forward(self, y: np.ndarray) -> np.ndarray:
        if self.transform == "none":
            return y
        if np.any(y <= 0):
            raise ValueError(f"the {self.transform} transform needs positive targets")
        return np.log(y) if self.transform == "log" else 1.0 / y

    def _inverse(self, z: np.ndarray) -> np.ndarray:
        if self.transform == "log":
            return np.exp(z)
        if self.transform == "inverse":
            return 1.0 / np.maximum(z, 1e-12)
        return z

    def fit(
        self,
        X: Sequence[Architecture] | np.ndarray,
        y: Sequence[float],
        sample_weight: Sequence[float] | np.ndarray | None = None,
    ) -> Surrogate:
        """Fit on architectures (or feature rows) and targets in their natural unit; ``sample_weight``
        weights each row's squared error (see :func:`noise_weights`)."""
        return self.fit_features(self.features(X), y, sample_weight)

    def fit_features(
        self, features: Any, y: Sequence[float], sample_weight: Sequence[float] | np.ndarray | None = None
    ) -> Surrogate:
        """:meth:`fit` on rows already encoded by :meth:`features` (seed ensembles encode once)."""
        target = self._forward(check_targets(y))
        if len(features) != len(target):
            raise ValueError(f"{len(features)} feature rows but {len(target)} targets")
        weight = None
        if sample_weight is not None:
            weight = np.asarray(sample_weight, dtype=np.float64)
            if weight.shape != target.shape or not np.all(np.isfinite(weight)) or np.any(weight < 0):
                raise ValueError("sample_weight needs one finite, non-negative weight per target")
            if weight.sum() <= 0:
                raise ValueError("sample_weight must not be all zero")
            weight = weight / weight.mean()
        self._fit(features, target, weight)
        self.z_range_ = (float(target.min()), float(target.max()))
        self.fitted_ = True
        return self

    def predict(self, X: Sequence[Architecture] | np.ndarray) -> np.ndarray:
        """Predictions in the target's natural unit."""
        return self.predict_features(self.features(X))

    def predict_features(self, features: Any) -> np.ndarray:
        """:meth:`predict` on rows already encoded by :meth:`features`."""
        if not self.fitted_:
            raise not_fitted(f"{self.family} surrogate")
        return self._inverse(self._clip(self._predict(features)))

    def _clip(self, z: np.ndarray) -> np.ndarray:
        """Keep extrapolation within the training range widened by its own span on both sides, so that
        a linear part far outside its data cannot produce absurd values; with the ``log`` and
        ``inverse`` transforms (positive targets) also within [min / 2, 2 · max] of the training
        targets in their natural unit, and untransformed positive targets (a latency, a throughput)
        not below min / 2, so that they are never predicted zero or negative."""
        lo, hi = self.z_range_
        span = max(hi - lo, abs(hi) * 1e-3, 1e-12)
        low, high = lo - span, hi + span
        if self.transform == "log":  # y in [min / 2, 2 max]
            low, high = max(low, lo - np.log(2.0)), min(high, hi + np.log(2.0))
        elif self.transform == "inverse":  # z = 1/y: y <= 2 max where z >= lo / 2, y >= min / 2 where z <= 2 hi
            low, high = max(low, lo / 2), min(high, 2 * hi)
        elif lo > 0:  # transform "none" on positive targets: y >= min / 2
            low = max(low, lo / 2)
        return np.clip(z, low, high)

    # -- to implement ----------------------------------------------------------------------------
    def _fit(self, X: np.ndarray, z: np.ndarray, weight: np.ndarray | None = None) -> None:
        raise NotImplementedError

    def _predict(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _state(self) -> tuple[dict[str, Any], Files]:
        """Fitted state as JSON-able data and native files."""
        raise NotImplementedError

    def _load_state(self, data: dict[str, Any], files: Files) -> None:
        raise NotImplementedError

    # -- persistence -----------------------------------------------------------------------------
    def to_state(self) -> tuple[dict[str, Any], Files]:
        if not self.fitted_:
            raise RuntimeError("only fitted surrogates can be saved")
        data, files = self._state()
        return {
            "family": self.family,
            "params": self.get_params(),
            "z_range": list(self.z_range_),
            "state": data,
        }, files

    @classmethod
    def from_state(cls, state: dict[str, Any], files: Files) -> Surrogate:
        model = cls(**state["params"])
        model._load_state(state.get("state", {}), files)
        model.z_range_ = tuple(state.get("z_range", (-np.inf, np.inf)))
        model.fitted_ = True
        return model

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({shown})"
