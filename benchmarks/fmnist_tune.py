"""Choose each Fashion-MNIST loss's hyper-parameter on held-out *training* classes.

Same budget for every loss: three values of its main hyper-parameter (the one its
paper or library tunes: margin, temperature or the similarity threshold ``base``),
one seed, the recipe's own encoder, optimizer and 3 epochs. Training uses classes
0-2 of the training file and the scores are on classes 3-4 (``val_classes: 2``),
so the test classes 5-9 are never looked at. With 3 training classes a batch can
hold P = 3 classes, so batches are 3 x 42 = 126 images (the recipes: 5 x 25 = 125).

Each candidate is an ordinary ``retrievalkit compare`` run in
``OUT/<recipe>/<key>=<value>/``; finished runs are skipped, so several copies of
this script can run at once over the same ``--out`` (each takes the runs no other
copy holds) and a last call tabulates. Writes ``RESULTS/tuning_val.md`` (every candidate's
validation MAP@R and R@1, the chosen value per recipe) and ``RESULTS/tuning_chosen.json``
(``--results``, default ``results/fashion_mnist``), both under a provenance header.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fmnist_tune.py --out runs/fmnist_tune
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from retrievalkit.compare.execute import run_all
from retrievalkit.compare.plan import plan_runs
from retrievalkit.run.provenance import write_results

VALIDATION = [
    "data.options.val_classes=2",
    "data.test_split=val",
    "data.batch_size=126",
    "data.samples_per_class=42",
]
THRESHOLD = ("losses.0.options.base", (0.3, 0.5, 0.7))
TRIPLET_MARGIN = ("losses.0.options.margin", (0.05, 0.1, 0.2))
GRIDS: dict[str, tuple[str, tuple[float, ...]]] = {
    "fashion_mnist_ms": THRESHOLD,
    "fashion_mnist_ms_nomining": THRESHOLD,
    "fashion_mnist_binomial": THRESHOLD,
    "fashion_mnist_contrastive": ("losses.0.options.margin", (0.3, 0.5, 0.7)),
    "fashion_mnist_triplet": TRIPLET_MARGIN,
    "fashion_mnist_triplet_all": TRIPLET_MARGIN,
    "fashion_mnist_lifted": ("losses.0.options.margin", (0.5, 1.0, 1.5)),
    "fashion_mnist_smoothap": ("losses.0.options.temperature", (0.005, 0.01, 0.05)),
    "fashion_mnist_pml_ms": THRESHOLD,
    "fashion_mnist_pml_triplet": TRIPLET_MARGIN,
    # PML's contrastive works on Euclidean distance: d = sqrt(2 - 2 S) on the unit
    # sphere, so neg_margin 0.8 / 1.0 / 1.2 is S = 0.68 / 0.5 / 0.28.
    "fashion_mnist_pml_contrastive": ("losses.0.options.neg_margin", (0.8, 1.0, 1.2)),
}
SELECT_ON = "map_at_r"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--recipes", nargs="*", default=list(GRIDS), choices=list(GRIDS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--results",
        type=Path,
        default=Path("results/fashion_mnist"),
        help="where tuning_val.md and tuning_chosen.json go (default: %(default)s)",
    )
    args = parser.parse_args()
    rows: list[str] = []
    chosen: dict[str, dict[str, float]] = {}
    for recipe in args.recipes:
        key, values = GRIDS[recipe]
        scores: dict[float, dict[str, float]] = {}
        for value in values:
            out = args.out / recipe / f"{key.rsplit('.', 1)[-1]}={value}"
            runs = plan_runs([recipe], [0], [*VALIDATION, f"{key}={value}"], out)
            records = run_all(runs, args.device, progress=False)
            if records:
                scores[value] = next(iter(records.values()))[0]["test"]
        if len(scores) < len(values):
            print(f"{recipe}: {len(values) - len(scores)} candidate(s) still training elsewhere")
            continue
        best = max(values, key=lambda v: scores[v][SELECT_ON])
        chosen[recipe] = {key: best}
        for value in values:
            mark = " **chosen**" if value == best else ""
            s = scores[value]
            rows.append(
                f"| {recipe} | {key.rsplit('.', 1)[-1]} = {value}{mark} "
                f"| {s['map_at_r']:.2f} | {s['recall@1']:.2f} |"
            )
    table = [
        "| recipe | candidate | val MAP@R | val R@1 |",
        "|---|---|---|---|",
        *rows,
    ]
    write_results(args.results / "tuning_val.md", "\n".join(table), seeds=[0])
    write_results(args.results / "tuning_chosen.json", chosen, seeds=[0])
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
