"""Train several recipes with several seeds, score each on its test split, summarize.

Layout under ``out``: ``<recipe name>/seed<k>/`` is an ordinary run directory
(checkpoints, logs, ``metrics.json`` with the test scores, the seed and the wall
time), plus ``comparison.md``, ``comparison.json`` and ``comparison.png``.
A run whose ``metrics.json`` holds a wall time is finished and is skipped; any
other run resumes from its last checkpoint, so an interrupted comparison is
continued by running the same command again. While a run trains, its directory
holds ``compare.lock`` (the process id); another ``compare`` over the same
directory (e.g. other seeds in parallel) leaves such a run alone and tabulates
without it. A lock whose process is gone is taken over.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrievalkit.run.config import ConfigError, RunConfig, load_config
from retrievalkit.run.recipes import resolve_recipe
from retrievalkit.train.comparison import (
    RecipeSummary,
    bar_chart,
    markdown_table,
    metric_keys,
    summarize,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlannedRun:
    """One (recipe, seed): its parsed config and run directory."""

    name: str
    seed: int
    config: RunConfig
    run_dir: Path


def plan_runs(
    recipes: Sequence[str], seeds: Sequence[int], overrides: Sequence[str], out: Path
) -> list[PlannedRun]:
    """Every (recipe, seed) with ``--set`` overrides and then ``seed=<k>`` applied.

    Raises:
        ConfigError: a recipe is missing or malformed, or two recipes share a name.
    """
    runs: list[PlannedRun] = []
    names: dict[str, str] = {}
    for recipe in recipes:
        path = resolve_recipe(recipe)
        for seed in seeds:
            config = load_config(path, [*overrides, f"seed={seed}"])
            if names.setdefault(config.name, recipe) != recipe:
                raise ConfigError(
                    f"recipes {names[config.name]} and {recipe} are both named "
                    f"{config.name!r}; give one another name (--set cannot, use a copy)"
                )
            runs.append(PlannedRun(config.name, seed, config, out / config.name / f"seed{seed}"))
    return runs


def finished_record(run_dir: Path) -> dict[str, Any] | None:
    """The run's ``metrics.json`` if the run is finished (has test scores and a wall time)."""
    path = run_dir / "metrics.json"
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    return record if "wall_s" in record and "test" in record else None


LOCK_FILE = "compare.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim_run(run_dir: Path) -> bool:
    """Take ``run_dir``'s lock for this process; False if a live process holds it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / LOCK_FILE
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                holder = int(lock.read_text().strip() or "0")
            except (OSError, ValueError):
                holder = 0
            if holder and _alive(holder):
                return holder == os.getpid()
            lock.unlink(missing_ok=True)  # stale: its process is gone
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(str(os.getpid()))
        return True
    return False


def train_and_score(run: PlannedRun, device: str, progress: bool) -> dict[str, Any]:
    """Train (resuming if the run started before), score the test split, and return
    the ``metrics.json`` record with ``seed``, ``wall_s`` and ``resumed`` added.

    ``wall_s`` covers this call only (training and test scoring); ``resumed`` says
    an earlier, interrupted call did part of the training.
    """
    from retrievalkit.train.report import finish_run
    from retrievalkit.train.trainer import Trainer

    resumed = (run.run_dir / "checkpoints" / "last").exists()
    start = time.perf_counter()
    trainer = Trainer(run.config, run.run_dir, device=device, progress=progress)
    trainer.fit(resume=True)
    record = finish_run(trainer)
    if "test" not in record:
        raise ConfigError(f"{run.name}: the recipe's data has no test split to compare on")
    record.update(seed=run.seed, wall_s=time.perf_counter() - start, resumed=resumed)
    (run.run_dir / "metrics.json").write_text(json.dumps(record, indent=2))
    return record


def run_all(
    runs: Sequence[PlannedRun],
    device: str,
    progress: bool = True,
    train: Callable[[PlannedRun, str, bool], dict[str, Any]] = train_and_score,
) -> dict[str, list[dict[str, Any]]]:
    """Records per recipe name (in order), training only the runs not finished.

    Runs another live process is training (locked) are left out of the records.
    """
    records: dict[str, list[dict[str, Any]]] = {}
    for index, run in enumerate(runs, 1):
        where = f"[{index}/{len(runs)}] {run.name} seed {run.seed}"
        record = finished_record(run.run_dir)
        if record is not None:
            log.info("%s: finished, skipped", where)
        elif not claim_run(run.run_dir):
            log.warning("%s: being trained by another process, left out", where)
            continue
        else:
            log.info("%s: training", where)
            try:
                record = train(run, device, progress)
            finally:
                (run.run_dir / LOCK_FILE).unlink(missing_ok=True)
        records.setdefault(run.name, []).append(record)
    return records


def write_comparison(
    records: dict[str, list[dict[str, Any]]], out: Path, command: str, commit: str | None
) -> list[RecipeSummary]:
    """``comparison.md`` (table + per-run scores), ``comparison.json``, ``comparison.png``."""
    every = [r for rs in records.values() for r in rs]
    keys = metric_keys(every)
    summaries = [summarize(name, rs, keys) for name, rs in records.items()]
    chart = bar_chart(summaries, keys, out / "comparison.png", title=out.name)
    lines = [
        f"# Comparison: {', '.join(records)}",
        "",
        f"Command: `{command}`" + (f" at commit {commit}" if commit else ""),
        "",
        "Test split scores (%), mean ± sample std over seeds; wall time = training + test",
        "scoring of one run on this machine.",
        "",
        markdown_table(summaries, keys),
        f"![chart]({chart.name})",
        "",
        "## Runs",
        "",
        "| recipe | seed | " + " | ".join(keys) + " | wall (s) | resumed |",
        "|" + "---|" * (len(keys) + 4),
    ]
    for name, rs in records.items():
        for r in rs:
            scores = " | ".join(f"{float(r['test'][k]):.2f}" for k in keys)
            flag = "yes" if r.get("resumed") else "no"
            lines.append(f"| {name} | {r['seed']} | {scores} | {r['wall_s']:.0f} | {flag} |")
    (out / "comparison.md").write_text("\n".join(lines) + "\n")
    summary_json = {
        s.name: {k: {"mean": v.mean, "std": v.std, "n": v.n} for k, v in s.stats.items()}
        for s in summaries
    }
    (out / "comparison.json").write_text(json.dumps(summary_json, indent=2))
    return summaries
