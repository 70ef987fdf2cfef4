"""The package's layers, read from its imports: the one definition the layer test and
ARCHITECTURE.md's picture share.

    python tools/layers.py            # print the picture
    python tools/layers.py --write    # put it into ARCHITECTURE.md (between its markers)

Every ``import`` under ``retrievalkit/`` counts, also inside functions (a lazy import is
still a dependency); the source is read with ``ast``, nothing is imported.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "retrievalkit"
# top to bottom; a room may import its own layer or any layer below
LAYERS: dict[str, tuple[str, ...]] = {
    "front ends": ("", "__main__", "api", "cli", "commands", "serve", "export"),
    "training": ("training", "compare"),
    "search": ("pipeline", "search"),
    "parts": (
        "models",
        "data",
        "losses",
        "eval",
        "index",
        "run",
        "errors",
        "registry",
        "bench_names",
    ),
}
RANK = {room: len(LAYERS) - i for i, rooms in enumerate(LAYERS.values()) for room in rooms}
BEGIN, END = "<!-- layers:begin (tools/layers.py --write) -->", "<!-- layers:end -->"


def module_name(path: Path) -> str:
    parts = ["retrievalkit", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, known: set[str]) -> set[str]:
    """The package's modules ``path`` imports (``from a import b``: ``a.b`` when a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
    return {name for name in found if name in known}


def room(module: str) -> str:
    """``retrievalkit.training.trainer`` -> ``training``; the root package -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports."""
    found = modules()
    return {name: imports(path, set(found)) for name, path in found.items()}


def room_graph() -> dict[str, set[str]]:
    """Room -> the other rooms it imports."""
    rooms: dict[str, set[str]] = {}
    for source, targets in graph().items():
        rooms.setdefault(room(source), set()).update(room(t) for t in targets)
    return {r: deps - {r} for r, deps in rooms.items()}


def picture() -> str:
    """The layers top to bottom, each room with the rooms it imports."""
    rooms = room_graph()
    lines = []
    for index, (layer, members) in enumerate(LAYERS.items()):
        if index:
            lines.append("        |  imports only downwards")
            lines.append("        v")
        lines.append(f"{layer.upper()}")
        for member in members:
            if member not in rooms:
                continue
            deps = sorted(rooms[member], key=lambda r: (-RANK.get(r, 0), r))
            name = member or "retrievalkit (root)"
            lines.append(f"  {name:<20} -> {', '.join(d or 'root' for d in deps) or '-'}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="update ARCHITECTURE.md")
    args = parser.parse_args()
    text = picture()
    if not args.write:
        print(text)
        return
    path = ROOT / "ARCHITECTURE.md"
    doc = path.read_text(encoding="utf-8")
    head, _, rest = doc.partition(BEGIN)
    _, _, tail = rest.partition(END)
    path.write_text(f"{head}{BEGIN}\n```\n{text}\n```\n{END}{tail}", encoding="utf-8")


if __name__ == "__main__":
    main()
