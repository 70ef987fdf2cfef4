"""Per-run figures of finished emoji runs that ``retrievalkit compare`` does not tabulate.

    python benchmarks/emoji_run_summary.py --out results/emoji/towers_summary.md \\
        --group "frozen Lite0, InfoNCE" RUN RUN RUN --group "..." RUN ...

Each RUN is a finished run directory of ``retrievalkit compare --search-quality`` (its
``metrics.json`` holds ``test``, ``test_by_style``, ``search_quality`` and the dev
sweep ``fusion_weight_sweep_dev``; its ``config.yaml`` the recipe). Per group, per
run and as mean ± sample std over the group's runs:

- the fusion weight the run chose on the DEV queries (``search_quality.image_weight``)
  and the test hit@5 of the four rankings (image only, hybrid, captions only, BM25),
  literal / paraphrase;
- "hybrid above both parts": hybrid's test hit@5 over all queries minus the better
  of image-only and captions-only;
- for a run trained with ``data.options.held_out_style``: the unseen style's test
  text->image R@5 over the mean of the seen styles' (the same test emoji).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RANKINGS = ("image", "fused", "captions", "bm25")
KINDS = ("literal", "paraphrase", "all")


def mean_std(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {spread:.2f}"


def run_row(run_dir: Path) -> dict[str, float]:
    """The figures of one finished run (see the module docstring)."""
    path = run_dir / "metrics.json"
    if not path.is_file():
        raise SystemExit(f"{path}: missing (not a finished run directory)")
    record = json.loads(path.read_text())
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    row: dict[str, float] = {"seed": float(config.get("seed", 0))}
    quality = record.get("search_quality")
    if quality is not None:
        row["dev-chosen image weight"] = float(quality["image_weight"])
        for ranking in RANKINGS:
            for kind in KINDS:
                row[f"{ranking} {kind}"] = 100 * float(quality[ranking][kind]["hit_rate"])
        parts = max(row["image all"], row["captions all"])
        row["hybrid - best part (all)"] = row["fused all"] - parts
    unseen = (config.get("data", {}).get("options") or {}).get("held_out_style")
    if unseen:
        by_style = {s: float(v["t2i_r5"]) for s, v in record["test_by_style"].items()}
        seen = [v for s, v in by_style.items() if s != unseen]
        row[f"t2i R@5 {unseen} (unseen)"] = by_style[unseen]
        row["t2i R@5 seen styles (mean)"] = statistics.mean(seen)
        row["held-out ratio"] = by_style[unseen] / statistics.mean(seen)
    return row


def group_table(name: str, runs: list[Path]) -> list[str]:
    rows = [run_row(run) for run in runs]
    keys = [k for k in rows[0] if k != "seed"]
    lines = [
        f"## {name}",
        "",
        "| figure | " + " | ".join(f"seed {int(r['seed'])}" for r in rows) + " | mean ± std |",
        "|---|" + "---|" * (len(rows) + 1),
    ]
    for key in keys:
        values = [r[key] for r in rows]
        lines.append(
            f"| {key} | " + " | ".join(f"{v:.2f}" for v in values) + f" | {mean_std(values)} |"
        )
    lines += ["", "runs: " + ", ".join(str(r) for r in runs), ""]
    return lines


def main(argv: list[str] | None = None) -> int:
    from retrievalkit.run.provenance import write_results

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--group",
        nargs="+",
        action="append",
        required=True,
        metavar=("NAME", "RUN"),
        help="a label and its run directories",
    )
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    lines = [
        "# Emoji runs: dev-chosen fusion weight, search on the test queries, held-out style",
        "",
        "hit@5 in % on the TEST part of the query set (51 literal, 49 paraphrase);",
        "the fusion weight of each run was chosen on the DEV part only. BM25 scores 0 on",
        "paraphrases by construction (no word shared with any target's CLDR name/keywords).",
        "",
    ]
    seeds: set[int] = set()
    for name, *runs in args.group:
        if not runs:
            raise SystemExit(f"--group {name!r}: give at least one run directory")
        lines += group_table(name, [Path(r) for r in runs])
        seeds |= {int(run_row(Path(r))["seed"]) for r in runs}
    body = "\n".join(lines)
    write_results(args.out, body, seeds=sorted(seeds))
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
