"""Checkpoints: a directory written atomically, loaded with ``weights_only=True``.

Layout (DESIGN.md)::

    model.safetensors    model weights ("model.*") and loss-module state ("loss.*")
    config.yaml          the resolved recipe (plain dict)
    optimizer.pt         optimizer(s), grad scaler, RNG states
    trainer_state.json   epoch, step, position in the epoch, best score, history
    vocab.json           (when the text encoder has a vocabulary)

Atomicity: everything is written into ``<dir>.tmp``, then the old directory is
moved to ``<dir>.old``, the new one renamed into place and the old one removed.
A crash at any point leaves either the old or the new checkpoint readable;
:func:`resolve_checkpoint_dir` recovers ``<dir>.old`` when ``<dir>`` is missing.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file, save_file

from retrievalkit.errors import UserError

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.yaml"
OPTIMIZER_FILE = "optimizer.pt"
STATE_FILE = "trainer_state.json"
VOCAB_FILE = "vocab.json"


class CheckpointError(UserError, RuntimeError):
    """A checkpoint directory is missing a file or holds something unexpected."""


@dataclass
class CheckpointContent:
    """What a checkpoint holds, as loaded (tensors on CPU)."""

    tensors: dict[str, torch.Tensor]
    config: dict[str, Any]
    trainer_state: dict[str, Any]
    optimizer_state: dict[str, Any] | None
    path: Path

    def prefixed(self, prefix: str) -> dict[str, torch.Tensor]:
        """The tensors under ``prefix.`` with the prefix removed."""
        cut = len(prefix) + 1
        return {k[cut:]: v for k, v in self.tensors.items() if k.startswith(prefix + ".")}


def _plain_tensors(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    # clone: safetensors refuses tensors that share memory (tied weights, views)
    return {f"{prefix}.{k}": v.detach().cpu().contiguous().clone() for k, v in state.items()}


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(
    directory: str | Path,
    *,
    tensors: dict[str, dict[str, torch.Tensor]],
    config: dict[str, Any],
    trainer_state: dict[str, Any],
    optimizer_state: dict[str, Any] | None = None,
    extra_files: dict[str, Path] | None = None,
) -> Path:
    """Write a checkpoint atomically.

    Args:
        tensors: ``{"model": model.state_dict(), "loss": ...}``; keys are prefixed.
        config: the plain recipe dict.
        trainer_state: JSON-serializable progress (epoch, step, best score, ...).
        optimizer_state: optimizer/scaler/RNG states (tensors, numbers, lists).
        extra_files: name -> existing file copied in (e.g. ``vocab.json``).
    """
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    old = directory.with_name(directory.name + ".old")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    flat: dict[str, torch.Tensor] = {}
    for prefix, state in tensors.items():
        flat.update(_plain_tensors(state, prefix))
    save_file(flat, str(tmp / MODEL_FILE))
    (tmp / CONFIG_FILE).write_text(yaml.safe_dump(config, sort_keys=False))
    (tmp / STATE_FILE).write_text(json.dumps(trainer_state, indent=2))
    if optimizer_state is not None:
        torch.save(optimizer_state, tmp / OPTIMIZER_FILE)
    for name, source in (extra_files or {}).items():
        shutil.copyfile(source, tmp / name)
    for item in tmp.iterdir():
        with open(item, "rb") as handle:
            os.fsync(handle.fileno())
    _fsync_dir(tmp)
    if old.exists():
        shutil.rmtree(old)
    if directory.exists():
        directory.rename(old)
    tmp.rename(directory)
    _fsync_dir(directory.parent)
    if old.exists():
        shutil.rmtree(old)
    return directory


def resolve_checkpoint_dir(path: str | Path) -> Path:
    """The checkpoint directory for ``path`` (a checkpoint or a run directory).

    A run directory resolves to its ``checkpoints/best`` (or ``last``). If a save
    was interrupted between its two renames, ``<dir>.old`` is used.
    """
    path = Path(path)
    for candidate in (path, path / "checkpoints" / "best", path / "checkpoints" / "last"):
        if (candidate / MODEL_FILE).exists():
            return candidate
        old = candidate.with_name(candidate.name + ".old")
        if (old / MODEL_FILE).exists():
            return old
    raise CheckpointError(
        f"{path}: no checkpoint here (expected {MODEL_FILE} in it, or in checkpoints/best "
        "or checkpoints/last of a run directory)"
    )


def load_checkpoint(path: str | Path, with_optimizer: bool = False) -> CheckpointContent:
    """Load a checkpoint directory (or a run directory's best checkpoint)."""
    directory = resolve_checkpoint_dir(path)
    for name in (CONFIG_FILE, STATE_FILE):
        if not (directory / name).exists():
            raise CheckpointError(f"{directory}: missing {name}")
    try:
        tensors = load_file(str(directory / MODEL_FILE))
    except Exception as err:  # safetensors raises its own error types
        raise CheckpointError(f"{directory / MODEL_FILE}: unreadable ({err})") from err
    config = yaml.safe_load((directory / CONFIG_FILE).read_text())
    trainer_state = json.loads((directory / STATE_FILE).read_text())
    optimizer_state = None
    if with_optimizer:
        opt_path = directory / OPTIMIZER_FILE
        if not opt_path.exists():
            raise CheckpointError(f"{directory}: missing {OPTIMIZER_FILE}, cannot resume")
        optimizer_state = torch.load(opt_path, map_location="cpu", weights_only=True)
    return CheckpointContent(tensors, config, trainer_state, optimizer_state, directory)
