"""Checkpoints: atomic write, recovery of an interrupted save, weights_only load."""

from pathlib import Path

import pytest
import torch

from retrievalkit.run.checkpoint import (
    CheckpointError,
    load_checkpoint,
    resolve_checkpoint_dir,
    save_checkpoint,
)


def _save(directory: Path, value: float) -> Path:
    return save_checkpoint(
        directory,
        tensors={"model": {"w": torch.full((2, 2), value)}, "loss": {}},
        config={"name": "x"},
        trainer_state={"epoch": int(value)},
        optimizer_state={"optimizer": {"state": {}}, "rng": {"torch": torch.get_rng_state()}},
    )


def test_save_and_load(tmp_path: Path) -> None:
    _save(tmp_path / "last", 1.0)
    content = load_checkpoint(tmp_path / "last", with_optimizer=True)
    assert torch.equal(content.prefixed("model")["w"], torch.ones(2, 2))
    assert content.trainer_state == {"epoch": 1}
    assert content.config == {"name": "x"}
    assert torch.equal(content.optimizer_state["rng"]["torch"], torch.get_rng_state())


def test_overwrite_leaves_no_temp_dirs(tmp_path: Path) -> None:
    _save(tmp_path / "last", 1.0)
    _save(tmp_path / "last", 2.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]
    assert load_checkpoint(tmp_path / "last").trainer_state == {"epoch": 2}


def test_interrupted_between_renames_recovers_old(tmp_path: Path) -> None:
    _save(tmp_path / "last", 1.0)
    (tmp_path / "last").rename(tmp_path / "last.old")  # crash after the first rename
    assert resolve_checkpoint_dir(tmp_path / "last") == tmp_path / "last.old"
    assert load_checkpoint(tmp_path / "last").trainer_state == {"epoch": 1}


def test_run_directory_resolves_to_best(tmp_path: Path) -> None:
    _save(tmp_path / "checkpoints" / "best", 3.0)
    assert load_checkpoint(tmp_path).trainer_state == {"epoch": 3}


def test_missing_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint here"):
        load_checkpoint(tmp_path)


def test_corrupt_weights_file_named(tmp_path: Path) -> None:
    _save(tmp_path / "last", 1.0)
    (tmp_path / "last" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_checkpoint(tmp_path / "last")


def test_resume_without_optimizer_file(tmp_path: Path) -> None:
    _save(tmp_path / "last", 1.0)
    (tmp_path / "last" / "optimizer.pt").unlink()
    with pytest.raises(CheckpointError, match="cannot resume"):
        load_checkpoint(tmp_path / "last", with_optimizer=True)
