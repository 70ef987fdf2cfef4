"""The trainer's own cost: one epoch of ``Trainer.fit`` vs a bare PyTorch loop.

Both train the same model (same initial weights), on the same batches (the
recipe's sampler, same seed and epoch), with the same loss module, optimizer and
gradient clipping. The bare loop indexes images transformed once up front, as a
40-line script would; the trainer goes through its DataLoader, per-item
transform, objective, monitor, logging and end-of-epoch checkpoint. Runs are
interleaved (bare, trainer, bare, ...) and the medians are compared.

    python benchmarks/trainer_overhead.py fashion_mnist_ms --reps 3
    python benchmarks/trainer_overhead.py fashion_mnist_ms --set data.options.limit=12000

Goal (issue 13): trainer / bare <= 1.2.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from retrievalkit.pipeline.build import load_splits
from retrievalkit.run.config import load_config
from retrievalkit.run.provenance import stdout_to_results
from retrievalkit.run.recipes import resolve_recipe
from retrievalkit.training.data_loading import make_batch_sampler
from retrievalkit.training.trainer import Trainer


def bare_epoch(trainer: Trainer, images: torch.Tensor, state: dict) -> float:
    """Seconds for one epoch of the plain loop over the trainer's model and batches."""
    config = trainer.config
    model = trainer.model
    model.load_state_dict(state)
    model.train()
    loss_fn = next(iter(trainer.losses.values()))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=config.optim.lr, weight_decay=config.optim.weight_decay)
    sampler = make_batch_sampler(trainer.train_split, config.data, False, config.seed)
    sampler.set_epoch(0)
    labels = torch.as_tensor(trainer.train_split.labels, dtype=torch.long)
    start = time.perf_counter()
    for batch in sampler:
        idx = torch.as_tensor(batch)
        loss = loss_fn(model.encode(images[idx]), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if config.optim.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, config.optim.grad_clip)
        opt.step()
    return time.perf_counter() - start


def trainer_epoch(config, splits: dict, state: dict) -> tuple[float, int]:
    """Seconds for ``fit()`` of one epoch (model built outside the timing), and steps."""
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(config, Path(tmp), device="cpu", progress=False, splits=splits)
        trainer.model.load_state_dict(state)
        start = time.perf_counter()
        trainer.fit()
        return time.perf_counter() - start, trainer.state.step


def loadavg() -> str:
    """The 1/5/15-minute load averages, for the results file."""
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("recipe", help="a metric-learning recipe (file or shipped name)")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results file (default: results/bench/trainer_overhead_RECIPE.md)",
    )
    args = parser.parse_args()

    with stdout_to_results(
        args.out or f"results/bench/trainer_overhead_{Path(args.recipe).stem}.md"
    ):
        config = load_config(resolve_recipe(args.recipe), [*args.overrides, "epochs=1"])
        if config.task != "metric" or len(config.stages[0].losses) != 1 or config.data.augment:
            raise SystemExit(
                "trainer_overhead: needs a metric recipe with one loss term and augment: false"
            )
        splits = load_splits(config.data)
        with tempfile.TemporaryDirectory() as tmp:
            reference = Trainer(config, Path(tmp), device="cpu", progress=False, splits=splits)
        state = copy.deepcopy(reference.model.state_dict())
        source = reference.train_split.images
        images = torch.stack([reference.eval_transform(source.load(i)) for i in range(len(source))])
        print(f"load average before: {loadavg()}")
        bare, full = [], []
        for _ in range(args.reps):
            bare.append(bare_epoch(reference, images, state))
            seconds, steps = trainer_epoch(config, splits, state)
            full.append(seconds)
        row = {
            "recipe": config.name,
            "overrides": args.overrides,
            "steps_per_epoch": steps,
            "threads": torch.get_num_threads(),
            "bare_s": [round(t, 2) for t in bare],
            "trainer_s": [round(t, 2) for t in full],
            "ratio_of_medians": round(statistics.median(full) / statistics.median(bare), 3),
        }
        print(json.dumps(row))
        print(f"load average after: {loadavg()}")


if __name__ == "__main__":
    main()
