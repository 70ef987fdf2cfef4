"""Explicit name -> factory registries (losses, encoders, datasets, ...).

A registry is an ordinary object owned by the module that defines the family
(no global table of registries). Registering a name twice is an error, and an
unknown name lists the known ones.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from retrievalkit.errors import OptionsError, UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories of one family, e.g. ``LOSSES = Registry("loss")``."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator: ``@LOSSES.register("vsepp")`` on a class or factory function."""

        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ValueError(
                    f"{self.kind} {name!r} is registered twice "
                    f"({self._factories[name]!r} and {factory!r})"
                )
            self._factories[name] = factory
            return factory

        return decorator

    def get(self, name: str) -> Callable[..., T]:
        try:
            return self._factories[name]
        except KeyError:
            known = ", ".join(sorted(self._factories)) or "(none)"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def build(self, name: str, **kwargs: Any) -> T:
        """Build ``name`` with keyword arguments; a wrong argument names the factory.

        Options the factory does not take are an :class:`OptionsError` (bad input);
        a ``TypeError`` from inside a factory that accepted them stays a bug.
        """
        factory = self.get(name)
        try:
            inspect.signature(factory).bind(**kwargs)
        except TypeError as err:
            raise OptionsError(f"cannot build {self.kind} {name!r} with {kwargs}: {err}") from None
        except ValueError:  # no signature to check (a builtin): let the call decide
            pass
        try:
            return factory(**kwargs)
        except TypeError as err:
            raise TypeError(f"cannot build {self.kind} {name!r} with {kwargs}: {err}") from err

    def names(self) -> list[str]:
        return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
