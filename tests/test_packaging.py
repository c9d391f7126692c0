"""Every Python package in the source tree ships in the distribution."""

from __future__ import annotations

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]
NOT_SHIPPED = {"tests", "benchmarks", "examples", "docs", "build", ".venv"}


def _source_packages() -> set[str]:
    found = {"accelnas"}
    for init in ROOT.rglob("__init__.py"):
        rel = init.parent.relative_to(ROOT)
        if not rel.parts or rel.parts[0] in NOT_SHIPPED or any(p.startswith(".") for p in rel.parts):
            continue
        found.add(".".join(("accelnas", *rel.parts)))
    return found


def test_every_package_is_listed_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    assert _source_packages() == listed


def test_every_builtin_plugin_has_an_entry_point() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    entry_points = config["project"]["entry-points"]["accelnas"]
    plugin_dirs = {p.parent.name for p in (ROOT / "plugins").glob("*/plugin.py")}
    assert plugin_dirs == set(entry_points)
    for name, target in entry_points.items():
        assert target == f"accelnas.plugins.{name}.plugin"
