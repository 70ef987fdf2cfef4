"""Data-parallel training with 2 gloo processes on CPU equals one process with the
whole (global) batch, and a 2-rank run killed and resumed equals an uninterrupted one.

The models have no batch norm (``small_cnn batchnorm: false``): batch norm
normalizes by each rank's rows, a legitimate difference from one process, and
PyTorch's SyncBatchNorm runs on GPU only. SGD without clipping makes the
comparison sensitive to the gradient's scale (Adam would hide a factor W).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from retrievalkit.run.checkpoint import load_checkpoint
from retrievalkit.run.config import parse_config
from retrievalkit.training.trainer import Trainer

SGD = {"name": "sgd", "lr": 0.05, "momentum": 0.9, "grad_clip": None}
NO_BN = {"image": {"widths": [8, 16], "out_dim": 16, "batchnorm": False}}


@pytest.fixture(scope="module")
def metric_raw(tiny_metric) -> dict:
    """The tiny metric-learning run, no validation, SGD, every step logged."""
    return tiny_metric(
        data={"val_split": None},
        model=NO_BN,
        optim=SGD,
        log_every_steps=1,
    )


@pytest.fixture(scope="module")
def cross_modal_raw(tiny_cross_modal) -> dict:
    """The tiny cross-modal run in two stages, full batches (the 2 ranks drop none);
    VSE sums over the batch: each rank's share is scaled by W."""
    return tiny_cross_modal(
        data={"augment": False, "sampler": "random", "val_split": None},
        model=NO_BN,
        optim={**SGD, "lr": 0.01},
        stages=[
            {
                "name": "sh",
                "epochs": 1,
                "losses": [{"name": "vse", "options": {"max_violation": False}}],
            },
            {"name": "mh", "epochs": 1, "losses": [{"name": "vse"}]},
        ],
        checkpoint_every_steps=4,
        log_every_steps=1,
    )


TOLERANCE = 1e-5  # float32 sums in another order, over 12-24 steps

WORKER = textwrap.dedent(
    """
    import json, sys
    from retrievalkit.run.config import parse_config
    from retrievalkit.training.distributed import init_runtime, shutdown
    from retrievalkit.training.trainer import Trainer

    recipe, out, kill_at, resume = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
    runtime = init_runtime("cpu")  # from RANK / WORLD_SIZE / MASTER_ADDR, as torchrun sets
    trainer = Trainer(parse_config(json.load(open(recipe))), out, progress=False, runtime=runtime)
    step = Trainer.train_step

    def dying_step(self, batch, objective):
        if self.state.step == kill_at:  # every rank dies at the same step
            sys.exit(3)
        return step(self, batch, objective)

    Trainer.train_step = dying_step
    trainer.fit(resume=resume)
    shutdown(runtime)
    """
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_ranks(
    raw: dict, out: Path, world: int = 2, kill_at: int = -1, resume: bool = False
) -> list[int]:
    """Train ``raw`` with ``world`` processes; returns their exit codes."""
    recipe = out.parent / f"{out.name}.json"
    recipe.write_text(json.dumps(raw))
    port = str(free_port())
    procs = []
    for rank in range(world):
        env = {
            **os.environ,
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(world),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": port,
            "OMP_NUM_THREADS": "1",
        }
        args = [sys.executable, "-c", WORKER, str(recipe), str(out), str(kill_at), str(int(resume))]
        procs.append(subprocess.Popen(args, env=env))
    try:
        return [proc.wait(timeout=600) for proc in procs]
    finally:  # never leave a rank behind (e.g. one waiting in a collective)
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def one_process(raw: dict, out: Path) -> Trainer:
    trainer = Trainer(parse_config(raw), out, progress=False)
    trainer.fit()
    return trainer


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoints" / "last").tensors


def initial_weights(raw: dict, out: Path) -> dict[str, torch.Tensor]:
    """The seeded initial weights (as checkpoints name them)."""
    model = Trainer(parse_config(raw), out, progress=False).model
    return {f"model.{k}": v for k, v in model.state_dict().items()}


def assert_close_weights(a: Path, b: Path, start: dict[str, torch.Tensor]) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    moved = max(float((wa[k] - start[k]).abs().max()) for k in start)
    assert moved > 100 * TOLERANCE  # training moved the weights far more than the tolerance
    worst = max(float((wa[k] - wb[k]).abs().max()) for k in wa)
    assert worst < TOLERANCE, f"max |difference| {worst}"


def logged_losses(run_dir: Path) -> list[float]:
    lines = (run_dir / "train_log.csv").read_text().splitlines()
    column = lines[0].split(",").index("total")
    return [float(line.split(",")[column]) for line in lines[1:]]


def test_torchrun_cli_two_ranks_equal_one_process_metric(tmp_path, metric_raw):
    """The documented command itself: ``torchrun --nproc_per_node 2 -m retrievalkit train``."""
    recipe = tmp_path / "metric.yaml"
    recipe.write_text(yaml.safe_dump(metric_raw))
    single = one_process(metric_raw, tmp_path / "one")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_port", str(free_port()),
        "-m", "retrievalkit", "train", str(recipe), "--out", str(tmp_path / "two"),
        "--device", "cpu", "--no-progress",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "run written to" in done.stdout  # rank 0 alone reports
    assert done.stdout.count("run written to") == 1
    assert single.state.step == 12
    start = initial_weights(metric_raw, tmp_path / "init")
    assert_close_weights(tmp_path / "one", tmp_path / "two", start)
    assert logged_losses(tmp_path / "one") == pytest.approx(logged_losses(tmp_path / "two"), 1e-5)
    assert (tmp_path / "two/metrics.json").exists() and (tmp_path / "two/curves.png").exists()


@pytest.fixture(scope="module")
def cross_modal_runs(tmp_path_factory, cross_modal_raw):
    tmp = tmp_path_factory.mktemp("ddp_cross")
    one_process(cross_modal_raw, tmp / "one")
    assert run_ranks(cross_modal_raw, tmp / "two") == [0, 0]
    return tmp


def test_two_ranks_equal_one_process_cross_modal(cross_modal_runs, tmp_path, cross_modal_raw):
    start = initial_weights(cross_modal_raw, tmp_path / "init")
    assert_close_weights(cross_modal_runs / "one", cross_modal_runs / "two", start)
    one, two = logged_losses(cross_modal_runs / "one"), logged_losses(cross_modal_runs / "two")
    assert len(one) == len(two) == 24
    assert one == pytest.approx(two, rel=1e-5)  # the logged loss is the full batch's


def test_two_ranks_killed_and_resumed_equal_uninterrupted(
    cross_modal_runs, tmp_path, cross_modal_raw
):
    out = tmp_path / "resumed"
    assert run_ranks(cross_modal_raw, out, kill_at=18) == [3, 3]  # in epoch 2, saved at step 16
    saved = json.loads((out / "checkpoints/last/trainer_state.json").read_text())
    assert saved["step"] == 16 and saved["batch_in_epoch"] == 4 and saved["epoch"] == 1
    assert run_ranks(cross_modal_raw, out, resume=True) == [0, 0]
    a, b = weights(cross_modal_runs / "two"), weights(out)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (out / "train_log.csv").read_text() == (
        cross_modal_runs / "two/train_log.csv"
    ).read_text()


@pytest.mark.slow
def test_two_ranks_with_gradient_caching_equal_one_process(
    cross_modal_runs, tmp_path, cross_modal_raw
):
    """Chunked re-encoding bypasses DDP's hooks; the trainer averages those gradients."""
    raw = {**cross_modal_raw, "optim": {**cross_modal_raw["optim"], "grad_cache_chunk": 2}}
    assert run_ranks(raw, tmp_path / "cached") == [0, 0]
    start = initial_weights(cross_modal_raw, tmp_path / "init")
    assert_close_weights(cross_modal_runs / "one", tmp_path / "cached", start)
