"""The import graph of ``retrievalkit/`` has no circle and no import back up a layer.

Layers, top to bottom (``tools/layers.py``, drawn in ARCHITECTURE.md): front ends
(``commands``, ``serve``, ``cli``, ``api``, the package root) -> ``training`` and
``compare`` -> ``pipeline`` and ``search`` -> the parts (``models``, ``data``,
``losses``, ``eval``, ``index``, ``run`` and the shared ``errors`` / ``registry``
modules). A module may import its own layer or any layer below. Every ``import``
counts, also those inside functions (a lazy import is still a dependency); the
graph is read with ``ast``, nothing is imported. One edge is not a circle: a module importing its own package's
``__init__`` (the registries do, ``import retrievalkit.losses  # registers every
loss``, so that the built-ins are registered before a name is looked up); an
``__init__`` only gathers its package.
"""

from __future__ import annotations

import pytest
from layers import RANK, graph, modules, room  # tools/layers.py: the layers, defined once


def test_every_room_has_a_layer():
    unplaced = sorted({room(m) for m in modules()} - set(RANK))
    assert not unplaced, f"rooms with no layer in tools/layers.py: {unplaced}"


def test_no_import_runs_up_a_layer():
    upward = [
        f"{source} ({room(source) or 'root'}) imports {target} ({room(target)})"
        for source, targets in graph().items()
        for target in sorted(targets)
        if RANK.get(room(target), -1) > RANK.get(room(source), -1)
    ]
    assert not upward, "imports back up the layers:\n" + "\n".join(upward)


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import circle (its modules in order, first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def own_package(source: str, target: str) -> bool:
    """``retrievalkit.data.registry`` -> ``retrievalkit.data``: a module and its package."""
    return target != "retrievalkit" and source.startswith(target + ".")


def test_no_import_circle():
    edges = {s: {t for t in ts if not own_package(s, t)} for s, ts in graph().items()}
    cycle = find_cycle(edges)
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize(
    ("edges", "expected"),
    [({"a": {"b"}, "b": {"c"}, "c": set()}, None), ({"a": {"b"}, "b": {"a"}}, ["a", "b", "a"])],
)
def test_find_cycle_finds_a_circle(edges, expected):
    assert find_cycle(edges) == expected
