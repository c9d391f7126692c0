"""Hand-written YAML: YAML 1.2 exponent numbers and duplicate keys refused with their line."""

from __future__ import annotations

import pytest
import yaml

from accelnas.core import yamlio


def test_exponent_numbers_read_as_numbers():
    data = yamlio.load("a: 1e-3\nb: 2.5E3\nc: 1e9\nd: -3e+2\ne: 0.5\nf: 1e3x\ng: '1e3'\n")
    assert data == {"a": 1e-3, "b": 2500.0, "c": 1e9, "d": -300.0, "e": 0.5, "f": "1e3x", "g": "1e3"}


@pytest.mark.parametrize(
    ("text", "key", "line"),
    [
        ("lr: 0.1\nepochs: 2\nlr: 0.2\n", "lr", 3),
        ("zcu102:\n  host: a\n  port: 22\n  host: b\n", "host", 4),
        ("- {x: 1, x: 2}\n", "x", 1),
    ],
)
def test_a_key_given_twice_is_refused_with_its_line(text, key, line):
    with pytest.raises(yaml.YAMLError) as caught:
        yamlio.load(text)
    assert yamlio.problem(caught.value) == f"key {key!r} given twice (line {line})"


def test_the_same_key_in_two_mappings_is_fine():
    assert yamlio.load("a: {x: 1}\nb: {x: 2}\n") == {"a": {"x": 1}, "b": {"x": 2}}
    with pytest.raises(yaml.YAMLError):  # as the safe loader: a mapping key must be hashable
        yamlio.load("? [1, 2]\n: 3\n")


def test_merge_keys_read_as_the_safe_loader_reads_them():
    """A board file sharing settings between entries with ``<<: *anchor``; a key set beside it wins."""
    text = "base: &b\n  port: 22\n  user: root\nzcu102:\n  <<: *b\n  port: 2222\nvck190:\n  <<: [*b, {x: 1}]\n"
    assert yamlio.load(text) == yaml.safe_load(text)
    assert yamlio.load(text)["zcu102"] == {"port": 2222, "user": "root"}
    with pytest.raises(yaml.YAMLError) as caught:  # a key given twice beside a merge is still refused
        yamlio.load("base: &b {x: 1}\nr:\n  <<: *b\n  y: 1\n  y: 2\n")
    assert yamlio.problem(caught.value) == "key 'y' given twice (line 5)"


def test_a_problem_without_a_mark_is_still_one_line():
    """A control character is a ReaderError, whose text spans two lines: a board file's reason is one line."""
    with pytest.raises(yaml.YAMLError) as caught:
        yamlio.load("host: a\x07b\n")
    assert yamlio.problem(caught.value) == "unacceptable character #x0007: special characters are not allowed"
