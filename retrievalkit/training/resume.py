"""A run's checkpoints: what goes into them and how a run resumes from one.

A checkpoint holds the model and losses' tensors, every optimizer group's state,
the RNG states of every rank and the trainer's progress, so a resumed run takes the
same batches with the same randomness as an uninterrupted one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from retrievalkit.pipeline.build import load_vocab
from retrievalkit.run.checkpoint import VOCAB_FILE, load_checkpoint, save_checkpoint
from retrievalkit.run.config import ConfigError, RunConfig, config_to_dict
from retrievalkit.training.distributed import Runtime
from retrievalkit.training.optim import ParamGroup
from retrievalkit.training.state import TrainerState, restore_rng_state


def run_tensors(
    model: torch.nn.Module, losses: torch.nn.ModuleDict
) -> dict[str, dict[str, torch.Tensor]]:
    """The tensors a checkpoint keeps, by prefix: ``model`` and ``loss``."""
    return {"model": model.state_dict(), "loss": losses.state_dict()}


def write_run_checkpoint(
    directory: Path,
    config: RunConfig,
    tensors: dict[str, dict[str, torch.Tensor]],
    groups: dict[str, ParamGroup],
    state: TrainerState,
    rng_states: list[dict[str, Any]],
    vocab_path: Path | None,
) -> Path:
    """Write one checkpoint directory (``last`` keeps its previous version)."""
    extra = {VOCAB_FILE: vocab_path} if vocab_path is not None else {}
    optimizers = {name: g.optimizer.state_dict() for name, g in groups.items()}
    return save_checkpoint(
        directory,
        keep_previous=directory.name == "last",
        tensors=tensors,
        config=config_to_dict(config),
        trainer_state=state.to_dict(),
        optimizer_state={"optimizers": optimizers, "rng": rng_states[0], "rng_ranks": rng_states},
        extra_files=extra,
    )


def restore_run(
    path: str | Path,
    model: torch.nn.Module,
    losses: torch.nn.ModuleDict,
    groups: dict[str, ParamGroup],
    runtime: Runtime,
    vocab: Any,
) -> tuple[TrainerState, Path]:
    """Load model, losses, optimizers and this rank's RNG from a checkpoint; returns
    the saved progress and the checkpoint directory read (``last`` or its previous
    version).

    Raises:
        ConfigError: the checkpoint's optimizer groups are not the recipe's.
        RuntimeError: its vocabulary is not the one built from the data.
    """
    content = load_checkpoint(path, with_optimizer=True)
    model.load_state_dict(content.prefixed("model"))
    losses.load_state_dict(content.prefixed("loss"))
    assert content.optimizer_state is not None
    saved = content.optimizer_state["optimizers"]
    if set(saved) != set(groups):
        raise ConfigError(
            f"{content.path}: optimizer groups {sorted(saved)} differ from the recipe's "
            f"{sorted(groups)}"
        )
    for name, group in groups.items():
        group.optimizer.load_state_dict(saved[name])
    per_rank = content.optimizer_state.get("rng_ranks") or []
    same_world = len(per_rank) == runtime.world_size
    restore_rng_state(per_rank[runtime.rank] if same_world else content.optimizer_state["rng"])
    state = TrainerState.from_dict(content.trainer_state)
    saved_vocab = content.path / VOCAB_FILE
    if saved_vocab.exists() and vocab is not None and load_vocab(saved_vocab).words != vocab.words:
        raise RuntimeError(f"{content.path}: vocabulary differs from the data's")
    return state, content.path
