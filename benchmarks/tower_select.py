"""Choose the pretrained-tower recipes' settings on the emoji val split (issue 18).

Each candidate is a shipped recipe plus ``--set`` overrides, trained from the cached
tower features (the first candidate of a tower fills the cache) with the training
split only; every epoch is scored on the val split, and the table gives the best
val rsum, its epoch, the last epoch's val rsum and the seconds the run took
(feature extraction excluded once cached). The test split is never scored here.

    OMP_NUM_THREADS=2 python benchmarks/tower_select.py --group head \\
        --candidate "mlp: emoji_lite0_clip" \\
        --candidate "linear: emoji_lite0_clip model.image.head=linear" \\
        --candidate "mlp 512: emoji_lite0_clip 'model.image.head={kind: mlp, hidden_dim: 512}'"

writes ``results/tower_select/<group>.md`` (header: command, commit, date, machine,
seeds) and ``results/tower_select/<group>.json`` (every epoch's val scores).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from retrievalkit.pipeline.build import load_splits  # noqa: E402
from retrievalkit.run.config import load_config  # noqa: E402
from retrievalkit.run.provenance import write_results  # noqa: E402
from retrievalkit.training.trainer import Trainer  # noqa: E402


def parse_candidate(text: str) -> tuple[str, str, list[str]]:
    """``"label: recipe key=value ..."`` -> (label, recipe, overrides)."""
    label, sep, rest = text.partition(":")
    words = shlex.split(rest)
    if not sep or not words:
        raise SystemExit(f"--candidate {text!r}: expected 'label: recipe [key=value ...]'")
    return label.strip(), words[0], words[1:]


def run_candidate(
    recipe: str, overrides: list[str], seed: int, splits: dict[str, Any] | None, work: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train one candidate on train, score val every epoch; (summary, loaded splits)."""
    config = load_config(recipe, [*overrides, f"seed={seed}"])
    if splits is None:
        splits = load_splits(config.data)
    started = time.perf_counter()
    trainer = Trainer(config, work / f"run{time.monotonic_ns()}", progress=False, splits=splits)
    built = time.perf_counter()
    trainer.fit()
    done = time.perf_counter()
    history = [
        {k: v for k, v in record.items() if k in ("epoch", "rsum", "t2i_r5", "i2t_r5")}
        for record in trainer.state.history
    ]
    last = trainer.state.history[-1]
    summary = {
        "best_val_rsum": trainer.state.best_score,
        "best_epoch": trainer.state.best_epoch,
        "last_val_rsum": last.get("rsum"),
        "last_t2i_r5": last.get("t2i_r5"),
        "setup_s": built - started,
        "train_s": done - built,
        "history": history,
    }
    return summary, splits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group", required=True, help="name of this comparison")
    parser.add_argument("--candidate", action="append", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=ROOT / "results" / "tower_select")
    args = parser.parse_args(argv)
    candidates = [parse_candidate(text) for text in args.candidate]
    for _, recipe, overrides in candidates:  # a typo fails now, not after an hour
        load_config(recipe, overrides)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[str] = []
    records: list[dict[str, Any]] = []
    splits = None
    with tempfile.TemporaryDirectory(prefix="tower_select_") as work:
        for label, recipe, overrides in candidates:
            summary, splits = run_candidate(recipe, overrides, args.seed, splits, Path(work))
            records.append({"label": label, "recipe": recipe, "overrides": overrides, **summary})
            rows.append(
                f"| {label} | {recipe} {' '.join(overrides)} | {summary['best_val_rsum']:.1f} "
                f"| {summary['best_epoch']} | {summary['last_val_rsum']:.1f} "
                f"| {summary['last_t2i_r5']:.1f} | {summary['setup_s']:.0f} "
                f"| {summary['train_s']:.0f} |"
            )
            print(rows[-1], flush=True)
            write_tables(args.out_dir, args.group, rows, records, args.seed)  # after each
    return 0


def write_tables(
    out_dir: Path, group: str, rows: list[str], records: list[dict[str, Any]], seed: int
) -> None:
    """The group's Markdown table and JSON records (every epoch's val scores)."""
    body = "\n".join(
        [
            f"# Val-split selection: {group}",
            "",
            "Training split only; val scored every epoch (rsum, full protocol, 170 emoji);",
            "the test split is not scored. Seconds: set-up (model, caches) and training",
            "(epochs + per-epoch val + checkpoints) on this shared 2-core machine.",
            "",
            "| candidate | recipe and overrides | best val rsum | at epoch | last val rsum "
            "| last t2i R@5 | set-up s | train s |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
            *rows,
            "",
        ]
    )
    write_results(out_dir / f"{group}.md", body, seeds=[seed])
    write_results(out_dir / f"{group}.json", records, seeds=[seed])


if __name__ == "__main__":
    raise SystemExit(main())
