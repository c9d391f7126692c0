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


def test_every_data_file_of_a_shipped_package_is_package_data() -> None:
    """Files the code reads beside its modules (recipes, board examples) reach a built wheel."""
    from fnmatch import fnmatch

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert config["tool"]["setuptools"]["include-package-data"] is False  # package-data is the whole list
    data = config["tool"]["setuptools"]["package-data"]
    packages = _source_packages()
    missing = []
    for package in sorted(packages - {"accelnas"}):
        folder = ROOT.joinpath(*package.split(".")[1:])
        for path in folder.rglob("*"):
            inner = path.relative_to(folder)
            nested = any(".".join((package, *inner.parts[: i + 1])) in packages for i in range(len(inner.parts) - 1))
            if path.is_dir() or path.suffix in {".py", ".pyc"} or "__pycache__" in inner.parts or nested:
                continue
            if not any(fnmatch(inner.as_posix(), pattern) for pattern in data.get(package, [])):
                missing.append(f"{package}: {inner.as_posix()}")
    assert missing == []
    assert data["accelnas"] == ["py.typed"] and (ROOT / "py.typed").is_file()
    assert data["accelnas.training"] == ["recipes/*.yaml"] and list((ROOT / "training" / "recipes").glob("*.yaml"))
