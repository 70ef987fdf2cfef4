"""One training loop for every method: stages of weighted losses, validation,
best/last checkpoints, exact resume.

A run directory holds ``config.yaml`` (resolved recipe), ``train_log.csv``,
``val_log.jsonl``, ``checkpoints/{last,best}`` and, at the end, ``curves.png``.
"""

from __future__ import annotations

import logging
import math
import random
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor
from tqdm.auto import tqdm

from retrievalkit.pipeline.build import (
    build_model,
    build_transform,
    build_vocab,
    load_splits,
    load_vocab,
    require_split,
)
from retrievalkit.pipeline.evaluate import evaluate_cross_modal, evaluate_metric_learning
from retrievalkit.run.checkpoint import VOCAB_FILE, load_checkpoint, save_checkpoint
from retrievalkit.run.config import RunConfig, StageConfig, config_to_dict
from retrievalkit.train.data_loading import TrainBatch, make_train_loader
from retrievalkit.train.grad_cache import grad_cache_backward
from retrievalkit.train.monitor import CollapseMonitor
from retrievalkit.train.objective import (
    Objective,
    adversary_parameters,
    build_loss_modules,
    loss_keys,
    trainable_loss_parameters,
)
from retrievalkit.train.optim import build_optimizer, learning_rate, set_learning_rate
from retrievalkit.train.run_log import RunLog
from retrievalkit.train.state import TrainerState, capture_rng_state, restore_rng_state

log = logging.getLogger(__name__)


class Trainer:
    """Train ``config`` into ``run_dir`` on ``device``.

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
    ) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.device = torch.device(device)
        self.progress = progress
        self.run_dir.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(config.seed)
        random.seed(config.seed)
        self.splits = splits if splits is not None else load_splits(config.data)
        self.train_split = require_split(self.splits, config.data.train_split, config.data.name)
        self.val_split = self.splits.get(config.data.val_split) if config.data.val_split else None
        self.vocab = build_vocab(config.model, self.train_split)
        self.vocab_path: Path | None = None
        if self.vocab is not None:
            self.vocab_path = self.run_dir / VOCAB_FILE
            self.vocab.save(self.vocab_path)
        self.model = build_model(config, self.vocab).to(self.device)
        self.initially_trainable = {
            name: p.requires_grad for name, p in self.model.named_parameters()
        }
        context = {"num_instances": len(self.train_split.images), "dim": config.model.embed_dim}
        self.losses = build_loss_modules(config, context).to(self.device)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(
            config.optim, params + trainable_loss_parameters(self.losses)
        )
        adversary = adversary_parameters(self.losses)
        self.adversary_optimizer = build_optimizer(config.optim, adversary) if adversary else None
        self.train_transform = build_transform(
            self.train_split.images.kind, config.data, train=True
        )
        self.eval_transform = build_transform(
            self.train_split.images.kind, config.data, train=False
        )
        self._warm_text_cache()
        self.state = TrainerState()
        self.run_log = RunLog(self.run_dir)
        self.monitor = CollapseMonitor()
        (self.run_dir / "config.yaml").write_text(
            yaml.safe_dump(config_to_dict(config), sort_keys=False)
        )

    def _warm_text_cache(self) -> None:
        """Let a frozen text encoder encode all captions once, in large batches."""
        text_encoder = getattr(self.model, "text_encoder", None)
        if text_encoder is not None and hasattr(text_encoder, "warm_cache"):
            captions = list(self.train_split.captions)
            if self.val_split is not None:
                captions += list(self.val_split.captions)
            text_encoder.warm_cache(captions, progress=self.progress)

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
    def _forward(self, batch: TrainBatch) -> tuple[tuple[Tensor, ...], Tensor]:
        if self.config.task == "cross_modal":
            img = self.model.encode_image(batch.images)
            txt = self.model.encode_text(batch.captions)
            return (img, txt), batch.ids
        return (self.model.encode(batch.images),), batch.ids

    def _towers(self, batch: TrainBatch) -> tuple[list[Any], list[Any]]:
        """The encoders and their inputs, for a chunked (gradient-cached) step."""
        if self.config.task == "cross_modal":
            return [self.model.encode_image, self.model.encode_text], [batch.images, batch.captions]
        return [self.model.encode], [batch.images]

    def _autocast(self) -> Any:
        if self.config.amp and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def train_step(self, batch: TrainBatch, objective: Objective) -> dict[str, float] | None:
        """One optimizer step; returns the loss parts, or None if skipped (non-finite)."""
        batch = batch.to(self.device)
        ids = batch.ids
        chunk = self.config.optim.grad_cache_chunk
        adversary_parts: dict[str, float] = {}

        def step_adversary_then_loss(embeddings: tuple[Tensor, ...]) -> Any:
            adversary_parts.update(self._adversary_step(objective, embeddings, ids))
            return objective(embeddings, ids)

        with self._autocast():
            if chunk:
                outputs, result, finite = grad_cache_backward(
                    *self._towers(batch),
                    loss_fn=step_adversary_then_loss,
                    chunk_size=chunk,
                    modules=[self.model],
                    total=lambda loss: loss.total,
                )
            else:
                outputs, ids = self._forward(batch)
                result = step_adversary_then_loss(outputs)
                finite = math.isfinite(result.parts["total"])
                if finite:
                    result.total.backward()
        if not finite:
            self.state.skipped_steps += 1
            log.warning("step %d: non-finite loss %s, step skipped", self.state.step, result.parts)
            self.optimizer.zero_grad(set_to_none=True)
            return None
        clip = self.config.optim.grad_clip
        if clip:
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.monitor.update(outputs, result.parts, len(ids), objective.collapsed_values(len(ids)))
        return {**result.parts, **adversary_parts}

    def _adversary_step(
        self, objective: Objective, outputs: tuple[Tensor, ...], ids: Tensor
    ) -> dict[str, float]:
        """Step the losses' adversaries on the detached outputs (before the main step)."""
        if self.adversary_optimizer is None or not objective.has_adversary:
            return {}
        self.adversary_optimizer.zero_grad(set_to_none=True)
        value = objective.adversary_loss(tuple(o.detach() for o in outputs), ids)
        assert value is not None
        if not math.isfinite(float(value.detach())):
            log.warning(
                "step %d: non-finite adversary loss, adversary step skipped", self.state.step
            )
            return {"adversary": float("nan")}
        value.backward()
        self.adversary_optimizer.step()
        self.adversary_optimizer.zero_grad(set_to_none=True)
        return {"adversary": float(value.detach())}

    def _train_epoch(self, epoch: int, stage: StageConfig, epoch_in_stage: int) -> float:
        objective = Objective(stage, self.losses, loss_keys(self.config), self.config.task)
        loader = make_train_loader(
            self.train_split,
            self.config.data,
            self.train_transform,
            self.config.task,
            seed=self.config.seed,
            epoch=epoch,
            start_batch=self.state.batch_in_epoch,
        )
        bar = tqdm(
            loader,
            desc=f"epoch {epoch + 1}/{self.config.total_epochs} [{stage.name}]",
            disable=not self.progress,
            leave=False,
        )
        for batch in bar:
            lr = learning_rate(self.config.optim, stage, epoch_in_stage, self.state.step)
            set_learning_rate(self.optimizer, lr)
            if self.adversary_optimizer is not None:
                set_learning_rate(self.adversary_optimizer, lr)
            parts = self.train_step(batch, objective)
            self.state.step += 1
            self.state.batch_in_epoch += 1
            if parts is not None:
                self.state.epoch_loss_sum += parts["total"]
                self.state.epoch_loss_count += 1
                bar.set_postfix(loss=f"{parts['total']:.4f}")
                if self.state.step % self.config.log_every_steps == 0:
                    self.run_log.log_step(
                        {"step": self.state.step, "epoch": epoch + 1, "lr": lr, **parts}
                    )
            every = self.config.checkpoint_every_steps
            if every and self.state.step % every == 0:
                self.save("last")
        mean = self.state.epoch_loss_sum / max(self.state.epoch_loss_count, 1)
        self.state.epoch_loss_sum, self.state.epoch_loss_count = 0.0, 0
        return mean

    # -------------------------------------------------------------- evaluation
    def evaluate(self, split: Any, progress: bool = False) -> dict[str, Any]:
        """Score the model on a split with the recipe's protocol (the one evaluator)."""
        cfg = self.config.eval
        if self.config.task == "cross_modal":
            return evaluate_cross_modal(
                self.model, split, self.eval_transform, cfg.protocol, cfg.batch_size, progress
            )
        return evaluate_metric_learning(
            self.model, split, self.eval_transform, cfg.batch_size, progress
        )

    def _validate(self, epoch: int, stage: StageConfig, train_loss: float) -> None:
        record: dict[str, Any] = {"epoch": epoch + 1, "stage": stage.name, "train_loss": train_loss}
        is_last = epoch + 1 == self.config.total_epochs
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
    def save(self, name: str) -> Path:
        extra = {VOCAB_FILE: self.vocab_path} if self.vocab_path is not None else {}
        return save_checkpoint(
            self.run_dir / "checkpoints" / name,
            tensors={"model": self.model.state_dict(), "loss": self.losses.state_dict()},
            config=config_to_dict(self.config),
            trainer_state=self.state.to_dict(),
            optimizer_state={
                "optimizer": self.optimizer.state_dict(),
                **(
                    {"adversary": self.adversary_optimizer.state_dict()}
                    if self.adversary_optimizer is not None
                    else {}
                ),
                "rng": capture_rng_state(),
            },
            extra_files=extra,
        )

    def restore(self, path: str | Path) -> None:
        """Load model, losses, optimizer, RNG and progress from a checkpoint."""
        content = load_checkpoint(path, with_optimizer=True)
        self.model.load_state_dict(content.prefixed("model"))
        self.losses.load_state_dict(content.prefixed("loss"))
        assert content.optimizer_state is not None
        self.optimizer.load_state_dict(content.optimizer_state["optimizer"])
        if self.adversary_optimizer is not None:
            self.adversary_optimizer.load_state_dict(content.optimizer_state["adversary"])
        restore_rng_state(content.optimizer_state["rng"])
        self.state = TrainerState.from_dict(content.trainer_state)
        if (content.path / VOCAB_FILE).exists() and self.vocab is not None:
            saved = load_vocab(content.path / VOCAB_FILE)
            if saved.words != self.vocab.words:
                raise RuntimeError(f"{content.path}: vocabulary differs from the data's")
        self.run_log.truncate_after(self.state.step, self.state.epoch)
        log.info(
            "resumed from %s at epoch %d, step %d", content.path, self.state.epoch, self.state.step
        )

    # --------------------------------------------------------------------- fit
    def fit(self, resume: bool = False) -> TrainerState:
        """Train all stages; with ``resume`` continue from ``checkpoints/last``."""
        last = self.run_dir / "checkpoints" / "last"
        if resume and (last.exists() or last.with_name("last.old").exists()):
            self.restore(last)
        elif resume:
            log.info("nothing to resume in %s: starting from scratch", self.run_dir)
        while self.state.epoch < self.config.total_epochs:
            epoch = self.state.epoch
            _, stage, epoch_in_stage = self.stage_at(epoch)
            self._apply_freezing(stage)
            self._set_train_mode(stage)
            train_loss = self._train_epoch(epoch, stage, epoch_in_stage)
            self.state.epoch += 1
            self.state.batch_in_epoch = 0
            self._validate(epoch, stage, train_loss)
            self.save("last")
            if self.state.history[-1].get("best") or self.val_split is None:
                self.save("best")
        return self.state
