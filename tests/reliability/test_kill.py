"""Kill -9 for real: ``python -m retrievalkit train`` is SIGKILLed mid-epoch, while a
checkpoint is being written and between the checkpoint's renames (also with data
loader workers); ``--resume`` then ends with the same weights, log and test metrics
as a run that was never interrupted, bit for bit.

The kills inside a save use the test-only hook ``RETRIEVALKIT_TEST_PAUSE_IN_SAVE``
(``run/checkpoint.py``): the save of step S sleeps at that point and says so on
stderr, and the test kills the process as soon as it reads that line.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from retrievalkit.run.checkpoint import PAUSE_ENV, load_checkpoint
from tests.tiny import END_TO_END

pytestmark = pytest.mark.slow

# 2 stages x 1 epoch x 12 batches; a checkpoint every 2 steps (the end-to-end recipe)
RECIPE = {**END_TO_END, "name": "kill_me"}
TOTAL_STEPS = 24
TIMEOUT = 600


def _command(recipe: Path, run: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "retrievalkit", "train", str(recipe), "--out", str(run),
            "--no-progress", "--device", "cpu", *extra]  # fmt: skip


def _env(pause: str | None = None) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop(PAUSE_ENV, None)
    if pause:
        env[PAUSE_ENV] = pause
    return env


def _train(recipe: Path, run: Path, *extra: str) -> str:
    """An uninterrupted (or resumed) run; returns its stderr."""
    result = subprocess.run(
        _command(recipe, run, *extra), env=_env(), capture_output=True, text=True, timeout=TIMEOUT
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stderr


def _log_rows(run: Path) -> int:
    log = run / "train_log.csv"
    return max(len(log.read_text().splitlines()) - 1, 0) if log.exists() else 0


def _kill_when(recipe: Path, run: Path, ready, pause: str | None, *extra: str) -> None:
    """Start a run, SIGKILL it as soon as ``ready(run, stderr_text)`` holds."""
    stderr_path = run.with_name(run.name + ".stderr")
    with open(stderr_path, "w") as stderr:
        process = subprocess.Popen(
            _command(recipe, run, *extra),
            env=_env(pause),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,  # its data loader workers share its process group
        )
    deadline = time.monotonic() + TIMEOUT
    try:
        while not ready(run, stderr_path.read_text()):
            assert process.poll() is None, f"ended before the kill: {stderr_path.read_text()}"
            assert time.monotonic() < deadline, "timed out waiting for the kill point"
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(timeout=60) == -signal.SIGKILL
    finally:
        with contextlib.suppress(ProcessLookupError):  # orphaned workers of the kill
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)


def _outcome(run: Path) -> tuple[dict[str, torch.Tensor], dict, str]:
    weights = load_checkpoint(run / "checkpoints" / "last").tensors
    metrics = json.loads((run / "metrics.json").read_text())
    return weights, metrics, (run / "train_log.csv").read_text()


def _assert_same(run: Path, reference: Path) -> None:
    got, want = _outcome(run), _outcome(reference)
    assert got[0].keys() == want[0].keys()
    assert all(torch.equal(got[0][k], want[0][k]) for k in want[0])
    assert got[1] == want[1]
    assert got[2] == want[2]


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("recipe") / "kill_me.yaml"
    path.write_text(yaml.safe_dump(RECIPE))
    return path


@pytest.fixture(scope="module")
def reference(recipe, tmp_path_factory):
    """Uninterrupted runs, without and with data loader workers."""
    root = tmp_path_factory.mktemp("reference")
    runs = {0: root / "w0", 2: root / "w2"}
    for workers, run in runs.items():
        _train(recipe, run, "--set", f"data.num_workers={workers}")
        assert load_checkpoint(run / "checkpoints/last").trainer_state["step"] == TOTAL_STEPS
    return runs


def _mid_epoch(rows: int):
    return lambda run, stderr: _log_rows(run) >= rows


def _paused(run, stderr) -> bool:
    return f"{PAUSE_ENV}: paused" in stderr


@pytest.mark.parametrize(
    "workers, pause, ready, left",
    [
        (0, None, _mid_epoch(17), None),  # epoch 2, batch 5 or later
        (0, "16:write", _paused, {"last", "last.prev", "last.tmp"}),
        (0, "16:swap", _paused, {"last.prev", "last.tmp"}),
        (2, None, _mid_epoch(15), None),
        (2, "14:write", _paused, {"last", "last.prev", "last.tmp"}),
    ],
    ids=["mid-epoch", "in-save-write", "in-save-swap", "workers-mid-epoch", "workers-in-save"],
)
def test_sigkill_then_resume_equals_an_uninterrupted_run(
    recipe, reference, tmp_path, workers, pause, ready, left
):
    run = tmp_path / "run"
    option = ("--set", f"data.num_workers={workers}")
    _kill_when(recipe, run, ready, pause, *option)
    checkpoints = run / "checkpoints"
    if left is not None:
        assert {p.name for p in checkpoints.iterdir()} >= left
    killed_at = _log_rows(run)
    assert 0 < killed_at < TOTAL_STEPS
    stderr = _train(recipe, run, "--resume", *option)
    assert "resumed from" in stderr
    if pause and pause.endswith("swap"):
        assert "last: missing (a save was interrupted); using the previous checkpoint" in stderr
    _assert_same(run, reference[workers])
