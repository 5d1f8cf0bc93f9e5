"""Reading params.yaml: strict YAML (no duplicate keys), and every problem as one line.

PyYAML is imported inside the functions: the exported train_gpt.py embeds the
typed config (and so this module) but runs without PyYAML.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from pipeline.config import ConfigError


@functools.cache
def _unique_key_loader() -> type:
    """A SafeLoader that refuses a key given twice in one mapping (YAML keeps the last silently)."""
    import yaml

    def construct_unique_mapping(loader: Any, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _value in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return loader.construct_mapping(node, deep=deep)

    loader = type("UniqueKeyLoader", (yaml.SafeLoader,), {})
    loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_unique_mapping)
    return loader


def read_params_yaml(path: Path) -> Any:
    """The parsed params file; every problem (not UTF-8, bad YAML, a duplicate key) is one line."""
    import yaml

    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} on line {line})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        return yaml.load(text, Loader=_unique_key_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {_yaml_summary(exc)}") from None


def _yaml_summary(exc: Exception) -> str:
    """'<problem> at line L, column C' from PyYAML's multi-line message (marks and a caret)."""
    problem = getattr(exc, "problem", None)
    if problem:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        context = f" ({exc.context})" if getattr(exc, "context", None) else ""
        return f"{problem}{context}{where}"
    return " ".join(str(exc).split())
