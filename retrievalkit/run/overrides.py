"""``--set key.path=value`` overrides applied to a recipe's plain data.

Values are parsed as YAML; a list item is addressed by its index
(``stages.0.epochs=1``), checked against the list's length.
"""

from __future__ import annotations

from typing import Any

import yaml

from retrievalkit.errors import ConfigError


def _override_child(node: Any, part: str, where: str, item: str) -> Any:
    """The child ``part`` of ``node`` (a mapping: created when absent; a list: an index
    in range), for ``--set item``; ``where`` is the path so far."""
    if isinstance(node, list):
        if not part.lstrip("-").isdigit() or not -len(node) <= int(part) < len(node):
            raise ConfigError(
                f"--set {item!r}: {where} is a list of {len(node)} items, "
                f"no index {part!r} (use 0..{len(node) - 1})"
            )
        return node[int(part)]
    if not isinstance(node, dict):
        raise ConfigError(f"--set {item!r}: {where} is not a mapping or list")
    return node.setdefault(part, {})


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` strings (values parsed as YAML) to a nested dict; a list
    item is addressed by its index (``stages.0.epochs=1``), checked."""
    raw = yaml.safe_load(yaml.safe_dump(raw))  # deep copy of plain data
    for item in overrides:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise ConfigError(f"--set {item!r}: expected key.path=value")
        node: Any = raw
        for depth, part in enumerate(parts[:-1]):
            node = _override_child(node, part, ".".join(parts[:depth]) or "the recipe", item)
        last, where = parts[-1], ".".join(parts[:-1]) or "the recipe"
        if isinstance(node, list):
            _override_child(node, last, where, item)  # checks the index
            node[int(last)] = yaml.safe_load(text)
        elif isinstance(node, dict):
            node[last] = yaml.safe_load(text)
        else:
            raise ConfigError(f"--set {item!r}: {where} is not a mapping or list")
    return raw
