"""Score emoji checkpoints on each art style's view of the test split (held-out style).

    python benchmarks/emoji_style_views.py RUN [RUN ...] [--out FILE]

For runs trained with ``--set data.options.held_out_style=STYLE`` this is the
held-out-style protocol: text -> image R@5 on the unseen style against the mean
over the seen styles (same test emoji, each view scored on its own: one image
per emoji, the CLDR captions as queries). Goal in issue 10: ratio >= 0.80.
Several runs (e.g. seeds 0, 1, 2) give one row each and the mean ± sample std;
``--ratio-style openmoji`` gives the same ratio for runs that saw every style, and
``--json FILE --label NAME`` keeps the per-seed values for ``seed_stats.py``.
Printed and written under a provenance header to ``--out`` (default
``results/emoji/style_views.md``).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any


def score_run(path: Path, ratio_style: str | None) -> dict[str, Any]:
    """Per-style t2i / i2t R@5 of one run's best checkpoint, its seed and held-out style;
    ``ratio``: t2i R@5 of ``ratio_style`` (default: the held-out one) over the others' mean."""
    from retrievalkit.pipeline.build import build_transform, load_splits
    from retrievalkit.pipeline.evaluate import evaluate_cross_modal
    from retrievalkit.pipeline.load import load_model

    if (path / "checkpoints" / "best").is_dir():
        path = path / "checkpoints" / "best"
    loaded = load_model(path)
    data = loaded.config.data
    splits = load_splits(data)
    transform = build_transform("image", data, train=False)
    rows = {
        name.removeprefix("test_"): evaluate_cross_modal(loaded.model, split, transform)
        for name, split in splits.items()
        if name.startswith("test_")
    }
    if not rows:
        raise SystemExit(f"{path}: its data has no test_<style> views (trained on one style?)")
    held_out = data.options.get("held_out_style")
    result = {"run": str(path), "seed": loaded.config.seed, "held_out": held_out, "rows": rows}
    target = ratio_style or held_out
    if target:
        others = [r["t2i_r5"] for s, r in rows.items() if s != target]
        result["seen_t2i_r5"] = statistics.mean(others)
        result["ratio"] = rows[target]["t2i_r5"] / result["seen_t2i_r5"]
    return result


def mean_std(values: list[float], digits: int = 1) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {spread:.{digits}f}"


def main() -> None:
    from retrievalkit.run.provenance import stdout_to_results, write_results

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+", help="run directories or checkpoints")
    parser.add_argument("--out", type=Path, default=Path("results/emoji/style_views.md"))
    parser.add_argument(
        "--ratio-style",
        default=None,
        help="the style whose ratio to the others is given "
        "(default: the held-out style of the runs)",
    )
    parser.add_argument(
        "--json", type=Path, default=None, help="also per-seed scores for seed_stats.py (.json)"
    )
    parser.add_argument("--label", default="runs", help="the runs' name in --json")
    args = parser.parse_args()
    results = [score_run(run, args.ratio_style) for run in args.runs]
    if args.json is not None:
        runs = [
            {
                "recipe": args.label,
                "seed": r["seed"],
                "test": {
                    **{f"t2i_r5_{s}": v["t2i_r5"] for s, v in r["rows"].items()},
                    **{f"i2t_r5_{s}": v["i2t_r5"] for s, v in r["rows"].items()},
                    **({"ratio": r["ratio"]} if "ratio" in r else {}),
                },
            }
            for r in results
        ]
        write_results(args.json, {"runs": runs}, seeds=[r["seed"] for r in results])
    styles = list(results[0]["rows"])
    held = {r["held_out"] for r in results}
    with stdout_to_results(args.out, seeds=[r["seed"] for r in results]):
        print(f"# Test split per art style, held-out style: {', '.join(map(str, held))}\n")
        head = " | ".join(f"{s} t2i / i2t R@5" for s in styles)
        print(f"| run | seed | {head} | ratio (t2i R@5) |")
        print("|" + "---|" * (len(styles) + 3))
        for r in results:
            cells = " | ".join(
                f"{r['rows'][s]['t2i_r5']:.1f} / {r['rows'][s]['i2t_r5']:.1f}" for s in styles
            )
            ratio = f"{r['ratio']:.2f}" if "ratio" in r else "-"
            print(f"| {r['run']} | {r['seed']} | {cells} | {ratio} |")
        cells = " | ".join(
            mean_std([r["rows"][s]["t2i_r5"] for r in results])
            + " / "
            + mean_std([r["rows"][s]["i2t_r5"] for r in results])
            for s in styles
        )
        ratios = [r["ratio"] for r in results if "ratio" in r]
        ratio = mean_std(ratios, 2) if ratios else "-"
        print(f"| mean ± std | {len(results)} runs | {cells} | {ratio} |")
        if ratios:
            target = args.ratio_style or ", ".join(map(str, held))
            seen = mean_std([r["seen_t2i_r5"] for r in results])
            print(
                f"\nratio: t2i R@5 of {target} / mean t2i R@5 of the other styles ({seen}); "
                "goal for a held-out style: >= 0.80"
            )
        images = ", ".join(f"{s} {results[0]['rows'][s]['n_images']}" for s in styles)
        print(f"test emoji per view: {images}")


if __name__ == "__main__":
    main()
