"""One training loop for every method: stages of weighted losses, validation,
best/last checkpoints, exact resume.

A run directory holds ``config.yaml`` (resolved recipe), ``train_log.csv``,
``val_log.jsonl``, ``checkpoints/{last,best}`` and, at the end, ``curves.png``.
Under ``torchrun`` every rank trains its share of each batch (``distributed.py``);
rank 0 alone writes the run directory and evaluates.

The :class:`Trainer` keeps the loop (``fit``, the epoch, validation); the run's
set-up is ``setup.py``, one optimizer step ``step.py``, checkpoints and resume
``resume.py``.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm.auto import tqdm

from retrievalkit.pipeline.evaluate import evaluate
from retrievalkit.run.checkpoint import check_writable, checkpoint_bytes, previous_dir
from retrievalkit.run.config import RunConfig, StageConfig, config_to_dict
from retrievalkit.training.data_loading import TrainBatch, make_train_loader
from retrievalkit.training.distributed import Runtime, barrier, gather_objects, wrap_model
from retrievalkit.training.objective import Objective
from retrievalkit.training.optim import ParamGroup, learning_rate, set_learning_rate
from retrievalkit.training.resume import restore_run, run_tensors, write_run_checkpoint
from retrievalkit.training.run_log import RunLog
from retrievalkit.training.setup import (
    build_objectives,
    build_optimizers,
    build_run_losses,
    build_run_model,
    build_run_vocab,
    build_train_inputs,
    load_run_splits,
    warm_text_cache,
)
from retrievalkit.training.state import TrainerState, capture_rng_state
from retrievalkit.training.step import StepRunner

log = logging.getLogger(__name__)


class Trainer:
    """Train ``config`` into ``run_dir`` on ``device`` (or as one rank of ``runtime``).

    ``fit(resume=True)`` continues from ``run_dir/checkpoints/last`` exactly where
    it stopped (same batches, same RNG), so the final metrics equal an
    uninterrupted run's.
    """

    def __init__(
        self,
        config: RunConfig,
        run_dir: str | Path,
        device: str | torch.device = "cpu",
        progress: bool = True,
        splits: dict[str, Any] | None = None,
        runtime: Runtime | None = None,
    ) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.runtime = runtime or Runtime.single(device)
        self.device = self.runtime.device
        self.is_main = self.runtime.is_main
        self.progress = progress and self.is_main
        check_writable(self.run_dir)
        torch.manual_seed(config.seed)
        random.seed(config.seed)
        self.splits, self.train_split, self.val_split = load_run_splits(config.data, splits)
        self.vocab, self.vocab_path = build_run_vocab(
            config, self.train_split, self.run_dir, write=self.is_main
        )
        self.model = build_run_model(config, self.vocab, self.runtime)
        self._wrapped_stage: int | None = None  # DDP-wrapped per stage in fit()
        self.initially_trainable = {
            name: p.requires_grad for name, p in self.model.named_parameters()
        }
        self.losses, self.rank_losses = build_run_losses(config, self.train_split, self.runtime)
        self.objectives = build_objectives(config, self.model, self.rank_losses)
        self.groups: dict[str, ParamGroup] = build_optimizers(config.optim, self.model, self.losses)
        (
            self.train_transform,
            self.eval_transform,
            self.loader_split,
            self.loader_transform,
        ) = build_train_inputs(config.data, self.train_split, self.model, self.progress)
        warm_text_cache(self.model, self.train_split, self.val_split, self.progress)
        self.state = TrainerState()
        self.run_log = RunLog(self.run_dir)
        self.steps = StepRunner(
            config, self.model, self.losses, self.groups, self.runtime, self.run_dir
        )
        if self.is_main:
            (self.run_dir / "config.yaml").write_text(
                yaml.safe_dump(config_to_dict(config), sort_keys=False)
            )
        if self.runtime.distributed:  # same initial weights on every rank, own randomness
            torch.manual_seed(config.seed + 1_000_003 * self.runtime.rank)
            random.seed(config.seed + 1_000_003 * self.runtime.rank)

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The main group's optimizer (every trainable parameter no other group takes)."""
        return self.groups["main"].optimizer

    @property
    def adversary_optimizer(self) -> torch.optim.Optimizer | None:
        """The default adversary group's optimizer (discriminators of loss terms), if any."""
        group = self.groups.get("adversary")
        return group.optimizer if group is not None else None

    # ----------------------------------------------------------------- stages
    def stage_at(self, epoch: int) -> tuple[int, StageConfig, int]:
        """(stage index, stage, epoch within the stage) of global ``epoch``."""
        start = 0
        for index, stage in enumerate(self.config.stages):
            if epoch < start + stage.epochs:
                return index, stage, epoch - start
            start += stage.epochs
        raise IndexError(f"epoch {epoch} is past the recipe's {start} epochs")

    def _apply_freezing(self, stage: StageConfig) -> None:
        frozen_prefixes = tuple(stage.freeze)
        for name, param in self.model.named_parameters():
            frozen = any(name == p or name.startswith(p + ".") for p in frozen_prefixes)
            param.requires_grad_(self.initially_trainable[name] and not frozen)

    def _set_train_mode(self, stage: StageConfig) -> None:
        self.model.train()
        for prefix in stage.freeze:
            self.model.get_submodule(prefix).eval()  # frozen BN keeps its statistics

    # ------------------------------------------------------------------ steps
    def train_step(self, batch: TrainBatch, objective: Objective) -> dict[str, float] | None:
        """One optimizer step (:meth:`StepRunner.step`); the loss parts, or None if skipped."""
        return self.steps.step(batch, objective, self.state)

    def _train_epoch(self, epoch: int, stage: StageConfig, epoch_in_stage: int) -> float:
        objective = self.objectives[stage.name]
        loader = make_train_loader(
            self.loader_split,
            self.config.data,
            self.loader_transform,
            self.model.has_text,
            seed=self.config.seed,
            epoch=epoch,
            start_batch=self.state.batch_in_epoch,
            rank=self.runtime.rank,
            world_size=self.runtime.world_size,
        )
        bar = tqdm(
            loader,
            desc=f"epoch {epoch + 1}/{self.config.total_epochs} [{stage.name}]",
            disable=not self.progress,
            leave=False,
        )
        for batch in bar:
            lr = self._set_learning_rates(stage, epoch_in_stage)
            parts = self.train_step(batch, objective)
            self.state.step += 1
            self.state.batch_in_epoch += 1
            if parts is not None:
                self.state.epoch_loss_sum += parts["total"]
                self.state.epoch_loss_count += 1
                bar.set_postfix(loss=f"{parts['total']:.4f}")
                if self.is_main and self.state.step % self.config.log_every_steps == 0:
                    self.run_log.log_step(
                        {"step": self.state.step, "epoch": epoch + 1, "lr": lr, **parts}
                    )
            every = self.config.checkpoint_every_steps
            if every and self.state.step % every == 0:
                self.save("last")
        mean = self.state.epoch_loss_sum / max(self.state.epoch_loss_count, 1)
        self.state.epoch_loss_sum, self.state.epoch_loss_count = 0.0, 0
        return mean

    def _set_learning_rates(self, stage: StageConfig, epoch_in_stage: int) -> float:
        """Each group's lr for this step; returns the main group's (logged)."""
        for name, group in self.groups.items():
            own = group.config if name not in ("main", "adversary") else None
            lr = learning_rate(self.config.optim, stage, epoch_in_stage, self.state.step, own)
            set_learning_rate(group.optimizer, lr)
        return self.groups["main"].optimizer.param_groups[0]["lr"]

    # -------------------------------------------------------------- evaluation
    def evaluate(self, split: Any, progress: bool = False) -> dict[str, Any]:
        """Score the model on a split with the recipe's protocol (the one evaluator)."""
        cfg = self.config.eval
        return evaluate(
            self.model, split, self.eval_transform, cfg.protocol, cfg.batch_size, progress
        )

    def _validate(self, epoch: int, stage: StageConfig, train_loss: float) -> None:
        record: dict[str, Any] = {"epoch": epoch + 1, "stage": stage.name, "train_loss": train_loss}
        is_last = epoch + 1 == self.config.total_epochs
        if not self.is_main:  # rank 0 alone evaluates, keeps the best and writes logs
            self.state.history.append(record)
            return
        if self.val_split is not None and (
            (epoch + 1) % self.config.eval.every_epochs == 0 or is_last
        ):
            scores = self.evaluate(self.val_split)
            record.update(scores)
            score = float(scores[self.config.eval.metric])
            if self.state.best_score is None or score > self.state.best_score:
                self.state.best_score, self.state.best_epoch = score, epoch + 1
                record["best"] = True
            log.info(
                "epoch %d: train loss %.4f, val %s %.2f (best %.2f at epoch %d)",
                epoch + 1,
                train_loss,
                self.config.eval.metric,
                score,
                self.state.best_score,
                self.state.best_epoch,
            )
        self.state.history.append(record)
        self.run_log.log_epoch(record)

    # ------------------------------------------------------------- checkpoints
    def _tensors(self) -> dict[str, dict[str, torch.Tensor]]:
        return run_tensors(self.model, self.losses)

    def save(self, name: str) -> Path | None:
        """Write checkpoint ``name`` ("last" keeps its previous version to fall back
        on). Every rank calls it (their RNG states are gathered into it); rank 0
        writes. Returns its path on rank 0, else None."""
        rng_states = gather_objects(capture_rng_state(), self.runtime)
        path = self._write(name, rng_states) if self.is_main else None
        barrier(self.runtime)  # nobody goes on (or resumes) before it is written
        return path

    def _write(self, name: str, rng_states: list[dict[str, Any]]) -> Path:
        return write_run_checkpoint(
            self.run_dir / "checkpoints" / name,
            self.config,
            self._tensors(),
            self.groups,
            self.state,
            rng_states,
            self.vocab_path,
        )

    def restore(self, path: str | Path) -> None:
        """Load model, losses, optimizer, RNG and progress from a checkpoint."""
        self.state, read = restore_run(
            path, self.model, self.losses, self.groups, self.runtime, self.vocab
        )
        if self.is_main:
            self.run_log.truncate_after(self.state.step, self.state.epoch)
        log.info("resumed from %s at epoch %d, step %d", read, self.state.epoch, self.state.step)

    # --------------------------------------------------------------------- fit
    def fit(self, resume: bool = False) -> TrainerState:
        """Train all stages; with ``resume`` continue from ``checkpoints/last``."""
        last = self.run_dir / "checkpoints" / "last"
        # last, last.prev, a temporary copy and best: fail now, not after an epoch
        check_writable(last.parent, need_bytes=4 * checkpoint_bytes(self._tensors()))
        if resume and (last.exists() or previous_dir(last).exists()):
            self.restore(last)
        elif resume:
            log.warning("nothing to resume in %s: starting from scratch", self.run_dir)
        while self.state.epoch < self.config.total_epochs:
            epoch = self.state.epoch
            stage_index, stage, epoch_in_stage = self.stage_at(epoch)
            self._apply_freezing(stage)
            if self._wrapped_stage != stage_index:  # DDP syncs what is trainable when made
                self.steps.forward_model = wrap_model(
                    self.model, self.runtime, self.config.distributed.find_unused_parameters
                )
                self._wrapped_stage = stage_index
            self._set_train_mode(stage)
            train_loss = self._train_epoch(epoch, stage, epoch_in_stage)
            self.state.epoch += 1
            self.state.batch_in_epoch = 0
            self._validate(epoch, stage, train_loss)
            rng_states = gather_objects(capture_rng_state(), self.runtime)
            if self.is_main:
                self._write("last", rng_states)
                if self.state.history[-1].get("best") or self.val_split is None:
                    self._write("best", rng_states)
            barrier(self.runtime)
        return self.state
