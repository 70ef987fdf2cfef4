"""One optimizer step: forward and backward (plain, gradient-cached, under DDP), the
guard against bad batches and non-finite losses, the adversaries' step, clipping,
and every optimizer group's step.
"""

from __future__ import annotations

import logging
import math
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from retrievalkit.run.config import RunConfig
from retrievalkit.training.backward import loss_backward
from retrievalkit.training.data_loading import TrainBatch
from retrievalkit.training.distributed import Runtime, average_gradients, mean_over_ranks
from retrievalkit.training.guard import StepGuard
from retrievalkit.training.monitor import CollapseMonitor
from retrievalkit.training.objective import Objective, trainable_loss_parameters
from retrievalkit.training.optim import ParamGroup
from retrievalkit.training.state import TrainerState

log = logging.getLogger(__name__)


class StepRunner:
    """Takes optimizer steps for one run.

    ``forward_model`` is what the forward pass calls (the model, or its DDP wrapper
    for the current stage; the trainer sets it); ``guard`` decides which steps are
    skipped and ``monitor`` watches for collapse.
    """

    def __init__(
        self,
        config: RunConfig,
        model: torch.nn.Module,
        losses: torch.nn.ModuleDict,
        groups: dict[str, ParamGroup],
        runtime: Runtime,
        run_dir: Path,
    ) -> None:
        self.config = config
        self.model = model
        self.forward_model: torch.nn.Module = model
        self.losses = losses
        self.groups = groups
        self.runtime = runtime
        self.run_dir = run_dir
        self.monitor = CollapseMonitor()
        self.guard = StepGuard(config.optim.nonfinite, config.optim.max_loss)

    def _autocast(self) -> Any:
        if self.config.amp and self.runtime.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def zero_grad(self) -> None:
        for group in self.groups.values():
            group.optimizer.zero_grad(set_to_none=True)

    def step(
        self, batch: TrainBatch, objective: Objective, state: TrainerState
    ) -> dict[str, float] | None:
        """One optimizer step; returns the loss parts, or None if skipped (non-finite).

        The loss is computed and back-propagated first; only when it is finite do
        the adversaries step (on the detached outputs of this same forward pass)
        and then every other group. Under DDP the parts are the mean over ranks
        (the full batch's loss), and all ranks decide the skip from them together.
        """
        batch = batch.to(self.runtime.device)
        problem = self._batch_problem(batch)
        if problem is not None:
            return self._skip(problem, state)
        chunk = self.config.optim.grad_cache_chunk
        with self._autocast():
            step = loss_backward(
                self.model, self.forward_model, objective, batch.fields(), chunk, self.runtime
            )
        namespace, parts = step.namespace, step.parts
        problem = self.guard.loss_problem(parts)  # not finite, or above max_loss (all ranks)
        if problem is not None:
            return self._skip(problem, state)
        # what DDP's hooks did not average: the losses' parameters, and the towers
        # of a gradient-cached step (called directly, not through the DDP wrapper)
        outside = trainable_loss_parameters(self.losses)
        if chunk:
            outside = [p for p in self.model.parameters() if p.requires_grad] + outside
        average_gradients(outside, self.runtime)
        adversary_parts = self._adversary_step(objective, namespace, state.step)
        trained = [group for group in self.groups.values() if not group.adversary]
        clip = self.config.optim.grad_clip
        if clip:
            params = [p for g in trained for pg in g.optimizer.param_groups for p in pg["params"]]
            torch.nn.utils.clip_grad_norm_(params, clip)
        for group in trained:
            group.optimizer.step()
        self.zero_grad()
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

    def _skip(self, problem: str, state: TrainerState) -> None:
        """Leave the weights as they are (or stop, as the recipe says) and count it."""
        self.guard.handle(state.step, problem, self.run_dir / "checkpoints" / "last")
        state.skipped_steps += 1
        self.zero_grad()

    def _adversary_step(
        self, objective: Objective, namespace: dict[str, Any], step: int
    ) -> dict[str, float]:
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
            log.warning("step %d: non-finite adversary loss, adversary step skipped", step)
            return {"adversary": float("nan")}
        value.backward()
        params = [p for g in groups for pg in g.optimizer.param_groups for p in pg["params"]]
        average_gradients(params, self.runtime)
        for group in groups:
            group.optimizer.step()
            group.optimizer.zero_grad(set_to_none=True)
        self.monitor.update_adversaries(objective.adversary_collapse(), step)
        return {"adversary": mean, **objective.adversary_stats()}
