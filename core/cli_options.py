"""Parameter types and parsers shared by the command groups (core, search, training)."""

from __future__ import annotations

import json
from typing import Any

import click

# numpy, XGBoost, LightGBM, pymoo and torch all take a seed in this range
SEED = click.IntRange(0, 2**31 - 1)


def parse_options(texts: tuple[str, ...]) -> tuple[tuple[str, Any], ...]:
    """``KEY=VALUE`` pairs as sorted settings options; values read as JSON when they parse (1, true)."""
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
        parsed[key] = value
    return tuple(sorted(parsed.items()))
