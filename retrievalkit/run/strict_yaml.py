"""YAML for recipes: safe, a duplicate key is an error, errors name file:line:column.

PyYAML's ``safe_load`` keeps the last of two equal keys without a word, so a
recipe with ``lr`` written twice trains with whichever came last. Here that is a
:class:`ConfigError` naming both lines; a syntax error names the place and the
problem on one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from retrievalkit.errors import UserError


class YAMLInputError(UserError, ValueError):
    """Text that is not valid recipe YAML (syntax error, duplicate key)."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader whose mappings reject duplicate keys."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict:
    loader.flatten_mapping(node)
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first at line {seen[key]})",
                key_node.start_mark,
            )
        seen[key] = line
    return loader.construct_mapping(node, deep=True)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping
)


def load_yaml(text: str, source: str | Path) -> Any:
    """Parse ``text`` (from ``source``, used in messages) with unique keys."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else str(source)
        problem = err.problem or err.context or "not valid YAML"
        raise YAMLInputError(f"{where}: not valid YAML: {problem}") from None
    except yaml.YAMLError as err:
        raise YAMLInputError(f"{source}: not valid YAML: {err}") from None
