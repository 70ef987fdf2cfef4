"""Recipes shipped inside the package (``retrievalkit/configs/*.yaml``), found by name.

``resolve_recipe("emoji_vsepp")`` and ``resolve_recipe("configs/emoji_vsepp.yaml")``
both give a path: an existing file wins, otherwise a shipped recipe of that name.
"""

from __future__ import annotations

from pathlib import Path

from retrievalkit.errors import ConfigError

RECIPE_DIR = Path(__file__).resolve().parent.parent / "configs"


def shipped_recipes() -> list[str]:
    """Names of the recipes inside the package, sorted."""
    return sorted(path.stem for path in RECIPE_DIR.glob("*.yaml"))


def resolve_recipe(name_or_path: str | Path) -> Path:
    """A recipe file from a path or the name of a shipped recipe.

    Raises:
        ConfigError: neither a file nor a shipped recipe; lists the shipped names.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    text = str(name_or_path)
    stem = text[: -len(".yaml")] if text.endswith(".yaml") else text
    if "/" not in stem and (RECIPE_DIR / f"{stem}.yaml").is_file():
        return RECIPE_DIR / f"{stem}.yaml"
    raise ConfigError(
        f"recipe {text} does not exist (not a file, nor a shipped recipe: "
        f"{', '.join(shipped_recipes())})"
    )
