"""Aggregate `retrievalkit demo` runs over seeds: test scores and search quality, mean +- std.

    python benchmarks/emoji_demo_seeds.py RUN_SEED0 RUN_SEED1 RUN_SEED2 \
        [--held-out RUN_HELD_OUT_STYLE] [--weight W]

Each RUN is a finished `retrievalkit demo --out RUN --set seed=S` directory
(metrics.json + index/). The fusion weight is chosen on the DEV part of the query
set only (the weight with the best mean dev hit@5 over the runs, all queries;
ties -> the smaller weight), unless --weight is given; then every ranking is
scored on the TEST part with that weight. --held-out names a run trained with
`--set data.options.held_out_style=STYLE`: its test text->image R@5 on the unseen
style is compared with its mean over the seen styles (same test emoji).
Prints Markdown tables (std = sample standard deviation over the runs).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

RANKINGS = (
    ("image", "trained model, image embeddings only"),
    ("fused", "hybrid: fused image + caption embeddings"),
    ("captions", "caption embeddings only (frozen MiniLM vs CLDR captions)"),
    ("bm25", "BM25 over CLDR names and keywords"),
)
KINDS = ("literal", "paraphrase", "all")


def mean_std(values: list[float], scale: float = 1.0) -> str:
    values = [v * scale for v in values]
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1f} ± {spread:.1f}"


def choose_weight(runs: list[dict[str, Any]]) -> float:
    """The dev-best fusion weight (mean dev hit@5 over all dev queries and runs)."""
    sweeps = [run["fusion_weight_sweep_dev"] for run in runs]
    weights = sorted(sweeps[0], key=float)
    return float(
        max(weights, key=lambda w: (statistics.mean(s[w]["all"] for s in sweeps), -float(w)))
    )


def search_quality(run_dir: Path, weight: float) -> dict[str, Any]:
    from retrievalkit.search import SearchEngine
    from retrievalkit.search.quality import compare_rankings

    engine = SearchEngine(run_dir / "index")
    splits = _splits(engine)
    queries = json.loads((run_dir / "metrics.json").read_text())["search_quality"]["queries"]
    return compare_rankings(engine, splits, queries, "test", weight)


def _splits(engine: Any) -> dict[str, Any]:
    from retrievalkit.pipeline.build import load_splits

    return load_splits(engine.loaded.config.data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--held-out", type=Path, default=None)
    parser.add_argument("--weight", type=float, default=None)
    args = parser.parse_args()
    metrics = [json.loads((run / "metrics.json").read_text()) for run in args.runs]
    weight = args.weight if args.weight is not None else choose_weight(metrics)
    print(f"runs: {', '.join(map(str, args.runs))}; fusion weight {weight:.1f} (dev-chosen)")
    print("\nDev sweep of the fusion weight (mean hit@5 over runs, literal / paraphrase, %):")
    sweeps = [m["fusion_weight_sweep_dev"] for m in metrics]
    print(
        "; ".join(
            f"{w}: "
            + " / ".join(f"{100 * statistics.mean(s[w][k] for s in sweeps):.1f}" for k in KINDS[:2])
            for w in sorted(sweeps[0], key=float)
        )
    )
    print(
        "\n| test split | "
        + " | ".join(f"seed run {i}" for i in range(len(metrics)))
        + " | mean ± std |"
    )
    print("|---|" + "---|" * (len(metrics) + 1))
    for key in ("rsum", "t2i_r1", "t2i_r5", "i2t_r1", "i2t_r5"):
        values = [m["test"][key] for m in metrics]
        print(f"| {key} | " + " | ".join(f"{v:.1f}" for v in values) + f" | {mean_std(values)} |")
    styles = list(metrics[0].get("test_by_style", {}))
    for style in styles:
        values = [m["test_by_style"][style]["t2i_r5"] for m in metrics]
        print(
            f"| t2i R@5, {style} view | "
            + " | ".join(f"{v:.1f}" for v in values)
            + f" | {mean_std(values)} |"
        )
    quality = [search_quality(run, weight) for run in args.runs]
    q0 = quality[0]
    print(
        f"\nSearch, TEST part: {q0['num_queries']} queries "
        f"({q0['image']['literal']['count']} literal, {q0['image']['paraphrase']['count']} "
        "paraphrase); hit@5 in %, mean ± std over the runs:"
    )
    print("\n| ranking | literal | paraphrase | all |")
    print("|---|---|---|---|")
    for name, label in RANKINGS:
        cells = [mean_std([q[name][k]["hit_rate"] for q in quality], 100) for k in KINDS]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print("\nper run (image / fused / captions / bm25, literal | paraphrase):")
    for run, q in zip(args.runs, quality, strict=True):
        print(
            f"  {run}: "
            + " | ".join(
                " / ".join(f"{100 * q[name][k]['hit_rate']:.1f}" for name, _ in RANKINGS)
                for k in KINDS[:2]
            )
        )
    if args.held_out is not None:
        import yaml

        held = json.loads((args.held_out / "metrics.json").read_text())
        recipe = yaml.safe_load((args.held_out / "checkpoints/best/config.yaml").read_text())
        unseen = recipe["data"]["options"]["held_out_style"]
        by_style = held["test_by_style"]
        seen = {s: r["t2i_r5"] for s, r in by_style.items() if s != unseen}
        ratio = by_style[unseen]["t2i_r5"] / statistics.mean(seen.values())
        print(
            f"\nHeld-out style {unseen} ({args.held_out}): t2i R@5 unseen {by_style[unseen]['t2i_r5']:.1f} "
            f"vs seen styles {', '.join(f'{s} {v:.1f}' for s, v in seen.items())} "
            f"(mean {statistics.mean(seen.values()):.1f}): ratio {ratio:.2f} (goal >= 0.80)"
        )


if __name__ == "__main__":
    main()
