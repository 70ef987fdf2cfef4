"""Which runs a comparison holds: every recipe, each variant of it, each seed.

A variant is a named row of ``--set``-style overrides applied to a recipe (an
ablation row, a held-out style). Variants come from ``--variant NAME KEY=VALUE ...``
or a YAML file (a path, or the name of one shipped in ``retrievalkit/configs/variants``)::

    variants:
      vsepp:
        label: VSE++ (SH) on se        # optional, shown in the tables
        set: [model.options.generator=null, optim.groups=[]]
      full: {label: full mFSR}         # no overrides: the recipe as it is

Run directories: ``OUT/<recipe name>/seed<k>`` without variants,
``OUT/<recipe name>/<variant>/seed<k>`` with them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrievalkit.errors import ConfigError
from retrievalkit.run.config import RunConfig, load_config
from retrievalkit.run.recipes import RECIPE_DIR, resolve_recipe
from retrievalkit.run.strict_yaml import YAMLInputError, load_yaml

VARIANT_DIR = RECIPE_DIR / "variants"
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class Variant:
    """A named change of a recipe: ``overrides`` as ``--set`` takes them."""

    name: str
    overrides: tuple[str, ...] = ()
    label: str | None = None


@dataclass(frozen=True)
class PlannedRun:
    """One (recipe, variant, seed): its parsed config and run directory.

    ``name`` is the row the run belongs to: the recipe's name, or
    ``<recipe name>/<variant>``.
    """

    name: str
    seed: int
    config: RunConfig
    run_dir: Path
    variant: Variant | None = None


def variant_from_words(words: Sequence[str]) -> Variant:
    """``["NAME", "KEY=VALUE", ...]`` (one ``--variant``) -> :class:`Variant`."""
    name, *overrides = words
    _check_name(name, "--variant")
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--variant {name}: {item!r} is not KEY=VALUE")
    return Variant(name, tuple(overrides))


def _check_name(name: str, where: str) -> None:
    if not _NAME.match(name):
        raise ConfigError(f"{where}: variant name {name!r} must be letters, digits, _ . -")


def resolve_variants_file(name_or_path: str | Path) -> Path:
    """A variants file from a path or the name of a shipped one (``configs/variants``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = VARIANT_DIR / f"{str(name_or_path).removesuffix('.yaml')}.yaml"
    if shipped.is_file():
        return shipped
    known = ", ".join(sorted(p.stem for p in VARIANT_DIR.glob("*.yaml")))
    raise ConfigError(f"variants {name_or_path}: not a file, nor a shipped one ({known})")


def load_variants(name_or_path: str | Path) -> list[Variant]:
    """The variants of a YAML file (see the module docstring), in file order.

    Raises:
        ConfigError: the file is missing or malformed; the message names the key.
    """
    path = resolve_variants_file(name_or_path)
    try:
        raw: Any = load_yaml(path.read_text(encoding="utf-8"), path)
    except YAMLInputError as err:
        raise ConfigError(str(err)) from None
    if not isinstance(raw, dict) or not isinstance(raw.get("variants"), dict):
        raise ConfigError(f"{path}: expected a mapping 'variants: {{name: {{set: [...]}}}}'")
    variants = []
    for name, body in raw["variants"].items():
        where = f"{path}: variants.{name}"
        _check_name(str(name), where)
        body = body or {}
        if not isinstance(body, dict) or set(body) - {"set", "label"}:
            raise ConfigError(f"{where}: expected keys 'set' (a list) and 'label'")
        overrides = body.get("set") or []
        if not isinstance(overrides, list) or not all(
            isinstance(o, str) and "=" in o for o in overrides
        ):
            raise ConfigError(f"{where}.set: expected a list of 'key.path=value' strings")
        variants.append(Variant(str(name), tuple(overrides), body.get("label")))
    return variants


def plan_runs(
    recipes: Sequence[str],
    seeds: Sequence[int],
    overrides: Sequence[str],
    out: Path,
    variants: Sequence[Variant] = (),
) -> list[PlannedRun]:
    """Every (recipe, variant, seed): ``--set`` overrides, then the variant's, then
    ``seed=<k>`` applied.

    Raises:
        ConfigError: a recipe is missing or malformed, two recipes share a name, or
            two variants share a name.
    """
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ConfigError(f"variant names must differ, got {names}")
    runs: list[PlannedRun] = []
    owners: dict[str, str] = {}
    for recipe in recipes:
        path = resolve_recipe(recipe)
        for variant in variants or [None]:
            changes = list(variant.overrides) if variant else []
            for seed in seeds:
                config = load_config(path, [*overrides, *changes, f"seed={seed}"])
                if owners.setdefault(config.name, recipe) != recipe:
                    raise ConfigError(
                        f"recipes {owners[config.name]} and {recipe} are both named "
                        f"{config.name!r}; give one another name (--set cannot, use a copy)"
                    )
                name = f"{config.name}/{variant.name}" if variant else config.name
                run_dir = out / name / f"seed{seed}"
                runs.append(PlannedRun(name, seed, config, run_dir, variant))
    return runs
