"""Plain data (parsed YAML) into typed, frozen dataclasses, every mismatch named by path.

``build_dataclass(RunConfig, raw, "")`` converts each value to its field's annotation
(unions, literals, tuples, mappings, nested dataclasses, numbers written as strings)
and refuses unknown or missing keys with a :class:`~retrievalkit.errors.ConfigError`
naming the key path.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal

from retrievalkit.errors import ConfigError


def convert(value: Any, annotation: Any, path: str) -> Any:
    """Convert a YAML value to ``annotation``, naming ``path`` on a mismatch."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return convert(value, inner[0], path)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{path}: expected one of {list(args)}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        return tuple(convert(v, args[0], f"{path}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(annotation):
        return build_dataclass(annotation, value, path)
    if annotation is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if annotation is float and isinstance(value, str):
        try:  # PyYAML reads "1e-3" (no dot) as a string
            return float(value)
        except ValueError:
            raise ConfigError(f"{path}: expected a number, got {value!r}") from None
    if annotation in (int, str, bool) and not (
        isinstance(value, annotation) and not (annotation is int and isinstance(value, bool))
    ):
        raise ConfigError(f"{path}: expected {annotation.__name__}, got {value!r}")
    return value


def build_dataclass(cls: type, values: Any, path: str) -> Any:
    """``cls(**values)`` with every value converted to its field's type; unknown and
    missing keys are refused, naming their ``path``."""
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping for {cls.__name__}, got {values!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; known: {sorted(fields)}")
    kwargs = {}
    for name, fld in fields.items():
        sub = f"{path}.{name}" if path else name
        if name in values:
            kwargs[name] = convert(values[name], hints[name], sub)
        elif fld.default is dataclasses.MISSING and fld.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{sub}: required key is missing")
    return cls(**kwargs)
