"""Structural checks of stored trees (XGBoost and LightGBM model files, the random forest's arrays)
before they are loaded.

The native loaders trust their input: a tree whose child or feature index lies out of range, or a
LightGBM model cut short, can abort or crash the process rather than raise. A surrogate directory
received from someone else is therefore checked here first; every problem is a
:class:`~accelnas.core.errors.SurrogateError` naming it. The checks cover the layouts the
surrogates write (XGBoost JSON of a ``gbtree`` booster, LightGBM text without categorical or linear
trees), not every model either library can save. The random forest's trees, evaluated in NumPy,
get the same check of their children, so a loop between nodes cannot stall a prediction.
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

import numpy as np

from accelnas.core.errors import SurrogateError

_XGB_NODE_ARRAYS = (
    "left_children",
    "right_children",
    "parents",
    "split_indices",
    "split_conditions",
    "default_left",
    "split_type",
    "base_weights",
    "loss_changes",
    "sum_hessian",
)
_LGB_SPLIT_ARRAYS = ("split_feature", "threshold", "decision_type", "left_child", "right_child")  # required
_LGB_SPLIT_EXTRAS = ("split_gain", "internal_value", "internal_weight", "internal_count")  # checked if present
_LGB_LEAF_ARRAYS = ("leaf_value", "leaf_weight", "leaf_count")
_NUMBER = r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|inf|nan)"
_LGB_NUMBERS = re.compile(rf"{_NUMBER}(?: {_NUMBER})*", re.IGNORECASE)
_LGB_INTEGERS = re.compile(r"-?\d+(?: -?\d+)*")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_LGB_PARAMETER = re.compile(r"\[[A-Za-z0-9_]+: [^\]\n]*\]")


def _count(value: Any, what: str) -> int:
    """A non-negative integer stored as a number or a decimal string."""
    if isinstance(value, bool):
        raise SurrogateError(f"{what} is not a count")
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value)
    if isinstance(value, int) and value >= 0:
        return value
    raise SurrogateError(f"{what} is not a count ({value!r})")


def _integers(values: list[Any], what: str) -> np.ndarray:
    """Integers (node and feature indices) as an array; anything else is an error."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise SurrogateError(f"{what} hold something that is not a number") from None
    if array.ndim != 1 or not np.array_equal(array, np.round(array)):
        raise SurrogateError(f"{what} hold something that is not an integer")
    return array.astype(np.int64)


def _first_nodes(sizes: np.ndarray) -> np.ndarray:
    """Index of each tree's first node in the concatenated node arrays of trees of ``sizes`` nodes."""
    return np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)


def _check_children(left: np.ndarray, right: np.ndarray, sizes: np.ndarray, what: str) -> np.ndarray:
    """Check the trees whose node arrays are concatenated in ``left`` and ``right`` (``sizes`` nodes
    each): a leaf has -1 on both sides, a split's children lie after it in its own tree, and no node
    is the child of two splits. Returns the mask of split nodes."""
    starts = _first_nodes(sizes)
    offset, size = np.repeat(starts, sizes), np.repeat(sizes, sizes)
    index = np.arange(len(left)) - offset

    def fail(j: int, reason: str) -> None:
        raise SurrogateError(f"{what} {int(np.searchsorted(starts, j, 'right')) - 1}: {reason}")

    leaf = left == -1
    if (leaf != (right == -1)).any():
        fail(int(np.argmax(leaf != (right == -1))), "a node has only one child")
    split = ~leaf
    for side, children in (("left", left), ("right", right)):
        bad = split & ((children <= index) | (children >= size))
        if bad.any():
            j = int(np.argmax(bad))
            fail(j, f"node {index[j]} has {side} child {children[j]} (of {size[j]} nodes)")
    referenced = np.concatenate([left[split] + offset[split], right[split] + offset[split]])
    unique, counts = np.unique(referenced, return_counts=True)
    if (counts > 1).any():
        fail(int(unique[np.argmax(counts > 1)]), "a node is the child of two splits")
    return split


def check_forest_trees(trees: list[dict[str, np.ndarray]]) -> None:
    """Node arrays of one length per tree, children after their parent (no loops), features >= 0."""
    for i, tree in enumerate(trees):
        nodes = len(tree["value"])
        if nodes == 0 or any(a.shape != (nodes,) for a in tree.values()):
            raise SurrogateError(f"random forest tree {i}: its arrays are not all of one length")
    if not trees:
        raise SurrogateError("a random forest without trees")
    sizes = np.array([len(t["value"]) for t in trees])
    split = _check_children(*(np.concatenate([t[k] for t in trees]) for k in ("left", "right")), sizes,
                           "random forest tree")  # fmt: skip
    if (np.concatenate([t["feature"] for t in trees])[split] < 0).any():
        raise SurrogateError("random forest trees: a split uses a negative feature index")


def check_xgboost_json(data: bytes) -> None:
    """Raise :class:`SurrogateError` unless ``data`` is a well-formed XGBoost JSON ``gbtree`` model."""
    try:
        model = json.loads(data)
        learner = model["learner"]
        features = _count(learner["learner_model_param"]["num_feature"], "num_feature")
        booster = learner["gradient_booster"]
        name = booster["name"]
        trees = booster["model"]["trees"]
        declared = _count(booster["model"]["gbtree_model_param"]["num_trees"], "num_trees")
        tree_info = booster["model"]["tree_info"]
    except (ValueError, UnicodeDecodeError) as exc:
        raise SurrogateError(f"not an XGBoost JSON model ({type(exc).__name__})") from None
    except (KeyError, TypeError) as exc:
        raise SurrogateError(f"not an XGBoost JSON model (no {exc})") from None
    if name != "gbtree":
        raise SurrogateError(f"XGBoost booster {name!r} is not a gbtree model")
    if not isinstance(trees, list) or len(trees) != declared or not isinstance(tree_info, list):
        raise SurrogateError(f"XGBoost model declares {declared} trees but holds a different number")
    if len(tree_info) != declared or any(v != 0 for v in tree_info):
        raise SurrogateError("XGBoost tree_info does not match a single-output model's trees")
    indptr = booster["model"].get("iteration_indptr", [0, declared])
    if (not isinstance(indptr, list) or not indptr or indptr[0] != 0 or indptr[-1] != declared
            or any(not isinstance(v, int) or isinstance(v, bool) for v in indptr)
            or any(b < a for a, b in itertools.pairwise(indptr))):  # fmt: skip
        raise SurrogateError("XGBoost iteration_indptr does not index the model's trees")
    if not trees:
        return
    sizes = np.zeros(len(trees), dtype=np.int64)
    for t, tree in enumerate(trees):
        what = f"XGBoost tree {t}"
        try:
            if tree["id"] != t or isinstance(tree["id"], bool):
                raise SurrogateError(f"{what} has id {tree['id']!r}")
            param = tree["tree_param"]
            sizes[t] = nodes = _count(param["num_nodes"], f"{what}: num_nodes")
            if nodes == 0:
                raise SurrogateError(f"{what} has no nodes")
            if _count(param["num_feature"], f"{what}: num_feature") != features:
                raise SurrogateError(f"{what}: num_feature differs from the model's")
            if _count(param.get("size_leaf_vector", 1), f"{what}: size_leaf_vector") > 1:
                raise SurrogateError(f"{what}: vector leaves are not supported")
            for key in _XGB_NODE_ARRAYS:
                values = tree[key]
                if not isinstance(values, list) or len(values) != nodes:
                    got = len(values) if isinstance(values, list) else type(values).__name__
                    raise SurrogateError(f"{what}: {key} has {got} entries, expected {nodes}")
            if any(tree.get(key) for key in ("categories", "categories_nodes", "categories_segments")):
                raise SurrogateError(f"{what}: categorical splits are not supported")
        except (KeyError, TypeError) as exc:
            raise SurrogateError(f"{what} lacks {exc}") from None
    arrays = {key: _integers(list(itertools.chain.from_iterable(t[key] for t in trees)), f"XGBoost {key}")
              for key in ("left_children", "right_children", "parents", "split_indices", "split_type")}  # fmt: skip
    left, right = arrays["left_children"], arrays["right_children"]
    split = _check_children(left, right, sizes, "XGBoost tree")
    first = _first_nodes(sizes)
    starts = np.repeat(first, sizes)
    owner = np.arange(len(left)) - starts  # each node's own index in its tree
    parents = arrays["parents"]
    problems = (
        (_scatter(split, [parents[c[split] + starts[split]] != owner[split] for c in (left, right)]),
         "parents do not match children"),
        (arrays["split_type"] != 0, "categorical splits are not supported"),
        (split & ((arrays["split_indices"] < 0) | (arrays["split_indices"] >= features)),
         f"a split uses a feature outside 0..{features - 1}"),
    )  # fmt: skip
    for bad, reason in problems:
        if bad.any():
            tree = int(np.searchsorted(first, int(np.argmax(bad)), "right")) - 1
            raise SurrogateError(f"XGBoost tree {tree}: {reason}")


def _scatter(mask: np.ndarray, flags: list[np.ndarray]) -> np.ndarray:
    """A full-length boolean array true where any of ``flags`` (each one per true entry of ``mask``) is."""
    out = np.zeros_like(mask)
    out[mask] = np.logical_or.reduce(flags)
    return out


def _lightgbm_fields(block: str) -> dict[str, str]:
    """The header's ``key=value`` lines (read before any tree, where LightGBM raises on bad input)."""
    fields = {}
    for line in _LINE_BREAK.split(block):
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def _lightgbm_tree_fields(block: str, what: str) -> dict[str, str]:
    """A tree's lines as LightGBM reads them: after ``Tree=N``, up to the first empty line, each
    ``key=value`` split at its first '='. Trees are read in parallel threads, where a line without
    '=' or a missing field ends the process, so such a line is an error here."""
    fields = {}
    for line in _LINE_BREAK.split(block)[1:]:
        if not line:
            break
        key, sep, value = line.partition("=")
        if not sep:
            raise SurrogateError(f"{what}: line {line[:40]!r} is not 'key=value'")
        fields[key] = value
    return fields


def _tokens(fields: dict[str, str], key: str, length: int, what: str, integer: bool = False) -> np.ndarray:
    """A tree field's ``length`` space-separated numbers, written as LightGBM's parsers read them."""
    text = fields.get(key)
    if text is None:
        raise SurrogateError(f"{what} lacks {key}")
    tokens = [token for token in text.split(" ") if token]  # LightGBM splits on spaces only
    if len(tokens) != length:
        raise SurrogateError(f"{what}: {key} has {len(tokens)} entries, expected {length}")
    # LightGBM's own number parsers stop the process on what Python would accept (1_000, ' 1')
    if not (_LGB_INTEGERS if integer else _LGB_NUMBERS).fullmatch(" ".join(tokens)):
        raise SurrogateError(f"{what}: {key} holds something that is not a number")
    try:
        return np.array(tokens, dtype=np.int64 if integer else np.float64)
    except (ValueError, OverflowError):
        raise SurrogateError(f"{what}: {key} holds something that is not a number") from None


def check_lightgbm_text(text: str) -> None:
    """Raise :class:`SurrogateError` unless ``text`` is a complete LightGBM text model of numeric
    (not categorical, not linear) single-output trees."""
    start = text.find("\nTree=0\n")
    end = text.find("\nend of trees")
    header = text[: start if start >= 0 else end if end >= 0 else len(text)]
    for line in _LINE_BREAK.split(header)[1:]:
        if line and "=" not in line:  # LightGBM's header reader runs past a line without '='
            raise SurrogateError(f"LightGBM header line {line[:40]!r} is not 'key=value'")
    head = _lightgbm_fields(header)
    missing = [k for k in ("num_class", "num_tree_per_iteration", "label_index", "max_feature_idx") if k not in head]
    if missing and end >= 0:
        raise SurrogateError(f"LightGBM header lacks {missing[0]}")
    if "max_feature_idx" not in head or "tree_sizes" not in head or end < 0:
        raise SurrogateError("not a complete LightGBM text model (no header with tree_sizes, or no 'end of trees')")
    try:
        features = int(head["max_feature_idx"]) + 1
        sizes = [int(v) for v in head["tree_sizes"].split()]
        per_iteration = int(head.get("num_tree_per_iteration", "1"))
        classes = int(head.get("num_class", "1"))
    except ValueError:
        raise SurrogateError("LightGBM header holds something that is not a number") from None
    if features < 1 or per_iteration != 1 or classes != 1 or any(s < 1 for s in sizes):
        raise SurrogateError("LightGBM header does not describe a single-output model of its features")
    for key in ("feature_names", "feature_infos"):
        if key in head and len(head[key].split()) != features:
            raise SurrogateError(f"LightGBM {key} does not list {features} features")
    if not sizes or start < 0:
        raise SurrogateError("LightGBM model holds no trees")
    blocks, position = [], start + 1
    for t, size in enumerate(sizes):
        if not text.startswith(f"Tree={t}\n", position) or position + size > end + 1:
            raise SurrogateError(f"LightGBM tree {t} is not where tree_sizes places it (cut short or edited?)")
        blocks.append(text[position : position + size])
        position += size
    if position != end + 1:
        raise SurrogateError("LightGBM trees do not end where tree_sizes places their end (edited?)")
    _check_lightgbm_parameters(text, end)
    for t, block in enumerate(blocks):
        what = f"LightGBM tree {t}"
        fields = _lightgbm_tree_fields(block, what)
        if "num_leaves" not in fields or "num_cat" not in fields:
            raise SurrogateError(f"{what} lacks num_leaves or num_cat")
        try:
            leaves = int(fields["num_leaves"])
            categorical = int(fields["num_cat"])
            linear = int(fields.get("is_linear", "0"))
            float(fields.get("shrinkage", "1"))
        except ValueError:
            raise SurrogateError(f"{what}: num_leaves, num_cat, is_linear or shrinkage is not a number") from None
        if leaves < 1 or categorical != 0 or linear != 0:
            raise SurrogateError(f"{what}: {leaves} leaves, {categorical} categorical splits, linear {linear}")
        _tokens(fields, "leaf_value", leaves, what)
        if leaves == 1:  # LightGBM reads no more of a one-leaf tree (and writes its leaf_weight empty)
            continue
        for key in _LGB_LEAF_ARRAYS[1:]:
            if key in fields:
                _tokens(fields, key, leaves, what)
        present = [key for key in _LGB_SPLIT_EXTRAS if key in fields]
        arrays = {key: _tokens(fields, key, leaves - 1, what, integer=key in _LGB_SPLIT_ARRAYS and key != "threshold")
                  for key in (*_LGB_SPLIT_ARRAYS, *present)}  # fmt: skip
        feature = arrays["split_feature"]
        if ((feature < 0) | (feature >= features)).any():
            raise SurrogateError(f"{what}: a split uses a feature outside 0..{features - 1}")
        decision = arrays["decision_type"]  # bit 0 categorical, bit 1 default left, bits 2-3 missing type 0-2
        if ((decision & 1) != 0).any():
            raise SurrogateError(f"{what}: categorical splits are not supported")
        if ((decision < 0) | (decision > 0b1011)).any():
            raise SurrogateError(f"{what}: a decision_type outside what LightGBM writes")
        _check_lightgbm_children(arrays["left_child"], arrays["right_child"], leaves, what)


def _check_lightgbm_parameters(text: str, after: int) -> None:
    """The ``parameters:`` section, if any, holds only ``[name: value]`` and blank lines and ends with an
    ``end of parameters`` line, after which only ``pandas_categorical:`` and blank lines follow."""
    lines = _LINE_BREAK.split(text[after:])
    if "parameters:" not in lines:
        return
    start = lines.index("parameters:") + 1
    if "end of parameters" not in lines[start:]:
        raise SurrogateError("LightGBM model's parameters are cut short (no 'end of parameters' line)")
    stop = lines.index("end of parameters", start)
    for line in lines[start:stop]:
        if line and not _LGB_PARAMETER.fullmatch(line):
            raise SurrogateError(f"LightGBM parameter line {line[:40]!r} is not '[name: value]'")
    for line in lines[stop + 1 :]:
        if line and not line.startswith("pandas_categorical:"):
            raise SurrogateError(f"LightGBM model has {line[:40]!r} after its parameters")


def _check_lightgbm_children(left: np.ndarray, right: np.ndarray, leaves: int, what: str) -> None:
    """Split children (>= 0) lie after their parent; leaves (``~leaf`` < 0) are each reached once."""
    splits = leaves - 1
    for side, children in (("left", left), ("right", right)):
        inner = children >= 0
        bad = np.where(inner, (children <= np.arange(splits)) | (children >= splits), ~children >= leaves)
        if bad.any():
            i = int(np.argmax(bad))
            raise SurrogateError(f"{what}: split {i} has {side} child {int(children[i])} ({leaves} leaves)")
    both = np.concatenate([left, right])
    inner, leaf = both[both >= 0], ~both[both < 0]
    if len(np.unique(inner)) != len(inner) or len(np.unique(leaf)) != leaves or len(leaf) != leaves:
        raise SurrogateError(f"{what}: its splits do not reach each node and leaf exactly once")
