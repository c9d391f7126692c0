"""Parameter types and parsers shared by the command groups (core, search, training) and the benchmark scripts."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NoReturn

import click

from accelnas.core import files

# numpy, XGBoost, LightGBM, pymoo and torch all take a seed in this range
SEED = click.IntRange(0, 2**31 - 1)


class FiniteFloatRange(click.FloatRange):
    """A float (within optional bounds) that is a number: nan and ±inf are usage errors."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.min is None and self.max is None:
            self.name = "float"  # shown as FLOAT, with no range, like a plain float

    def _describe_range(self) -> str:
        return "" if self.min is None and self.max is None else super()._describe_range()

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


FINITE = FiniteFloatRange()
NON_NEGATIVE = FiniteFloatRange(min=0)
FRACTION = FiniteFloatRange(0, 1, min_open=True, max_open=True)
POSITIVE = FiniteFloatRange(min=0, min_open=True)


def _check_writable(folder: Path) -> None:
    """Raise :class:`click.BadParameter` unless a file can be created in ``folder`` (or, where it does not
    exist yet, in the nearest folder above it), without creating anything that stays."""
    existing = folder
    try:
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        is_dir = existing.is_dir()
    except OSError as exc:  # a folder on the way that cannot be entered
        raise click.BadParameter(f"cannot reach {folder}: {exc.strerror or exc}") from None
    if not is_dir:
        raise click.BadParameter(f"{existing} is not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise click.BadParameter(f"cannot write in {existing}: {exc.strerror or exc}") from None


def writable_folder(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """Click callback of an output folder: checked before the work that fills it."""
    if value is not None and not ctx.resilient_parsing:
        _check_writable(value)
    return value


def named_file(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """Click callback of a file path: an empty one (which names no file) is refused."""
    if value is not None and not ctx.resilient_parsing and not value.name:
        raise click.BadParameter("an empty path names no file")  # Path("") is Path("."), which click lets through
    return value


def writable_file(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """Click callback of an output file: a :func:`named_file` whose folder is checked before the work that
    writes it."""
    if named_file(ctx, param, value) is not None and not ctx.resilient_parsing:
        _check_writable(value.parent)  # Path("x.png").parent is Path(".")
    return value


def output_clash(out_dir: Path, names: Iterable[str], inputs: Iterable[str | Path | None]) -> Path | None:
    """The first output ``out_dir/NAME`` that is one of ``inputs`` (a command that would overwrite what
    it reads), or None."""
    given = {Path(p).resolve() for p in inputs if p}
    return next((out_dir / name for name in names if (out_dir / name).resolve() in given), None)


def parse_options(texts: tuple[str, ...]) -> tuple[tuple[str, Any], ...]:
    """``KEY=VALUE`` pairs as sorted settings options; values read as JSON when they parse (1, true); a key
    given twice with different values is refused."""
    parsed: dict[str, Any] = {}
    for text in texts:
        key, sep, raw = text.partition("=")
        key = key.strip()
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {text!r}", param_hint="--option")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        if isinstance(value, (list, dict)):
            value = raw
        if key in parsed and (type(parsed[key]), parsed[key]) != (type(value), value):  # 1 is not true
            raise click.BadParameter(f"{key} given twice ({parsed[key]!r}, then {value!r})", param_hint="--option")
        parsed[key] = value
    return tuple(sorted(parsed.items()))


# -- argparse types and runner of the benchmark scripts ---------------------------------------------
def at_least_one(text: str) -> int:
    """An argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def open_fraction(text: str) -> float:
    """An argparse type: a number strictly between 0 and 1."""
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {text}")
    return value


def _number(kind: click.ParamType, text: str) -> Any:
    """``text`` converted by a click type, its refusal an argparse usage error."""
    try:
        return kind.convert(text, None, None)
    except click.BadParameter as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def positive_number(text: str) -> float:
    """An argparse type: a finite number > 0."""
    return _number(POSITIVE, text)


def non_negative_number(text: str) -> float:
    """An argparse type: a finite number >= 0."""
    return _number(NON_NEGATIVE, text)


def seed(text: str) -> int:
    """An argparse type: a seed in the range of :data:`SEED`."""
    value = int(text)
    if not SEED.min <= value <= SEED.max:
        raise argparse.ArgumentTypeError(f"must be within {SEED.min}..{SEED.max}, got {value}")
    return value


def output_file(text: str) -> Path:
    """An argparse type: a file to write (with :func:`write_output`) at the end of a long run, in a folder that
    exists and can be written now, or one that exists and can be written (``/dev/stdout``); not a folder itself."""
    path = _output_path(text)
    if path.exists() and os.access(path, os.W_OK):
        return path
    return output_figure(text)


def write_output(path: Path, text: str) -> None:
    """Write an :func:`output_file` (UTF-8) as ``files.write_text`` does (replaced whole: a kill leaves the
    old file or the new one; a device or a pipe written into); a kept file in a folder that cannot take
    a new one is written in place."""
    path = Path(path)
    if path.is_file() and not os.access(path.resolve().parent, os.W_OK):  # no room beside it for a new one
        path.write_text(text, encoding="utf-8")
    else:
        files.write_text(path, text)


def output_figure(text: str) -> Path:
    """An argparse type: a figure to save at the end of a long run (replaced whole, through a new file
    beside it), in a folder that exists and can be written now; not a folder itself."""
    path = _output_path(text)
    _writable_folder(path.parent)
    return path


def _output_path(text: str) -> Path:
    path = Path(text)
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"folder {path.parent} does not exist")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a folder")
    return path


def output_folder(text: str) -> Path:
    """An argparse type: a folder to write into (created if missing), checked before the work that fills it."""
    return _writable_folder(Path(text))


def _writable_folder(path: Path) -> Path:
    """``path`` if it is a folder this process can write (created if missing); else an argparse error."""
    try:
        _check_writable(path)
    except click.BadParameter as exc:
        raise argparse.ArgumentTypeError(exc.message) from None
    return path


def run_script(main: Callable[[], int | None]) -> NoReturn:
    """Exit with ``main()``'s code; an accelnas error (bad input, a missing benchmark) is one line, exit 1."""
    from accelnas.core.errors import AccelnasError, first_line

    try:
        code = main()
    except AccelnasError as exc:
        sys.exit(f"error: {first_line(exc)}")
    sys.exit(code or 0)
