import numpy as np
import pytest

from accelnas.core.errors import SurrogateError
from accelnas.core.model import count_macs, count_params
from accelnas.core.space import EFFICIENTNET_B0, sample
from accelnas.surrogates.features import ENCODINGS, encode, raw

ARCHS = [EFFICIENTNET_B0, *sample(300, 4)]


def test_raw_is_the_architecture_vector():
    np.testing.assert_array_equal(raw(ARCHS), np.array([a.to_vector() for a in ARCHS]))


@pytest.mark.parametrize(("name", "width"), [("raw", 28), ("onehot", 64), ("raw+products", 56), ("additive", 168),
                                             ("additive-compact", 84), ("analytic", 99)])  # fmt: skip
def test_shapes_and_determinism(name, width):
    X = encode(ARCHS, name)
    assert X.shape == (len(ARCHS), width) and np.isfinite(X).all()
    np.testing.assert_array_equal(X, encode(raw(ARCHS), name))
    assert name in ENCODINGS


def test_onehot_and_additive_structure():
    oh = encode(ARCHS, "onehot")
    assert np.all(oh.sum(1) == 7 * 3 + np.array([sum(s.se for s in a.stages) for a in ARCHS]))
    add = encode(ARCHS, "additive").reshape(len(ARCHS), 7, 2, 12)
    assert np.all(add[:, :, 0, :].sum(2) == 1)  # one first layer per stage
    np.testing.assert_array_equal(add[:, :, 1, :].sum(2), [[s.l - 1 for s in a.stages] for a in ARCHS])


def test_analytic_totals_are_the_exact_counts():
    X = encode(ARCHS, "analytic")
    np.testing.assert_allclose(X[:, -8] * 1e6, [count_macs(a) for a in ARCHS], rtol=0, atol=1e-3)
    np.testing.assert_allclose(X[:, -7] * 1e6, [count_params(a) for a in ARCHS], rtol=0, atol=1e-3)
    np.testing.assert_array_equal(X[:, -6], [a.num_layers for a in ARCHS])


def test_unknown_encoding():
    with pytest.raises(SurrogateError, match="unknown feature encoding 'pixels'"):
        encode(ARCHS, "pixels")
