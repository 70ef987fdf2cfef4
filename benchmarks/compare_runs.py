"""Test scores of finished runs, one row per run and mean ± std per recipe (markdown).

    python benchmarks/compare_runs.py RUN_DIR [RUN_DIR ...]

Reads each run's ``metrics.json`` (written by ``retrievalkit train``: best-validation
checkpoint scored on the test split) and its seed from ``config.yaml``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

import yaml

COLUMNS = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "rsum")


def read_run(run: Path) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    seed = yaml.safe_load((run / "config.yaml").read_text()).get("seed")
    return {"run": run.name, "recipe": metrics["recipe"], "seed": seed, **metrics}


def mean_std(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", nargs="+", type=Path)
    runs = [read_run(run) for run in parser.parse_args().runs]
    print("| recipe | seed | best val rsum (epoch) | " + " | ".join(COLUMNS) + " |")
    print("|---" * (3 + len(COLUMNS)) + "|")
    by_recipe: dict[str, list[dict]] = defaultdict(list)
    for run in sorted(runs, key=lambda r: (r["recipe"], r["seed"])):
        by_recipe[run["recipe"]].append(run)
        cells = " | ".join(f"{run['test'][c]:.1f}" for c in COLUMNS)
        print(
            f"| {run['recipe']} | {run['seed']} | {run['best_val']:.1f} ({run['best_epoch']}) | "
            f"{cells} |"
        )
    print()
    print("| recipe | runs | " + " | ".join(COLUMNS) + " |")
    print("|---" * (2 + len(COLUMNS)) + "|")
    for recipe, group in by_recipe.items():
        cells = " | ".join(mean_std([r["test"][c] for r in group]) for c in COLUMNS)
        print(f"| {recipe} | {len(group)} | {cells} |")


if __name__ == "__main__":
    main()
