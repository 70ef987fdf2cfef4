"""Do the seeds support a comparison? Welch and paired t-tests from kept per-seed scores.

    python benchmarks/seed_stats.py --source results/fashion_mnist/losses_3seeds.md \
        --pair fashion_mnist_triplet fashion_mnist_pml_contrastive --metric map_at_r \
        --out results/fashion_mnist/stats_losses.md

Sources (repeatable ``--source``), each giving per-seed test scores per recipe:
- a ``comparison.md`` written by ``retrievalkit compare`` (its ``## Runs`` table);
- a ``retrievalkit compare --out`` directory (``RECIPE/seedS/metrics.json``, ``test``);
- a ``.json`` results file whose ``results.runs`` is a list of
  ``{"recipe", "seed", "test": {metric: value}}`` (e.g. ``fmnist_plain_loop.py``'s).
- a per-seed column table ``| test split | seed run 0 | ... |`` (e.g.
  a demo seed table), its recipe named by the file's stem;
- ``--summary FILE``: a table of ``mean ± std`` cells with a ``seeds`` column (the
  count), e.g. the test split table of a compare ``comparison.md``; only Welch's test is possible
  from it (computed from the rounded mean, std and n), and the output says so.
``--rename SOURCE:OLD=NEW`` gives a recipe another label (two sources holding the same recipe
name at different settings). Every ``--pair A B`` is tested on every ``--metric``:
Welch's t-test (unequal variances, two-sided) and, when both have the same seeds, a
paired t-test over seeds (seed s of A against seed s of B), shown for information.
The verdict is Welch's: "established" when p < 0.05, else "not established". The output file
(``--out``, under ``results/``) carries the provenance header and the per-seed values
the tests used, so the p-values can be checked by hand.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from scipy import stats

from retrievalkit.run.provenance import write_results

Scores = dict[str, dict[int, dict[str, float]]]  # recipe -> seed -> metric -> value


def fmt_p(p: float | None) -> str:
    """A p-value to three decimals, ``<0.001`` below that, ``-`` when there is none."""
    if p is None:
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def read_comparison_md(path: Path) -> Scores:
    """Per-seed scores from the ``## Runs`` table of a ``retrievalkit compare`` file."""
    lines = path.read_text().splitlines()
    try:
        start = lines.index("## Runs")
    except ValueError:
        raise ValueError(f"{path}: no '## Runs' table (not a retrievalkit compare file)") from None
    table = [line for line in lines[start + 1 :] if line.startswith("|")]
    header = _cells(table[0])
    if header[:2] != ["recipe", "seed"]:
        raise ValueError(f"{path}:{start + 3}: expected the columns 'recipe | seed | ...'")
    metrics = [h for h in header[2:] if h not in ("wall (s)", "resumed")]
    out: Scores = {}
    for line in table[2:]:
        row = dict(zip(header, _cells(line)))
        values = {m: float(row[m]) for m in metrics}
        out.setdefault(row["recipe"], {})[int(row["seed"])] = values
    return out


def read_compare_dir(path: Path) -> Scores:
    """Per-seed test scores from ``DIR/RECIPE/seedS/metrics.json`` (plus ``best_val``,
    ``best_epoch`` and ``wall_s`` of each run, when recorded)."""
    out: Scores = {}
    for metrics in sorted(path.glob("*/seed*/metrics.json")):
        seed = int(metrics.parent.name.removeprefix("seed"))
        record = json.loads(metrics.read_text())
        numbers = {k: float(v) for k, v in record["test"].items() if isinstance(v, (int, float))}
        for key in ("best_val", "best_epoch", "wall_s"):  # the run's own facts, for --show
            if isinstance(record.get(key), (int, float)):
                numbers[key] = float(record[key])
        out.setdefault(metrics.parent.parent.name, {})[seed] = numbers
    if not out:
        raise ValueError(f"{path}: no RECIPE/seedS/metrics.json below it")
    return out


def read_runs_json(path: Path) -> Scores:
    """Per-seed scores from a results file ``{"results": {"runs": [...]}}``."""
    out: Scores = {}
    for i, run in enumerate(json.loads(path.read_text())["results"]["runs"]):
        try:
            test = {k: float(v) for k, v in run["test"].items()}
            out.setdefault(run["recipe"], {})[int(run["seed"])] = test
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path}: results.runs[{i}]: expected recipe, seed, test") from err
    return out


@dataclass(frozen=True)
class Summary:
    """A recipe's metric as printed in a summary table: mean, sample std, seed count."""

    mean: float
    std: float
    n: int


def read_summary_md(path: Path) -> dict[str, dict[str, Summary]]:
    """``row -> metric -> Summary`` from a Markdown table of ``mean ± std`` cells."""
    table = [line for line in path.read_text().splitlines() if line.startswith("|")]
    header = _cells(table[0])
    if "seeds" not in header:
        raise ValueError(f"{path}: the summary table needs a 'seeds' (count) column")
    out: dict[str, dict[str, Summary]] = {}
    for line in table[2:]:
        row = dict(zip(header, _cells(line)))
        n = int(row["seeds"])
        out[row[header[0]]] = {
            k: Summary(*(float(x.strip("* ")) for x in v.split("±")), n)
            for k, v in row.items()
            if "±" in v
        }
    return out


def read_seed_columns(path: Path) -> Scores:
    """Per-seed scores from a table ``| test split | seed run 0 | seed run 1 | ... |``
    (one metric per row; e.g. ``results/emoji/demo_3seeds.md``), under the recipe
    name ``path.stem``."""
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| test split |"))
    header = _cells(lines[start])
    seeds = {
        i: int(h.removeprefix("seed run "))
        for i, h in enumerate(header)
        if h.startswith("seed run ")
    }
    out: dict[int, dict[str, float]] = {seed: {} for seed in seeds.values()}
    for number, line in enumerate(lines[start + 2 :], start + 3):
        if not line.startswith("|"):
            break
        cells = _cells(line)
        try:
            for column, seed in seeds.items():
                out[seed][cells[0]] = float(cells[column])
        except (IndexError, ValueError) as err:
            raise ValueError(f"{path}:{number}: expected a number per 'seed run' column") from err
    return {path.stem: out}


def read_source(path: Path) -> Scores:
    if path.is_dir():
        return read_compare_dir(path)
    if path.suffix == ".json":
        return read_runs_json(path)
    if any(line.startswith("| test split |") for line in path.read_text().splitlines()):
        return read_seed_columns(path)
    return read_comparison_md(path)


@dataclass(frozen=True)
class Test:
    """One comparison of recipe ``a`` against ``b`` on ``metric``."""

    a: str
    b: str
    metric: str
    a_values: list[float]
    b_values: list[float]
    welch_t: float
    welch_df: float
    welch_p: float
    paired_p: float | None

    def row(self) -> str:
        def ms(v: list[float]) -> str:
            return f"{statistics.mean(v):.2f} ± {statistics.stdev(v):.2f}"

        diff = statistics.mean(self.a_values) - statistics.mean(self.b_values)
        verdict = "established (p < 0.05)" if self.welch_p < 0.05 else "not established"
        return (
            f"| {self.metric} | {self.a} | {ms(self.a_values)} | {self.b} | {ms(self.b_values)} "
            f"| {diff:+.2f} | {self.welch_t:.2f} | {self.welch_df:.1f} | {fmt_p(self.welch_p)} "
            f"| {fmt_p(self.paired_p)} | {verdict} |"
        )


def compare(scores: Scores, a: str, b: str, metric: str) -> Test:
    """Welch's t-test of ``a`` vs ``b`` on ``metric``; paired too when the seeds match."""
    for name in (a, b):
        if name not in scores:
            raise ValueError(f"--pair: no recipe {name!r} in the sources ({sorted(scores)})")
        if len(scores[name]) < 2:
            raise ValueError(f"--pair: {name!r} has {len(scores[name])} seed(s); need >= 2")
    av = [scores[a][s][metric] for s in sorted(scores[a])]
    bv = [scores[b][s][metric] for s in sorted(scores[b])]
    welch = stats.ttest_ind(av, bv, equal_var=False)
    va, vb = statistics.variance(av) / len(av), statistics.variance(bv) / len(bv)
    df = (va + vb) ** 2 / (va**2 / (len(av) - 1) + vb**2 / (len(bv) - 1)) if va + vb else math.inf
    paired = None
    if sorted(scores[a]) == sorted(scores[b]):
        paired = float(stats.ttest_rel(av, bv).pvalue)
    return Test(a, b, metric, av, bv, float(welch.statistic), df, float(welch.pvalue), paired)


def compare_summary(table: dict[str, dict[str, Summary]], a: str, b: str, metric: str) -> str:
    """One result row of Welch's test from summary statistics (no paired test possible)."""
    for name in (a, b):
        if name not in table:
            raise ValueError(f"--pair: no row {name!r} in the summary ({sorted(table)})")
    x, y = table[a][metric], table[b][metric]
    welch = stats.ttest_ind_from_stats(x.mean, x.std, x.n, y.mean, y.std, y.n, equal_var=False)
    va, vb = x.std**2 / x.n, y.std**2 / y.n
    df = (va + vb) ** 2 / (va**2 / (x.n - 1) + vb**2 / (y.n - 1)) if va + vb else math.inf
    verdict = "established (p < 0.05)" if welch.pvalue < 0.05 else "not established"
    return (
        f"| {metric} | {a} | {x.mean:.2f} ± {x.std:.2f} | {b} | {y.mean:.2f} ± {y.std:.2f} "
        f"| {x.mean - y.mean:+.2f} | {welch.statistic:.2f} | {df:.1f} | {fmt_p(welch.pvalue)} "
        f"| - | {verdict} |"
    )


def per_seed_table(scores: Scores, names: list[str], metrics: list[str]) -> list[str]:
    lines = ["| recipe | seed | " + " | ".join(metrics) + " |", "|" + "---|" * (len(metrics) + 2)]
    for name in names:
        for seed in sorted(scores[name]):
            values = " | ".join(f"{scores[name][seed][m]:.2f}" for m in metrics)
            lines.append(f"| {name} | {seed} | {values} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, action="append", default=[])
    parser.add_argument("--summary", type=Path, default=None, help="a mean ± std table instead")
    parser.add_argument("--rename", action="append", default=[], metavar="SOURCE:OLD=NEW")
    parser.add_argument("--pair", nargs=2, action="append", required=True, metavar=("A", "B"))
    parser.add_argument("--metric", action="append", required=True)
    parser.add_argument(
        "--show", action="append", default=[], help="also list this value per seed (no test)"
    )
    parser.add_argument("--title", default="Seed statistics")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.summary is not None:
        return summary_main(args)
    if not args.source:
        parser.error("give --source (per-seed scores) or --summary")
    scores: Scores = {}
    renames = dict(item.split("=", 1) for item in args.rename)
    for source in args.source:
        try:
            found = read_source(source)
        except (OSError, ValueError, KeyError) as err:
            print(f"seed_stats: {err}", file=sys.stderr)
            return 2
        for name, runs in found.items():
            label = renames.get(f"{source}:{name}", name)
            if set(runs) & set(scores.get(label, {})):
                print(
                    f"seed_stats: {label!r} has the same seed in two sources; use --rename",
                    file=sys.stderr,
                )
                return 2
            scores.setdefault(label, {}).update(runs)  # e.g. one file per seed
    try:
        tests = [compare(scores, a, b, m) for a, b in args.pair for m in args.metric]
    except (ValueError, KeyError) as err:
        print(f"seed_stats: {err}", file=sys.stderr)
        return 2
    names = list(dict.fromkeys(n for pair in args.pair for n in pair))
    body = [
        f"# {args.title}",
        "",
        "Sources: " + ", ".join(f"`{s}`" for s in args.source),
        "",
        "Mean ± sample std over seeds. Welch: two-sided t-test with unequal variances;",
        "paired: two-sided t-test of the per-seed differences (same seeds on both sides).",
        "verdict: 'established' when Welch's p < 0.05, else 'not established' (the paired",
        "p is shown for information; the verdict does not pick the smaller of the two).",
        "",
        "| metric | A | A mean ± std | B | B mean ± std | A - B | Welch t | df | Welch p "
        "| paired p | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *(t.row() for t in tests),
        "",
        "## Per-seed values used",
        "",
        *per_seed_table(scores, names, [*args.metric, *args.show]),
    ]
    text = "\n".join(body)
    seeds = sorted({s for n in names for s in scores[n]})
    write_results(args.out, text, seeds=seeds)
    print(text)
    print(f"written to {args.out}")
    return 0


def summary_main(args: argparse.Namespace) -> int:
    """Welch's tests from a summary table; the output says they use rounded statistics."""
    try:
        table = read_summary_md(args.summary)
        rows = [compare_summary(table, a, b, m) for a, b in args.pair for m in args.metric]
    except (OSError, ValueError, KeyError) as err:
        print(f"seed_stats: {err}", file=sys.stderr)
        return 2
    text = "\n".join(
        [
            f"# {args.title}",
            "",
            f"Source: `{args.summary}` (mean ± sample std over seeds, as printed there: rounded,",
            "no per-seed values), so only Welch's two-sided test, from those statistics.",
            "verdict: 'established' when p < 0.05, else 'not established'.",
            "",
            "| metric | A | A mean ± std | B | B mean ± std | A - B | Welch t | df | Welch p "
            "| paired p | verdict |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
            *rows,
        ]
    )
    write_results(args.out, text)
    print(text)
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
