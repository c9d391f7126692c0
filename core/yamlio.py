"""YAML files that users write by hand (training recipes, proxy spaces, FPGA board files).

PyYAML's safe loader with two changes that keep a typo from being read as something else:
``1e-3`` and ``2.5e3`` (an exponent without a decimal point or without a sign) are numbers, as in
YAML 1.2 (YAML 1.1 reads them as text, so ``lr: 1e-3`` would be refused as not a number); and a key
given twice in one mapping is an error naming its line, where YAML loaders keep the last silently.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from accelnas.core.errors import first_line


class _Loader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # ``<<: *anchor``: merged by the safe loader below
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: the safe loader refuses it below
                break
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark, f"key {key!r} given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+.0123456789"),
)


def load(text: str) -> Any:
    """The data of YAML ``text``; :class:`yaml.YAMLError` where it is not valid (a duplicate key included)."""
    return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader


def problem(exc: yaml.YAMLError) -> str:
    """One line saying what is wrong and on which line, e.g. ``key 'lr' given twice (line 4)``."""
    mark = getattr(exc, "problem_mark", None)
    line = f" (line {mark.line + 1})" if mark is not None else ""
    return f"{getattr(exc, 'problem', None) or first_line(exc)}{line}"
