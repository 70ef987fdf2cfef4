"""One training loop for every method: stages of weighted losses, validation,
best/last checkpoints, exact resume.

A run directory holds ``config.yaml`` (resolved recipe), ``train_log.csv``,
``val_log.jsonl``, ``checkpoints/{last,best}`` and, at the end, ``curves.png``.
Under ``torchrun`` every rank trains its share of each batch (``distributed.py``);
rank 0 alone writes the run directory and evaluates.
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
from tqdm.auto import tqdm

from retrievalkit.pipeline.build import (
    build_model,
    build_transform,
    build_vocab,
    load_splits,
    load_vocab,
    require_split,
)
from retrievalkit.pipeline.evaluate import evaluate
from retrievalkit.run.checkpoint import (
    VOCAB_FILE,
    check_writable,
    checkpoint_bytes,
    load_checkpoint,
    previous_dir,
    save_checkpoint,
)
from retrievalkit.run.config import ConfigError, RunConfig, StageConfig, config_to_dict
from retrievalkit.train.backward import loss_backward
from retrievalkit.train.data_loading import TrainBatch, make_train_loader, prepare_train_images
from retrievalkit.train.distributed import (
    Runtime,
    average_gradients,
    barrier,
    for_ranks,
    gather_objects,
    mean_over_ranks,
    sync_batchnorm,
    wrap_model,
)
from retrievalkit.train.guard import StepGuard
from retrievalkit.train.monitor import CollapseMonitor
from retrievalkit.train.objective import (
    Objective,
    adversary_parameters,
    build_loss_modules,
    loss_keys,
    trainable_loss_parameters,
)
from retrievalkit.train.optim import (
    ParamGroup,
    build_param_groups,
    learning_rate,
    set_learning_rate,
)
from retrievalkit.train.run_log import RunLog
from retrievalkit.train.state import TrainerState, capture_rng_state, restore_rng_state

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
        self.splits = splits if splits is not None else load_splits(config.data)
        self.train_split = require_split(self.splits, config.data.train_split, config.data.name)
        self.val_split = self.splits.get(config.data.val_split) if config.data.val_split else None
        self.vocab = build_vocab(config.model, self.train_split)
        self.vocab_path: Path | None = None
        if self.vocab is not None:
            self.vocab_path = self.run_dir / VOCAB_FILE
            if self.is_main:
                self.vocab.save(self.vocab_path)
        self.model = build_model(config, self.vocab).to(self.device)
        if config.distributed.sync_batchnorm:
            self.model = sync_batchnorm(self.model, self.runtime)
        self.forward_model: torch.nn.Module = self.model  # DDP-wrapped per stage in fit()
        self._wrapped_stage: int | None = None
        self.initially_trainable = {
            name: p.requires_grad for name, p in self.model.named_parameters()
        }
        context = {"num_instances": len(self.train_split.images), "dim": config.model.embed_dim}
        self.losses = build_loss_modules(config, context).to(self.device)
        self.rank_losses = torch.nn.ModuleDict(  # as each rank calls them (gathered, scaled)
            {
                key: for_ranks(module, self.runtime, config.distributed.gather)
                for key, module in self.losses.items()
            }
        )
        self.objectives = self._build_objectives()
        self.groups: dict[str, ParamGroup] = build_param_groups(
            config.optim,
            self._trainable_named_parameters(),
            {id(p) for p in adversary_parameters(self.losses)},
        )
        self.train_transform = build_transform(
            self.train_split.images.kind, config.data, train=True
        )
        self.eval_transform = build_transform(
            self.train_split.images.kind, config.data, train=False
        )
        self.loader_split, self.loader_transform = prepare_train_images(
            self.train_split, self.train_transform, config.data.augment
        )
        self._warm_text_cache()
        self.state = TrainerState()
        self.run_log = RunLog(self.run_dir)
        self.monitor = CollapseMonitor()
        self.guard = StepGuard(config.optim.nonfinite, config.optim.max_loss)
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

    def _trainable_named_parameters(self) -> list[tuple[str, torch.nn.Parameter]]:
        """Model parameters by module name, then the losses' as ``loss.<term>.…``."""
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        named += [(f"loss.{n}", p) for n, p in self.losses.named_parameters() if p.requires_grad]
        return named

    def _build_objectives(self) -> dict[str, Objective]:
        """One objective per stage, its inputs checked against the model's outputs."""
        available = set(self.model.output_names) | {"ids", "images"}
        model_name = f"model {self.config.model.name or type(self.model).__name__!r}"
        keys = loss_keys(self.config)
        objectives = {}
        for stage in self.config.stages:
            try:
                objectives[stage.name] = Objective(
                    stage, self.rank_losses, keys, available, model_name
                )
            except ConfigError as err:
                raise ConfigError(f"{self.config.name}: {err}") from None
        return objectives

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
    def _autocast(self) -> Any:
        if self.config.amp and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def _zero_grad(self) -> None:
        for group in self.groups.values():
            group.optimizer.zero_grad(set_to_none=True)

    def train_step(self, batch: TrainBatch, objective: Objective) -> dict[str, float] | None:
        """One optimizer step; returns the loss parts, or None if skipped (non-finite).

        The loss is computed and back-propagated first; only when it is finite do
        the adversaries step (on the detached outputs of this same forward pass)
        and then every other group. Under DDP the parts are the mean over ranks
        (the full batch's loss), and all ranks decide the skip from them together.
        """
        batch = batch.to(self.device)
        problem = self._batch_problem(batch)
        if problem is not None:
            return self._skip(problem)
        chunk = self.config.optim.grad_cache_chunk
        with self._autocast():
            step = loss_backward(
                self.model, self.forward_model, objective, batch.fields(), chunk, self.runtime
            )
        namespace, parts = step.namespace, step.parts
        problem = self.guard.loss_problem(parts)  # not finite, or above max_loss (all ranks)
        if problem is not None:
            return self._skip(problem)
        # what DDP's hooks did not average: the losses' parameters, and the towers
        # of a gradient-cached step (called directly, not through the DDP wrapper)
        outside = trainable_loss_parameters(self.losses)
        if chunk:
            outside = [p for p in self.model.parameters() if p.requires_grad] + outside
        average_gradients(outside, self.runtime)
        adversary_parts = self._adversary_step(objective, namespace)
        trained = [group for group in self.groups.values() if not group.adversary]
        clip = self.config.optim.grad_clip
        if clip:
            params = [p for g in trained for pg in g.optimizer.param_groups for p in pg["params"]]
            torch.nn.utils.clip_grad_norm_(params, clip)
        for group in trained:
            group.optimizer.step()
        self._zero_grad()
        retrieval = tuple(
            namespace[name] for name in self.model.retrieval.values() if name in namespace
        )
        global_batch = len(batch.ids) * self.runtime.world_size
        self.monitor.update(
            retrieval, parts, global_batch, objective.collapsed_values(global_batch)
        )
        return {**parts, **adversary_parts}

    def _batch_problem(self, batch: TrainBatch) -> str | None:
        """What is wrong with this rank's batch; under DDP every rank skips together."""
        problem = self.guard.batch_problem(batch.images, batch.ids)
        if self.runtime.distributed:
            flags = mean_over_ranks({"bad": float(problem is not None)}, self.runtime)
            if flags["bad"] > 0 and problem is None:
                problem = "another rank's share of this batch is bad"
        return problem

    def _skip(self, problem: str) -> None:
        """Leave the weights as they are (or stop, as the recipe says) and count it."""
        self.guard.handle(self.state.step, problem, self.run_dir / "checkpoints" / "last")
        self.state.skipped_steps += 1
        self._zero_grad()

    def _adversary_step(self, objective: Objective, namespace: dict[str, Any]) -> dict[str, float]:
        """Step the adversary groups on their terms' loss over the detached inputs."""
        groups = [group for group in self.groups.values() if group.adversary]
        if not groups or not objective.has_adversary:
            return {}
        for group in groups:  # drop what the main loss left on the discriminators
            group.optimizer.zero_grad(set_to_none=True)
        value = objective.adversary_loss(namespace)
        assert value is not None
        mean = mean_over_ranks({"adversary": float(value.detach())}, self.runtime)["adversary"]
        if not math.isfinite(mean):
            log.warning(
                "step %d: non-finite adversary loss, adversary step skipped", self.state.step
            )
            return {"adversary": float("nan")}
        value.backward()
        params = [p for g in groups for pg in g.optimizer.param_groups for p in pg["params"]]
        average_gradients(params, self.runtime)
        for group in groups:
            group.optimizer.step()
            group.optimizer.zero_grad(set_to_none=True)
        self.monitor.update_adversaries(objective.adversary_collapse(), self.state.step)
        return {"adversary": mean, **objective.adversary_stats()}

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
        return {"model": self.model.state_dict(), "loss": self.losses.state_dict()}

    def save(self, name: str) -> Path | None:
        """Write checkpoint ``name`` ("last" keeps its previous version to fall back
        on). Every rank calls it (their RNG states are gathered into it); rank 0
        writes. Returns its path on rank 0, else None."""
        rng_states = gather_objects(capture_rng_state(), self.runtime)
        path = self._write(name, rng_states) if self.is_main else None
        barrier(self.runtime)  # nobody goes on (or resumes) before it is written
        return path

    def _write(self, name: str, rng_states: list[dict[str, Any]]) -> Path:
        extra = {VOCAB_FILE: self.vocab_path} if self.vocab_path is not None else {}
        optimizers = {name: g.optimizer.state_dict() for name, g in self.groups.items()}
        return save_checkpoint(
            self.run_dir / "checkpoints" / name,
            keep_previous=name == "last",
            tensors=self._tensors(),
            config=config_to_dict(self.config),
            trainer_state=self.state.to_dict(),
            optimizer_state={
                "optimizers": optimizers,
                "rng": rng_states[0],
                "rng_ranks": rng_states,
            },
            extra_files=extra,
        )

    def restore(self, path: str | Path) -> None:
        """Load model, losses, optimizer, RNG and progress from a checkpoint."""
        content = load_checkpoint(path, with_optimizer=True)
        self.model.load_state_dict(content.prefixed("model"))
        self.losses.load_state_dict(content.prefixed("loss"))
        assert content.optimizer_state is not None
        saved = content.optimizer_state["optimizers"]
        if set(saved) != set(self.groups):
            raise ConfigError(
                f"{content.path}: optimizer groups {sorted(saved)} differ from the recipe's "
                f"{sorted(self.groups)}"
            )
        for name, group in self.groups.items():
            group.optimizer.load_state_dict(saved[name])
        per_rank = content.optimizer_state.get("rng_ranks") or []
        same_world = len(per_rank) == self.runtime.world_size
        restore_rng_state(
            per_rank[self.runtime.rank] if same_world else content.optimizer_state["rng"]
        )
        self.state = TrainerState.from_dict(content.trainer_state)
        if (content.path / VOCAB_FILE).exists() and self.vocab is not None:
            saved = load_vocab(content.path / VOCAB_FILE)
            if saved.words != self.vocab.words:
                raise RuntimeError(f"{content.path}: vocabulary differs from the data's")
        if self.is_main:
            self.run_log.truncate_after(self.state.step, self.state.epoch)
        log.info(
            "resumed from %s at epoch %d, step %d", content.path, self.state.epoch, self.state.step
        )

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
                self.forward_model = wrap_model(
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
