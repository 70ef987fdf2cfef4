"""Checkpoints: atomic write, recovery of an interrupted save, weights_only load,
verification, fallback to the previous version, failed writes."""

import errno
import logging
from pathlib import Path

import pytest
import torch

from retrievalkit.run.checkpoint import (
    CheckpointError,
    check_writable,
    load_checkpoint,
    resolve_checkpoint_dir,
    save_checkpoint,
)


def _save(directory: Path, value: float, keep_previous: bool = False) -> Path:
    return save_checkpoint(
        directory,
        keep_previous=keep_previous,
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


def test_interrupted_between_renames_recovers_previous(tmp_path: Path, caplog) -> None:
    _save(tmp_path / "last", 1.0)
    (tmp_path / "last").rename(tmp_path / "last.prev")  # crash after the first rename
    assert resolve_checkpoint_dir(tmp_path / "last") == tmp_path / "last.prev"
    with caplog.at_level(logging.WARNING):
        assert load_checkpoint(tmp_path / "last").trainer_state == {"epoch": 1}
    assert "last: missing (a save was interrupted); using the previous checkpoint" in caplog.text


def test_keep_previous_keeps_two_versions(tmp_path: Path) -> None:
    for value in (1.0, 2.0, 3.0):
        _save(tmp_path / "last", value, keep_previous=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last", "last.prev"]
    assert load_checkpoint(tmp_path / "last").trainer_state == {"epoch": 3}
    assert load_checkpoint(tmp_path / "last.prev").trainer_state == {"epoch": 2}


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda f: f.write_bytes(f.read_bytes()[:-7]), "truncated or damaged"),
        (lambda f: f.write_bytes(b"\0" + f.read_bytes()[1:]), "sha256 differs"),
        (lambda f: f.write_bytes(b""), "truncated or damaged"),
        (lambda f: f.unlink(), "missing"),
    ],
    ids=["truncated", "flipped-byte", "zero-bytes", "deleted"],
)
@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.pt", "trainer_state.json"])
def test_damaged_file_falls_back_to_previous(tmp_path, caplog, damage, message, name):
    _save(tmp_path / "last", 1.0, keep_previous=True)
    _save(tmp_path / "last", 2.0, keep_previous=True)
    damage(tmp_path / "last" / name)
    with caplog.at_level(logging.WARNING):
        content = load_checkpoint(tmp_path / "last", with_optimizer=True)
    assert content.trainer_state == {"epoch": 1} and content.path == tmp_path / "last.prev"
    assert f"{tmp_path / 'last' / name}: " in caplog.text and message in caplog.text
    damage(tmp_path / "last.prev" / name)  # no good version left: one error naming both
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path / "last", with_optimizer=True)
    text = str(info.value)
    assert "\n" not in text and text.startswith("no usable checkpoint: ")
    assert str(tmp_path / "last" / name) in text and str(tmp_path / "last.prev" / name) in text


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    _save(tmp_path / "last", 1.0, keep_previous=True)

    def disk_full(obj, path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(CheckpointError) as info:
        _save(tmp_path / "last", 2.0, keep_previous=True)
    assert str(info.value) == (
        f"{tmp_path / 'last.tmp' / 'optimizer.pt'}: cannot write the checkpoint "
        f"(No space left on device); the previous checkpoint {tmp_path / 'last'} is intact"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]
    assert load_checkpoint(tmp_path / "last").trainer_state == {"epoch": 1}


def test_unwritable_run_directory_is_found_before_training(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(CheckpointError, match=r"a_file/run: cannot write the run directory"):
        check_writable(blocker / "run")
    with pytest.raises(CheckpointError, match=r"MiB free, checkpoints need about"):
        check_writable(tmp_path / "run", need_bytes=2**62)


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
    assert load_checkpoint(tmp_path / "last").trainer_state == {"epoch": 1}  # weights only
    with pytest.raises(CheckpointError, match="optimizer.pt: missing, cannot resume"):
        load_checkpoint(tmp_path / "last", with_optimizer=True)
