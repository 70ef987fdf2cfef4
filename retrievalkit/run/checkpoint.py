"""Checkpoints: a directory written atomically, verified and loaded with
``weights_only=True``; the previous version is kept to fall back on.
(Over 300 lines on purpose: the format's writer, verifier and reader change together.)

Layout (DESIGN.md)::

    model.safetensors    model weights ("model.*") and loss-module state ("loss.*")
    config.yaml          the resolved recipe (plain dict)
    optimizer.pt         optimizer(s), grad scaler, RNG states
    trainer_state.json   epoch, step, position in the epoch, best score, history
    vocab.json           (when the text encoder has a vocabulary)
    checksums.json       sha256 and size of each file above, written last

Atomicity: everything is written into ``<dir>.tmp`` and fsynced; then the
current ``<dir>`` becomes ``<dir>.prev`` (replacing an older one) and the new
one is renamed into place. A crash at any point leaves ``<dir>`` or ``<dir>.prev``
complete. With ``keep_previous`` (the trainer's ``last``) ``<dir>.prev`` stays, so
there are two good checkpoints; otherwise it is removed after the swap.

Loading verifies every file against ``checksums.json`` (a truncated or flipped
byte is a :class:`CheckpointError` naming the file) and falls back to
``<dir>.prev`` with a warning when ``<dir>`` is missing or damaged. When no
version is usable the error names each file and what is wrong with it; nothing
silently starts over.

A failed write (disk full, no permission) raises :class:`CheckpointError`
naming the file and leaves the previous checkpoint as it was;
:func:`check_writable` tests a run directory (and its free space) before
training starts.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file, save_file

from retrievalkit.errors import UserError
from retrievalkit.run.files import file_sha256, fsync_dir

log = logging.getLogger(__name__)

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.yaml"
OPTIMIZER_FILE = "optimizer.pt"
STATE_FILE = "trainer_state.json"
VOCAB_FILE = "vocab.json"
CHECKSUM_FILE = "checksums.json"
PREVIOUS_SUFFIX = ".prev"
# Test-only hook (tests/reliability/test_kill.py): "STEP:POINT" makes the save of
# the checkpoint at trainer step STEP sleep at POINT ("write": files half written
# into <dir>.tmp; "swap": <dir> already moved to <dir>.prev, <dir>.tmp not yet
# renamed), so a test can SIGKILL the process there deterministically.
PAUSE_ENV = "RETRIEVALKIT_TEST_PAUSE_IN_SAVE"


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


def _pause_for_test(point: str, trainer_state: dict[str, Any]) -> None:
    """Test-only: sleep at ``point`` when :data:`PAUSE_ENV` names this step."""
    wanted = os.environ.get(PAUSE_ENV)
    if wanted and wanted == f"{trainer_state.get('step')}:{point}":
        print(f"{PAUSE_ENV}: paused at {wanted}", file=sys.stderr, flush=True)
        time.sleep(600)


def previous_dir(directory: Path) -> Path:
    """Where the previous version of checkpoint ``directory`` is kept."""
    return directory.with_name(directory.name + PREVIOUS_SUFFIX)


def _write_files(
    tmp: Path,
    tensors: dict[str, dict[str, torch.Tensor]],
    config: dict[str, Any],
    trainer_state: dict[str, Any],
    optimizer_state: dict[str, Any] | None,
    extra_files: dict[str, Path],
) -> None:
    flat: dict[str, torch.Tensor] = {}
    for prefix, state in tensors.items():
        flat.update(_plain_tensors(state, prefix))
    save_file(flat, str(tmp / MODEL_FILE))
    _pause_for_test("write", trainer_state)
    (tmp / CONFIG_FILE).write_text(yaml.safe_dump(config, sort_keys=False))
    (tmp / STATE_FILE).write_text(json.dumps(trainer_state, indent=2))
    if optimizer_state is not None:
        torch.save(optimizer_state, tmp / OPTIMIZER_FILE)
    for name, source in extra_files.items():
        shutil.copyfile(source, tmp / name)
    sums = {p.name: {"sha256": file_sha256(p), "bytes": p.stat().st_size} for p in tmp.iterdir()}
    (tmp / CHECKSUM_FILE).write_text(json.dumps(sums, indent=2, sort_keys=True))
    for item in tmp.iterdir():
        with open(item, "rb") as handle:
            os.fsync(handle.fileno())
    fsync_dir(tmp)


def save_checkpoint(
    directory: str | Path,
    *,
    tensors: dict[str, dict[str, torch.Tensor]],
    config: dict[str, Any],
    trainer_state: dict[str, Any],
    optimizer_state: dict[str, Any] | None = None,
    extra_files: dict[str, Path] | None = None,
    keep_previous: bool = False,
) -> Path:
    """Write a checkpoint atomically (see the module docstring).

    Args:
        tensors: ``{"model": model.state_dict(), "loss": ...}``; keys are prefixed.
        config: the plain recipe dict.
        trainer_state: JSON-serializable progress (epoch, step, best score, ...).
        optimizer_state: optimizer/scaler/RNG states (tensors, numbers, lists).
        extra_files: name -> existing file copied in (e.g. ``vocab.json``).
        keep_previous: keep the replaced version as ``<dir>.prev``.

    Raises:
        CheckpointError: a file could not be written (disk full, permission); the
            previous checkpoint is untouched and the partial ``<dir>.tmp`` removed.
    """
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    prev = previous_dir(directory)
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        _write_files(tmp, tensors, config, trainer_state, optimizer_state, extra_files or {})
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        where = err.filename or tmp
        kept = f"; the previous checkpoint {directory} is intact" if directory.exists() else ""
        raise CheckpointError(
            f"{where}: cannot write the checkpoint ({err.strerror or err}){kept}"
        ) from err
    if directory.exists():
        if prev.exists():
            shutil.rmtree(prev)
        directory.rename(prev)
    _pause_for_test("swap", trainer_state)
    tmp.rename(directory)
    fsync_dir(directory.parent)
    if not keep_previous and prev.exists():
        shutil.rmtree(prev)
    return directory


def check_writable(run_dir: str | Path, need_bytes: int = 0) -> None:
    """Fail early, before any training, when ``run_dir`` cannot hold checkpoints.

    Creates the directory, writes and removes a probe file, and checks that the
    file system has ``need_bytes`` free (an estimate of what the checkpoints need).
    """
    run_dir = Path(run_dir)
    probe = run_dir / f".write_test.{os.getpid()}"  # one per process (ranks share the dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as err:
        raise CheckpointError(
            f"{err.filename or run_dir}: cannot write the run directory ({err.strerror or err})"
        ) from None
    free = shutil.disk_usage(run_dir).free
    if free < need_bytes:
        raise CheckpointError(
            f"{run_dir}: {free / 2**20:.1f} MiB free, checkpoints need about "
            f"{need_bytes / 2**20:.1f} MiB ({os.strerror(errno.ENOSPC)})"
        )


def _candidates(path: Path) -> list[Path]:
    """Checkpoint directories ``path`` may mean, in order of preference."""
    if path.name.endswith(PREVIOUS_SUFFIX):
        return [path]
    for main in (path, path / "checkpoints" / "best", path / "checkpoints" / "last"):
        versions = [main, previous_dir(main)]
        if any((v / MODEL_FILE).exists() or (v / CHECKSUM_FILE).exists() for v in versions):
            return versions
    return []


def resolve_checkpoint_dir(path: str | Path) -> Path:
    """The checkpoint directory for ``path`` (a checkpoint or a run directory).

    A run directory resolves to its ``checkpoints/best`` (or ``last``). When that
    one is missing, its previous version ``<dir>.prev`` is used. No check of the
    files' content: :func:`load_checkpoint` does that.
    """
    path = Path(path)
    for candidate in _candidates(path):
        if (candidate / MODEL_FILE).exists():
            return candidate
    raise CheckpointError(
        f"{path}: no checkpoint here (expected {MODEL_FILE} in it, or in checkpoints/best "
        "or checkpoints/last of a run directory)"
    )


def _verify(directory: Path) -> None:
    """Each present file against ``checksums.json`` (older checkpoints have none).

    A listed file may be absent (an index keeps the model without its optimizer);
    the caller checks the files it needs.
    """
    sums_path = directory / CHECKSUM_FILE
    if not sums_path.exists():
        return
    try:
        sums = json.loads(sums_path.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{sums_path}: unreadable ({err})") from None
    for name, expected in sums.items():
        file = directory / name
        if not file.exists():
            continue
        size = file.stat().st_size
        if size != expected["bytes"]:
            raise CheckpointError(
                f"{file}: truncated or damaged ({size} bytes, {expected['bytes']} written)"
            )
        if file_sha256(file) != expected["sha256"]:
            raise CheckpointError(f"{file}: damaged (its sha256 differs from {CHECKSUM_FILE})")


def _load_one(directory: Path, with_optimizer: bool) -> CheckpointContent:
    for name in (MODEL_FILE, CONFIG_FILE, STATE_FILE):
        if not (directory / name).exists():
            raise CheckpointError(f"{directory / name}: missing")
    _verify(directory)
    try:
        tensors = load_file(str(directory / MODEL_FILE))
    except Exception as err:  # safetensors raises its own error types
        raise CheckpointError(f"{directory / MODEL_FILE}: unreadable ({err})") from err
    try:
        config = yaml.safe_load((directory / CONFIG_FILE).read_text())
        trainer_state = json.loads((directory / STATE_FILE).read_text())
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise CheckpointError(f"{directory}: config or trainer state unreadable ({err})") from None
    optimizer_state = None
    if with_optimizer:
        opt_path = directory / OPTIMIZER_FILE
        if not opt_path.exists():
            raise CheckpointError(f"{opt_path}: missing, cannot resume")
        try:
            optimizer_state = torch.load(opt_path, map_location="cpu", weights_only=True)
        except Exception as err:  # zip/pickle errors of a damaged file
            raise CheckpointError(f"{opt_path}: unreadable ({err})") from None
    return CheckpointContent(tensors, config, trainer_state, optimizer_state, directory)


def load_checkpoint(path: str | Path, with_optimizer: bool = False) -> CheckpointContent:
    """Load and verify a checkpoint directory (or a run directory's best checkpoint).

    A missing or damaged checkpoint falls back to its previous version with a
    warning naming the damaged file; when no version is usable the
    :class:`CheckpointError` names what is wrong with each.
    """
    path = Path(path)
    versions = _candidates(path)
    candidates = [c for c in versions if c.exists()]
    if not candidates:
        resolve_checkpoint_dir(path)  # raises the "no checkpoint here" error
    problems: list[str] = []
    if versions[0] not in candidates:
        problems.append(f"{versions[0]}: missing (a save was interrupted)")
    for candidate in candidates:
        try:
            content = _load_one(candidate, with_optimizer)
        except CheckpointError as err:
            problems.append(str(err))
            continue
        if problems:
            log.warning("%s; using the previous checkpoint %s", problems[0], candidate)
        return content
    raise CheckpointError("no usable checkpoint: " + "; ".join(problems))


def checkpoint_bytes(tensors: dict[str, dict[str, torch.Tensor]], copies: int = 3) -> int:
    """Rough size of one checkpoint: the tensors ``copies`` times (weights plus an
    optimizer's two moment buffers, as Adam keeps)."""
    total = sum(t.numel() * t.element_size() for state in tensors.values() for t in state.values())
    return copies * total
