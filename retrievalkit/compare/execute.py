"""Train and score the planned runs that are not finished yet.

Each run is an ordinary run directory (checkpoints, logs, ``metrics.json`` with the
test scores, the seed and the wall time). A run whose ``metrics.json`` holds a wall
time is finished and is skipped; any other run resumes from its last checkpoint, so
an interrupted comparison is continued by running the same command again. While a
run trains, its directory holds ``compare.lock`` (the process id); another
``compare`` over the same directory (e.g. other seeds in parallel) leaves such a run
alone and tabulates without it. A lock whose process is gone is taken over.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from retrievalkit.compare.plan import PlannedRun
from retrievalkit.errors import ConfigError

log = logging.getLogger(__name__)

LOCK_FILE = "compare.lock"
Train = Callable[[PlannedRun, str, bool], dict[str, Any]]


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


def train_and_score(
    run: PlannedRun, device: str, progress: bool, queries: Path | None = None
) -> dict[str, Any]:
    """Train (resuming if the run started before), score the test split (and each
    style's view of it), and return the ``metrics.json`` record with ``seed``,
    ``wall_s`` and ``resumed`` added.

    With ``queries`` (a typed query set), the run is also indexed (``RUN/index``) and
    its search quality scored as ``retrievalkit demo`` does: the fusion weight is
    the best on the dev part, the test part is reported
    (:func:`retrievalkit.search.quality.score_search`).

    ``wall_s`` covers this call only (training and scoring); ``resumed`` says an
    earlier, interrupted call did part of the training.
    """
    from retrievalkit.training.report import finish_run, style_scores
    from retrievalkit.training.trainer import Trainer

    resumed = (run.run_dir / "checkpoints" / "last").exists()
    start = time.perf_counter()
    trainer = Trainer(run.config, run.run_dir, device=device, progress=progress)
    trainer.fit(resume=True)
    record = finish_run(trainer)
    if "test" not in record:
        raise ConfigError(f"{run.name}: the recipe's data has no test split to compare on")
    by_style = style_scores(trainer)
    if by_style:
        record["test_by_style"] = by_style
    if queries is not None:
        record.update(_search_scores(trainer, run.run_dir, device, progress, queries))
    record.update(seed=run.seed, wall_s=time.perf_counter() - start, resumed=resumed)
    (run.run_dir / "metrics.json").write_text(json.dumps(record, indent=2, ensure_ascii=False))
    return record


def _search_scores(
    trainer: Any, run_dir: Path, device: str, progress: bool, queries: Path
) -> dict[str, Any]:
    from retrievalkit.pipeline.items import every_image_splits
    from retrievalkit.search import SearchEngine, build_index_dir
    from retrievalkit.search.quality import score_search

    index_dir = build_index_dir(
        run_dir / "checkpoints" / "best",
        run_dir / "index",
        every_image_splits(list(trainer.splits)),
        device=device,
        progress=progress,
    )
    engine = SearchEngine(index_dir, device=device)
    return score_search(engine, trainer.splits, queries, weight=None)


def run_all(
    runs: Sequence[PlannedRun],
    device: str,
    progress: bool = True,
    train: Train = train_and_score,
) -> dict[str, list[dict[str, Any]]]:
    """Records per row name (in order), training only the runs not finished.

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
