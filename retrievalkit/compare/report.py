"""The results files of a comparison, and the records of runs trained elsewhere.

``write_comparison`` writes ``comparison.md`` (one table per group of scores, mean ±
sample std over seeds, the variants' overrides, every run's scores),
``comparison.json`` (the summaries) and ``comparison.png`` (bars with error bars);
both text files start with the provenance header (command, commit, date, machine,
seeds) of :mod:`retrievalkit.run.provenance`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from retrievalkit.compare.plan import Variant
from retrievalkit.compare.stats import (
    CHART_KEYS,
    GROUPS,
    RecipeSummary,
    group_of,
    metric_keys,
    record_scores,
    summarize,
)
from retrievalkit.errors import MissingFileError
from retrievalkit.run.provenance import write_results


def markdown_table(summaries: Sequence[RecipeSummary], keys: Sequence[str]) -> str:
    """``| recipe | seeds | key ... | wall time (s) |`` with ``mean ± std`` cells; the
    best mean per metric in bold."""
    walls = all("wall_s" in s.stats for s in summaries)
    header = ["recipe", "seeds", *keys, *(["train + test wall (s)"] if walls else [])]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    best = {k: max(s.stats[k].mean for s in summaries) for k in keys}
    for summary in summaries:
        cells = [summary.name, ",".join(map(str, summary.seeds))]
        for key in keys:
            text = summary.stats[key].format()
            cells.append(f"**{text}**" if summary.stats[key].mean == best[key] else text)
        if walls:
            cells.append(summary.stats["wall_s"].format(0))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def bar_chart(
    summaries: Sequence[RecipeSummary], keys: Sequence[str], out_path: Path, title: str = ""
) -> Path:
    """Grouped bars (one group per metric, one bar per recipe), error bars = std."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    shown = [k for k in CHART_KEYS if k in keys] or list(keys)[:4]
    width = 0.8 / max(len(summaries), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(shown) + 0.4 * len(summaries)), 4.8))
    x = np.arange(len(shown))
    palette = plt.get_cmap("tab10" if len(summaries) <= 10 else "tab20")
    for index, summary in enumerate(summaries):
        means = [summary.stats[k].mean for k in shown]
        stds = [summary.stats[k].std for k in shown]
        ax.bar(
            x + (index - (len(summaries) - 1) / 2) * width,
            means,
            width,
            yerr=stds,
            capsize=3,
            color=palette(index % palette.N),
            label=f"{summary.name} (n={len(summary.seeds)})",
        )
    ax.set_xticks(x, shown)
    ax.set_ylabel("test score (%), mean ± std over seeds")
    ax.set_title(title or "comparison")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2)
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return out_path


def write_comparison(
    records: dict[str, list[dict[str, Any]]],
    out: Path,
    command: str,
    variants: Sequence[Variant] = (),
) -> list[RecipeSummary]:
    """``comparison.md``, ``comparison.json`` and ``comparison.png`` under ``out``."""
    every = [r for rs in records.values() for r in rs]
    keys = metric_keys(every)
    summaries = [summarize(name, rs, keys) for name, rs in records.items()]
    chart = bar_chart(summaries, keys, out / "comparison.png", title=out.name)
    seeds = sorted({int(r["seed"]) for r in every})
    lines = [f"# Comparison: {', '.join(records)}", ""]
    lines += [
        "Mean ± sample std over seeds (best mean in bold); wall time = training + scoring",
        "of one run on this machine.",
        "",
    ]
    for group, title in GROUPS.items():
        shown = [k for k in keys if group_of(k) == group]
        if shown:
            lines += [f"## {title}", "", markdown_table(summaries, shown)]
    lines += [f"![chart]({chart.name})", ""]
    if variants:
        lines += ["## Variants", ""]
        for variant in variants:
            changes = " ".join(f"`--set {o}`" for o in variant.overrides) or "the recipe as is"
            label = f" ({variant.label})" if variant.label else ""
            lines.append(f"- {variant.name}{label}: {changes}")
        lines.append("")
    lines += _runs_table(records, keys)
    write_results(out / "comparison.md", "\n".join(lines), command=command, seeds=seeds)
    summary_json = {
        s.name: {k: {"mean": v.mean, "std": v.std, "n": v.n} for k, v in s.stats.items()}
        for s in summaries
    }
    write_results(out / "comparison.json", summary_json, command=command, seeds=seeds)
    return summaries


def _runs_table(records: dict[str, list[dict[str, Any]]], keys: Sequence[str]) -> list[str]:
    """``## Runs``: one row per run (``benchmarks/seed_stats.py`` reads it back)."""
    lines = [
        "## Runs",
        "",
        "| recipe | seed | " + " | ".join(keys) + " | wall (s) | resumed |",
        "|" + "---|" * (len(keys) + 4),
    ]
    for name, rs in records.items():
        for r in rs:
            scores = record_scores(r)
            cells = " | ".join(f"{scores[k]:.2f}" for k in keys)
            wall = f"{r['wall_s']:.0f}" if "wall_s" in r else "n/a"
            flag = "yes" if r.get("resumed") else "no"
            lines.append(f"| {name} | {r['seed']} | {cells} | {wall} | {flag} |")
    return lines


def read_run_dirs(run_dirs: Sequence[Path]) -> dict[str, list[dict[str, Any]]]:
    """Records of finished run directories (``metrics.json``), by recipe name, each
    with its seed (from the record, else the run's ``config.yaml``).

    Raises:
        MissingFileError: a directory has no ``metrics.json`` (not a finished run).
    """
    records: dict[str, list[dict[str, Any]]] = {}
    for run_dir in run_dirs:
        path = run_dir / "metrics.json"
        if not path.is_file():
            raise MissingFileError(f"{path}: missing (not a finished run directory)")
        record = json.loads(path.read_text())
        if "seed" not in record:
            config = yaml.safe_load((run_dir / "config.yaml").read_text())
            record["seed"] = config.get("seed", 0)
        records.setdefault(record["recipe"], []).append(record)
    return records
