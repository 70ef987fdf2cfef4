"""Same recipes, same seed, two commits: are the test metrics equal? (issue 19)

    python benchmarks/behaviour_check.py BEFORE AFTER [AFTER ...] [--out FILE]

Each commit's tree is exported with ``git archive`` into ``runs/behaviour/<commit>/src``
and each recipe is trained from it (``python -m retrievalkit train``, one thread, CPU,
seed 0) with the overrides below, which shrink the shipped recipe to about a minute.
A commit's finished run (its ``metrics.json``) is reused on a second call. The table
puts every test metric of the commits side by side, each later one's difference to
BEFORE, and says for each later commit whether every metric is equal.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from retrievalkit.run.provenance import write_results

ROOT = Path(__file__).resolve().parent.parent
RECIPES = {
    "fashion_mnist_ms": [
        "epochs=1",
        "data.options.limit=20000",
        "seed=0",
    ],
    "emoji_vsepp": [
        "data.options.limit=800",
        "data.options.styles=[noto]",
        "stages.0.epochs=1",
        "stages.1.epochs=1",
        "seed=0",
    ],
}


def git(*words: str) -> str:
    return subprocess.run(["git", *words], cwd=ROOT, check=True, capture_output=True, text=True)


def export(commit: str, work: Path) -> Path:
    """The tree of ``commit`` under ``work/src`` (exported once)."""
    src = work / "src"
    if not src.is_dir():
        src.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "archive", commit], cwd=ROOT, check=True, capture_output=True
        )
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, check=True)
        (src / "cache").symlink_to(ROOT / "cache")
    return src


def train(commit: str, recipe: str, overrides: list[str], work: Path) -> dict:
    """Test metrics of ``recipe`` trained from ``commit``'s tree (cached in its run dir)."""
    run_dir = work / recipe
    metrics = run_dir / "metrics.json"
    if not metrics.is_file():
        src = export(commit, work)
        env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        sets = [w for o in overrides for w in ("--set", o)]
        command = [sys.executable, "-m", "retrievalkit", "train", recipe, *sets]
        command += ["--out", str(run_dir), "--device", "cpu", "--no-progress"]
        subprocess.run(command, cwd=src, env=env, check=True, stdout=subprocess.DEVNULL)
    return json.loads(metrics.read_text())["test"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after", nargs="+")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "structure" / "behaviour.md")
    args = parser.parse_args()
    first, *later = [
        git("rev-parse", "--short=12", c).stdout.strip() for c in (args.before, *args.after)
    ]
    lines = [
        "# Behaviour check: the same recipes at several commits (issue 19)",
        "",
        f"Trained from commit {first} (before) and {', '.join(later)}, each with",
        "`retrievalkit train RECIPE --set ... --device cpu`, OMP_NUM_THREADS=1, seed 0.",
        "",
    ]
    equal = dict.fromkeys(later, True)
    for recipe, overrides in RECIPES.items():
        runs = {
            c: train(c, recipe, overrides, ROOT / "runs" / "behaviour" / c) for c in [first, *later]
        }
        lines += [
            f"## {recipe} (`--set {' --set '.join(overrides)}`)",
            "",
            "| metric | "
            + " | ".join([first, *later])
            + " | "
            + " | ".join(f"{c} - {first}" for c in later)
            + " |",
            "|---" * (2 + 2 * len(later)) + "|",
        ]
        for key in sorted(set().union(*(r.keys() for r in runs.values()))):
            b = runs[first].get(key)
            cells, diffs = [str(b)], []
            for c in later:
                a = runs[c].get(key)
                numbers = isinstance(a, int | float) and isinstance(b, int | float)
                diffs.append(f"{a - b:+.3g}" if numbers else ("same" if a == b else "differs"))
                cells.append(str(a))
                equal[c] &= a == b
            lines.append(f"| {key} | " + " | ".join(cells + diffs) + " |")
        lines.append("")
    for c in later:
        lines.append(f"All metrics of {c} equal to {first}'s: {'yes' if equal[c] else 'NO'}  ")
    write_results(args.out, "\n".join(lines), seeds=[0])
    print("\n".join(lines))


if __name__ == "__main__":
    main()
