"""Train a recipe into a run directory, in one process or as one rank of torchrun:
what ``retrievalkit train`` and ``retrievalkit.train()`` both do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from retrievalkit.run.config import RunConfig
from retrievalkit.train.distributed import init_runtime, shutdown
from retrievalkit.train.report import finish_run
from retrievalkit.train.trainer import Trainer


def train_run(
    config: RunConfig,
    run_dir: str | Path,
    device: str | None = None,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any] | None:
    """Train ``config`` into ``run_dir``, then score the best checkpoint on the test
    split (``metrics.json``, curves, retrieval grid).

    Under ``torchrun`` every rank calls this; rank 0 writes and returns the test
    results, the other ranks return None. An error on one rank ends them all
    (torchrun stops the group).
    """
    runtime = init_runtime(device)
    trainer = Trainer(config, run_dir, progress=progress, runtime=runtime)
    trainer.fit(resume=resume)
    results = finish_run(trainer) if runtime.is_main else None
    shutdown(runtime)
    return results
