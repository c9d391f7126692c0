"""Stored trees edited or cut short (checksums recomputed, as someone handing over a directory could)
are refused with a SurrogateError before a native loader reads them."""

import hashlib
import itertools
import json
import re
import shutil

import numpy as np
import pytest

from accelnas.core.errors import SurrogateError
from accelnas.core.model import count_macs
from accelnas.core.space import sample
from accelnas.surrogates import artifact
from accelnas.surrogates.artifact import SurrogateArtifact
from accelnas.surrogates.models import make
from accelnas.surrogates.models.tree_checks import check_lightgbm_text, check_xgboost_json

ARCHS = sample(120, 0)
Y = np.array([count_macs(a, 64) / 1e6 for a in ARCHS])


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """One saved surrogate per tree family: {family: directory}."""
    root = tmp_path_factory.mktemp("trees")
    out = {}
    for family, params in (("xgboost", {"n_estimators": 20}), ("lightgbm", {"n_estimators": 20}),
                           ("random_forest", {"n_estimators": 5})):  # fmt: skip
        model = make(family, **params).fit(ARCHS, Y)
        out[family] = artifact.save(SurrogateArtifact(model, "sim/x", "latency", "ms"), root / family)
    return out


def _resign(directory):
    """Recompute the checksums of an edited surrogate directory."""
    meta = json.loads((directory / "surrogate.json").read_text())
    meta["files"] = {
        n: hashlib.sha256(artifact.model_file(directory, n).read_bytes()).hexdigest() for n in meta.get("files", {})
    }
    meta["model_sha256"] = artifact._state_sha256(meta["model"])
    (directory / "surrogate.json").write_text(json.dumps(meta))


def _refused(directory, message):
    with pytest.raises(SurrogateError, match=message) as raised:
        artifact.load(directory)
    assert str(directory) in str(raised.value) and "\n" not in str(raised.value)


def _xgb_edit(tree_edit):
    def edit(text):
        model = json.loads(text)
        tree_edit(model["learner"]["gradient_booster"]["model"]["trees"][0])
        return json.dumps(model)

    return edit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda text: "", r"not an XGBoost JSON model \(JSONDecodeError\)"),
        (lambda text: text[: len(text) // 2], r"not an XGBoost JSON model"),
        (_xgb_edit(lambda t: t["left_children"].__setitem__(0, 10**6)), r"tree 0: node 0 has left child 1000000"),
        (_xgb_edit(lambda t: t["right_children"].__setitem__(0, 0)), r"tree 0: node 0 has right child 0"),
        (_xgb_edit(lambda t: t["split_indices"].__setitem__(0, 10**6)), r"tree 0: a split uses a feature outside"),
        (_xgb_edit(lambda t: t.update(left_children=t["left_children"][:1])), r"left_children has 1 entries"),
        (_xgb_edit(lambda t: t["tree_param"].update(num_nodes="100000")), r"has \d+ entries, expected 100000"),
        (_xgb_edit(lambda t: t["parents"].__setitem__(1, 5)), r"tree 0: parents do not match children"),
        (_xgb_edit(lambda t: t["split_type"].__setitem__(0, 1)), r"categorical splits are not supported"),
        (_xgb_edit(lambda t: t.update(id=3)), r"XGBoost tree 0 has id 3"),
    ],
)
def test_edited_xgboost_models_are_refused(saved, tmp_path, edit, message):
    directory = tmp_path / "x"
    shutil.copytree(saved["xgboost"], directory)
    path = artifact.model_file(directory, "xgboost.json")
    path.write_text(edit(path.read_text()))
    _resign(directory)
    _refused(directory, message)


def _with_tree_sizes(text):
    """``text`` with ``tree_sizes`` recomputed from its trees, as a careful editor would leave it."""
    trees, end = text.index("\nTree=0\n") + 1, text.find("\nend of trees") + 1
    if end <= 0:
        return text
    starts = [m.start() for m in re.finditer(r"^Tree=\d+$", text[trees:end], flags=re.M)] + [end - trees]
    sizes = " ".join(str(b - a) for a, b in itertools.pairwise(starts))
    return re.sub(r"^tree_sizes=.*$", f"tree_sizes={sizes}", text, count=1, flags=re.M)


SIZES_KEPT = "tree 1 is not where tree_sizes places it"


@pytest.mark.parametrize(
    ("edit", "message", "resize"),
    [
        (lambda text: text.replace("split_feature=", "split_feature=99999 ", 1), r"split_feature has \d+ entries", 1),
        (lambda text: re.sub(r"split_feature=\d+", "split_feature=999", text, count=1), "feature outside 0..27", 1),
        (lambda text: re.sub(r"left_child=-?\d+", "left_child=500", text, count=1), "split 0 has left child 500", 1),
        (lambda text: re.sub(r"right_child=-?\d+", "right_child=-1", text, count=1), "exactly once", 1),
        (lambda text: re.sub(r"num_leaves=\d+", "num_leaves=100000", text, count=1), "expected 100000", 1),
        (lambda text: re.sub(r"num_cat=0", "num_cat=1", text, count=1), "1 categorical splits", 1),
        (lambda text: re.sub(r"num_cat=0", "nu[_cat=0", text, count=1), "tree 0 lacks num_leaves or num_cat", 1),
        (lambda text: re.sub(r"split_gain=(\d)", r"split_gain=\1_", text, count=1), "split_gain holds something", 1),
        (lambda text: text.replace("num_class=1", "num_class", 1), "header line 'num_class' is not 'key=value'", 1),
        (lambda text: re.sub(r"left_child=", "left_child ", text, count=1), "line 'left_child .*' is not 'key=", 1),
        (lambda text: re.sub(r"\nleaf_count=", "-leaf_count=", text, count=1), r"leaf_weight has \d+ entries", 1),
        (lambda text: re.sub(r"tree_sizes=\d+", "tree_sizes=7", text, count=1), SIZES_KEPT, 0),
        (lambda text: text.replace("split_gain=", "split_gain=1 ", 1), SIZES_KEPT, 0),
        (lambda text: text.replace("max_feature_idx=27", "max_feature_idx=40"), "feature_names does not list 41", 1),
        (lambda text: text[: text.index("end of parameters")], "parameters are cut short", 1),
        (lambda text: text.replace("end of parameters\n", "end of parameters{\n"), "parameters are cut short", 1),
        (lambda text: text + "[extra: 1]\n", "has '.extra: 1.' after its parameters", 1),
        (lambda text: text.replace("[linear_tree:", "[linear_treew"), r"parameter line '\[linear_treew 0\]' is not", 1),
        (lambda text: text[: text.index("end of trees")], "no 'end of trees'", 1),
    ],
)
def test_edited_lightgbm_models_are_refused(saved, tmp_path, edit, message, resize):
    directory = tmp_path / "l"
    shutil.copytree(saved["lightgbm"], directory)
    path = artifact.model_file(directory, "lightgbm.txt")
    edited = edit(path.read_text())
    path.write_text(_with_tree_sizes(edited) if resize else edited)
    _resign(directory)
    _refused(directory, message)


def test_models_cut_anywhere_are_refused(saved):
    """Cut at 200 places through each file, every prefix is refused by the check itself."""
    xgb = artifact.model_file(saved["xgboost"], "xgboost.json").read_bytes()
    lgb = artifact.model_file(saved["lightgbm"], "lightgbm.txt").read_text()
    check_xgboost_json(xgb)
    check_lightgbm_text(lgb)
    for cut in np.linspace(0, len(xgb) - 2, 200).astype(int):
        with pytest.raises(SurrogateError):
            check_xgboost_json(xgb[:cut])
    # after 'end of trees' come feature importances and parameters, which LightGBM reads cut short
    trees = lgb.index("\nend of trees") + len("\nend of trees")
    for cut in np.linspace(0, trees - 1, 200).astype(int):
        with pytest.raises(SurrogateError):
            check_lightgbm_text(lgb[:cut])


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.update(left=[0, *t["left"][1:]], right=[0, *t["right"][1:]]), "node 0 has left child 0"),
        (lambda t: t["right"].__setitem__(0, -1), "a node has only one child"),
        (lambda t: t.update(value=t["value"][:-1]), "its arrays are not all of one length"),
        (lambda t: t["feature"].__setitem__(0, -3), "a split uses a negative feature index"),
        (lambda t: t["left"].__setitem__(1, 5), "a node is the child of two splits"),
    ],
)
def test_edited_forest_trees_are_refused(saved, tmp_path, edit, message):
    directory = tmp_path / "f"
    shutil.copytree(saved["random_forest"], directory)
    meta = json.loads((directory / "surrogate.json").read_text())
    edit(meta["model"]["state"]["trees"][0])
    (directory / "surrogate.json").write_text(json.dumps(meta))
    _resign(directory)
    _refused(directory, r"random forest trees?( 0)?: " + message)


@pytest.mark.parametrize("rows", [5, 15])
def test_lightgbm_models_with_one_leaf_trees_load(tmp_path, rows):
    """Too few rows to split: LightGBM writes one-leaf trees (with an empty leaf_weight), which load."""
    model = make("lightgbm", n_estimators=5).fit(ARCHS[:rows], Y[:rows])
    assert "num_leaves=1\n" in model.booster_.model_to_string()
    saved = artifact.save(SurrogateArtifact(model, "sim/x", "latency", "ms"), tmp_path / "l")
    np.testing.assert_allclose(artifact.load(saved).predict(ARCHS[:3]), model.predict(ARCHS[:3]))
