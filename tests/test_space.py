import json
import random
import subprocess
import sys

import pytest

from accelnas.core.errors import InvalidArchitectureError
from accelnas.core.space import (
    EFFICIENTNET_B0,
    FEATURE_NAMES,
    Architecture,
    Stage,
    parse_architecture,
    sample,
    sample_one,
    space_size,
)


def test_b0_encodings():
    assert EFFICIENTNET_B0.id == "1311-6321-6521-6331-6531-6541-6311"
    assert EFFICIENTNET_B0.num_layers == 16
    cfg = EFFICIENTNET_B0.to_config()
    assert cfg["block5_l"] == 4 and cfg["block0_e"] == 1 and cfg["block6_se"] is True


@pytest.mark.parametrize("seed", range(5))
def test_round_trips(seed):
    for arch in sample(20, seed):
        assert Architecture.from_string(arch.id) == arch
        assert Architecture.from_config(arch.to_config()) == arch
        assert Architecture.from_vector(arch.to_vector()) == arch
        assert len(arch.to_vector()) == len(FEATURE_NAMES) == 28
        assert hash(Architecture.from_string(arch.id)) == hash(arch)


def test_immutable():
    with pytest.raises((AttributeError, TypeError)):
        EFFICIENTNET_B0.stages = ()  # type: ignore[misc]


def test_space_size():
    assert space_size() == 36**6 * 48


def test_sampling_is_seeded_and_distinct():
    a, b, c = sample(200, 1), sample(200, 1), sample(200, 2)
    assert a == b and a != c
    assert len({x.id for x in a}) == 200
    excluded = {x.id for x in a[:50]}
    assert not excluded & {x.id for x in sample(100, 1, exclude=excluded)}


def test_sampling_covers_every_choice():
    rng = random.Random(0)
    archs = [sample_one(rng) for _ in range(500)]
    assert {a.stages[5].l for a in archs} == {1, 2, 3, 4}
    assert {a.stages[0].l for a in archs} == {1, 2, 3}
    assert {a.stages[3].e for a in archs} == {1, 4, 6}
    assert {a.stages[2].se for a in archs} == {False, True}


@pytest.mark.parametrize(
    ("mutation", "field"),
    [
        ({"block2_e": 3}, "block2_e=3"),
        ({"block0_k": 7}, "block0_k=7"),
        ({"block4_l": 4}, "block4_l=4"),
        ({"block5_l": 5}, "block5_l=5"),
        ({"block1_l": 0}, "block1_l=0"),
        ({"block3_se": "maybe"}, "block3_se"),
    ],
)
def test_invalid_config_names_the_field(mutation, field):
    cfg = EFFICIENTNET_B0.to_config() | mutation
    with pytest.raises(InvalidArchitectureError, match=field):
        Architecture.from_config(cfg)


def test_stage5_allows_four_layers_others_not():
    Architecture.from_config(EFFICIENTNET_B0.to_config() | {"block5_l": 4})
    with pytest.raises(InvalidArchitectureError, match="block6_l"):
        Architecture.from_config(EFFICIENTNET_B0.to_config() | {"block6_l": 4})


def test_missing_and_unknown_keys():
    cfg = EFFICIENTNET_B0.to_config()
    del cfg["block3_k"]
    with pytest.raises(InvalidArchitectureError, match="block3_k"):
        Architecture.from_config(cfg)
    with pytest.raises(InvalidArchitectureError, match="block7_e"):
        Architecture.from_config(EFFICIENTNET_B0.to_config() | {"block7_e": 1})


def test_bool_is_not_an_int_and_floats_are_accepted():
    with pytest.raises(InvalidArchitectureError, match="block0_e"):
        Architecture((Stage(True, 3, 1, True), *EFFICIENTNET_B0.stages[1:]))  # type: ignore[arg-type]
    cfg = {k: (float(v) if not isinstance(v, bool) else v) for k, v in EFFICIENTNET_B0.to_config().items()}
    assert Architecture.from_config(cfg) == EFFICIENTNET_B0
    import numpy as np

    for kind in (np.float32, np.float64, np.int64):  # what numpy and torch optimizers hand back
        cfg = {k: (kind(v) if not isinstance(v, bool) else v) for k, v in EFFICIENTNET_B0.to_config().items()}
        assert Architecture.from_config(cfg) == EFFICIENTNET_B0
    with pytest.raises(InvalidArchitectureError, match="block0_e"):
        Architecture.from_config(EFFICIENTNET_B0.to_config() | {"block0_e": np.float32(4.5)})


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1311",
        "1311-6321-6521-6331-6531-6541",
        "1311-6321-6521-6331-6531-6541-6312",
        "1311-6321-6521-6331-6531-6551-6311",
        "x311-6321-6521-6331-6531-6541-6311",
        "3311-6321-6521-6331-6531-6541-6311",
        "\u00b2311-6321-6521-6331-6531-6541-6311",  # a superscript two: a digit to str.isdigit, not to int
        "\u0661311-6321-6521-6331-6531-6541-6311",  # an Arabic-Indic one: ids are ASCII digits only
    ],
)
def test_invalid_strings(text):
    with pytest.raises(InvalidArchitectureError):
        Architecture.from_string(text)


def test_parse_architecture_forms(tmp_path):
    assert parse_architecture("b0") == EFFICIENTNET_B0
    assert parse_architecture(EFFICIENTNET_B0.id) == EFFICIENTNET_B0
    assert parse_architecture(json.dumps(EFFICIENTNET_B0.to_config())) == EFFICIENTNET_B0
    record = tmp_path / "result_1.json"
    record.write_text(json.dumps({"architecture": EFFICIENTNET_B0.to_config(), "metrics": {}}))
    assert parse_architecture(str(record)) == EFFICIENTNET_B0
    shown = tmp_path / "info.json"  # what `accelnas info --json` prints reads back
    shown.write_text(subprocess.run([sys.executable, "-m", "accelnas.core.cli", "info", "b0", "--json"],
                                    capture_output=True, text=True, check=True).stdout)  # fmt: skip
    assert parse_architecture(str(shown)) == EFFICIENTNET_B0
    other = sample(1, 7)[0]
    shown.write_text(json.dumps({"id": other.id, "config": EFFICIENTNET_B0.to_config()}))
    with pytest.raises(InvalidArchitectureError, match=f"its id '{other.id}' is not that of its config"):
        parse_architecture(str(shown))
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(InvalidArchitectureError, match="invalid architecture JSON"):
        parse_architecture(str(broken))
    with pytest.raises(InvalidArchitectureError, match="not found"):
        parse_architecture(str(tmp_path / "missing.json"))
    binary = tmp_path / "arch.bin"
    binary.write_bytes(b"\xd0\xff{}")
    with pytest.raises(InvalidArchitectureError, match=r"cannot read architecture file .*UnicodeDecodeError"):
        parse_architecture(str(binary))


def test_anb_records_parse(anb_records):
    ids = {Architecture.from_config(r["architecture"]).id for r in anb_records}
    assert len(ids) > 0.99 * len(anb_records)


def test_sampling_and_vectors_refuse_what_they_would_misread():
    first = sample(1, 0)[0]
    assert sample(1, 0, exclude={first})[0] != first  # architectures, like their ids, are excluded
    assert sample(1, 0, exclude={first.id}) == sample(1, 0, exclude=[first])
    for bad in (2.5, float("nan"), True):
        with pytest.raises(TypeError, match="num must be a whole number"):
            sample(bad)
    with pytest.raises(TypeError, match="not one string"):
        sample(1, exclude=first.id)
    vector = list(EFFICIENTNET_B0.to_vector())
    assert Architecture.from_vector(vector) == EFFICIENTNET_B0
    se = FEATURE_NAMES.index("block0_se")
    for bad, message in ((2, "is not 0 or 1"), (-1, "is not 0 or 1"), (float("nan"), "is not integral"),
                         (float("inf"), "is not integral"), ("x", "is not a number")):  # fmt: skip
        wrong = list(vector)
        wrong[se] = bad
        with pytest.raises(InvalidArchitectureError, match=message):
            Architecture.from_vector(wrong)
