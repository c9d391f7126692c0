"""Training recipes and proxy spaces: YAML, validation, identity, schedules."""

import math

import pytest

from accelnas.training.proxy_search import load_space, space_from_dict
from accelnas.training.recipe import Recipe, RecipeError, builtin_names, from_dict, load_recipe, save_recipe
from accelnas.training.trainer import lr_at


def test_builtin_recipes_and_spaces_load():
    names = builtin_names()
    assert {"digits-reference", "imagenet-reference", "imagenet-proxy"} <= set(names)
    for name in names:
        recipe = load_recipe(name)
        assert recipe.name == name and recipe.description
    spaces = builtin_names(spaces=True)
    assert "digits-proxy-space" in spaces
    for name in spaces:
        assert load_space(name).candidates()


def test_yaml_round_trip_and_identity(tmp_path):
    r = load_recipe("imagenet-proxy")
    path = save_recipe(r.replace(name="copy", description="other words"), tmp_path / "copy.yaml")
    back = load_recipe(path)
    assert back.name == "copy"
    assert back.identity() == r.identity() and back.key() == r.key()  # name/description do not matter
    assert back.replace(epochs=r.epochs + 1).key() != r.key()
    assert r.size_at(0) == 128 and r.size_at(4) == 160 and r.size_at(9) == 192
    assert r.final_eval_resolution == 224
    assert math.isclose(r.peak_lr, r.lr * r.batch_size / 256)


def test_scalar_resolution_and_ints_become_floats():
    r = from_dict({"epochs": 3, "resolution": 64, "lr": 1, "weight_decay": 0})
    assert r.resolution == ((0, 64),) and r.lr == 1.0 and r.size_at(2) == 64


def test_numbers_written_with_an_exponent(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("epochs: 2\nlr: 1e-3\nweight_decay: 5E-5\nresolution: [[0, 16], [1, 32]]\n")
    r = load_recipe(path)
    assert (r.lr, r.weight_decay, r.resolution) == (1e-3, 5e-5, ((0, 16), (1, 32)))
    path.write_text("epochs: 2\nlr: 2.5e0\nweight_decay: .5E0\n")  # a decimal point and no sign
    r = load_recipe(path)
    assert (r.lr, r.weight_decay) == (2.5, 0.5)
    space = tmp_path / "space.yaml"
    space.write_text("base: exp.yaml\naxes:\n  lr: [1e-3, 1e-2]\n")
    assert [c.recipe.lr for c in load_space(space).candidates()] == [1e-3, 1e-2]
    path.write_text("epochs: 2\nname: 1e3\n")  # an exponent is still a number where text belongs
    with pytest.raises(RecipeError, match=r"name must be text, got 1000\.0"):
        load_recipe(path)
    path.write_text("epochs: 2\nlr: 0.1\nepochs: 90\n")  # which one was meant?
    with pytest.raises(RecipeError, match=r"invalid YAML: key 'epochs' given twice \(line 3\)"):
        load_recipe(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"epochs": 0}, "epochs must be an integer"),
        ({"seed": -1}, r"seed must be an integer in 0\.\.2147483647, got -1"),
        ({"seed": 1.5}, "seed must be an integer"),
        ({"optimizer": "adam"}, "optimizer 'adam' is not one of"),
        ({"schedule": "linear"}, "schedule 'linear'"),
        ({"resolution": [[1, 32]]}, "must start at epoch 0"),
        ({"epochs": 2, "resolution": [[0, 16], [2, 32]]}, "starts must increase and be < epochs"),
        ({"resolution": [[0, 4]]}, "size must be within"),
        ({"data_fraction": 0.0}, "data_fraction must be a number"),
        ({"data_fraction": 1.5}, "data_fraction must be a number"),
        ({"ema_decay": 1.0}, "ema_decay"),
        ({"crop_scale": [0.9, 0.1]}, "crop_scale"),
        ({"mixed_precision": "yes"}, "mixed_precision must be true or false"),
        ({"epohcs": 3}, "unknown field 'epohcs'"),
        ({"resolution": "big"}, "resolution must be a size"),
        ({"eval_resolution": 100_000}, r"eval_resolution must be an integer within 8\.\.1024, got 100000"),
        ({"name": [1]}, r"name must be text, got \[1\]"),
        ({"description": 5}, "description must be text, got 5"),
    ],
)
def test_bad_recipes_name_the_field(change, message):
    with pytest.raises(RecipeError, match=message):
        from_dict({"name": "bad", **change})


def test_an_empty_description_is_no_description():
    assert from_dict({"name": "r", "description": None}).description == ""


def test_bad_files(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("epochs: [1,\n")
    with pytest.raises(RecipeError, match="invalid YAML"):
        load_recipe(broken)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(RecipeError, match="a recipe is a mapping"):
        load_recipe(listy)
    with pytest.raises(RecipeError, match="recipe file not found"):
        load_recipe(tmp_path / "missing.yaml")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe: x\n")
    with pytest.raises(RecipeError, match=r"cannot read recipe file .*UnicodeDecodeError"):
        load_recipe(binary)
    with pytest.raises(RecipeError, match="unknown recipe 'nope'"):
        load_recipe("nope")
    with pytest.raises(RecipeError, match="'digits-proxy-space' is a proxy space, not a recipe; use it with"):
        load_recipe("digits-proxy-space")
    with pytest.raises(RecipeError, match="'digits-reference' is a recipe, not a proxy space"):
        load_space("digits-reference")
    with pytest.raises(RecipeError, match="unknown proxy space 'nope'"):
        load_space("nope")
    assert load_space("digits-proxy-space").candidates()


def test_learning_rate_schedules():
    cos = Recipe(epochs=4, batch_size=256, lr=0.4, warmup_epochs=1, schedule="cosine", min_lr_ratio=0.1)
    steps = 10
    warm = [lr_at(cos, s, steps) for s in range(10)]
    assert warm == sorted(warm) and math.isclose(warm[-1], 0.4)
    after = [lr_at(cos, s, steps) for s in range(10, 40)]
    assert after == sorted(after, reverse=True)
    assert math.isclose(lr_at(cos, 39, steps), 0.04, rel_tol=0.05)
    step = Recipe(epochs=6, batch_size=128, lr=0.2, schedule="step", step_every=2, step_gamma=0.5)
    assert lr_at(step, 0, 5) == pytest.approx(0.1) and lr_at(step, 10, 5) == pytest.approx(0.05)
    assert lr_at(step, 29, 5) == pytest.approx(0.025)
    const = Recipe(schedule="constant", lr=0.1, batch_size=512)
    assert lr_at(const, 123, 10) == pytest.approx(0.2)


def test_proxy_space_candidates_skip_invalid_combinations():
    space = space_from_dict(
        {
            "base": {"name": "b", "epochs": 4, "resolution": 32},
            "axes": {"epochs": [1, 3], "resolution": [16, [[0, 16], [2, 32]]], "data_fraction": [0.5, 1.0]},
        }
    )
    assert space.size() == 8
    cands = space.candidates()
    # a schedule switching at epoch 2 does not fit a 1-epoch proxy: those 2 combinations are skipped
    assert len(cands) == 6
    assert len({c.recipe.key() for c in cands}) == 6
    names = {c.name for c in cands}
    assert "epochs=3,resolution=16@0+32@2,data_fraction=0.5" in names
    assert all(c.recipe.name == c.name for c in cands)
    one = next(c for c in cands if c.name == "epochs=3,resolution=16@0+32@2,data_fraction=0.5")
    assert one.recipe.description == "b with epochs=3, resolution=[[0, 16], [2, 32]], data_fraction=0.5"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"base": "digits-reference"}, "with 'base' .* and 'axes'"),
        ({"axes": {"epochs": [1]}}, r"with 'base' \(the recipe it varies\) and 'axes'"),  # no silent defaults
        ({"base": "digits-reference", "axes": {"epochz": [1]}}, "axis 'epochz' is not a recipe field"),
        ({"base": "digits-reference", "axes": {"epochs": []}}, "needs a non-empty list"),
        ({"base": "digits-reference", "axes": {"epochs": [0]}}, "no valid candidate"),
        ({"base": "digits-reference", "axes": {"epochs": [1]}, "extra": 1}, "unknown key 'extra'"),
        (
            {"base": "digits-reference", "axes": {"data_fraction": [0.5, 1, 1.0]}},
            "candidates data_fraction=1 and data_fraction=1.0 are the same recipe",
        ),  # 1 is read as 1.0
        ({"base": "digits-reference", "axes": {"resolution": [32, [[0, 32]]]}}, "are the same recipe"),
    ],
)
def test_bad_proxy_spaces(data, message):
    with pytest.raises(RecipeError, match=message):
        space_from_dict(data).candidates()


def test_resolution_candidates_are_named_by_their_schedule(caplog):
    space = space_from_dict({"base": {"epochs": 2}, "axes": {"resolution": [
        [{"epoch": 0, "size": 16}], [{"epoch": 0, "size": 24}, {"epoch": 1, "size": 32}], [[0, 16], [1, 24]],
        [16, 32], [[0, 16, 3]],  # not schedules: skipped, as any invalid candidate is
    ]}})  # fmt: skip
    assert [c.name for c in space.candidates()] == ["resolution=16@0", "resolution=24@0+32@1", "resolution=16@0+24@1"]
    assert "2 of 5 proxy candidates are invalid and skipped" in caplog.text


def test_a_relative_base_is_found_beside_the_space_file(tmp_path, monkeypatch):
    folder = tmp_path / "spaces"
    folder.mkdir()
    (folder / "fast.yaml").write_text("name: fast\nepochs: 3\n")
    (folder / "space.yaml").write_text("base: fast.yaml\naxes:\n  epochs: [1, 2]\n")
    monkeypatch.chdir(tmp_path)  # not the space file's folder
    space = load_space(folder / "space.yaml")
    assert space.base.name == "fast" and [c.recipe.epochs for c in space.candidates()] == [1, 2]
    (folder / "space.yaml").write_text("base: digits-reference\naxes:\n  epochs: [1, 2]\n")
    assert load_space(folder / "space.yaml").base.name == "digits-reference"  # built-in names still work
