"""Train a recipe into a run directory, in one process or as one rank of torchrun:
what ``retrievalkit train``, ``retrievalkit.api.train`` and ``rk.train()`` all do
(:func:`train_recipe`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from retrievalkit.run.config import RunConfig, load_config
from retrievalkit.training.distributed import init_runtime, shutdown
from retrievalkit.training.report import finish_run
from retrievalkit.training.trainer import Trainer


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


def train_recipe(
    recipe: str | Path,
    out: str | Path | None = None,
    overrides: Sequence[str] = (),
    device: str | None = None,
    resume: bool = False,
    progress: bool = True,
) -> tuple[Path, dict[str, Any] | None]:
    """Load ``recipe`` (a shipped recipe's name or a YAML path) with ``--set``-style
    ``overrides``, train it into ``out`` (default ``runs/<recipe name>``) and return
    ``(run directory, test results)``; the results are None on ranks other than 0."""
    config = load_config(recipe, list(overrides))
    run_dir = Path(out) if out is not None else Path("runs") / config.name
    return run_dir, train_run(config, run_dir, device, resume=resume, progress=progress)
